// Package admin is the core's management API. It is served twice: the
// public part on the front (under /system/pryv-tls/admin/, and the two
// certificate paths under /system/admin/), authorised by
// auth.adminAccessKey; and the whole API on a 0600 unix socket for the local
// CLI ("pryv-tls certs ..."), where the file's permissions are the
// authorisation and no key is needed.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pryv/pryv-tls/internal/apijson"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/dnsdata"
)

// Certs is what the API needs of the certificate store.
type Certs interface {
	List(ctx context.Context) ([]*certstore.Record, []error, error)
	Store(ctx context.Context, in certstore.Input) (*certstore.Record, error)
	Export(ctx context.Context, hostname string) (chainPEM, keyPEM []byte, err error)
	Delete(ctx context.Context, hostname string) error
}

// Renewer is the ACME renewer, on the core that has one.
type Renewer interface {
	// ForceRenew refuses with an error that has a RetryAfter method (see
	// retryAfter) when the backoff or its rate limit says not now.
	ForceRenew(ctx context.Context, hostname string, ignoreBackoff bool) (*certstore.Record, error)
}

// RenewalState is what the API shows of a certificate's renewal bookkeeping.
type RenewalState struct {
	NextRenewal time.Time
	LastError   string
	LastErrorAt time.Time
	RenewalDetail
}

// API serves the admin endpoints.
type API struct {
	Certs Certs
	// Renewer is nil on a core that is not the certRenewer.
	Renewer Renewer
	// Renewals, if set, returns the renewal state by hostname (any core can
	// read it: it lives in PlatformDB).
	Renewals func(ctx context.Context) (map[string]RenewalState, error)
	// DNS, if set, serves the dns-records, users and cores endpoints.
	DNS DNSRows
	// Members, if set, maps PlatformDB member names to their health (for
	// the cores endpoint).
	Members func(ctx context.Context) (map[string]bool, error)
	// Cluster, if set, serves /cluster/ on the control socket (join tokens).
	Cluster http.Handler
	// ACME, if set, serves /acme/ on the control socket (account import).
	ACME http.Handler
	// Keys, if set, serves /keys/ on the control socket (atRestKey rotation).
	Keys http.Handler
	// DNSSEC, if set, serves /dnssec/ on the control socket (keys, DS,
	// rollover).
	DNSSEC http.Handler
	// ParentDS, if set (a signed zone), judges the parent's DS against the
	// zone's keys for GET /status.
	ParentDS interface {
		Check(ctx context.Context) dnsdata.ParentDS
	}
	// Self, if set, describes this core for GET /status (from state the
	// daemon keeps, not the store).
	Self   func(ctx context.Context) Self
	Logger *slog.Logger
	Now    func() time.Time
}

// CertInfo is one certificate as the admin API shows it. Times are RFC 3339
// in UTC (ISO 8601), the same everywhere in this API.
type CertInfo struct {
	Hostname        string    `json:"hostname"`
	IssuedAt        time.Time `json:"issuedAt"`
	ExpiresAt       time.Time `json:"expiresAt"`
	DaysUntilExpiry int       `json:"daysUntilExpiry"`
	Names           []string  `json:"names"`
	Issuer          string    `json:"issuer"`
	Serial          string    `json:"serial"`
	Source          string    `json:"source"`
	// From the renewer's bookkeeping, when there is one for this hostname.
	NextRenewal *time.Time `json:"nextRenewal,omitempty"`
	LastError   string     `json:"lastError,omitempty"`
	LastErrorAt *time.Time `json:"lastErrorAt,omitempty"`
	Lifetime
}

func (a *API) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *API) log() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

// On the front, pryv-tls's own admin endpoints live under OwnPrefix. Under
// CorePrefix it answers only the two certificate paths the spec gives it;
// everything else there is the core's (users, cores, cores/ack for its join
// flow, mail templates...) and is proxied to it.
const (
	OwnPrefix  = "/system/pryv-tls/admin"
	CorePrefix = "/system/admin"
)

// PublicPaths are the paths Public answers on the front; a trailing "/"
// covers everything under it.
var PublicPaths = []string{CorePrefix + "/certs", CorePrefix + "/certs/force-renew", OwnPrefix + "/"}

// Public returns the handler mounted on the front at PublicPaths:
// certs and certs/force-renew (under both prefixes), dns-records, users and
// cores (under OwnPrefix). Requests must carry
// "Authorization: <adminAccessKey>". An empty key disables the endpoints
// (every request is refused).
func (a *API) Public(adminKey string) http.Handler {
	want := sha256.Sum256([]byte(adminKey))
	dnsMux := http.NewServeMux()
	a.dnsRoutes(dnsMux, OwnPrefix)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		if got == "" {
			apijson.Error(w, http.StatusUnauthorized, "invalid-access-token", "missing Authorization header")
			return
		}
		// Hash both sides so the comparison's time depends on neither the
		// key's content nor its length.
		h := sha256.Sum256([]byte(got))
		if adminKey == "" || subtle.ConstantTimeCompare(h[:], want[:]) != 1 {
			apijson.Error(w, http.StatusForbidden, "forbidden", "access denied")
			return
		}
		rest, own := strings.CutPrefix(r.URL.Path, OwnPrefix)
		if !own {
			rest, _ = strings.CutPrefix(r.URL.Path, CorePrefix)
		}
		method, handle := "", http.HandlerFunc(nil)
		switch rest {
		case "/certs":
			method, handle = http.MethodGet, a.listCerts
		case "/certs/force-renew":
			method, handle = http.MethodPost, a.forceRenew
		default:
			if own {
				a.serveMux(dnsMux, w, r)
			} else {
				notFound(w, r)
			}
			return
		}
		if r.Method != method {
			apijson.Error(w, http.StatusMethodNotAllowed, "invalid-operation", "only "+method+" is allowed here")
			return
		}
		handle(w, r)
	})
}

// serveMux serves r from mux, answering its 404 and 405 in the API's error
// shape rather than the mux's plain text.
func (a *API) serveMux(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	h, pattern := mux.Handler(r)
	if pattern != "" {
		mux.ServeHTTP(w, r) // it sets the path's {values}; Handler does not
		return
	}
	var rec codeRecorder
	h.ServeHTTP(&rec, r)
	if rec.code == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", rec.h.Get("Allow"))
		apijson.Error(w, http.StatusMethodNotAllowed, "invalid-operation", "only "+rec.h.Get("Allow")+" allowed here")
		return
	}
	notFound(w, r)
}

func notFound(w http.ResponseWriter, r *http.Request) {
	apijson.Error(w, http.StatusNotFound, "unknown-resource", "no pryv-tls admin endpoint "+r.Method+" "+r.URL.Path+
		" (under "+OwnPrefix+"/: certs, certs/force-renew, dns-records, users, cores)")
}

// codeRecorder keeps the status a mux's own 404/405 handler would send.
type codeRecorder struct {
	h    http.Header
	code int
}

func (c *codeRecorder) Header() http.Header {
	if c.h == nil {
		c.h = http.Header{}
	}
	return c.h
}
func (c *codeRecorder) WriteHeader(code int)        { c.code = code }
func (c *codeRecorder) Write(b []byte) (int, error) { return len(b), nil }

// Local returns the full API for the unix control socket.
func (a *API) Local() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /certs", a.listCerts)
	mux.HandleFunc("POST /certs", a.importCert)
	mux.HandleFunc("GET /certs/{hostname}/export", a.exportCert)
	mux.HandleFunc("DELETE /certs/{hostname}", a.deleteCert)
	mux.HandleFunc("POST /certs/force-renew", a.forceRenew)
	mux.HandleFunc("GET /status", a.status)
	a.dnsRoutes(mux, "")
	if a.Cluster != nil {
		mux.Handle("/cluster/", a.Cluster)
	}
	if a.ACME != nil {
		mux.Handle("/acme/", a.ACME)
	}
	if a.Keys != nil {
		mux.Handle("/keys/", a.Keys)
	}
	if a.DNSSEC != nil {
		mux.Handle("/dnssec/", a.DNSSEC)
	}
	return mux
}

func (a *API) listCerts(w http.ResponseWriter, r *http.Request) {
	if a.noCerts(w) {
		return
	}
	list, err := a.certInfos(r.Context())
	if err != nil {
		a.storeError(w, "listing certificates", err)
		return
	}
	apijson.Write(w, http.StatusOK, struct {
		Certs []CertInfo `json:"certs"`
	}{list})
}

// certInfos is every stored certificate with its renewal state.
func (a *API) certInfos(ctx context.Context) ([]CertInfo, error) {
	recs, bad, err := a.Certs.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range bad {
		a.log().Warn("skipping an unreadable certificate record", "error", e.Error())
	}
	now := a.now()
	out := make([]CertInfo, 0, len(recs))
	var states map[string]RenewalState
	if a.Renewals != nil {
		if states, err = a.Renewals(ctx); err != nil {
			a.log().Warn("reading renewal state", "error", err.Error())
		}
	}
	for _, rec := range recs {
		ci := Info(rec, now)
		st, ok := states[rec.Hostname]
		ci.judge(st, ok, now)
		if ok {
			if !st.NextRenewal.IsZero() {
				ci.NextRenewal = &st.NextRenewal
			}
			if st.LastError != "" {
				ci.LastError, ci.LastErrorAt = st.LastError, &st.LastErrorAt
			}
		}
		out = append(out, ci)
	}
	// A certificate not issued yet still has renewal state worth showing
	// (the first order failing, say).
	for _, host := range slices.Sorted(maps.Keys(states)) {
		st := states[host]
		if st.LastError == "" || slices.ContainsFunc(recs, func(r *certstore.Record) bool { return r.Hostname == host }) {
			continue
		}
		ci := CertInfo{Hostname: host, LastError: st.LastError, LastErrorAt: &st.LastErrorAt}
		ci.judge(st, true, now)
		out = append(out, ci)
	}
	return out, nil
}

// forceRenew orders a certificate now: POST with an optional body
// {"hostname": "..."} (default: the primary one). It honours the renewal
// backoff unless ?ignoreBackoff=true, and answers 429 with Retry-After when
// the backoff or the one-per-name-per-minute limit refuses.
func (a *API) forceRenew(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Hostname string `json:"hostname"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			apijson.Write(w, http.StatusBadRequest, map[string]any{"ok": false, "error": "body must be JSON {\"hostname\": \"...\"} or empty"})
			return
		}
	}
	if a.Renewer == nil {
		apijson.Write(w, http.StatusBadRequest, map[string]any{"ok": false,
			"error": "not the certRenewer core: force-renew on the core with letsEncrypt.certRenewer: true"})
		return
	}
	ignore := false
	if v, ok := r.URL.Query()["ignoreBackoff"]; ok {
		ignore = v[0] == "" || v[0] == "true" || v[0] == "1"
	}
	rec, err := a.Renewer.ForceRenew(r.Context(), req.Hostname, ignore)
	var later retryAfter
	if errors.As(err, &later) {
		w.Header().Set("Retry-After", strconv.Itoa(int(later.RetryAfter(time.Now())/time.Second)))
		apijson.Write(w, http.StatusTooManyRequests, map[string]any{"ok": false, "error": err.Error()})
		return
	}
	if err != nil {
		apijson.Write(w, http.StatusBadRequest, map[string]any{"ok": false, "error": err.Error()})
		return
	}
	apijson.Write(w, http.StatusOK, map[string]any{"ok": true, "hostname": rec.Hostname,
		"issuedAt": rec.IssuedAt.UTC(), "expiresAt": rec.ExpiresAt.UTC()})
}

// retryAfter is a refusal that says when to come back.
type retryAfter interface {
	error
	RetryAfter(now time.Time) time.Duration
}

// Info is a record's public view.
func Info(r *certstore.Record, now time.Time) CertInfo {
	return CertInfo{
		Hostname: r.Hostname, IssuedAt: r.IssuedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC(),
		DaysUntilExpiry: r.DaysLeft(now), Names: r.Names, Issuer: r.Issuer,
		Serial: r.Serial, Source: r.Source,
	}
}

// ImportRequest is the body of POST /certs on the control socket.
type ImportRequest struct {
	Hostname string `json:"hostname,omitempty"`
	Chain    string `json:"chain"`
	Key      string `json:"key"`
	Source   string `json:"source,omitempty"`
}

func (a *API) importCert(w http.ResponseWriter, r *http.Request) {
	if a.noCerts(w) {
		return
	}
	var req ImportRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		apijson.Error(w, http.StatusBadRequest, "invalid-request-structure", "body must be JSON {hostname, chain, key}")
		return
	}
	src := req.Source
	if src == "" {
		src = certstore.SourceImport
	}
	rec, err := a.Certs.Store(r.Context(), certstore.Input{Hostname: req.Hostname, Source: src, Chain: []byte(req.Chain), Key: []byte(req.Key)})
	if err != nil {
		var invalid *certstore.InvalidError
		if errors.As(err, &invalid) {
			apijson.Error(w, http.StatusBadRequest, "invalid-certificate", err.Error())
			return
		}
		a.storeError(w, "storing the certificate", err)
		return
	}
	a.log().Info("certificate imported", "hostname", rec.Hostname, "serial", rec.Serial, "source", rec.Source)
	apijson.Write(w, http.StatusOK, Info(rec, a.now()))
}

// ExportResponse is the body of GET /certs/{hostname}/export.
type ExportResponse struct {
	Hostname string `json:"hostname"`
	Chain    string `json:"chain"`
	Key      string `json:"key"`
}

func (a *API) exportCert(w http.ResponseWriter, r *http.Request) {
	if a.noCerts(w) {
		return
	}
	host := r.PathValue("hostname")
	chain, key, err := a.Certs.Export(r.Context(), host)
	if err != nil {
		a.recordError(w, err)
		return
	}
	apijson.Write(w, http.StatusOK, ExportResponse{Hostname: strings.ToLower(host), Chain: string(chain), Key: string(key)})
}

func (a *API) deleteCert(w http.ResponseWriter, r *http.Request) {
	if a.noCerts(w) {
		return
	}
	host := r.PathValue("hostname")
	if err := a.Certs.Delete(r.Context(), host); err != nil {
		a.recordError(w, err)
		return
	}
	a.log().Info("certificate deleted", "hostname", host)
	apijson.Write(w, http.StatusOK, map[string]string{"deleted": strings.ToLower(host)})
}

// noCerts answers for a core that keeps no certificates in PlatformDB (it
// runs the store for DNS only, without an atRestKey to seal keys with).
func (a *API) noCerts(w http.ResponseWriter) bool {
	if a.Certs == nil {
		apijson.Error(w, http.StatusNotFound, "unknown-resource",
			"this core keeps no certificates in PlatformDB: set letsEncrypt.atRestKey (pryv-tls keygen), the same on every core")
		return true
	}
	return false
}

func (a *API) recordError(w http.ResponseWriter, err error) {
	if errors.Is(err, certstore.ErrNoRecord) {
		apijson.Error(w, http.StatusNotFound, "unknown-resource", err.Error())
		return
	}
	a.storeError(w, "reading the certificate", err)
}

// storeError answers 503 for a store problem; the detail goes to the log
// and, since the socket is local and the front's endpoint read-only, a short
// form to the caller.
func (a *API) storeError(w http.ResponseWriter, what string, err error) {
	a.log().Error(what, "error", err.Error())
	apijson.Error(w, http.StatusServiceUnavailable, "unexpected-error", what+": "+err.Error())
}
