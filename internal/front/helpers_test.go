package front

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/devpki"
)

// testDomain is the platform domain of the test certificate; clients talk to
// https://alice.pryv.example and are dialled to the front on 127.0.0.1.
const (
	testDomain = "pryv.example"
	testHost   = "alice." + testDomain
)

// lockedBuffer collects log output written from server goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testPKI is one throwaway CA and an ECDSA leaf for pryv.example,
// *.pryv.example and 127.0.0.1, served through a certs.Cache as in production.
type testPKI struct {
	ca    *devpki.CA
	pool  *x509.CertPool
	store *certs.Cache
}

var (
	pkiOnce sync.Once
	pkiVal  *testPKI
	pkiErr  error
)

func getPKI(tb testing.TB) *testPKI {
	tb.Helper()
	pkiOnce.Do(func() {
		ca, err := devpki.NewCA("pryv-tls front test CA")
		if err != nil {
			pkiErr = err
			return
		}
		store, err := storeFor(ca, "ec256")
		if err != nil {
			pkiErr = err
			return
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca.CertPEM())
		pkiVal = &testPKI{ca: ca, pool: pool, store: store}
	})
	if pkiErr != nil {
		tb.Fatalf("test PKI: %v", pkiErr)
	}
	return pkiVal
}

// storeFor issues a leaf of keyType from ca and loads it into a new store.
func storeFor(ca *devpki.CA, keyType string) (*certs.Cache, error) {
	iss, err := ca.Issue(devpki.Leaf{
		Names:   []string{testDomain, "*." + testDomain, "127.0.0.1"},
		KeyType: keyType,
	})
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(iss.FullChain, iss.KeyPEM)
	if err != nil {
		return nil, err
	}
	store := certs.NewCache()
	store.Replace(certs.SourceFiles, &cert)
	return store, nil
}

// frontSetup describes a front to start. Zero GetCertificate means plain HTTP.
type frontSetup struct {
	API, HFS       string
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	ACMETLS        func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Wrap, if set, wraps the front's handler before Serve starts.
	Wrap func(http.Handler) http.Handler
	// Observe, OnHandshake and Local are passed to Options as they are.
	Observe     func(upstream string, status int, d time.Duration)
	OnHandshake func(version uint16, resumed bool)
	Local       map[string]http.Handler
	// HSTS and UpstreamHeaderTimeout are passed to Options as they are.
	HSTS                  string
	UpstreamHeaderTimeout time.Duration
	DrainGrace            time.Duration
}

// testFront is a running front on 127.0.0.1:0.
type testFront struct {
	f         *Front
	addr      string
	logs      *lockedBuffer
	serveDone chan struct{}
	serveErr  error // valid once serveDone is closed
}

func mustURL(tb testing.TB, s string) *url.URL {
	tb.Helper()
	u, err := url.Parse(s)
	if err != nil {
		tb.Fatalf("parse %q: %v", s, err)
	}
	return u
}

func startFront(tb testing.TB, s frontSetup) *testFront {
	tb.Helper()
	logs := &lockedBuffer{}
	f, err := New(Options{
		Addr:           "127.0.0.1:0",
		GetCertificate: s.GetCertificate,
		ACMETLS:        s.ACMETLS,
		API:            mustURL(tb, s.API),
		HFS:            mustURL(tb, s.HFS),
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Observe:        s.Observe,
		OnHandshake:    s.OnHandshake,
		Local:          s.Local,

		HSTS:                  s.HSTS,
		UpstreamHeaderTimeout: s.UpstreamHeaderTimeout,
		DrainGrace:            s.DrainGrace,
	})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	if s.Wrap != nil {
		f.srv.Handler = s.Wrap(f.srv.Handler)
	}
	if err := f.Listen(); err != nil {
		tb.Fatalf("Listen: %v", err)
	}
	tf := &testFront{f: f, addr: f.Addr().String(), logs: logs, serveDone: make(chan struct{})}
	go func() {
		tf.serveErr = f.Serve()
		close(tf.serveDone)
	}()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = f.Shutdown(ctx)
		_ = tf.waitServe(tb) // after Shutdown; the tests about Serve's answer check it
		if tb.Failed() {
			tb.Logf("front log:\n%s", logs.String())
		}
	})
	return tf
}

// waitServe waits (bounded) for Serve to return and returns its error.
func (tf *testFront) waitServe(tb testing.TB) error {
	tb.Helper()
	select {
	case <-tf.serveDone:
		return tf.serveErr
	case <-time.After(5 * time.Second):
		tb.Fatalf("Serve did not return within 5s")
		return nil
	}
}

// echoReply is what the echo upstreams answer: who they are and what they got.
type echoReply struct {
	Upstream   string   `json:"upstream"`
	Method     string   `json:"method"`
	Host       string   `json:"host"`
	Path       string   `json:"path"`
	RequestURI string   `json:"requestURI"`
	Query      string   `json:"query"`
	XFF        []string `json:"xff"`
	XFProto    []string `json:"xfProto"`
	XFHost     []string `json:"xfHost"`
	Forwarded  []string `json:"forwarded"`
	BodyLen    int64    `json:"bodyLen"`
	BodySHA256 string   `json:"bodySHA256"`
}

// newEchoUpstream is an upstream on 127.0.0.1 that answers an echoReply.
func newEchoUpstream(tb testing.TB, name string) *httptest.Server {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", name)
		_ = json.NewEncoder(w).Encode(echoReply{
			Upstream:   name,
			Method:     r.Method,
			Host:       r.Host,
			Path:       r.URL.Path,
			RequestURI: r.RequestURI,
			Query:      r.URL.RawQuery,
			XFF:        r.Header.Values("X-Forwarded-For"),
			XFProto:    r.Header.Values("X-Forwarded-Proto"),
			XFHost:     r.Header.Values("X-Forwarded-Host"),
			Forwarded:  r.Header.Values("Forwarded"),
			BodyLen:    n,
			BodySHA256: hex.EncodeToString(h.Sum(nil)),
		})
	}))
	tb.Cleanup(srv.Close)
	return srv
}

// httpsClient is a keep-alive client that resolves every host to the front and
// trusts the test CA. h2 offers "h2" then "http/1.1"; otherwise HTTP/1.1 only.
func httpsClient(tb testing.TB, frontAddr string, h2 bool, tweak func(*tls.Config)) *http.Client {
	tb.Helper()
	cfg := &tls.Config{RootCAs: getPKI(tb).pool}
	if tweak != nil {
		tweak(cfg)
	}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, frontAddr)
		},
		TLSClientConfig:     cfg,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 256,
	}
	if h2 {
		tr.ForceAttemptHTTP2 = true
		cfg.NextProtos = []string{"h2", "http/1.1"}
	} else {
		cfg.NextProtos = []string{"http/1.1"}
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// protoName names a client flavour in subtests.
func protoName(h2 bool) string {
	if h2 {
		return "h2"
	}
	return "http1.1"
}

// doEcho does a request and decodes the upstream's echoReply.
func doEcho(tb testing.TB, c *http.Client, method, rawURL string, body io.Reader, hdr http.Header) (*http.Response, echoReply) {
	tb.Helper()
	req, err := http.NewRequest(method, rawURL, body)
	if err != nil {
		tb.Fatalf("NewRequest: %v", err)
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("reading body of %s %s: %v", method, rawURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("%s %s: status %d, body %q", method, rawURL, resp.StatusCode, raw)
	}
	var e echoReply
	if err := json.Unmarshal(raw, &e); err != nil {
		tb.Fatalf("%s %s: decoding %q: %v", method, rawURL, raw, err)
	}
	return resp, e
}

// deadAddr is a 127.0.0.1 port that was bound and closed: nothing listens.
func deadAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// countLines counts log lines containing all of the given substrings.
func countLines(logs string, subs ...string) int {
	n := 0
	for line := range strings.Lines(logs) {
		ok := true
		for _, s := range subs {
			if !strings.Contains(line, s) {
				ok = false
				break
			}
		}
		if ok {
			n++
		}
	}
	return n
}

// newUpstream serves h on 127.0.0.1 for the test's duration.
func newUpstream(tb testing.TB, h http.Handler) *httptest.Server {
	tb.Helper()
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv
}
