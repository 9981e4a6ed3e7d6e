package front

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// wantRefused checks nothing accepts connections on addr any more.
func wantRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("a new connection to %s was accepted after Shutdown", addr)
	}
}

func TestShutdownDrainsInFlight(t *testing.T) {
	for _, h2 := range []bool{true, false} {
		t.Run(protoName(h2), func(t *testing.T) {
			arrived := make(chan struct{}, 1)
			var upstreamFinished atomic.Bool
			slow := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				arrived <- struct{}{}
				time.Sleep(300 * time.Millisecond)
				upstreamFinished.Store(true)
				_, _ = io.WriteString(w, "slow and done")
			}))
			hfs := newEchoUpstream(t, "hfs")
			tf := startFront(t, frontSetup{API: slow.URL, HFS: hfs.URL, GetCertificate: getPKI(t).store.GetCertificate})
			c := httpsClient(t, tf.addr, h2, nil)

			type result struct {
				status int
				body   string
				err    error
			}
			done := make(chan result, 1)
			go func() {
				resp, err := c.Get("https://" + testHost + "/alice/events")
				if err != nil {
					done <- result{err: err}
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				done <- result{resp.StatusCode, string(b), err}
			}()
			select {
			case <-arrived:
			case <-time.After(5 * time.Second):
				t.Fatal("request never reached the upstream")
			}

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			if err := tf.f.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			took := time.Since(start)
			// Shutdown returns only once the front's connection is idle, that
			// is after the upstream answered and the answer was relayed.
			if !upstreamFinished.Load() {
				t.Errorf("Shutdown returned after %v, before the in-flight request finished", took)
			}
			if took > 3*time.Second {
				t.Errorf("Shutdown took %v", took)
			}

			select {
			case r := <-done:
				if r.err != nil || r.status != http.StatusOK || r.body != "slow and done" {
					t.Errorf("in-flight request: status %d body %q err %v; want 200 \"slow and done\"", r.status, r.body, r.err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("in-flight request never completed")
			}
			if err := tf.waitServe(t); err != nil {
				t.Errorf("Serve returned %v, want nil", err)
			}
			wantRefused(t, tf.addr)
			if countLines(tf.logs.String(), "drain timed out") != 0 {
				t.Errorf("a clean drain was logged as timed out:\n%s", tf.logs.String())
			}
		})
	}
}

func TestShutdownExpiredContext(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		api, hfs := newEchoUpstream(t, "api"), newEchoUpstream(t, "hfs")
		tf := startFront(t, frontSetup{API: api.URL, HFS: hfs.URL, GetCertificate: getPKI(t).store.GetCertificate})
		// One finished keep-alive request leaves an idle connection behind.
		c := httpsClient(t, tf.addr, false, nil)
		doEcho(t, c, http.MethodGet, "https://"+testHost+"/alice/events", nil, nil)

		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		if err := tf.f.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("Shutdown with an expired context took %v", took)
		}
		if err := tf.waitServe(t); err != nil {
			t.Errorf("Serve returned %v, want nil", err)
		}
		wantRefused(t, tf.addr)
	})

	for _, h2 := range []bool{true, false} {
		t.Run("in-flight-"+protoName(h2), func(t *testing.T) {
			arrived := make(chan struct{}, 1)
			upstreamEnded := make(chan error, 1)
			stuck := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				arrived <- struct{}{}
				select {
				case <-r.Context().Done():
					upstreamEnded <- r.Context().Err()
				case <-time.After(10 * time.Second):
					upstreamEnded <- errors.New("never cancelled")
				}
			}))
			hfs := newEchoUpstream(t, "hfs")
			tf := startFront(t, frontSetup{API: stuck.URL, HFS: hfs.URL, GetCertificate: getPKI(t).store.GetCertificate})
			c := httpsClient(t, tf.addr, h2, nil)

			clientErr := make(chan error, 1)
			go func() {
				resp, err := c.Get("https://" + testHost + "/alice/events")
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil {
						err = errors.New("got a complete response: " + resp.Status)
					}
				}
				clientErr <- err
			}()
			select {
			case <-arrived:
			case <-time.After(5 * time.Second):
				t.Fatal("request never reached the upstream")
			}

			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			start := time.Now()
			if err := tf.f.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("Shutdown with an expired context took %v", took)
			}
			if err := tf.waitServe(t); err != nil {
				t.Errorf("Serve returned %v, want nil", err)
			}
			wantRefused(t, tf.addr)

			// The in-flight connection was closed: the client sees an error,
			// and the cancellation reaches the upstream.
			select {
			case err := <-clientErr:
				if err == nil {
					t.Error("client request succeeded")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("client request still hanging after Shutdown")
			}
			select {
			case err := <-upstreamEnded:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("upstream request: %v", err)
				}
			case <-time.After(11 * time.Second):
				t.Fatal("upstream handler never ended")
			}
			if countLines(tf.logs.String(), "drain timed out") != 1 {
				t.Errorf("want one \"drain timed out\" warning:\n%s", tf.logs.String())
			}
		})
	}
}

// TestShutdownBeforeServe: a Shutdown that wins the race against the Serve
// goroutine (a daemon stopped right after starting) still makes Serve return
// nil and releases the port.
func TestShutdownBeforeServe(t *testing.T) {
	f, err := New(Options{
		Addr:           "127.0.0.1:0",
		GetCertificate: getPKI(t).store.GetCertificate,
		API:            mustURL(t, "http://"+deadAddr(t)),
		HFS:            mustURL(t, "http://"+deadAddr(t)),
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Listen(); err != nil {
		t.Fatal(err)
	}
	addr := f.Addr().String()
	if err := f.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- f.Serve() }()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve after Shutdown returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve after Shutdown did not return")
	}
	wantRefused(t, addr)
}

func TestListenTakenPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := New(Options{
		Addr: ln.Addr().String(),
		API:  mustURL(t, "http://127.0.0.1:3000"),
		HFS:  mustURL(t, "http://127.0.0.1:4000"),
	})
	if err != nil {
		t.Fatal(err)
	}
	err = f.Listen()
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("Listen on a taken port: %v; want an error naming %s", err, ln.Addr())
	}
}

func TestNewRequiresUpstreams(t *testing.T) {
	u := mustURL(t, "http://127.0.0.1:3000")
	for _, o := range []Options{{API: u}, {HFS: u}, {}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded without both upstreams", o)
		}
	}
}
