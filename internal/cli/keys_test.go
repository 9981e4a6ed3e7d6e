package cli

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/certstore"
)

// TestKeysRotateCommand: the report is printed by row name, a row left
// under an unknown key makes the command fail naming it, and a core without
// the route gets a clear error.
func TestKeysRotateCommand(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "c.sock")
	cfgFile := filepath.Join(dir, "cfg.yml")
	if err := os.WriteFile(cfgFile, []byte("control:\n  socket: "+sock+"\nletsEncrypt:\n  atRestKey: GC7BAkJ0lsqe50IsM8rBvtLQkR9AREmjVfRO5MmdLVM=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var answer certstore.ResealReport
	var older atomic.Bool // answer as a core without the route
	mux := http.NewServeMux()
	mux.HandleFunc("POST /keys/rotate", func(w http.ResponseWriter, r *http.Request) {
		if older.Load() {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(answer)
	})
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })

	for _, tc := range []struct {
		name     string
		answer   certstore.ResealReport
		path     string
		code     int
		out, err string
	}{
		{"resealed", certstore.ResealReport{Resealed: []string{"tls-cert/a.example.com", "acme-account/0123"}, Current: 1, Left: []certstore.RowFailure{}}, "",
			exitOK, "resealed tls-cert/a.example.com\nresealed acme-account/0123\n2 row(s) resealed under the current atRestKey, 1 already were, 0 left\nevery sealed row opens with letsEncrypt.atRestKey alone", ""},
		{"left", certstore.ResealReport{Resealed: []string{}, Current: 2, Left: []certstore.RowFailure{{Row: "tls-cert/x.example.com", Error: "opening tls-cert/x.example.com: the atRestKey differs"}}}, "",
			exitFailed, "left as it is: tls-cert/x.example.com: opening tls-cert/x.example.com: the atRestKey differs\n0 row(s) resealed under the current atRestKey, 2 already were, 1 left\n", "1 row(s) left under a key this core does not have"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer = tc.answer
			var stdout, stderr strings.Builder
			code := Main([]string{"keys", "rotate", "--config", cfgFile, "--wait", "0"}, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.err) {
				t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d with %q and %q", code, stdout.String(), stderr.String(), tc.code, tc.out, tc.err)
			}
			if tc.code != exitOK && strings.Contains(stdout.String(), "can be removed") {
				t.Error("with rows left, the previous key is said removable")
			}
		})
	}

	t.Run("older core", func(t *testing.T) {
		older.Store(true)
		var stdout, stderr strings.Builder
		code := Main([]string{"keys", "rotate", "--config", cfgFile, "--wait", "0"}, &stdout, &stderr)
		if code != exitFailed || !strings.Contains(stderr.String(), "the running core has no /keys/rotate on its control socket") {
			t.Errorf("exit %d, stderr %s", code, stderr.String())
		}
	})
	t.Run("usage", func(t *testing.T) {
		var stdout, stderr strings.Builder
		if code := Main([]string{"keys"}, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "pryv-tls keys rotate --config FILE") {
			t.Errorf("exit %d, stderr %s", code, stderr.String())
		}
	})
}
