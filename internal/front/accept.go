package front

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The front accepts its own connections (decision 0037): HTTP/1.1 ones are
// served by the lean loop in h1.go, HTTP/2 ones and the HTTP/1.1 requests the
// lean loop does not take are handed to net/http through handoffListener,
// which net/http's Serve reads like any listener.

// acceptLoop accepts until the listener is closed (nil) or fails for good.
// Temporary errors (EMFILE) are retried after a growing pause, as net/http
// does.
func (f *Front) acceptLoop() error {
	var pause time.Duration
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if f.closing.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				f.log.Warn("front accept failed; retrying", "error", err.Error(), "retryIn", pause.String())
				time.Sleep(pause)
				continue
			}
			return err
		}
		pause = 0
		f.lastConn.Store(time.Now().UnixNano())
		f.accepted.Add(1)
		go f.serveConn(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// serveConn makes the TLS handshake (when the front terminates TLS) and
// sends the connection to the server of its protocol.
func (f *Front) serveConn(c net.Conn) {
	if f.tlsCfg == nil {
		f.serveH1(c, nil)
		return
	}
	// The handshake's crypto runs deep: grown once here, the goroutine's
	// stack is not doubled and copied two or three times on the way down
	// (runtime.newstack was ~3% of a full handshake's CPU, decision 0037).
	growStack()
	tc := tls.Server(c, f.tlsCfg)
	// The handshake's bound is the server's ReadHeaderTimeout, as it was
	// when net/http made it.
	_ = c.SetDeadline(time.Now().Add(f.srv.ReadHeaderTimeout))
	if err := tc.HandshakeContext(f.baseCtx); err != nil {
		reason := err.Error()
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			reason = "client sent an HTTP request to an HTTPS server"
		}
		f.log.Debug("TLS handshake failed", "remote", c.RemoteAddr().String(), "reason", reason)
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	switch st.NegotiatedProtocol {
	case "h2":
		f.handoff.give(tc) // net/http sees a *tls.Conn, finds it shaken, serves HTTP/2
	case acmeTLS1:
		_ = tc.Close() // the validator only wanted the certificate
	default:
		f.serveH1(tc, &st)
	}
}

// looksLikeHTTP is net/http's test for a plain HTTP request on the TLS port.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// handoffListener is the listener net/http's Serve reads: the connections
// the front gives it, until Close.
type handoffListener struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// give hands c to net/http; after Close, c is closed instead (a request
// read during the very end of a drain is dropped, as net/http drops one).
func (l *handoffListener) give(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// prereadConn is a connection the lean loop has read from: its reads return
// what was read first. It reports the TLS state (net/http sets Request.TLS
// from a connection that has ConnectionState) and passes CloseWrite through
// (net/http's close_notify and FIN before it closes).
type prereadConn struct {
	net.Conn
	pre []byte
	tls *tls.ConnectionState // nil: plain HTTP
}

func (p *prereadConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// plainConn is a prereadConn without TLS: net/http must not see a
// ConnectionState method on it, or it would set Request.TLS.
type plainConn struct{ *prereadConn }

type tlsPreread struct{ *prereadConn }

func (t tlsPreread) ConnectionState() tls.ConnectionState { return *t.tls }

func (p *prereadConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// handed wraps c for net/http with what was read from it.
func handed(c net.Conn, pre []byte, st *tls.ConnectionState) net.Conn {
	p := &prereadConn{Conn: c, pre: pre, tls: st}
	if st == nil {
		return plainConn{p}
	}
	return tlsPreread{p}
}

// leanConns is the set of connections the lean loop serves, for the drain:
// each is idle (between requests) or active, and Shutdown closes the idle
// ones and waits for the active ones.
type leanConns struct {
	m sync.Map // *h1Conn -> struct{}
	n atomic.Int64
}

func (l *leanConns) add(c *h1Conn) { l.m.Store(c, struct{}{}); l.n.Add(1) }

func (l *leanConns) remove(c *h1Conn) {
	if _, ok := l.m.LoadAndDelete(c); ok {
		l.n.Add(-1)
	}
}

// closeIdle closes the connections waiting for a request and reports how
// many are still busy.
func (l *leanConns) closeIdle() int {
	busy := 0
	l.m.Range(func(k, _ any) bool {
		c := k.(*h1Conn)
		if c.state.CompareAndSwap(connIdle, connClosed) {
			_ = c.rwc.Close()
		} else if c.state.Load() == connActive {
			busy++
		}
		return true
	})
	return busy
}

// closeAll closes every connection (the drain ran out of time).
func (l *leanConns) closeAll() {
	l.m.Range(func(k, _ any) bool {
		c := k.(*h1Conn)
		c.state.Store(connClosed)
		_ = c.rwc.Close()
		return true
	})
}

// shutdown closes idle connections until none is busy or ctx ends, polling
// as net/http's Shutdown does.
func (l *leanConns) shutdown(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for l.closeIdle() > 0 {
		select {
		case <-ctx.Done():
			l.closeAll()
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
