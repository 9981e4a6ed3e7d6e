package front

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Drain grace (decision 0023): once Shutdown starts, the front keeps
// accepting for up to DefaultDrainGrace and answers every request with
// Connection: close, which closes an HTTP/1.1 connection after the answer
// and makes net/http's HTTP/2 server send GOAWAY: clients move off while
// nothing they send is refused or dropped. net/http's own Shutdown is not
// that: it closes the listener at once and drops a request read on a
// keep-alive connection after it began (EOF at the client). The grace ends
// early once no connection has come for drainQuiet, so an idle front stops
// at once.
const (
	DefaultDrainGrace = 2 * time.Second
	drainQuiet        = 250 * time.Millisecond
)

// waitGrace returns when grace has passed, or no connection has come for
// drainQuiet, or ctx ends; f.draining is already set.
func (f *Front) waitGrace(ctx context.Context, grace time.Duration) {
	start := time.Now()
	f.lastConn.Store(start.UnixNano())
	f.accepted.Store(0)
	end := start.Add(grace)
	for {
		now := time.Now()
		quietUntil := time.Unix(0, f.lastConn.Load()).Add(drainQuiet)
		if !now.Before(end) || !now.Before(quietUntil) {
			break
		}
		wake := end
		if quietUntil.Before(wake) {
			wake = quietUntil
		}
		t := time.NewTimer(wake.Sub(now))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
	f.log.Info("front stopped accepting connections", "after", time.Since(start).Round(time.Millisecond).String(),
		"acceptedDuringGrace", f.accepted.Load())
}

// connContext is the server's ConnContext: it gives a connection its
// HTTP/2 reset count (the drain's clock is kept by the accept loop).
func (f *Front) connContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connGuardKey{}, &connGuard{})
}

// HTTP/2 rapid reset (CVE-2023-44487): a client that opens streams and
// resets them at once makes the server start a handler per stream, and the
// proxy forward it, for nothing. A stream the client reset before its
// handler ran is not proxied; past maxResets resets within resetWindow on
// one connection, every later response on it carries Connection: close,
// which net/http's HTTP/2 server turns into a GOAWAY: the streams under way
// finish, no new one starts, and the connection closes.
const (
	maxResets   = 100
	resetWindow = 10 * time.Second
)

type connGuardKey struct{}

// connGuard is one connection's reset count, shared by its streams'
// handlers (atomics only: the count is approximate under a race, the bound
// is not).
type connGuard struct {
	resets      atomic.Int32
	windowStart atomic.Int64 // unix nanoseconds
	over        atomic.Bool
}

// reset counts one stream the client reset, and reports whether the
// connection just went over the bound.
func (g *connGuard) reset() bool {
	now := time.Now().UnixNano()
	if ws := g.windowStart.Load(); now-ws > int64(resetWindow) && g.windowStart.CompareAndSwap(ws, now) {
		g.resets.Store(0)
	}
	return g.resets.Add(1) > maxResets && g.over.CompareAndSwap(false, true)
}

// resetGuard applies the reset bound to HTTP/2 requests, and the drain's
// Connection: close to every request.
type resetGuard struct {
	next     http.Handler
	log      *slog.Logger
	draining *atomic.Bool
}

func (rg resetGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// An upgrade's answer is 101 with Connection: Upgrade; the drain leaves
	// it alone (the WebSocket lasts until the drain ends).
	if rg.draining.Load() && r.Header.Get("Upgrade") == "" {
		w.Header().Set("Connection", "close")
	}
	if r.ProtoMajor == 2 {
		growStack()
	}
	g, _ := r.Context().Value(connGuardKey{}).(*connGuard)
	if r.ProtoMajor != 2 || g == nil {
		rg.next.ServeHTTP(w, r)
		return
	}
	if g.over.Load() {
		w.Header().Set("Connection", "close")
	}
	if r.Context().Err() != nil {
		// Reset before it started: nothing is sent upstream. The empty
		// answer goes nowhere, but its Connection: close still makes the
		// GOAWAY.
		rg.counted(w, r, g)
		return
	}
	defer func() {
		if r.Context().Err() != nil {
			rg.counted(w, r, g)
		}
	}()
	rg.next.ServeHTTP(w, r)
}

func (rg resetGuard) counted(w http.ResponseWriter, r *http.Request, g *connGuard) {
	if g.reset() {
		w.Header().Set("Connection", "close")
		rg.log.Warn("HTTP/2 client reset too many streams; sending GOAWAY", "remote", r.RemoteAddr,
			"limit", maxResets, "window", resetWindow.String())
	}
}

// streamStack is the stack an HTTP/2 stream's handler is given at once.
// net/http runs each stream's handler on a new goroutine, whose stack starts
// small (the runtime's average over every goroutine, most of them idle and
// shallow) and was doubled, copied and its frames adjusted two or three
// times on the way down the proxied path (runtime.newstack was 12% of the
// front's CPU under h2load, decision 0035). One frame of this size at the
// handler's top makes the runtime grow the stack once, to the next power of
// two that holds it, while it holds only a few frames to copy.
const streamStack = 12 << 10

// growStack takes streamStack bytes of stack and gives them back.
//
//go:noinline
func growStack() { stackSink(new([streamStack]byte)[:]) }

//go:noinline
func stackSink([]byte) {}
