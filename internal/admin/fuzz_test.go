package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pryv/pryv-tls/internal/dnsdata"
)

// FuzzControlSocket sends arbitrary requests to the control socket's handler
// and the front's admin handler, backed by a real embedded etcd member. The
// API must never panic, never answer 500 for a request it could refuse, and
// always answer JSON; the front must never echo the Authorization it got.
func FuzzControlSocket(f *testing.F) {
	seeds := []struct {
		method, path, body string
	}{
		{"GET", "/certs", ""},
		{"POST", "/certs", `{"hostname":"a.example.com","cert":"x","key":"y"}`},
		{"POST", "/certs", `{"cert":`},
		{"DELETE", "/certs/a.example.com", ""},
		{"GET", "/certs/%2e%2e/export", ""},
		{"POST", "/certs/force-renew", `{"hostname":"*.example.com"}`},
		{"POST", "/dns-records", `{"records":[{"subdomain":"*.wild","records":{"a":["1.2.3.4"]}}]}`},
		{"POST", "/dns-records", `{"records":[{"subdomain":"","records":{"txt":[""]}}]}`},
		{"POST", "/dns-records", `[1,2,3]`},
		{"DELETE", "/dns-records/x", ""},
		{"PUT", "/users/alice", `{"core":"core1"}`},
		{"PUT", "/users/al%00ice", `{"core":"\u0000"}`},
		{"GET", "/users/alice", ""},
		{"DELETE", "/users/alice", ""},
		{"GET", "/cores", ""},
		{"GET", "/status", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, []byte(s.body))
	}
	cat, db := newCatalog(f)
	api := &API{Certs: cat, DNS: dnsdata.Rows{KV: db}, Logger: quietLogger()}
	local := api.Local()
	const adminKey = "fuzz-admin-key-0123456789"
	public := api.Public(adminKey)
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		if !validMethod(method) || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#?") {
			return
		}
		r, err := http.NewRequest(method, "http://pryv-tls"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		r = r.WithContext(testCtx(t))
		w := httptest.NewRecorder()
		local.ServeHTTP(w, r)
		checkAnswer(t, "socket", method, path, w)

		r2, err := http.NewRequest(method, "http://pryv-tls"+OwnPrefix+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		r2 = r2.WithContext(testCtx(t))
		guess := "Bearer " + string(body)
		if len(guess) > 200 || strings.ContainsAny(guess, "\r\n\x00") {
			guess = "wrong-key-" + method
		}
		r2.Header.Set("Authorization", guess)
		w2 := httptest.NewRecorder()
		public.ServeHTTP(w2, r2)
		if w2.Code != http.StatusForbidden {
			t.Fatalf("front %s %s with a wrong key: %d, want 403", method, path, w2.Code)
		}
		if len(guess) >= 12 && strings.Contains(w2.Body.String(), guess) {
			t.Fatalf("front echoed the Authorization header it was given: %s", w2.Body.String())
		}
		if strings.Contains(w2.Body.String(), adminKey) {
			t.Fatalf("front answer holds the admin key")
		}
	})
}

func validMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS":
		return true
	}
	return false
}

func checkAnswer(t *testing.T, where, method, path string, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code >= 500 && w.Code != http.StatusServiceUnavailable && w.Code != http.StatusNotImplemented {
		t.Fatalf("%s %s %s: %d %s", where, method, path, w.Code, w.Body.String())
	}
	if method == "HEAD" || w.Body.Len() == 0 {
		return
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		// The router's own answers are plain text: 404/405 for a path it
		// does not serve, a redirect to the cleaned path.
		if w.Code == http.StatusNotFound || w.Code == http.StatusMethodNotAllowed || (w.Code >= 300 && w.Code < 400) {
			return
		}
		t.Fatalf("%s %s %s: %d with Content-Type %q: %s", where, method, path, w.Code, ct, w.Body.String())
	}
	if !json.Valid(w.Body.Bytes()) {
		t.Fatalf("%s %s %s: %d, not JSON: %s", where, method, path, w.Code, w.Body.String())
	}
}
