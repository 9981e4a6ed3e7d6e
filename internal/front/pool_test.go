package front

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// trackedConn is one end of a pipe that records its closing, and whether a
// request holds it, so that the pool's rules can be checked.
type trackedConn struct {
	net.Conn
	closed atomic.Bool
	inUse  atomic.Bool
}

func (c *trackedConn) Close() error { c.closed.Store(true); return c.Conn.Close() }

// poolUnderTest is a transport whose dial makes tracked pipes (the pool
// never does I/O on them: alive is asked only past checkAfter).
func poolUnderTest(t *testing.T, slots int, idleTimeout time.Duration) (*upstreamTransport, *[]*trackedConn) {
	t.Helper()
	ut := newUpstreamTransport("127.0.0.1:1", &http.Transport{IdleConnTimeout: idleTimeout, MaxIdleConnsPerHost: slots})
	ut.checkAfter = time.Hour
	var mu sync.Mutex
	var all []*trackedConn
	ut.dial = func(context.Context, string, string) (net.Conn, error) {
		a, b := net.Pipe()
		t.Cleanup(func() { _ = b.Close() })
		tc := &trackedConn{Conn: a}
		mu.Lock()
		all = append(all, tc)
		mu.Unlock()
		return tc, nil
	}
	return ut, &all
}

// The lock-free pool, under concurrent takes and returns: a connection is
// never handed to two requests at once, never handed out once closed, the
// pool never holds more than its slots, and every connection dialled ends
// up either pooled or closed.
func TestUpstreamPoolProperties(t *testing.T) {
	for _, tc := range []struct {
		name           string
		slots, workers int
	}{
		{"more slots than workers", 16, 4},
		{"fewer slots than workers", 2, 8},
		{"one slot", 1, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ut, all := poolUnderTest(t, tc.slots, time.Hour)
			var wg sync.WaitGroup
			var bad atomic.Value
			for range tc.workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 2000 {
						uc, _, err := ut.get(context.Background())
						if err != nil {
							bad.Store(err.Error())
							return
						}
						c := uc.c.(*trackedConn)
						if c.closed.Load() {
							bad.Store("a closed connection was handed out")
						}
						if !c.inUse.CompareAndSwap(false, true) {
							bad.Store("a connection was handed to two requests at once")
						}
						c.inUse.Store(false)
						ut.put(uc)
					}
				}()
			}
			wg.Wait()
			if msg := bad.Load(); msg != nil {
				t.Fatal(msg)
			}
			pooled := map[*trackedConn]bool{}
			for i := range ut.idle {
				if uc := ut.idle[i].Load(); uc != nil {
					c := uc.c.(*trackedConn)
					if pooled[c] {
						t.Fatalf("one connection is in two slots")
					}
					pooled[c] = true
				}
			}
			if len(pooled) > tc.slots {
				t.Fatalf("%d connections pooled in %d slots", len(pooled), tc.slots)
			}
			for _, c := range *all {
				if pooled[c] == c.closed.Load() {
					t.Fatalf("a connection is pooled=%v and closed=%v: want exactly one", pooled[c], c.closed.Load())
				}
			}
			if len(*all) < len(pooled) || len(pooled) == 0 {
				t.Fatalf("%d dialled, %d pooled", len(*all), len(pooled))
			}
			ut.closeIdle()
			for _, c := range *all {
				if !c.closed.Load() {
					t.Fatalf("a connection stayed open after closeIdle")
				}
			}
			if n := ut.idleCount(); n != 0 {
				t.Fatalf("%d connections pooled after closeIdle", n)
			}
		})
	}
}

// A connection idle past the timeout in a slot no request reaches is
// closed by the sweeps of later returns; a full pool closes what comes back.
func TestUpstreamPoolSweepAndFull(t *testing.T) {
	ut, _ := poolUnderTest(t, 4, time.Minute)
	var held []*upConn
	for range 4 {
		uc, _, _ := ut.get(context.Background())
		held = append(held, uc)
	}
	for _, uc := range held {
		ut.put(uc)
	}
	if n := ut.idleCount(); n != 4 {
		t.Fatalf("%d pooled, want 4", n)
	}
	extra, _, _ := ut.get(context.Background()) // takes slot 0
	more, reused, _ := ut.get(context.Background())
	if !reused {
		t.Fatalf("second take dialled with 3 idle connections pooled")
	}
	fresh, _ := ut.dial(context.Background(), "tcp", ut.addr)
	ut.put(extra)
	ut.put(more)
	overflow := &upConn{c: fresh}
	ut.put(overflow) // 4 slots full
	if !fresh.(*trackedConn).closed.Load() {
		t.Fatalf("a connection returned to a full pool was kept open")
	}
	// Slots 1-3 have been idle past the timeout; slot 0 is kept busy and
	// fresh, so a take never reaches the others: only the sweeps of its
	// returns can close them.
	for i := 1; i < 4; i++ {
		ut.idle[i].Load().idleSince.Add(-int64(2 * time.Minute))
	}
	for range 8 {
		uc, reused, _ := ut.get(context.Background())
		if !reused {
			t.Fatalf("the fresh connection in slot 0 was not reused")
		}
		ut.put(uc)
	}
	if n := ut.idleCount(); n != 1 {
		t.Fatalf("%d connections pooled, want only the busy one: the others are past their idle timeout", n)
	}
}
