package cli

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme"
	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/certstore"
)

// fakeRenewer answers ForceRenew as the renewer does: a record, a refusal
// that says when to come back, or an order slower than the client waits.
type fakeRenewer struct {
	mu     sync.Mutex
	calls  []string // hostname, "+ignore" when asked to ignore the backoff
	answer func(hostname string) (*certstore.Record, error)
}

func (f *fakeRenewer) ForceRenew(_ context.Context, hostname string, ignore bool) (*certstore.Record, error) {
	f.mu.Lock()
	call := hostname
	if ignore {
		call += "+ignore"
	}
	f.calls = append(f.calls, call)
	f.mu.Unlock()
	return f.answer(hostname)
}

// certs force-renew goes through the real admin handler on a unix socket:
// the new certificate's end printed, the rate limit's message carried as
// the core wrote it, and an order outliving --timeout said to go on.
func TestCertsForceRenew(t *testing.T) {
	expires := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	r := &fakeRenewer{}
	sock := filepath.Join(t.TempDir(), "c.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	api := &admin.API{Renewer: r, Logger: slog.New(slog.DiscardHandler)}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: api.Local()}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	cfgFile := filepath.Join(t.TempDir(), "c.yml")
	if err := os.WriteFile(cfgFile, []byte("control:\n  socket: "+sock+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		args     []string
		answer   func(string) (*certstore.Record, error)
		wantCode int
		wantOut  string
		wantCall string
	}{
		{"renewed", []string{"your-domain.com"}, func(h string) (*certstore.Record, error) {
			return &certstore.Record{Hostname: h, ExpiresAt: expires}, nil
		}, exitOK, "renewed your-domain.com: new certificate valid until 2027-03-01T12:00:00Z", "your-domain.com"},
		{"primary by default", nil, func(string) (*certstore.Record, error) {
			return &certstore.Record{Hostname: "*.mc.example.com", ExpiresAt: expires}, nil
		}, exitOK, "renewed *.mc.example.com", ""},
		{"rate limited", []string{"--ignore-backoff", "your-domain.com"}, func(h string) (*certstore.Record, error) {
			return nil, &acme.RetryError{Hostname: h, At: time.Now().Add(40 * time.Second), Reason: "one forced renewal per name per minute"}
		}, exitFailed, "your-domain.com: one forced renewal per name per minute; try again after", "your-domain.com+ignore"},
		{"order outlives the wait", []string{"--timeout", "200ms", "your-domain.com"}, func(h string) (*certstore.Record, error) {
			time.Sleep(time.Second)
			return &certstore.Record{Hostname: h, ExpiresAt: expires}, nil
		}, exitFailed, "no result within 200ms; the order goes on in the core", "your-domain.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.mu.Lock()
			r.calls, r.answer = nil, tc.answer
			r.mu.Unlock()
			var stdout, stderr bytes.Buffer
			args := append([]string{"force-renew", "--config", cfgFile, "--wait", "0"}, tc.args...)
			code := certsCmd(args, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) {
				t.Fatalf("exit %d, output %q; want exit %d with %q", code, out, tc.wantCode, tc.wantOut)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			if len(r.calls) != 1 || r.calls[0] != tc.wantCall {
				t.Fatalf("renewer asked %q, want once %q", r.calls, tc.wantCall)
			}
		})
	}
}
