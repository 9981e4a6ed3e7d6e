// Package front is the core's public listener: HTTPS (or plain HTTP behind a
// TLS-terminating proxy, Strategy B) forwarding to the core's API and HFS.
package front

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Options configures a Front. GetCertificate nil means plain HTTP behind a
// TLS-terminating proxy (Strategy B), whose X-Forwarded-* headers are kept.
type Options struct {
	Addr           string // host:port to listen on
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	API, HFS       *url.URL
	Logger         *slog.Logger
	// Local answers these paths on the front itself instead of proxying
	// them (health, the admin API); a key ending in "/" covers the paths
	// under it and must be under LocalPrefixRoot. Every other path goes
	// upstream, the core's own /system/admin/ routes included.
	Local map[string]http.Handler
	// Observe, if set, is called once per proxied request (not for Local
	// paths), on the request's goroutine when the response is done: the
	// upstream ("api" or "hfs"), the status sent (101 for a WebSocket
	// upgrade, 499 when the client went away before any answer) and the
	// time from the request to the end of the response. It must be cheap
	// and must not block. Nil: nothing is measured, nothing is wrapped.
	Observe func(upstream string, status int, d time.Duration)
	// OnHandshake, if set, is called on the server side of each TLS
	// handshake (full or resumed) once the keys are agreed.
	OnHandshake func(version uint16, resumed bool)
	// ACMETLS, if set (with GetCertificate), answers TLS-ALPN-01
	// validations (RFC 8737): a ClientHello offering acme-tls/1 and nothing
	// else gets its certificate instead of GetCertificate's, and the
	// connection closes once the handshake is done (net/http serves no
	// protocol it does not know). Other hellos never call it.
	ACMETLS func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// HSTS, if set, is the Strict-Transport-Security value sent on every
	// response; an upstream's own is dropped.
	HSTS string
	// UpstreamHeaderTimeout bounds the wait for an upstream's response
	// head once the request is sent (0: no bound); past it the client
	// gets 504 and the upstream connection is closed.
	UpstreamHeaderTimeout time.Duration
	// DrainGrace is how long Shutdown keeps accepting connections (each
	// answered with Connection: close or GOAWAY) before it closes the
	// listener; it ends sooner once connections stop coming, and takes at
	// most half the drain. 0: DefaultDrainGrace; negative: none.
	DrainGrace time.Duration
}

// Front owns the listener and the HTTP server.
type Front struct {
	opts Options
	px   atomic.Pointer[proxy] // swapped by SetUpstreams: read per request, no lock
	srv  *http.Server
	ln   net.Listener
	log  *slog.Logger

	draining atomic.Bool  // Shutdown began: every answer says Connection: close
	closing  atomic.Bool  // Shutdown closed the listener: Accept's error is the end
	lastConn atomic.Int64 // unix nanoseconds of the last accepted connection
	accepted atomic.Int64 // connections accepted since the drain began

	// The front accepts and shakes hands itself (accept.go): HTTP/1.1 goes
	// to the lean loop (h1.go), the rest to srv through handoff.
	tlsCfg  *tls.Config // nil: plain HTTP
	baseCtx context.Context
	handoff *handoffListener
	lean    leanConns
	leanH1  bool // false: every connection goes to net/http (the tests' reference)
}

// TLSConfig is the front's TLS policy: TLS 1.2 and 1.3 only, forward-secret
// AEAD suites only (TLS 1.3 suites are not configurable and all qualify),
// HTTP/2 preferred.
func TLSConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		GetCertificate: getCert,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

// acmeTLS1 is RFC 8737's ALPN protocol.
const acmeTLS1 = "acme-tls/1"

// withACMETLS makes cfg offer acme-tls/1 (last: a client offering it with
// other protocols is not a validator, and gets them) and send the hellos
// that offer only it to challenge.
func withACMETLS(cfg *tls.Config, challenge func(*tls.ClientHelloInfo) (*tls.Certificate, error)) {
	cfg.NextProtos = append(cfg.NextProtos, acmeTLS1)
	serve := cfg.GetCertificate
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmeTLS1 {
			return challenge(hello)
		}
		return serve(hello)
	}
}

// New builds the front; nothing is bound until Listen.
func New(opts Options) (*Front, error) {
	if opts.API == nil || opts.HFS == nil {
		return nil, errors.New("front: API and HFS upstreams are required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	f := &Front{opts: opts, log: log, baseCtx: context.Background(), leanH1: true}
	f.px.Store(f.newProxy(opts.API, opts.HFS))
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.px.Load().ServeHTTP(w, r) })
	if len(opts.Local) > 0 {
		lr := &localRoutes{routes: map[string]http.Handler{}, next: h}
		for p, lh := range opts.Local {
			if strings.HasSuffix(p, "/") {
				if !strings.HasPrefix(p, LocalPrefixRoot) {
					return nil, fmt.Errorf("front: local prefix %q is not under %s (only exact paths elsewhere)", p, LocalPrefixRoot)
				}
				lr.prefixes = append(lr.prefixes, localPrefix{p, lh})
			} else {
				lr.routes[p] = lh
			}
		}
		h = lr
	}
	// Local paths and the HFS/API choice are decided on the normalised
	// path, and that path is what goes upstream (decision 0023).
	h = normalising{next: h}
	if opts.HSTS != "" {
		h = hsts{v: []string{opts.HSTS}, next: h}
	}
	h = resetGuard{next: h, log: log, draining: &f.draining}
	f.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ConnContext:       f.connContext, // the HTTP/2 reset count
		// Handshake failures from scanners are noise at info level.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if opts.GetCertificate != nil {
		f.srv.TLSConfig = TLSConfig(opts.GetCertificate)
		if opts.ACMETLS != nil {
			withACMETLS(f.srv.TLSConfig, opts.ACMETLS)
		}
		if hook := opts.OnHandshake; hook != nil {
			f.srv.TLSConfig.VerifyConnection = func(cs tls.ConnectionState) error {
				hook(cs.Version, cs.DidResume)
				return nil
			}
		}
	}
	return f, nil
}

func (f *Front) newProxy(api, hfs *url.URL) *proxy {
	px := newProxy(api, hfs, proxyOptions{trustForwarded: f.opts.GetCertificate == nil, log: f.log,
		headerTimeout: f.opts.UpstreamHeaderTimeout, ownHSTS: f.opts.HSTS != ""})
	px.observe = f.opts.Observe
	return px
}

// SetUpstreams sends the requests that start from now on to api and hfs (a
// configuration reload). Requests under way finish on the old upstreams,
// whose pooled connections are closed as they come back.
func (f *Front) SetUpstreams(api, hfs *url.URL) error {
	if api == nil || hfs == nil {
		return errors.New("front: API and HFS upstreams are required")
	}
	old := f.px.Swap(f.newProxy(api, hfs))
	old.closeIdle()
	return nil
}

// Listen binds the address, so a taken port fails before anything else starts.
func (f *Front) Listen() error {
	ln, err := net.Listen("tcp", f.opts.Addr)
	if err != nil {
		return fmt.Errorf("front: listening on %s: %w", f.opts.Addr, err)
	}
	f.ln = ln
	f.handoff = newHandoffListener(ln.Addr())
	return nil
}

// Addr is the bound address (useful with port 0).
func (f *Front) Addr() net.Addr { return f.ln.Addr() }

// Serve blocks until Shutdown; it returns nil after a clean shutdown.
func (f *Front) Serve() error {
	if f.srv.TLSConfig != nil {
		// net/http configures HTTP/2 on srv.TLSConfig when Serve starts;
		// the handshakes use a copy made first, which already offers h2.
		f.tlsCfg = f.srv.TLSConfig.Clone()
		f.log.Info("front listening", "addr", f.ln.Addr().String(), "tls", true)
	} else {
		f.log.Info("front listening", "addr", f.ln.Addr().String(), "tls", false,
			"note", "plain HTTP: a proxy in front terminates TLS (Strategy B)")
	}
	served := make(chan error, 1)
	go func() { served <- f.srv.Serve(f.handoff) }()
	err := f.acceptLoop()
	if err != nil {
		_ = f.handoff.Close()
		_ = <-served // ErrServerClosed: the listener closed just above
		return fmt.Errorf("front: accepting on %s: %w", f.ln.Addr(), err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown drains: for a short grace it still accepts connections, and
// every answer says Connection: close (HTTP/1.1) or comes with a GOAWAY
// (HTTP/2); then it stops accepting, lets in-flight requests finish until
// ctx ends, and closes what is left.
func (f *Front) Shutdown(ctx context.Context) error {
	defer func() { f.px.Load().closeIdle() }()
	grace := f.opts.DrainGrace
	if grace == 0 {
		grace = DefaultDrainGrace
	}
	if dl, ok := ctx.Deadline(); ok && grace > time.Until(dl)/2 {
		grace = time.Until(dl) / 2
	}
	f.draining.Store(true)
	if f.ln == nil {
		return nil
	}
	if grace > 0 {
		f.waitGrace(ctx, grace)
	}
	f.closing.Store(true)
	_ = f.ln.Close()
	f.lean.closeIdle()
	err := f.srv.Shutdown(ctx) // closes the handoff listener too
	if lerr := f.lean.shutdown(ctx); err == nil {
		err = lerr
	}
	if err != nil {
		f.log.Warn("drain timed out; closing remaining connections", "error", err.Error())
		f.lean.closeAll()
		return f.srv.Close()
	}
	return nil
}

// LocalPrefixRoot is pryv-tls's own namespace on the front: the only place
// where a Local key may be a prefix. /system/admin/ belongs to the core
// (it serves users, cores, the join flow's ack and more there), so pryv-tls
// takes only exact paths under it.
const LocalPrefixRoot = "/system/pryv-tls/"

// localRoutes answers a few paths here; a map lookup (and, under
// LocalPrefixRoot only, a few prefix tests) is all it adds to the proxied path.
type localRoutes struct {
	routes   map[string]http.Handler
	prefixes []localPrefix
	next     http.Handler
}

type localPrefix struct {
	prefix string
	h      http.Handler
}

func (l *localRoutes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, ok := l.routes[r.URL.Path]; ok {
		serveLocal(h, w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, LocalPrefixRoot) {
		for _, p := range l.prefixes {
			if strings.HasPrefix(r.URL.Path, p.prefix) {
				serveLocal(p.h, w, r)
				return
			}
		}
	}
	l.next.ServeHTTP(w, r)
}

// serveLocal gives a local handler its own request and a context that ends
// when it returns, as net/http's do: the lean HTTP/1.1 loop reuses its
// request and its connection's context from one request to the next.
func serveLocal(h http.Handler, w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	h.ServeHTTP(w, r.WithContext(ctx))
}
