package front

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// proxy routes each request to HFS or the API and forwards it over pooled
// keep-alive connections. Both ReverseProxies are built once; the per-request
// path is a prefix test and a pointer pick.
type proxy struct {
	api, hfs   *httputil.ReverseProxy
	apiGet     *getForwarder // the common GET without ReverseProxy; nil: none
	hfsGet     *getForwarder
	observe    func(upstream string, status int, d time.Duration) // Options.Observe
	transports []*upstreamTransport
}

// proxyOptions are what both upstreams' ReverseProxies share.
type proxyOptions struct {
	// trustForwarded is set when a TLS-terminating proxy stands in front
	// (Strategy B): its X-Forwarded-* headers are then the truth about the
	// client.
	trustForwarded bool
	// headerTimeout bounds the wait for an upstream's response head (0:
	// none); past it the client gets 504.
	headerTimeout time.Duration
	// ownHSTS: the front sets Strict-Transport-Security itself, so an
	// upstream's is dropped rather than sent twice.
	ownHSTS bool
	log     *slog.Logger
}

func newProxy(api, hfs *url.URL, o proxyOptions) *proxy {
	log := o.log
	tr := &http.Transport{
		Proxy: nil, // never send upstream traffic through HTTP_PROXY
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: o.headerTimeout,
	}
	// One pool per upstream address: api and hfs are often the same one.
	p := &proxy{}
	byAddr := map[string]*upstreamTransport{}
	transport := func(u *url.URL) *upstreamTransport {
		if ut, ok := byAddr[u.Host]; ok {
			return ut
		}
		ut := newUpstreamTransport(u.Host, tr)
		byAddr[u.Host] = ut
		p.transports = append(p.transports, ut)
		return ut
	}
	apiU := upstream{name: "api", target: api}
	p.api = reverseProxy(apiU, transport(api), o)
	p.apiGet = newGetForwarder(apiU, transport(api), o)
	// open-pryv.io's HFS reads the user from the first label of Host, and
	// its install guide has the proxy send HFS its own address: the client's
	// Host (your-domain.com for /alice/...) would name the wrong user. The
	// client's Host still reaches it, as X-Forwarded-Host.
	hfsU := upstream{name: "hfs", target: hfs, ownHost: true}
	p.hfs = reverseProxy(hfsU, transport(hfs), o)
	p.hfsGet = newGetForwarder(hfsU, transport(hfs), o)
	if hostReadAsUser(hfs.Host) {
		log.Warn("HFS will read the first label of its upstream's host as a username and prefix it to every path",
			"upstream", "hfs", "host", hfs.Host, "fix", "set upstreams.hfs to an IP:port, e.g. http://127.0.0.1:4000")
	}
	return p
}

// closeIdle closes the pooled upstream connections (after a shutdown).
func (p *proxy) closeIdle() {
	for _, ut := range p.transports {
		ut.closeIdle()
		ut.fallback.(*http.Transport).CloseIdleConnections()
	}
}

// upstream is one proxied destination.
type upstream struct {
	name    string
	target  *url.URL
	ownHost bool // send the target's host:port as Host instead of the client's
}

func reverseProxy(u upstream, tr http.RoundTripper, o proxyOptions) *httputil.ReverseProxy {
	name, target := u.name, u.target
	trustForwarded, log := o.trustForwarded, o.log
	if log == nil {
		log = slog.Default()
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			if u.ownHost {
				pr.Out.Host = target.Host
			}
			if !trustForwarded {
				// We are the edge: whatever X-Forwarded-* the client sent is
				// not to be trusted, so it is replaced (Rewrite dropped it).
				pr.SetXForwarded()
				return
			}
			// Behind the operator's proxy: keep its chain and append the hop.
			in := pr.In.Header
			pr.Out.Header["X-Forwarded-For"] = in["X-Forwarded-For"]
			pr.SetXForwarded()
			for _, h := range []string{"X-Forwarded-Proto", "X-Forwarded-Host"} {
				if v := in.Get(h); v != "" {
					pr.Out.Header.Set(h, v)
				}
			}
		},
		Transport:    tr,
		BufferPool:   copyBuffers,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ErrorHandler: upstreamError(name, target, o, log),
	}
	if o.ownHSTS {
		rp.ModifyResponse = func(resp *http.Response) error {
			resp.Header.Del(hstsHeader)
			return nil
		}
	}
	return rp
}

// upstreamError answers a request whose round trip failed: 504 for our
// timeouts, 502 otherwise, nothing for a client that went away.
func upstreamError(name string, target *url.URL, o proxyOptions, log *slog.Logger) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			// The client went away: nobody is left to answer, and
			// an empty 200 (what returning here would send) is not
			// an answer. The server drops the connection (h1) or
			// resets the stream (h2), and logs nothing.
			panic(http.ErrAbortHandler)
		}
		if isTimeout(err) {
			log.Warn("upstream did not answer in time", "upstream", name, "target", target.Host,
				"method", r.Method, "path", r.URL.Path, "timeout", o.headerTimeout.String(), "error", err.Error())
			writeJSONError(w, http.StatusGatewayTimeout, "gateway-timeout",
				"the "+name+" upstream of this core did not answer in time")
			return
		}
		log.Warn("upstream unreachable", "upstream", name, "target", target.Host,
			"method", r.Method, "path", r.URL.Path, "error", err.Error())
		writeJSONError(w, http.StatusBadGateway, "unexpected-error",
			"the "+name+" upstream of this core is unreachable")
	}
}

// isTimeout reports whether a round trip failed on a timeout of ours (the
// response head's, or the dial's), not because the client went away.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, errHeaderTimeout) || (errors.As(err, &ne) && ne.Timeout())
}

// hstsHeader is the header http.hsts sets.
const hstsHeader = "Strict-Transport-Security"

// hsts sets the front's Strict-Transport-Security on every response, local
// ones and errors included. The value's slice is shared, not copied: a
// later Add (an upstream's header) appends to a new one as its capacity is
// its length.
type hsts struct {
	v    []string
	next http.Handler
}

func (h hsts) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header()[hstsHeader] = h.v
	h.next.ServeHTTP(w, r)
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var rp http.Handler = p.api
	fast, name := p.apiGet, "api"
	if isHFS(r.URL.Path) {
		rp, fast, name = p.hfs, p.hfsGet, "hfs"
	}
	if fast != nil && takes(r) {
		rp = fast
	}
	if p.observe == nil {
		rp.ServeHTTP(w, r)
		return
	}
	// The status is caught by a pooled wrapper, so observing allocates
	// nothing per request. Deferred: a client that went away ends the
	// request with http.ErrAbortHandler, and is observed too.
	sw := statusWriters.Get().(*statusWriter)
	sw.ResponseWriter, sw.status = w, 0
	start := time.Now()
	defer func() {
		d := time.Since(start)
		status := sw.status
		sw.ResponseWriter = nil
		statusWriters.Put(sw)
		if status == 0 {
			status = statusClientClosed
		}
		p.observe(name, status, d)
	}()
	rp.ServeHTTP(sw, r)
}

// statusClientClosed is nginx's 499: the client went away before an answer.
const statusClientClosed = 499

var statusWriters = sync.Pool{New: func() any { return new(statusWriter) }}

// statusWriter remembers the final status of a response. Flush, deadlines
// and the like reach the real writer through Unwrap (ReverseProxy uses an
// http.ResponseController); Hijack is its own so that an upgrade counts as 101.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code // 1xx informational responses are not the final status
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

// isHFS reports whether path matches one of the reference's HFS routes,
// `^/[^/]+/events/[^/]+/series` or `^/[^/]+/series/batch`, without a regexp
// on the hot path (front_test checks it agrees with the regexps).
func isHFS(path string) bool {
	if len(path) < 2 || path[0] != '/' {
		return false
	}
	i := strings.IndexByte(path[1:], '/')
	if i <= 0 {
		return false
	}
	rest := path[1+i:] // "/..." after the first segment
	if strings.HasPrefix(rest, "/series/batch") {
		return true
	}
	rest, ok := strings.CutPrefix(rest, "/events/")
	if !ok {
		return false
	}
	j := strings.IndexByte(rest, '/')
	return j > 0 && strings.HasPrefix(rest[j:], "/series")
}

// hostReadAsUser reports whether the core's HFS would take host's first
// label for a username: open-pryv.io's rule is 5 to 60 of [a-z0-9-],
// neither first nor last a '-', after lower-casing. An IP:port never is
// ("127", "[::1]:4000"), nor is "localhost:4000" (the ':').
func hostReadAsUser(host string) bool {
	label, _, _ := strings.Cut(strings.ToLower(host), ".")
	if len(label) < 5 || len(label) > 60 || label[0] == '-' || label[len(label)-1] == '-' {
		return false
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// writeJSONError answers in the Pryv API's error shape so SDKs show it.
func writeJSONError(w http.ResponseWriter, status int, id, message string) {
	var body struct {
		Error struct {
			ID      string `json:"id"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.ID, body.Error.Message = id, message
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// copyBuffers lends ReverseProxy its 32 KiB body-copy buffers: without a
// pool every proxied response allocates one.
var copyBuffers httputil.BufferPool = &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(v []byte) { b.p.Put(&v) }
