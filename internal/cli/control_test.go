package cli

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/config"
)

// A core that answers 503 (PlatformDB between leaders) gets an idempotent
// request again, a bounded number of times; a POST is sent once.
func TestControlClientRetriesUnavailable(t *testing.T) {
	old := unavailableRetries
	unavailableRetries = []time.Duration{time.Millisecond, time.Millisecond}
	t.Cleanup(func() { unavailableRetries = old })

	var failFirst atomic.Int64 // answers 503 to this many requests, then 200
	var calls atomic.Int64
	sock := filepath.Join(t.TempDir(), "c.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if failFirst.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"id":"unexpected-error","message":"writing the user: platformdb unavailable"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	cfg := &config.Config{}
	cfg.Control.Socket = sock
	c := &controlClient{cfg: cfg, http: admin.SocketClient(sock)}

	for _, tc := range []struct {
		method    string
		fail      int64
		wantCalls int64
		wantErr   bool
	}{
		{http.MethodPut, 1, 2, false},   // one election: ridden through
		{http.MethodGet, 2, 3, false},   // two: still within the retries
		{http.MethodDelete, 5, 3, true}, // longer: the error stands, after 3 tries
		{http.MethodPost, 1, 1, true},   // not idempotent: never sent twice
		{http.MethodPut, 0, 1, false},   // fine at once
	} {
		failFirst.Store(tc.fail)
		calls.Store(0)
		var into struct{ OK bool }
		err := c.do(tc.method, "/users/alice", map[string]string{"core": "core1"}, &into)
		if got := calls.Load(); got != tc.wantCalls {
			t.Errorf("%s failing %d times: %d requests, want %d", tc.method, tc.fail, got, tc.wantCalls)
		}
		if tc.wantErr {
			if err == nil || !strings.Contains(err.Error(), "platformdb unavailable") {
				t.Errorf("%s failing %d times: error %v, want the core's message", tc.method, tc.fail, err)
			}
		} else if err != nil || !into.OK {
			t.Errorf("%s failing %d times: %v (ok %v)", tc.method, tc.fail, err, into.OK)
		}
	}
}

// waitConfig is a configuration with PlatformDB on (so serve would open
// the socket) and the socket at sock.
func waitConfig(sock string) *config.Config {
	cfg := &config.Config{}
	cfg.Control.Socket = sock
	cfg.DNS.Active = true
	return cfg
}

// A command started before the core waits: no socket file, then a socket
// answering 503 starting (to a POST too: the request was not looked at),
// then the API; one line on stderr says so.
func TestControlClientWaitsForStartingCore(t *testing.T) {
	oldPoll := startingPoll
	startingPoll = 10 * time.Millisecond
	t.Cleanup(func() { startingPoll = oldPoll })

	sock := filepath.Join(t.TempDir(), "c.sock")
	var calls, posted atomic.Int64
	var starting atomic.Bool
	starting.Store(true)
	go func() {
		time.Sleep(150 * time.Millisecond) // the socket file is not there yet meanwhile
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Error(err)
			return
		}
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			if starting.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(`{"error":{"id":"starting","message":"the core is starting (starting: opening PlatformDB); try again in a moment"}}`))
				return
			}
			posted.Add(1)
			_, _ = w.Write([]byte(`{"ok":true}`))
		})}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		time.Sleep(150 * time.Millisecond)
		starting.Store(false)
	}()
	var stderr strings.Builder
	c := newControlClient(waitConfig(sock), 10*time.Second, &stderr)
	start := time.Now()
	var into struct{ OK bool }
	if err := c.do(http.MethodPost, "/certs", map[string]string{}, &into); err != nil || !into.OK {
		t.Fatalf("do: %v (ok %v)", err, into.OK)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("answered after %s, before the core was up", d)
	}
	if calls.Load() < 2 || posted.Load() != 1 {
		t.Fatalf("%d requests, %d past start-up; want several and 1", calls.Load(), posted.Load())
	}
	if got := stderr.String(); got != "waiting for the core to start (up to 10s)...\n" {
		t.Fatalf("stderr %q, want one waiting line", got)
	}
}

// The bound: --wait 0 fails at once, a short wait fails after it, saying
// how long it waited; a configuration without PlatformDB (no socket ever)
// and a socket that refuses this user are not waited for.
func TestControlClientWaitBound(t *testing.T) {
	oldPoll := startingPoll
	startingPoll = 10 * time.Millisecond
	t.Cleanup(func() { startingPoll = oldPoll })
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.sock")

	startingSock := filepath.Join(dir, "starting.sock")
	ln, err := net.Listen("unix", startingSock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":{"id":"starting","message":"the core is starting (starting: opening PlatformDB); try again in a moment"}}`))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	// A socket whose peer hangs up at once, as the peer-uid check does.
	rudeSock := filepath.Join(dir, "rude.sock")
	rude, err := net.Listen("unix", rudeSock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rude.Close() })
	go func() {
		for {
			c, err := rude.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	noDB := &config.Config{}
	noDB.Control.Socket = missing

	for _, tc := range []struct {
		name     string
		cfg      *config.Config
		wait     time.Duration
		min, max time.Duration
		want     []string
		line     bool
	}{
		{"no socket, --wait 0", waitConfig(missing), 0, 0, time.Second,
			[]string{"cannot reach the running core through its control socket " + missing + " (is"}, false},
		{"no socket, --wait 300ms", waitConfig(missing), 300 * time.Millisecond, 300 * time.Millisecond, 3 * time.Second,
			[]string{"cannot reach the running core through its control socket " + missing + " after waiting 300ms"}, true},
		{"starting, --wait 0", waitConfig(startingSock), 0, 0, time.Second,
			[]string{"the core is starting (starting: opening PlatformDB)"}, false},
		{"starting, --wait 300ms", waitConfig(startingSock), 300 * time.Millisecond, 300 * time.Millisecond, 3 * time.Second,
			[]string{"after waiting 300ms: the core is starting (starting: opening PlatformDB)", "raise --wait"}, true},
		{"no PlatformDB in the configuration", noDB, 10 * time.Second, 0, time.Second,
			[]string{"this configuration runs no PlatformDB"}, false},
		{"refused by the peer check", waitConfig(rudeSock), 10 * time.Second, 0, time.Second,
			[]string{"cannot reach the running core through its control socket " + rudeSock + " (is"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr strings.Builder
			c := newControlClient(tc.cfg, tc.wait, &stderr)
			start := time.Now()
			err := c.do(http.MethodGet, "/status", nil, &struct{}{})
			d := time.Since(start)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if d < tc.min || d > tc.max {
				t.Errorf("failed after %s, want within [%s, %s]", d, tc.min, tc.max)
			}
			if got := stderr.String() != ""; got != tc.line {
				t.Errorf("waiting line printed %t, want %t (%q)", got, tc.line, stderr.String())
			}
		})
	}
}
