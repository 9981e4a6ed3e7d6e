package front

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"syscall"
	"time"
)

// upstreamTransport does the HTTP/1.1 round trip to one of the core's own
// upstreams (api, hfs) on the request's goroutine, over a small pool of
// keep-alive connections. http.Transport hands every request to two
// goroutines per connection (a reader and a writer) and back through
// channels; on a proxied keep-alive request that hand-off, its contexts and
// its bookkeeping were a quarter of the front's CPU. Here a request is: pop an
// idle connection, write the request, read the response head, and the body is
// read by ReverseProxy straight from the connection's buffer; at the body's
// end the connection goes back to the pool.
//
// The wire format stays net/http's own (Request.Write, ReadResponse): nothing
// here parses or writes HTTP. What this transport does not do goes to the
// standard one (fallback): protocol upgrades (WebSocket), Expect:
// 100-continue, and anything not plain http://.
type upstreamTransport struct {
	addr     string // host:port of the upstream
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	fallback http.RoundTripper

	// idleTimeout closes connections idle longer than this; checkAfter is
	// the idle time beyond which a connection is asked whether the upstream
	// closed it (one non-blocking peek) before it carries a request.
	idleTimeout, checkAfter time.Duration
	maxIdle                 int
	// headerTimeout bounds the wait for the response head once the request
	// is written (0: none), as http.Transport's ResponseHeaderTimeout.
	headerTimeout time.Duration

	mu     sync.Mutex // guards idle and closed: held for a slice push or pop, never across I/O
	idle   []*upConn  // most recently used last
	closed bool       // after closeIdle: connections coming back are closed
}

type upConn struct {
	c         net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
	expire    func() // expireNow, bound once per connection, not per request
}

// expireNow makes the connection's blocked read or write return at once.
func (uc *upConn) expireNow() { _ = uc.c.SetDeadline(aLongTimeAgo) }

func newUpstreamTransport(addr string, fallback *http.Transport) *upstreamTransport {
	return &upstreamTransport{
		addr:        addr,
		dial:        fallback.DialContext,
		fallback:    fallback,
		idleTimeout: fallback.IdleConnTimeout,
		checkAfter:  250 * time.Millisecond,
		maxIdle:     fallback.MaxIdleConnsPerHost,

		headerTimeout: fallback.ResponseHeaderTimeout,
	}
}

func (t *upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A request with a body goes to the standard transport too: it reads
	// the response while the body is still being sent, so an upstream that
	// answers early (401 or 413 on an upload) is heard rather than met
	// with a failed write. Here the body would have to be written in full
	// first.
	if req.URL.Scheme != "http" || req.URL.Host != t.addr ||
		(req.Body != nil && req.Body != http.NoBody) ||
		req.Header.Get("Upgrade") != "" || req.Header.Get("Expect") != "" {
		return t.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	var got1xx func(int, textproto.MIMEHeader) error
	if trace := httptrace.ContextClientTrace(ctx); trace != nil {
		got1xx = trace.Got1xxResponse
	}
	return t.roundTrip(ctx, req, got1xx)
}

// roundTrip sends a body-less req on a pooled connection (once more on a
// new one when a reused one fails before any answer and replaying is safe).
// got1xx, if not nil, is handed each interim response.
func (t *upstreamTransport) roundTrip(ctx context.Context, req *http.Request, got1xx func(int, textproto.MIMEHeader) error) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		uc, reused, err := t.get(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(ctx, uc, req, got1xx)
		if err == nil {
			return resp, nil
		}
		// A pooled connection the upstream closed just as it was reused
		// fails before any answer. The request is sent once more on a new
		// connection when replaying it is safe: an idempotent method (a
		// request here has no body; what http.Transport retries too).
		// An upstream that took the request and did not answer in time is
		// not asked again: it may be working on it, and the client has
		// waited long enough.
		if attempt == 0 && reused && ctx.Err() == nil && replayable(req) && !errors.Is(err, errHeaderTimeout) {
			continue
		}
		return nil, err
	}
}

func replayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return req.Header.Get("Idempotency-Key") != ""
}

// exchange writes req on uc and reads the response head; on error uc is
// closed.
func (t *upstreamTransport) exchange(ctx context.Context, uc *upConn, req *http.Request, got1xx func(int, textproto.MIMEHeader) error) (*http.Response, error) {
	// The request's context ends the exchange (and the body read after it)
	// by expiring the connection's deadline: the blocked read or write
	// returns and the connection is dropped.
	stop := context.AfterFunc(ctx, uc.expire)
	fail := func(err error) (*http.Response, error) {
		stop()
		uc.c.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return nil, err
	}
	if err := req.Write(uc.bw); err != nil {
		return fail(err)
	}
	if err := uc.bw.Flush(); err != nil {
		return fail(err)
	}
	if t.headerTimeout > 0 {
		_ = uc.c.SetReadDeadline(time.Now().Add(t.headerTimeout))
	}
	for {
		resp, err := http.ReadResponse(uc.br, req)
		if err != nil {
			var ne net.Error
			if t.headerTimeout > 0 && errors.As(err, &ne) && ne.Timeout() {
				err = errHeaderTimeout // fail reports the context's error instead if it ended
			}
			return fail(err)
		}
		code := resp.StatusCode
		if code >= 100 && code < 200 {
			if code == http.StatusSwitchingProtocols {
				// Upgrades go through the fallback transport; a 101 here
				// answers a request that did not ask for one.
				return fail(errors.New("upstream switched protocols unasked"))
			}
			// Interim response (103 Early Hints and the like): hand it to
			// ReverseProxy, which forwards it, and read the final one.
			if got1xx != nil {
				if err := got1xx(code, textproto.MIMEHeader(resp.Header)); err != nil {
					return fail(err)
				}
			}
			continue
		}
		if t.headerTimeout > 0 {
			// The body may take as long as it takes. A cancellation that
			// expired the deadline just before this is put back.
			_ = uc.c.SetReadDeadline(time.Time{})
			if ctx.Err() != nil {
				_ = uc.c.SetDeadline(aLongTimeAgo)
			}
		}
		resp.Body = &upBody{rc: resp.Body, t: t, uc: uc, stop: stop,
			reuse: !resp.Close && !req.Close}
		return resp, nil
	}
}

// upBody is the response body: read through, it returns the connection to
// the pool; closed early (the client went away) or failed, it drops it.
type upBody struct {
	rc    io.ReadCloser
	t     *upstreamTransport
	uc    *upConn
	stop  func() bool
	reuse bool // the upstream did not ask to close the connection
	done  bool
}

func (b *upBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

var errBodyClosed = errors.New("read on closed upstream body")

// errHeaderTimeout: the upstream took the request and sent no response head
// within headerTimeout.
var errHeaderTimeout = errors.New("no response head from the upstream within the response header timeout")

func (b *upBody) Close() error {
	if !b.done {
		// An empty body is at its end without a read.
		b.finish(b.rc == http.NoBody)
	}
	return nil
}

func (b *upBody) finish(atEOF bool) {
	b.done = true
	// stop() is false once the context has expired the deadline: the
	// connection is then unusable even if the body was complete.
	if b.stop() && atEOF && b.reuse && b.uc.br.Buffered() == 0 {
		_ = b.rc.Close() // at EOF: reads nothing more (trailers are in)
		b.t.put(b.uc)
		return
	}
	// Not at its end: closing the connection is what stops it (the
	// body's own Close would read the rest).
	b.uc.c.Close()
}

// get pops the most recently used idle connection, or dials a new one.
func (t *upstreamTransport) get(ctx context.Context) (*upConn, bool, error) {
	for {
		t.mu.Lock()
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			break
		}
		uc := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		idle := time.Since(uc.idleSince)
		if idle < t.idleTimeout && (idle < t.checkAfter || alive(uc.c)) {
			return uc, true, nil
		}
		uc.c.Close()
	}
	c, err := t.dial(ctx, "tcp", t.addr)
	if err != nil {
		return nil, false, err
	}
	uc := &upConn{c: c, br: bufio.NewReaderSize(c, 4<<10), bw: bufio.NewWriterSize(c, 4<<10)}
	uc.expire = uc.expireNow
	return uc, false, nil
}

// put returns uc to the pool, and closes the oldest idle connection when it
// has outlived idleTimeout or the pool is full.
func (t *upstreamTransport) put(uc *upConn) {
	uc.idleSince = time.Now()
	var drop *upConn
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		uc.c.Close()
		return
	}
	if len(t.idle) > 0 && (len(t.idle) >= t.maxIdle || uc.idleSince.Sub(t.idle[0].idleSince) > t.idleTimeout) {
		drop = t.idle[0]
		copy(t.idle, t.idle[1:])
		t.idle[len(t.idle)-1] = nil
		t.idle = t.idle[:len(t.idle)-1]
	}
	t.idle = append(t.idle, uc)
	t.mu.Unlock()
	if drop != nil {
		drop.c.Close()
	}
}

// closeIdle closes every pooled connection, and those still in use as
// they come back (shutdown: a drain that timed out leaves handlers running).
func (t *upstreamTransport) closeIdle() {
	t.mu.Lock()
	idle := t.idle
	t.idle, t.closed = nil, true
	t.mu.Unlock()
	for _, uc := range idle {
		uc.c.Close()
	}
}

// alive asks the kernel, without blocking, whether the upstream closed an
// idle connection (or, out of turn, sent something): only a connection with
// nothing to read is fit to carry a request.
func alive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		_ = n // 0 with no error: the upstream closed it; > 0: data out of turn
		ok = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // never wait for readiness: the answer is now
	})
	return err == nil && ok
}

// aLongTimeAgo is a deadline in the past: blocked I/O returns at once.
var aLongTimeAgo = time.Unix(1, 0)
