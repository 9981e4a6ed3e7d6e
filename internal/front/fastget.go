package front

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
)

// getForwarder forwards the common request, a GET or HEAD without a body or
// an upgrade, without httputil.ReverseProxy: a profile of keep-alive GETs
// had ReverseProxy's request clone (request, header map, every header's
// values, URL), its contexts and client trace, and the response header copy
// at about 25 of the front's ~45 allocations per request. Here the upstream
// request is a pooled one whose header map shares the client's values, and
// the response's headers are moved, not copied. The wire format is still
// net/http's (Request.Write, ReadResponse), and what goes upstream is what
// ReverseProxy with our Rewrite sends: TestGetForwarderMatchesReverseProxy
// holds the two together. Anything else takes ReverseProxy (decision 0029).
type getForwarder struct {
	u    upstream
	t    *upstreamTransport
	o    proxyOptions
	fail func(http.ResponseWriter, *http.Request, error)
	log  *slog.Logger
}

// newGetForwarder returns nil when the target is not a plain
// http://host:port (a path or query to join: ReverseProxy's SetURL does it),
// or when GODEBUG sets urlmaxqueryparams (ReverseProxy then re-encodes
// every query).
func newGetForwarder(u upstream, t *upstreamTransport, o proxyOptions) *getForwarder {
	tg := u.target
	if tg.Scheme != "http" || tg.Host != t.addr || tg.Path != "" || tg.RawPath != "" || tg.RawQuery != "" ||
		tg.User != nil || tg.Opaque != "" || strings.Contains(os.Getenv("GODEBUG"), "urlmaxqueryparams") {
		return nil
	}
	log := o.log
	if log == nil {
		log = slog.Default()
	}
	return &getForwarder{u: u, t: t, o: o, fail: upstreamError(u.name, tg, o, log), log: log}
}

// takes reports whether r is one the forwarder handles as ReverseProxy
// would; the rest go to ReverseProxy.
func takes(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		r.ContentLength == 0 && // ReverseProxy sends no body then either (an h2 stream's Body is not NoBody)
		r.Header["Upgrade"] == nil && r.Header["Expect"] == nil &&
		strings.HasPrefix(r.URL.Path, "/") && r.URL.Opaque == "" && cleanQuery(r.URL.RawQuery)
}

// cleanQuery reports whether ReverseProxy would forward the query as it is
// (its cleanQueryParams re-encodes one with a ';', a bad escape or more than
// 10,000 parameters).
func cleanQuery(s string) bool {
	if strings.Count(s, "&") >= 10000 {
		return false
	}
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 3
		default:
			i++
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// outRequest is a pooled upstream request: the request, its URL and header
// map are reused, the header's values are the client's (Request.Write only
// reads them).
type outRequest struct {
	req    http.Request
	url    url.URL
	w      http.ResponseWriter // for got1xx
	got1xx func(int, textproto.MIMEHeader) error
	// The values of the headers set here, so setting them allocates nothing.
	xff, xfh [1]string
}

var outRequests = sync.Pool{New: func() any {
	o := &outRequest{}
	o.req.Header = make(http.Header, 16)
	o.req.URL = &o.url
	o.got1xx = o.forward1xx
	return o
}}

// forward1xx forwards an interim response (103 Early Hints) as ReverseProxy
// does: its headers, then cleared, since WriteHeader keeps them for 1xx.
func (o *outRequest) forward1xx(code int, header textproto.MIMEHeader) error {
	h := o.w.Header()
	for k, vv := range header {
		for _, v := range vv {
			h.Add(k, v)
		}
	}
	o.w.WriteHeader(code)
	clear(h)
	return nil
}

// hopHeaders are the hop-by-hop headers ReverseProxy removes (RFC 9110
// 7.6.1, and those it keeps removing for RFC 2616's sake), plus the
// forwarding headers its Rewrite mode strips before ours sets them.
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

var forwardingHeaders = map[string]bool{
	"Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true,
}

var (
	teTrailers = []string{"trailers"}
	protoHTTPS = []string{"https"}
	protoHTTP  = []string{"http"}
	emptyValue = []string{""}
)

func (g *getForwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o := outRequests.Get().(*outRequest)
	g.build(o, r)
	o.w = w
	res, err := g.t.roundTrip(r.Context(), &o.req, o.got1xx)
	if err != nil {
		g.release(o)
		g.fail(w, r, err)
		return
	}
	g.respond(w, res)
	g.release(o)
}

func (g *getForwarder) release(o *outRequest) {
	clear(o.req.Header)
	o.w = nil
	o.url = url.URL{}
	o.xff[0], o.xfh[0] = "", ""
	outRequests.Put(o)
}

// build fills o with what ReverseProxy's clone, hop-by-hop removal and our
// Rewrite would send for r.
func (g *getForwarder) build(o *outRequest, r *http.Request) {
	out := &o.req
	h := out.Header
	for k, vv := range r.Header {
		if !hopHeaders[k] && !forwardingHeaders[k] {
			h[k] = vv
		}
	}
	for _, f := range r.Header["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	if httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers") {
		h["Te"] = teTrailers
	}
	out.Method = r.Method
	o.url = url.URL{Scheme: "http", Host: g.u.target.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	out.Host = r.Host
	if g.u.ownHost {
		out.Host = g.u.target.Host
	}
	// SetXForwarded: the client's address after the chain we keep (only
	// behind the operator's proxy), the client's Host and scheme.
	if clientIP, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := r.Header["X-Forwarded-For"]; g.o.trustForwarded && len(prior) > 0 {
			clientIP = strings.Join(prior, ", ") + ", " + clientIP
		}
		o.xff[0] = clientIP
		h["X-Forwarded-For"] = o.xff[:]
	}
	o.xfh[0] = r.Host
	h["X-Forwarded-Host"] = o.xfh[:]
	if r.TLS != nil {
		h["X-Forwarded-Proto"] = protoHTTPS
	} else {
		h["X-Forwarded-Proto"] = protoHTTP
	}
	if g.o.trustForwarded {
		for _, k := range []string{"X-Forwarded-Proto", "X-Forwarded-Host"} {
			if v := r.Header.Get(k); v != "" {
				h[k] = []string{v}
			}
		}
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = emptyValue // send none rather than Go's
	}
}

// respond writes res to w as ReverseProxy does: hop-by-hop headers removed,
// trailers announced and forwarded, streamed bodies flushed as they come.
func (g *getForwarder) respond(w http.ResponseWriter, res *http.Response) {
	rh := res.Header
	for _, f := range rh["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				rh.Del(sf)
			}
		}
	}
	for k := range hopHeaders {
		delete(rh, k)
	}
	if g.o.ownHSTS {
		delete(rh, hstsHeader)
	}
	// The response's values move to w's header: nothing else reads them.
	wh := w.Header()
	for k, vv := range rh {
		if prev, ok := wh[k]; ok {
			wh[k] = append(prev[:len(prev):len(prev)], vv...)
		} else {
			wh[k] = vv
		}
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		wh.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)
	var flush func() error
	if res.ContentLength == -1 || isEventStream(rh) {
		flush = http.NewResponseController(w).Flush
		_ = flush()
	}
	if err := g.copyBody(w, res.Body, flush); err != nil {
		_ = res.Body.Close()
		panic(http.ErrAbortHandler)
	}
	_ = res.Body.Close() // now, to have res.Trailer filled
	if len(res.Trailer) > 0 {
		_ = http.NewResponseController(w).Flush() // chunked, so the trailers can follow
	}
	if len(res.Trailer) == announced {
		for k, vv := range res.Trailer {
			for _, v := range vv {
				wh.Add(k, v)
			}
		}
		return
	}
	for k, vv := range res.Trailer {
		for _, v := range vv {
			wh.Add(http.TrailerPrefix+k, v)
		}
	}
}

// isEventStream: ReverseProxy flushes Server-Sent Events as they come.
func isEventStream(h http.Header) bool {
	ct := h["Content-Type"]
	if len(ct) == 0 {
		return false
	}
	base, _, _ := strings.Cut(ct[0], ";")
	return strings.EqualFold(strings.TrimSpace(base), "text/event-stream")
}

// copyBody copies the body through a pooled buffer, flushing after each
// write when flush is set; an error ends the response (ReverseProxy's rule).
func (g *getForwarder) copyBody(w io.Writer, body io.Reader, flush func() error) error {
	bp := bodyBuffers.Get().(*[]byte)
	defer bodyBuffers.Put(bp)
	buf := *bp
	for {
		nr, rerr := body.Read(buf)
		if rerr != nil && rerr != io.EOF && !errors.Is(rerr, context.Canceled) {
			g.log.Debug("upstream read error during body copy", "upstream", g.u.name, "error", rerr.Error())
		}
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			if werr != nil {
				return werr
			}
			if nw != nr {
				return io.ErrShortWrite
			}
			if flush != nil {
				_ = flush()
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return nil
			}
			return rerr
		}
	}
}

// bodyBuffers are the forwarder's body-copy buffers, kept by pointer so
// that returning one allocates nothing (httputil.BufferPool's Put of a slice
// does).
var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
