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
	"sync/atomic"
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
// The request head is written by writeRequest and the response head read
// by readResponse: each does the plain GET's itself, byte for byte what
// Request.Write and ReadResponse do, and hands anything else to those
// (decision 0031). What this transport does not do goes to the
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
	// headerTimeout bounds the wait for the response head once the request
	// is written (0: none), as http.Transport's ResponseHeaderTimeout.
	headerTimeout time.Duration

	// idle is the pool: a fixed row of slots, each empty or holding one
	// idle connection, taken and filled with atomic swaps, so the request
	// path takes no lock (a sync.Mutex here was every proxied request's
	// one lock). Both get and put scan from the first slot: the busy
	// connections stay in the first slots and those beyond go idle, to be
	// closed by sweep or found closed by alive.
	idle   []atomic.Pointer[upConn]
	sweeps atomic.Uint32 // the slot the next put's sweep looks at
	closed atomic.Bool   // after closeIdle: connections coming back are closed
	epoch  time.Time     // idleSince counts from here (monotonic)
}

type upConn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
	// idleSince is when the connection last went back to the pool, in
	// nanoseconds after the transport's epoch: atomic, since a sweep reads
	// it from a slot while the connection may have just been taken.
	idleSince atomic.Int64
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
		idle:        make([]atomic.Pointer[upConn], max(fallback.MaxIdleConnsPerHost, 1)),
		epoch:       time.Now(),

		headerTimeout: fallback.ResponseHeaderTimeout,
	}
}

// idleFor is how long uc has been in the pool.
func (t *upstreamTransport) idleFor(uc *upConn) time.Duration {
	return time.Since(t.epoch) - time.Duration(uc.idleSince.Load())
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
		_ = uc.c.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return nil, err
	}
	if err := writeRequest(uc.bw, req); err != nil {
		return fail(err)
	}
	if err := uc.bw.Flush(); err != nil {
		return fail(err)
	}
	if t.headerTimeout > 0 {
		_ = uc.c.SetReadDeadline(time.Now().Add(t.headerTimeout))
	}
	for {
		resp, bodyLen, err := readResponse(uc.br, req)
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
		b := &upBody{rc: resp.Body, t: t, uc: uc, stop: stop,
			reuse: !resp.Close && !req.Close}
		if bodyLen > 0 { // parsed by readResponse: the body is read here
			b.fixed = fixedBody{br: uc.br, left: bodyLen}
			b.rc = &b.fixed
		}
		resp.Body = b
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
	fixed fixedBody // rc, for a head readResponse parsed itself
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
	_ = b.uc.c.Close()
}

// get takes an idle connection from the pool, or dials a new one.
func (t *upstreamTransport) get(ctx context.Context) (*upConn, bool, error) {
	for i := range t.idle {
		if t.idle[i].Load() == nil {
			continue // a load first: a swap on every empty slot would write to each one's cache line
		}
		uc := t.idle[i].Swap(nil)
		if uc == nil {
			continue // taken in between
		}
		idle := t.idleFor(uc)
		if idle < t.idleTimeout && (idle < t.checkAfter || alive(uc.c)) {
			return uc, true, nil
		}
		_ = uc.c.Close()
	}
	c, err := t.dial(ctx, "tcp", t.addr)
	if err != nil {
		return nil, false, err
	}
	uc := &upConn{c: c, br: bufio.NewReaderSize(c, 4<<10), bw: bufio.NewWriterSize(c, 4<<10)}
	uc.expire = uc.expireNow
	return uc, false, nil
}

// put returns uc to the pool's first empty slot (a full pool closes it),
// and sweeps one slot.
func (t *upstreamTransport) put(uc *upConn) {
	uc.idleSince.Store(int64(time.Since(t.epoch)))
	if !t.store(uc) {
		_ = uc.c.Close()
	}
	t.sweep()
}

// store puts uc in an empty slot; false when there is none or the pool is
// closed.
func (t *upstreamTransport) store(uc *upConn) bool {
	if t.closed.Load() {
		return false
	}
	for i := range t.idle {
		if t.idle[i].Load() != nil || !t.idle[i].CompareAndSwap(nil, uc) {
			continue
		}
		// closeIdle may have emptied this slot just before uc went in:
		// whichever of the two takes uc back out closes it.
		if t.closed.Load() {
			if got := t.idle[i].Swap(nil); got != nil {
				_ = got.c.Close()
			}
		}
		return true
	}
	return false
}

// sweep looks at one slot, the next in turn, and closes its connection if
// it has been idle longer than idleTimeout: slots beyond the busy ones are
// all looked at as requests come, and none keeps a connection past its
// time for long.
func (t *upstreamTransport) sweep() {
	s := &t.idle[int(t.sweeps.Add(1)-1)%len(t.idle)]
	uc := s.Load()
	if uc == nil || t.idleFor(uc) < t.idleTimeout || !s.CompareAndSwap(uc, nil) {
		return
	}
	// uc may have been taken and put back in between: it is ours now, and
	// closed only if it is still idle too long.
	if t.idleFor(uc) < t.idleTimeout && t.store(uc) {
		return
	}
	_ = uc.c.Close()
}

// idleCount is how many connections the pool holds.
func (t *upstreamTransport) idleCount() int {
	n := 0
	for i := range t.idle {
		if t.idle[i].Load() != nil {
			n++
		}
	}
	return n
}

// closeIdle closes every pooled connection, and those still in use as
// they come back (shutdown: a drain that timed out leaves handlers running).
func (t *upstreamTransport) closeIdle() {
	t.closed.Store(true)
	for i := range t.idle {
		if uc := t.idle[i].Swap(nil); uc != nil {
			_ = uc.c.Close()
		}
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
