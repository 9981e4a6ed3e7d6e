package front

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/http/httpguts"
)

// The lean HTTP/1.1 loop (decision 0037). A profile of keep-alive GETs had
// net/http's server spend a quarter to a third of the front's CPU around the
// request rather than in it: the background read it starts after every
// body-less request (a goroutine, a read, its abort by a read deadline set
// and cleared), the read deadlines it sets per request, readRequest's
// allocations, the response writer's. This loop serves the requests whose
// meaning is plain — an origin-form target, HTTP/1.1, no body, no upgrade,
// no Expect, headers net/http would take as they are — with the same handler
// chain, on one goroutine per connection and one allocation per request (the
// head's bytes, which the request's strings point into). Anything else, and
// everything after it on that connection, goes to net/http with the bytes
// already read (handoffListener), so net/http keeps the hard cases: bodies,
// upgrades, HTTP/1.0, malformed requests and their 400s.

const (
	// h1ReadBuffer holds a request head; a longer head goes to net/http
	// (whose limit is the server's MaxHeaderBytes).
	h1ReadBuffer = 4 << 10
	// h1WriteBuffer is net/http's response buffer size.
	h1WriteBuffer = 4 << 10
	// deadlineSlack: the idle deadline is moved at most once per slack, so a
	// busy connection sets none per request; the idle timeout is then kept
	// to within the slack (never shorter, at most a slack longer).
	deadlineSlack = time.Second
	// watchAfter is how long a request runs before the loop starts reading
	// the connection to notice a client that went away (net/http starts that
	// read at once, for every request).
	watchAfter = time.Second
)

// Connection states, for the drain.
const (
	connActive int32 = iota
	connIdle
	connClosed
)

// h1Conn is one HTTP/1.1 connection of the lean loop.
type h1Conn struct {
	f      *Front
	rwc    net.Conn
	raw    watchReader
	br     *bufio.Reader
	bw     *bufio.Writer
	state  atomic.Int32
	tls    *tls.ConnectionState
	remote string
	ctx    context.Context
	cancel context.CancelFunc

	// Reused by every request: the handler must not keep them (net/http's
	// rule for the request and the writer too).
	tmpl http.Request // ctx set, nothing else: reset each request from it
	req  http.Request
	url  url.URL
	hdr  http.Header
	vals []string
	w    h1Writer

	deadline time.Time // the read deadline set, zero: none
	served   int       // requests answered
	// The client-gone watch: armed while a handler runs, started by the
	// timer after watchAfter.
	armed     atomic.Bool
	watch     *time.Timer
	watchDone chan struct{}
	watchBuf  [1]byte
}

// watchReader is the bufio's source: the watch's byte, if it read one,
// then the connection.
type watchReader struct {
	c     net.Conn
	extra []byte
}

func (r *watchReader) Read(p []byte) (int, error) {
	if len(r.extra) > 0 {
		n := copy(p, r.extra)
		r.extra = r.extra[n:]
		return n, nil
	}
	return r.c.Read(p)
}

// serveH1 runs the lean loop on c until it closes or hands c to net/http.
func (f *Front) serveH1(c net.Conn, st *tls.ConnectionState) {
	if !f.leanH1 {
		f.handoff.give(handed(c, nil, st))
		return
	}
	ctx, cancel := context.WithCancel(f.baseCtx)
	// As net/http's: ReverseProxy aborts a response whose body copy failed
	// (http.ErrAbortHandler) only under a server, and would otherwise end
	// a truncated body as a whole one.
	ctx = context.WithValue(ctx, http.ServerContextKey, f.srv)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, c.LocalAddr())
	b := h1BufPool.Get().(*h1Bufs)
	hc := &h1Conn{f: f, rwc: c, raw: watchReader{c: c}, tls: st, remote: c.RemoteAddr().String(),
		ctx: ctx, cancel: cancel, hdr: b.hdr, br: b.br, bw: b.bw}
	b.br.Reset(&hc.raw)
	b.bw.Reset(c)
	hc.w.c, hc.w.header, hc.w.pend = hc, b.wh, b.pend
	hc.tmpl = *hc.tmpl.WithContext(ctx)
	hc.state.Store(connIdle)
	f.lean.add(hc)
	handedOff := false
	defer func() {
		f.lean.remove(hc)
		if hc.watch != nil {
			hc.watch.Stop()
		}
		cancel()
		if !handedOff {
			_ = c.Close()
		}
		b.release(hc)
	}()
	handedOff = hc.loop()
}

// h1Bufs are a connection's buffers and maps, pooled: a connection that
// only shakes hands (or sends one request) costs no 8 KiB of buffers.
type h1Bufs struct {
	br      *bufio.Reader
	bw      *bufio.Writer
	hdr, wh http.Header
	pend    []byte
}

var h1BufPool = sync.Pool{New: func() any {
	return &h1Bufs{br: bufio.NewReaderSize(nil, h1ReadBuffer), bw: bufio.NewWriterSize(nil, h1WriteBuffer),
		hdr: make(http.Header, 16), wh: make(http.Header, 16), pend: make([]byte, 0, bufferBeforeHead)}
}}

// release returns the buffers once c no longer uses them; the maps are
// cleared so that nothing the connection read is kept alive by the pool.
func (b *h1Bufs) release(c *h1Conn) {
	b.br.Reset(nil)
	b.bw.Reset(nil)
	clear(b.hdr)
	clear(b.wh)
	b.pend = c.w.pend[:0]
	h1BufPool.Put(b)
}

// loop serves requests; true: c went to net/http.
func (c *h1Conn) loop() bool {
	for {
		head, ok, err := c.readHead()
		if err != nil {
			return false
		}
		if !c.state.CompareAndSwap(connIdle, connActive) {
			return false // the drain closed it
		}
		if !ok || !c.parse(head) {
			return c.handOff()
		}
		keep, clean := c.serve()
		c.served++
		if !keep {
			if clean {
				c.closeGracefully()
			}
			return false
		}
		if !c.state.CompareAndSwap(connActive, connIdle) {
			return false // the drain ran out of time and closed it
		}
	}
}

// readHead waits for the next request head and returns it, still in the
// read buffer. ok false: the bytes are not a head this loop takes (too
// long, a stray CR or LF), for net/http to judge.
func (c *h1Conn) readHead() (head []byte, ok bool, err error) {
	switch {
	case c.served == 0:
		c.setDeadline(time.Now().Add(c.f.srv.ReadHeaderTimeout)) // net/http's first wait too
	case c.br.Buffered() == 0:
		c.idleDeadline()
	}
	if _, err := c.br.Peek(1); err != nil {
		return nil, false, err
	}
	partial := c.served == 0 // the first head's bound runs from the connection's start
	for n := c.br.Buffered(); ; n = c.br.Buffered() {
		buf, _ := c.br.Peek(n)
		if i := bytes.Index(buf, crlfcrlf); i >= 0 {
			return buf[:i+4], true, nil
		}
		if n == c.br.Size() || bytes.Count(buf, lf) != bytes.Count(buf, crlf) {
			return nil, false, nil // too long, or a bare LF: net/http ends a line there
		}
		// A head in several reads: from its first byte the header timeout
		// counts, once (a client sending a byte at a time is cut by it).
		if !partial {
			partial = true
			c.setDeadline(time.Now().Add(c.f.srv.ReadHeaderTimeout))
		}
		if _, err := c.br.Peek(n + 1); err != nil {
			if len(buf) > 0 && errors.Is(err, bufio.ErrBufferFull) {
				return nil, false, nil
			}
			return nil, false, err
		}
	}
}

// idleDeadline sets the idle timeout's deadline, unless the one set is
// recent enough.
func (c *h1Conn) idleDeadline() {
	// Never before the idle timeout (a client may reuse the connection
	// until then), at most a slack after it.
	want := time.Now().Add(c.f.srv.IdleTimeout)
	if !c.deadline.Before(want) && c.deadline.Sub(want) <= deadlineSlack {
		return
	}
	c.setDeadline(want.Add(deadlineSlack))
}

func (c *h1Conn) setDeadline(t time.Time) {
	c.deadline = t
	_ = c.rwc.SetReadDeadline(t)
}

// handOff gives the connection, and what was read from it, to net/http.
func (c *h1Conn) handOff() bool {
	pre, _ := c.br.Peek(c.br.Buffered())
	pre = append([]byte(nil), pre...)
	_ = c.rwc.SetReadDeadline(time.Time{})
	c.f.lean.remove(c)
	c.f.handoff.give(handed(c.rwc, pre, c.tls))
	return true
}

// parse fills c.req from head (still in the read buffer); false: the
// request is one for net/http, and nothing was consumed.
func (c *h1Conn) parse(head []byte) bool {
	// One copy of the head: the request's strings point into it, and it is
	// never written again (the handler may keep strings past the request).
	b := make([]byte, len(head))
	copy(b, head)
	line, rest, _ := bytes.Cut(b, crlf)
	if bytes.IndexByte(line, '\n') >= 0 || bytes.IndexByte(line, '\r') >= 0 {
		return false
	}
	method, line, ok1 := bytes.Cut(line, sp)
	target, proto, ok2 := bytes.Cut(line, sp)
	if !ok1 || !ok2 || string(proto) != "HTTP/1.1" || len(method) == 0 || !validMethod(method) ||
		string(method) == http.MethodConnect || len(target) == 0 || target[0] != '/' {
		return false
	}
	c.req = c.tmpl
	r := &c.req
	r.Method = str(method)
	if !c.setURL(target) {
		return false
	}
	clear(c.hdr)
	c.vals = c.vals[:0]
	var host string
	hosts := 0
	rest = rest[:len(rest)-2] // the head's final CRLF
	for len(rest) > 0 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, crlf)
		k, v, ok := bytes.Cut(l, colon)
		if !ok || len(k) == 0 || !validToken(k) || bytes.IndexByte(l, '\r') >= 0 || bytes.IndexByte(l, '\n') >= 0 {
			return false
		}
		v = bytes.Trim(v, " \t") // textproto's trim (CR and LF excluded above)
		if !httpguts.ValidHeaderFieldValue(str(v)) {
			return false
		}
		canonicalize(k)
		key, val := str(k), str(v)
		switch key {
		case "Host":
			host = val
			hosts++
			continue
		case "Content-Length", "Transfer-Encoding", "Expect", "Upgrade", "Trailer":
			return false // a body, an upgrade, an interim answer: net/http's
		}
		c.vals = append(c.vals, val)
		if prev, ok := c.hdr[key]; ok {
			c.hdr[key] = append(prev, val)
		} else {
			c.hdr[key] = c.vals[len(c.vals)-1 : len(c.vals) : len(c.vals)]
		}
	}
	if hosts != 1 || !httpguts.ValidHostHeader(host) {
		return false // missing, repeated or malformed: net/http's 400
	}
	if pragma, ok := c.hdr["Pragma"]; ok && len(pragma) > 0 && pragma[0] == "no-cache" {
		if _, ok := c.hdr["Cache-Control"]; !ok {
			c.hdr["Cache-Control"] = noCache // net/http's fixPragmaCacheControl
		}
	}
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.Header = c.hdr
	r.Body = http.NoBody
	r.Host = host
	r.RemoteAddr = c.remote
	r.RequestURI = str(target)
	r.TLS = c.tls
	r.Close = httpguts.HeaderValuesContainsToken(c.hdr["Connection"], "close")
	_, _ = c.br.Discard(len(head))
	return true
}

var (
	crlf    = []byte("\r\n")
	lf      = []byte("\n")
	sp      = []byte(" ")
	colon   = []byte(":")
	noCache = []string{"no-cache"}
)

// str is a string over b's bytes; b is never written after.
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b)) // #nosec G103 -- b is a fresh copy of the head, never written after parse
}

// setURL fills c.url as url.ParseRequestURI would for target, for the
// targets whose parse is plain (no escapes, nothing url would escape again,
// no '#'); others are parsed by url itself.
func (c *h1Conn) setURL(target []byte) bool {
	p, q, hasQ := bytes.Cut(target, question)
	simple := !hasQ || len(q) > 0
	for _, ch := range p {
		if !pathByte[ch] {
			simple = false
			break
		}
	}
	for _, ch := range q {
		if !queryByte[ch] {
			simple = false
			break
		}
	}
	if simple {
		c.url = url.URL{Path: str(p), RawQuery: str(q)}
		c.req.URL = &c.url
		return true
	}
	u, err := url.ParseRequestURI(str(target))
	if err != nil {
		return false
	}
	c.req.URL = u
	return true
}

var question = []byte("?")

// pathByte: the bytes a path may hold for url to keep it as it is (no
// RawPath); queryByte: those of a query this loop takes without url.
var pathByte, queryByte [256]bool

func init() {
	for ch := 0; ch < 256; ch++ {
		c := byte(ch)
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		pathByte[ch] = alnum || bytes.IndexByte([]byte("-_.~$&+,/:;=@"), c) >= 0
		queryByte[ch] = c > 0x20 && c < 0x7f && c != '#'
	}
}

func validMethod(m []byte) bool { return validToken(m) }

func validToken(b []byte) bool {
	for _, c := range b {
		if !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	return true
}

// canonicalize is textproto.CanonicalMIMEHeaderKey in place, for a key of
// token bytes.
func canonicalize(k []byte) {
	upper := true
	for i, c := range k {
		if upper && 'a' <= c && c <= 'z' {
			k[i] = c - ('a' - 'A')
		} else if !upper && 'A' <= c && c <= 'Z' {
			k[i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
}

// serve runs the handler chain on c.req. keep false: close the connection,
// gracefully if clean (the answer is whole), at once if not (a handler
// aborted, a write failed).
func (c *h1Conn) serve() (keep, clean bool) {
	w := &c.w
	w.reset(&c.req)
	watching := c.br.Buffered() == 0 // pipelined bytes: the client is there
	if watching {
		c.armed.Store(true)
		if c.watch == nil {
			c.watchDone = make(chan struct{}, 1)
			c.watch = time.AfterFunc(watchAfter, c.startWatch)
		} else {
			c.watch.Reset(watchAfter)
		}
	}
	defer func() {
		if watching {
			c.stopWatch()
		}
		if v := recover(); v != nil {
			if err, _ := v.(error); !errors.Is(err, http.ErrAbortHandler) {
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.f.log.Error("panic serving a request", "remote", c.remote, "method", c.req.Method,
					"path", c.req.URL.Path, "panic", fmt.Sprint(v), "stack", string(buf))
			}
			keep, clean = false, false
		}
	}()
	if leanServed != nil {
		leanServed()
	}
	c.f.srv.Handler.ServeHTTP(w, &c.req)
	if !w.finish() {
		return false, false
	}
	if err := c.bw.Flush(); err != nil {
		return false, false
	}
	if c.ctx.Err() != nil {
		return false, false // the watch saw the client go
	}
	return !w.closeAfter, true
}

// startWatch runs on the timer's goroutine once a request has run for
// watchAfter: it reads the connection, and a read that ends for another
// reason than stopWatch's deadline means the client went away.
func (c *h1Conn) startWatch() {
	if !c.armed.CompareAndSwap(true, false) {
		return
	}
	n, err := c.rwc.Read(c.watchBuf[:])
	if n > 0 {
		c.raw.extra = c.watchBuf[:n] // the next request's first byte
	}
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		c.cancel()
	}
	c.watchDone <- struct{}{}
}

// stopWatch ends the watch: disarmed before it started, or its read
// aborted and waited for.
func (c *h1Conn) stopWatch() {
	if c.armed.CompareAndSwap(true, false) {
		c.watch.Stop()
		return
	}
	_ = c.rwc.SetReadDeadline(aLongTimeAgo)
	<-c.watchDone
	c.deadline = time.Time{}
	c.idleDeadline()
}

// closeGracefully ends the connection as net/http does: the response
// flushed, our side closed (TLS close_notify, FIN), then a short read of
// what the client still sends, so that closing does not reset the
// connection before the client has read the answer.
func (c *h1Conn) closeGracefully() {
	_ = c.bw.Flush()
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.rwc.SetReadDeadline(time.Now().Add(rstAvoidance))
	var sink [512]byte
	for {
		if _, err := c.rwc.Read(sink[:]); err != nil {
			return
		}
	}
}

// leanServed, set by tests only, is called for each request the lean loop
// serves.
var leanServed func()

// rstAvoidance is net/http's rstAvoidanceDelay.
const rstAvoidance = 500 * time.Millisecond
