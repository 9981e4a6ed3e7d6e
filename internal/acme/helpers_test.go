package acme

// Test scaffolding shared by the renewer's tests: a real embedded etcd
// (PlatformDB), a real in-process Pebble (acmetest), and a plain-HTTP server
// on Pebble's HTTP-01 port serving HTTP01Responder from that PlatformDB, so
// the whole path (provider writes the token, the responder every core runs
// reads it, the CA validates) is the production one.
//
// acmetest.Start calls t.Setenv: no test in this package may call t.Parallel.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	legolog "github.com/go-acme/lego/v5/log"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

func TestMain(m *testing.M) {
	// lego logs through its own default logger (the daemon points it at the
	// daemon's); keep test output to what the renewer says unless asked.
	if os.Getenv("ACME_TEST_LEGO_LOG") == "" {
		legolog.SetDefault(slog.New(slog.DiscardHandler))
	}
	os.Exit(m.Run())
}

// Paths Pebble v2.10.3 serves (unexported constants of its wfe package).
const (
	pebbleNewAccount  = "/sign-me-up"
	pebbleNewOrder    = "/order-plz"
	pebbleOrder       = "/my-order/"
	pebbleFinalize    = "/finalize-order/"
	pebbleAuthz       = "/authZ/"
	pebbleChallenge   = "/chalZ/"
	pebbleCert        = "/certZ/"
	pebbleRenewalInfo = "/draft-ietf-acme-ari-03/renewalInfo/"
)

// testEnv is one "deployment": a PlatformDB, the at-rest keyring, the
// certificate catalog, and the HTTP-01 port every core would serve.
type testEnv struct {
	t      *testing.T
	db     *platformdb.Etcd
	keys   *atrest.Keyring
	certs  *certstore.Catalog
	gate   *gatedResponder
	port   int // the HTTP-01 port (Pebble's VA dials 127.0.0.1:port)
	log    *slog.Logger
	calls  *caLog
	opened time.Duration // how long the PlatformDB took to open
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	e := &testEnv{t: t, log: testLogger(t), calls: &caLog{}}

	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := platformdb.Open(ctx, platformdb.Options{
		DataDir:       t.TempDir(),
		PeerAddress:   "127.0.0.1:0",
		ClientAddress: "127.0.0.1:0",
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("platformdb.Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	e.db = db
	e.opened = time.Since(begin)

	master := make([]byte, 32)
	_, _ = rand.Read(master)
	if e.keys, err = atrest.New(master); err != nil {
		t.Fatal(err)
	}
	e.certs = &certstore.Catalog{KV: db, Keys: e.keys}

	// The HTTP-01 port: listen first, then tell Pebble, so nothing can take
	// the port in between.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.port = l.Addr().(*net.TCPAddr).Port
	e.gate = &gatedResponder{next: &HTTP01Responder{KV: db, HTTPSPort: 443, Logger: e.log}}
	srv := &http.Server{Handler: e.gate, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		e.gate.open()
		_ = srv.Close()
	})
	return e
}

// pebble starts a Pebble whose VA validates HTTP-01 against this env's port.
func (e *testEnv) pebble(opts acmetest.Options) *acmetest.Pebble {
	e.t.Helper()
	opts.HTTPPort = e.port
	return acmetest.Start(e.t, opts)
}

// options are a renewer's options for one HTTP-01 plan, as the daemon sets
// them (renewBeforeDays 30, LockTTL default 30 s). CheckInterval is 5 s and
// LockWait 5 s (taking the lock takes more than 200 ms on a loaded machine
// under -race); tests of Run shorten CheckInterval (runOptions).
func (e *testEnv) options(p *acmetest.Pebble, who, host, profile string) Options {
	return Options{
		DirectoryURL:  p.DirectoryURL,
		HTTPClient:    e.calls.client(p, who),
		UserAgent:     "pryv-tls-test",
		Email:         "ops@your-domain.com",
		Profile:       profile,
		Plans:         []Plan{{Hostnames: []string{host}, Challenge: "http-01"}},
		RenewBefore:   30 * 24 * time.Hour,
		KV:            e.db,
		Keys:          e.keys,
		Certs:         e.certs,
		CheckInterval: 5 * time.Second,
		LockWait:      5 * time.Second,
		Logger:        e.log.With("renewer", who),
	}
}

// runOptions are options for a test of Run: a pass every second or so.
func (e *testEnv) runOptions(p *acmetest.Pebble, who, host, profile string) Options {
	o := e.options(p, who, host, profile)
	o.CheckInterval = time.Second
	return o
}

func mustNew(t *testing.T, opts Options) *Renewer {
	t.Helper()
	r, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// record returns hostname's stored record, or nil if there is none.
func (e *testEnv) record(host string) *certstore.Record {
	e.t.Helper()
	rec, err := e.certs.Get(context.Background(), host)
	if errors.Is(err, certstore.ErrNoRecord) {
		return nil
	}
	if err != nil {
		e.t.Fatalf("catalog Get %s: %v", host, err)
	}
	return rec
}

func (e *testEnv) state(row string) State {
	e.t.Helper()
	st, err := loadState(context.Background(), e.db, row)
	if err != nil {
		e.t.Fatalf("loadState %s: %v", row, err)
	}
	return st
}

func (e *testEnv) keysUnder(prefix string) []string {
	e.t.Helper()
	entries, _, err := e.db.List(context.Background(), prefix)
	if err != nil {
		e.t.Fatalf("List %s: %v", prefix, err)
	}
	var keys []string
	for _, en := range entries {
		keys = append(keys, en.Key)
	}
	return keys
}

// storedAccount decodes the account row of a directory.
func (e *testEnv) storedAccount(directory string) (accountRecord, bool) {
	e.t.Helper()
	en, err := e.db.Get(context.Background(), AccountRow(directory))
	if errors.Is(err, platformdb.ErrNotFound) {
		return accountRecord{}, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var rec accountRecord
	if err := json.Unmarshal(en.Value, &rec); err != nil {
		e.t.Fatalf("account row: %v", err)
	}
	return rec, true
}

// verifyRecord checks that rec is a servable ACME certificate for host whose
// chain verifies against roots, and returns its leaf.
func verifyRecord(t *testing.T, keys *atrest.Keyring, rec *certstore.Record, host string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	if rec == nil {
		t.Fatalf("no certificate stored for %s", host)
	}
	if rec.Source != certstore.SourceACME {
		t.Errorf("record source = %q, want %q", rec.Source, certstore.SourceACME)
	}
	if rec.Hostname != host {
		t.Errorf("record hostname = %q, want %q", rec.Hostname, host)
	}
	var chain []*x509.Certificate
	rest := []byte(rec.Chain)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("chain: %v", err)
		}
		chain = append(chain, c)
	}
	if len(chain) < 2 {
		t.Fatalf("chain has %d certificates, want the leaf and its intermediate", len(chain))
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter}); err != nil {
		t.Errorf("chain does not verify for %s against Pebble's roots: %v", host, err)
	}
	if _, _, err := rec.Open(keys, time.Now()); err != nil {
		t.Errorf("record does not open (key unseal + pair check): %v", err)
	}
	if rec.Serial != leaf.SerialNumber.Text(16) || !rec.IssuedAt.Equal(leaf.NotBefore) || !rec.ExpiresAt.Equal(leaf.NotAfter) {
		t.Errorf("record metadata (serial %s, %v..%v) does not match the leaf (%s, %v..%v)",
			rec.Serial, rec.IssuedAt, rec.ExpiresAt, leaf.SerialNumber.Text(16), leaf.NotBefore, leaf.NotAfter)
	}
	return leaf
}

func leafOf(t *testing.T, rec *certstore.Record) *x509.Certificate {
	t.Helper()
	leaf, err := rec.Leaf()
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// within reports whether got is in [want-tol, want+tol].
func within(got, want time.Time, tol time.Duration) bool {
	return !got.Before(want.Add(-tol)) && !got.After(want.Add(tol))
}

// runRenewer starts r.Run and returns a stop function that cancels it and
// waits for it to return.
func runRenewer(t *testing.T, r *Renewer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Errorf("Run did not return within 60 s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// ---------------------------------------------------------------------------
// What the renewer says to the CA.

// caCall is one HTTP exchange between a renewer and Pebble's ACME API.
type caCall struct {
	Who        string // the renewer (its HTTP client)
	Method     string
	Path       string
	Start, End time.Time
	Status     int            // 0: transport error
	Payload    map[string]any // the JWS payload of a POST (nil for POST-as-GET)
}

// caLog records every request the renewers' HTTP clients send.
type caLog struct {
	mu    sync.Mutex
	calls []caCall
}

// client is p.HTTPClient() (Retry-After patch included) with recording.
func (l *caLog) client(p *acmetest.Pebble, who string) *http.Client {
	base := p.HTTPClient()
	return &http.Client{Transport: &recordingTransport{base: base.Transport, who: who, log: l}, Timeout: base.Timeout}
}

func (l *caLog) all() []caCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]caCall(nil), l.calls...)
}

// count counts the recorded calls matching who ("" = any) and a path prefix
// ("" = any) with the method ("" = any).
func (l *caLog) count(who, method, pathPrefix string) int {
	n := 0
	for _, c := range l.all() {
		if (who == "" || c.Who == who) && (method == "" || c.Method == method) && strings.HasPrefix(c.Path, pathPrefix) {
			n++
		}
	}
	return n
}

// newOrders returns the payloads of the newOrder requests, in order.
func (l *caLog) newOrders(who string) []map[string]any {
	var out []map[string]any
	for _, c := range l.all() {
		if (who == "" || c.Who == who) && c.Method == http.MethodPost && c.Path == pebbleNewOrder {
			out = append(out, c.Payload)
		}
	}
	return out
}

type recordingTransport struct {
	base http.RoundTripper
	who  string
	log  *caLog
}

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := caCall{Who: rt.who, Method: req.Method, Path: req.URL.Path, Start: time.Now()}
	if req.Method == http.MethodPost && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		c.Payload = jwsPayload(body)
	}
	resp, err := rt.base.RoundTrip(req)
	c.End = time.Now()
	if err == nil {
		c.Status = resp.StatusCode
	}
	rt.log.mu.Lock()
	rt.log.calls = append(rt.log.calls, c)
	rt.log.mu.Unlock()
	return resp, err
}

// jwsPayload decodes the payload of a flattened JWS (RFC 8555 requests).
func jwsPayload(body []byte) map[string]any {
	var jws struct {
		Payload string `json:"payload"`
	}
	if json.Unmarshal(body, &jws) != nil || jws.Payload == "" {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(jws.Payload)
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m
}

// ---------------------------------------------------------------------------
// The HTTP-01 port, with a gate a test can close to hold validations.

type gatedResponder struct {
	next http.Handler

	mu      sync.Mutex
	closed  chan struct{} // nil: open; else closed when the gate opens
	arrived chan struct{} // closed when a challenge request reaches the closed gate
}

// hold makes challenge requests wait until open; the returned channel is
// closed when the first one arrives.
func (g *gatedResponder) hold() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed == nil {
		g.closed = make(chan struct{})
		g.arrived = make(chan struct{})
	}
	return g.arrived
}

func (g *gatedResponder) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed != nil {
		close(g.closed)
		g.closed, g.arrived = nil, nil
	}
}

func (g *gatedResponder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, challengePath) {
		g.mu.Lock()
		closed, arrived := g.closed, g.arrived
		if arrived != nil {
			select {
			case <-arrived:
			default:
				close(arrived)
			}
		}
		g.mu.Unlock()
		if closed != nil {
			select {
			case <-closed:
			case <-r.Context().Done():
				return
			}
		}
	}
	g.next.ServeHTTP(w, r)
}

// ---------------------------------------------------------------------------
// Logging and time.

// testLogger logs to t until the test ends (later lines, from goroutines
// that outlive it, are dropped instead of panicking).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// fakeClock is the renewer's Now, movable by the test.
type fakeClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// countingKV counts the reads of the state row: one per check (scheduled
// pass or forced), so a test can tell how many passes Run made.
type countingKV struct {
	KV
	mu    sync.Mutex
	reads map[string]int
}

func (k *countingKV) Get(ctx context.Context, key string) (platformdb.Entry, error) {
	k.mu.Lock()
	if k.reads == nil {
		k.reads = map[string]int{}
	}
	k.reads[key]++
	k.mu.Unlock()
	return k.KV.Get(ctx, key)
}

func (k *countingKV) readsOf(key string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.reads[key]
}
