package cli

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/admin"
)

// fakeCore answers GET /status on a unix socket with *st and returns a
// configuration file pointing at it.
func fakeCore(t *testing.T, st *admin.Status) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ptls") // a socket path must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "c.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	cfg := filepath.Join(dir, "c.yml")
	if err := os.WriteFile(cfg, []byte("control:\n  socket: "+sock+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestStatusCommand(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	next := now.Add(59 * 24 * time.Hour)
	st := &admin.Status{
		Time: now,
		Core: admin.Self{ID: "core1", Renewer: true, PlatformDB: admin.MemberState{Up: true, Leader: true}, TLS: true},
		Cores: []admin.CoreStatus{
			{ID: "core1", URL: "https://core1.mc.example.com", Available: true, Member: true, Healthy: true, UserCount: 2},
			{ID: "core2", Available: true, Member: true, Healthy: true},
		},
		Certs: []admin.CertInfo{{Hostname: "your-domain.com", ExpiresAt: now.Add(89 * 24 * time.Hour), DaysUntilExpiry: 89,
			Source: "acme", NextRenewal: &next, Lifetime: admin.Lifetime{Renewed: true, State: "ok"}}},
		NextRenewal: &admin.RenewalEvent{Hostname: "your-domain.com", At: next},
		Problems:    []string{},
	}
	cfg := fakeCore(t, st)
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := Main(append([]string{"status", "--config", cfg}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}

	t.Run("healthy", func(t *testing.T) {
		code, out, errOut := run()
		if code != 0 || errOut != "" {
			t.Fatalf("exit %d, stderr %q\n%s", code, errOut, out)
		}
		for _, want := range []string{"This core: core1 (renewer, not the CA holder); PlatformDB up (leader)",
			"core2", "your-domain.com  89", "2027-01-25 12:00", "Next renewal: your-domain.com at 2027-01-25 12:00 UTC (59 days from now)",
			"Last error:   none", "All fine."} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "\x1b[") {
			t.Errorf("colour codes in output that is not a terminal:\n%q", out)
		}
		t.Logf("\n%s", out)
	})

	t.Run("json", func(t *testing.T) {
		code, out, _ := run("--json")
		var got admin.Status
		if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Core.ID != "core1" || len(got.Certs) != 1 {
			t.Fatalf("exit %d\n%s", code, out)
		}
	})

	t.Run("needs attention", func(t *testing.T) {
		failed := now.Add(-time.Hour)
		st.Certs = append(st.Certs, admin.CertInfo{Hostname: "soon.example.com", ExpiresAt: now.Add(3 * 24 * time.Hour), DaysUntilExpiry: 3,
			Source: "import", LastError: "too many certificates (rateLimited)", LastErrorAt: &failed,
			Lifetime: admin.Lifetime{State: "expiring", NeedsAttention: true, Problem: &admin.Problem{Type: "urn:ietf:params:acme:error:compound",
				Detail: "two names failed", Status: 403, Subproblems: []admin.Subproblem{
					{Type: "urn:ietf:params:acme:error:caa", Detail: "CAA record forbids issuance", Identifier: "soon.example.com"}}}}})
		st.LastError = &admin.RenewalEvent{Hostname: "soon.example.com", At: failed, Error: "too many certificates (rateLimited)"}
		st.Cores[1].Healthy = false
		st.Problems = []string{"certificate soon.example.com expires in 3 day(s)", "core core2 is down"}
		code, out, _ := run("--no-color")
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s", code, out)
		}
		for _, want := range []string{"core2  DOWN", "soon.example.com  3", "EXPIRING", "failed 2026-11-27 11:00",
			"Last error:   soon.example.com at 2026-11-27 11:00 UTC (60 minutes ago): too many certificates (rateLimited)",
			"Needs attention (2):", "  - core core2 is down",
			"              CA problem: urn:ietf:params:acme:error:compound (HTTP 403)\n                soon.example.com: caa: CAA record forbids issuance\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if code, out, _ := run("--json"); code != 1 || !strings.Contains(out, `"problems": [`) {
			t.Errorf("--json: exit %d\n%s", code, out)
		}
		t.Logf("\n%s", out)
	})

	t.Run("colours", func(t *testing.T) {
		var buf bytes.Buffer
		printStatus(&buf, *st, true)
		out := buf.String()
		for _, want := range []string{ansiGreen + "  your-domain.com", ansiRed + "  soon.example.com", ansiRed + "  core2"} {
			if !strings.Contains(out, want) {
				t.Errorf("coloured output lacks %q:\n%q", want, out)
			}
		}
		// Coloured rows align like plain ones.
		var plain bytes.Buffer
		printStatus(&plain, *st, false)
		strip := strings.NewReplacer(ansiRed, "", ansiYellow, "", ansiGreen, "", ansiPlain, "", ansiReset, "")
		if strip.Replace(out) != plain.String() {
			t.Errorf("coloured output differs from the plain one once the codes are stripped:\n%s\n---\n%s", strip.Replace(out), plain.String())
		}
	})

	t.Run("a warning alone exits 0", func(t *testing.T) {
		saved := *st
		defer func() { *st = saved }()
		failed := now.Add(-time.Minute)
		st.Certs = []admin.CertInfo{{Hostname: "your-domain.com", ExpiresAt: now.Add(5 * 24 * time.Hour), DaysUntilExpiry: 5,
			Source: "acme", LastError: "connection refused", LastErrorAt: &failed, Lifetime: admin.Lifetime{Renewed: true, State: "due", Failures: 2}}}
		st.Problems, st.Warnings = []string{}, []string{"renewal of your-domain.com failed at 2026-11-27T11:59:00Z (2 times in a row): connection refused; retried"}
		code, out, _ := run("--no-color")
		if code != 0 || !strings.Contains(out, "Worth a look (1):\n  - renewal of your-domain.com failed") || !strings.Contains(out, "All fine.") ||
			!strings.Contains(out, "your-domain.com  5          ") || !strings.Contains(out, " due ") {
			t.Errorf("exit %d, want 0 with the warning listed\n%s", code, out)
		}
		var buf bytes.Buffer
		printStatus(&buf, *st, true)
		if !strings.Contains(buf.String(), ansiYellow+"  your-domain.com") {
			t.Errorf("a failing renewal in time is not yellow:\n%q", buf.String())
		}
	})

	t.Run("parts unreachable", func(t *testing.T) {
		saved := *st
		defer func() { *st = saved }()
		st.Cores, st.Certs, st.NextRenewal, st.LastError = nil, nil, nil, nil
		st.Unreachable = []string{"the cluster's cores", "the certificates"}
		st.Problems = []string{"the certificates did not answer within 2s: PlatformDB is unreachable from this core"}
		code, out, _ := run("--no-color")
		if code != 1 || !strings.Contains(out, "Cores\n  unknown: PlatformDB did not answer\n") ||
			!strings.Contains(out, "Certificates\n  unknown: PlatformDB did not answer") {
			t.Errorf("exit %d\n%s", code, out)
		}
	})

	t.Run("usage and unreachable", func(t *testing.T) {
		if code := Main([]string{"status", "--config", cfg, "extra"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 2 {
			t.Errorf("an operand: exit %d, want 2", code)
		}
		if code := Main([]string{"status"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 2 {
			t.Errorf("no --config: exit %d, want 2", code)
		}
		dir := t.TempDir()
		other := filepath.Join(dir, "o.yml")
		_ = os.WriteFile(other, []byte("control:\n  socket: "+filepath.Join(dir, "none.sock")+"\n"), 0o600)
		var errOut bytes.Buffer
		if code := Main([]string{"status", "--config", other}, &bytes.Buffer{}, &errOut); code != 1 || !strings.Contains(errOut.String(), "cannot reach the running core") {
			t.Errorf("no core: exit %d, %s", code, errOut.String())
		}
	})
}

// A control socket that accepts and never answers: status gives up after
// statusAnswerTimeout and says so, exit 1.
func TestStatusCoreNotAnswering(t *testing.T) {
	dir, err := os.MkdirTemp("", "ptls")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "c.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	asked := make(chan struct{}, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked <- struct{}{}
		<-release // released only when the test ends
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { close(release); _ = srv.Close() })
	cfg := filepath.Join(dir, "c.yml")
	if err := os.WriteFile(cfg, []byte("control:\n  socket: "+sock+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	start := time.Now()
	code := Main([]string{"status", "--config", cfg}, &out, &errOut)
	t.Logf("gave up after %v: %s", time.Since(start).Round(time.Millisecond), errOut.String())
	if code != 1 || !strings.Contains(errOut.String(), "the core did not answer within "+statusAnswerTimeout.String()+" through its control socket "+sock) {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
	// The order of events, not a duration: the request reached the core
	// (the give-up is the wait for its answer, not a failed connection), and
	// status returned while the handler still held it.
	select {
	case <-asked:
	default:
		t.Error("status gave up before its request reached the core")
	}
}
