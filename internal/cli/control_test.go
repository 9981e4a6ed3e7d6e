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
