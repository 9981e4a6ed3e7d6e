package front

import (
	"errors"
	"net"
	"testing"
	"time"
)

// TestLeanHeaderTimeoutDrip: a client that sends a head a byte at a time
// is cut by ReadHeaderTimeout counted once from the head's first byte (or,
// for the first head, from the connection's start), not moved by each byte.
// The drip lasts 60 x 50 ms = 3 s, ten times the 300 ms bound: the front
// must close the connection well before the head would be whole.
func TestLeanHeaderTimeoutDrip(t *testing.T) {
	echo := newEchoUpstream(t, "echo")
	tf := startLean(t, leanSetup{api: echo.URL, hfs: echo.URL, tweak: func(f *Front) {
		f.srv.ReadHeaderTimeout = 300 * time.Millisecond
		f.srv.IdleTimeout = 10 * time.Second
	}})
	head := "GET /alice/events HTTP/1.1\r\nHost: alice.example.com\r\nX-Slow: " // never ends
	for _, first := range []bool{true, false} {
		name := "first head"
		if !first {
			name = "second head"
		}
		t.Run(name, func(t *testing.T) {
			rc := dialRaw(t, tf)
			if !first {
				rc.send(t, getReq("/alice/first"))
				rc.echo(t)
			}
			sent := 0
			for i := 0; i < 60; i++ {
				b := head[i%len(head) : i%len(head)+1]
				if _, err := rc.c.Write([]byte(b)); err != nil {
					break // the front closed it: what the test wants
				}
				sent++
				// Whether the front closed it shows on a short read.
				_ = rc.c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				var one [1]byte
				_, err := rc.c.Read(one[:])
				var ne net.Error
				if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
					return // closed (EOF or reset) before the drip ended
				}
			}
			t.Fatalf("the front kept a connection open through %d bytes sent 50 ms apart (ReadHeaderTimeout 300 ms)", sent)
		})
	}
}
