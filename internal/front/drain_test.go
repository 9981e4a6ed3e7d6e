package front

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestShutdownGrace: under a keep-alive load over HTTP/1.1 and HTTP/2, with a
// long request in flight, Shutdown keeps accepting for the grace: no request
// fails before it ends, HTTP/1.1 answers say Connection: close, HTTP/2
// clients are moved to new connections by GOAWAY; then new connections are
// refused while the long request finishes.
func TestShutdownGrace(t *testing.T) {
	const grace = time.Second
	arrived := make(chan struct{}, 1)
	slow := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/alice/slow" {
			arrived <- struct{}{}
			time.Sleep(2500 * time.Millisecond)
		}
		_, _ = io.WriteString(w, "ok")
	}))
	hfs := newEchoUpstream(t, "hfs")
	tf := startFront(t, frontSetup{API: slow.URL, HFS: hfs.URL, GetCertificate: getPKI(t).store.GetCertificate, DrainGrace: grace})

	longDone := make(chan error, 1)
	go func() {
		resp, err := httpsClient(t, tf.addr, true, nil).Get("https://" + testHost + "/alice/slow")
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		longDone <- err
	}()
	<-arrived

	type outcome struct {
		start  time.Time // when the request began, or its new connection was dialled
		err    error
		closed bool // the answer said Connection: close
	}
	var mu sync.Mutex
	var results []outcome
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var drainStart atomic.Int64
	for _, h2 := range []bool{true, false} {
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := httpsClient(t, tf.addr, h2, nil)
				c.Timeout = 3 * time.Second
				for n := 0; n < 5000; n++ { // bounded; stop ends it sooner
					select {
					case <-stop:
						return
					default:
					}
					o := outcome{start: time.Now()}
					// On a loaded machine a request begun inside the grace may
					// dial after it: judge a new connection by its dial.
					var dialled atomic.Int64
					trace := &httptrace.ClientTrace{ConnectStart: func(string, string) { dialled.Store(time.Now().UnixNano()) }}
					req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, "https://"+testHost+"/alice/events", nil)
					resp, err := c.Do(req)
					if d := dialled.Load(); d != 0 {
						o.start = time.Unix(0, d)
					}
					if err == nil {
						_, err = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						o.closed = resp.Close && !h2
					}
					o.err = err
					mu.Lock()
					results = append(results, o)
					mu.Unlock()
					time.Sleep(5 * time.Millisecond)
				}
			}()
		}
	}
	time.Sleep(300 * time.Millisecond) // the load is on
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutdownDone := make(chan error, 1)
	drainStart.Store(time.Now().UnixNano())
	go func() { shutdownDone <- tf.f.Shutdown(ctx) }()
	time.Sleep(grace + 300*time.Millisecond)
	close(stop)
	wg.Wait()

	t0 := time.Unix(0, drainStart.Load())
	var before, during, failedDuring, closedDuring int
	for _, o := range results {
		switch {
		case o.start.Before(t0):
			before++
			if o.err != nil {
				t.Errorf("a request before the drain failed: %v", o.err)
			}
		case o.start.Before(t0.Add(grace - 100*time.Millisecond)):
			during++
			if o.err != nil {
				failedDuring++
				t.Errorf("a request %v into the grace failed: %v", o.start.Sub(t0).Round(time.Millisecond), o.err)
			}
			if o.closed {
				closedDuring++
			}
		}
	}
	if during < 20 || closedDuring == 0 {
		t.Errorf("%d requests in the grace, %d HTTP/1.1 answers with Connection: close; want a load, told to close", during, closedDuring)
	}
	t.Logf("requests: %d before the drain, %d in the grace (%d failed, %d HTTP/1.1 answers with Connection: close)", before, during, failedDuring, closedDuring)

	// The grace is over: new connections are refused; the long request is
	// still under way and finishes.
	wantRefused(t, tf.addr)
	if err := <-longDone; err != nil {
		t.Errorf("the long request in flight: %v", err)
	}
	if err := <-shutdownDone; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if n := countLines(tf.logs.String(), "front stopped accepting connections"); n != 1 {
		t.Errorf("%d 'stopped accepting' lines, want 1", n)
	}
}

// TestShutdownGraceEndsWhenIdle: with no client, Shutdown does not wait for
// the whole grace.
func TestShutdownGraceEndsWhenIdle(t *testing.T) {
	hfs := newEchoUpstream(t, "hfs")
	tf := startFront(t, frontSetup{API: hfs.URL, HFS: hfs.URL, GetCertificate: getPKI(t).store.GetCertificate, DrainGrace: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := tf.f.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > drainQuiet+500*time.Millisecond {
		t.Errorf("an idle front took %v to shut down, want about %v", took, drainQuiet)
	}
	wantRefused(t, tf.addr)
}

// TestDrainHeader: while draining, an answer says Connection: close, except
// an upgrade's (its 101 says Connection: Upgrade); before it, none does.
func TestDrainHeader(t *testing.T) {
	var draining atomic.Bool
	rg := resetGuard{next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), log: slog.New(slog.DiscardHandler), draining: &draining}
	for _, tc := range []struct {
		draining, upgrade bool
		want              string
	}{
		{false, false, ""},
		{true, false, "close"},
		{true, true, ""},
		{false, true, ""},
	} {
		draining.Store(tc.draining)
		req := httptest.NewRequest(http.MethodGet, "https://"+testHost+"/socket.io/", nil)
		if tc.upgrade {
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Connection", "Upgrade")
		}
		w := httptest.NewRecorder()
		rg.ServeHTTP(w, req)
		if got := w.Header().Get("Connection"); got != tc.want {
			t.Errorf("draining %v, upgrade %v: Connection %q, want %q", tc.draining, tc.upgrade, got, tc.want)
		}
	}
}
