// Package usercoretest is a stand-in for the one route of an open-pryv.io
// core's API that pryv-tls asks: GET /reg/cores?username=NAME
// (api-server's auth.cores), with the core's exact answers. Tests only.
package usercoretest

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Options shape the stand-in.
type Options struct {
	// Domain is dns.domain: a multi-core core answers
	// https://{coreId}.{Domain}/ (Platform.coreIdToUrl) unless SetCoreURL
	// gave the core an explicit url.
	Domain string
	// SingleCore: the core answers a known user with the user's own
	// endpoint, https://{username}.{Domain}/ (ApiEndpoint.build with
	// service.api https://{username}.{Domain}/).
	SingleCore bool
	// Delay is how long every answer waits (a slow core).
	Delay time.Duration
}

// API is a running stand-in.
type API struct {
	URL  string // e.g. http://127.0.0.1:41234
	opts Options
	srv  *httptest.Server

	mu       sync.Mutex
	users    map[string]string // username -> core id
	coreURLs map[string]string // core id -> explicit url
	fail     int               // status to answer instead, 0: none
	requests atomic.Int64
}

// Start starts the stand-in on loopback; it stops with the test.
func Start(t testing.TB, opts Options) *API {
	t.Helper()
	a := &API{opts: opts, users: map[string]string{}, coreURLs: map[string]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(a.serve)}}
	a.srv.Start()
	a.URL = a.srv.URL
	t.Cleanup(a.srv.Close)
	return a
}

// SetUser makes username a user of core id.
func (a *API) SetUser(username, id string) {
	a.mu.Lock()
	a.users[username] = id
	a.mu.Unlock()
}

// SetCoreURL gives core id an explicit url (its core-info row's url).
func (a *API) SetCoreURL(id, url string) {
	a.mu.Lock()
	a.coreURLs[id] = url
	a.mu.Unlock()
}

// SetDelay changes Options.Delay for the requests to come.
func (a *API) SetDelay(d time.Duration) {
	a.mu.Lock()
	a.opts.Delay = d
	a.mu.Unlock()
}

// Fail makes every answer that status (an internal error: 500), 0 undoes it.
func (a *API) Fail(status int) {
	a.mu.Lock()
	a.fail = status
	a.mu.Unlock()
}

// Requests is the number of /reg/cores requests received.
func (a *API) Requests() int { return int(a.requests.Load()) }

func meta() map[string]any {
	return map[string]any{"apiVersion": "2.0.0", "serverTime": float64(time.Now().UnixMilli()) / 1000, "serial": "2019061301"}
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/reg/cores" || r.Method != http.MethodGet {
		// What the core's router says for a path it does not have
		// (middleware/notFound: errors.unknownResource() with no type or id).
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"id": "unknown-resource", "message": "Unknown resource "}, "meta": meta()})
		return
	}
	a.requests.Add(1)
	a.mu.Lock()
	delay, fail := a.opts.Delay, a.fail
	a.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if fail != 0 {
		writeJSON(w, fail, map[string]any{"error": map[string]any{"id": "unexpected-error", "message": "stand-in failure"}, "meta": meta()})
		return
	}
	q := r.URL.Query()
	username, email := q.Get("username"), q.Get("email")
	if (username == "") == (email == "") {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"id": "invalid-parameters-format",
			"message": `provide "username" or "email" as query parameter`}, "meta": meta()})
		return
	}
	a.mu.Lock()
	id, ok := a.users[username]
	explicit := a.coreURLs[id]
	a.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"id": "unknown-resource",
			"message": `Unknown user "` + username + `"`}, "meta": meta()})
		return
	}
	var url string
	switch {
	case a.opts.SingleCore:
		url = "https://" + username + "." + a.opts.Domain + "/"
	case explicit != "":
		url = strings.TrimSuffix(explicit, "/") + "/"
	default:
		url = "https://" + id + "." + a.opts.Domain + "/"
	}
	writeJSON(w, http.StatusOK, map[string]any{"core": map[string]any{"url": url}, "meta": meta()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
