package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/admin"
)

// TestLifetime runs the binary against Pebble's 120-second profile: a
// certificate judged by its own lifetime (status exits 0 right after
// issuance, 1 only once the renewal is overdue), the failure hooks heard
// once per failure streak with the CA down, whatever the retries, and
// /readyz agreeing with status once the served certificate has expired.
func TestLifetime(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a 120 s certificate to expire")
	}
	pebble := acmetest.Start(t, acmetest.Options{})
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))

	runs := filepath.Join(dir, "failure-runs.log")
	failScript := filepath.Join(dir, "hooks", "alert.sh")
	writeFile(t, failScript, []byte("#!/bin/sh\nprintf '%s|%s\\n' \"$PRYV_CERT_HOSTNAME\" \"$PRYV_CERT_ERROR\" >> "+runs+"\n"), 0o755)
	var mu sync.Mutex
	var posts []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		mu.Lock()
		posts = append(posts, m)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()

	cfg := strategyA(t, dir, port, filepath.Join(dir, "hooks", "none.sh"))
	extra := filepath.Join(dir, "lifetime.yml")
	writeFile(t, extra, yamlConfig(
		"letsEncrypt:",
		"  directoryUrl: "+pebble.DirectoryURL,
		"  directoryCaFile: "+pebble.CAFile,
		fmt.Sprintf("  http01Port: %d", pebble.HTTPPort),
		"  profile: short120s",
		"  onFailureScript: "+failScript,
		"  onFailureWebhook: "+hook.URL+"/hooks/T0KEN",
		"metrics:",
		"  listen: "+metricsAddr,
	), 0o644)
	cfg = append(cfg, "--config", extra)
	c := startCoreIn(t, dir, addr, cfg...)
	roots := pebble.IssuerRoots(t)

	deadline := time.Now().Add(60 * time.Second)
	var issued string
	for {
		s, err := servedSerial(t, addr, host, roots)
		if err == nil {
			issued = s
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate from Pebble within 60s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	status := func() (int, admin.Status, string) {
		t.Helper()
		out, code := cli(t, dir, append(append([]string{"status"}, cfg...), "--json")...)
		var st admin.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		return code, st, out
	}
	cert := func(st admin.Status) admin.CertInfo {
		for _, ci := range st.Certs {
			if ci.Hostname == host {
				return ci
			}
		}
		t.Fatalf("status lists no %s: %+v", host, st.Certs)
		return admin.CertInfo{}
	}
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + metricsAddr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// Right after issuance: a certificate with 2 minutes left is fine (a
	// fixed "7 days" would call it a problem from birth).
	var ci admin.CertInfo
	deadline = time.Now().Add(10 * time.Second)
	for {
		code, st, out := status()
		ci = cert(st)
		if ci.Serial == issued && ci.AttentionAt != nil {
			if code != 0 || ci.NeedsAttention || !ci.Renewed || ci.State != "ok" || len(st.Problems) != 0 {
				t.Fatalf("status right after issuance: exit %d, %+v\n%s", code, ci.Lifetime, out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status does not show the issued certificate: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ci.NextRenewal == nil {
		t.Fatalf("no next renewal in status: %+v", ci)
	}
	life := ci.ExpiresAt.Sub(ci.IssuedAt)
	attentionAt := *ci.AttentionAt
	t.Logf("issued %s: lifetime %v, next renewal %v after issuance, needs attention %v after (ARI window %+v)",
		ci.Serial, life, ci.NextRenewal.Sub(ci.IssuedAt).Round(time.Second), attentionAt.Sub(ci.IssuedAt).Round(time.Second), ci.ARIWindow)
	if code, body := readyz(); code != http.StatusOK || !strings.Contains(body, `"name":"expiry","ok":true`) {
		t.Errorf("readyz after issuance: %d %s", code, body)
	}
	fams, _ := scrapeMetrics(t, "http://"+metricsAddr+"/metrics")
	if v, ok := sample(fams, "pryvtls_acme_renewal_overdue", map[string]string{"hostname": host}); !ok || v != 0 {
		t.Errorf("renewal_overdue after issuance = %v (present %v), want 0", v, ok)
	}
	if v, ok := sample(fams, "pryvtls_acme_next_renewal_timestamp_seconds", map[string]string{"hostname": host}); !ok || int64(v) != ci.NextRenewal.Unix() {
		t.Errorf("next_renewal_timestamp = %v (present %v), want %d", v, ok, ci.NextRenewal.Unix())
	}

	// The CA goes away: the renewal at its point fails, the hooks hear of
	// it once; forced retries are more failures of the same streak.
	pebble.Stop()
	readRuns := func() []string {
		b, _ := os.ReadFile(runs)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	deadline = ci.NextRenewal.Add(30 * time.Second)
	for {
		if b, _ := os.ReadFile(runs); len(b) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("onFailureScript did not run by 30 s after the renewal point:\n%s", c.logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	firstFailure := time.Now()
	t.Logf("first failure heard %v after the renewal point", firstFailure.Sub(*ci.NextRenewal).Round(100*time.Millisecond))
	// A forced retry past the backoff (one per name per minute is allowed):
	// a second failure of the same streak.
	sock := admin.SocketClient(filepath.Join(dir, "var-pryv/run/pryv-tls.sock"))
	resp, err := sock.Post("http://pryv-tls/certs/force-renew?ignoreBackoff=true", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "connection refused") {
		t.Errorf("forced renewal with the CA down: %d %s, want 400 with the order's error", resp.StatusCode, b)
	}
	if firstFailure.Before(attentionAt.Add(-3 * time.Second)) {
		// Failing, retried, not overdue yet: a warning, exit 0.
		code, st, out := status()
		if code != 0 || len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "renewal of "+host+" failed at") {
			t.Errorf("status between the failure and the deadline: exit %d\n%s", code, out)
		}
	}

	// Past the deadline: the renewal is overdue, status exits 1.
	time.Sleep(time.Until(attentionAt) + 500*time.Millisecond)
	code, st, out := status()
	ci = cert(st)
	if code != 1 || ci.State != "overdue" || !strings.Contains(strings.Join(st.Problems, "\n"), "certificate "+host+": its renewal is overdue") {
		t.Errorf("status past the deadline: exit %d, want 1 with the overdue renewal\n%s", code, out)
	}
	if ci.Failures < 2 {
		t.Errorf("failures = %d after the scheduled try and a forced one, want at least 2", ci.Failures)
	}
	fams, _ = scrapeMetrics(t, "http://"+metricsAddr+"/metrics")
	if v, _ := sample(fams, "pryvtls_acme_renewal_overdue", map[string]string{"hostname": host}); v != 1 {
		t.Errorf("renewal_overdue past the deadline = %v, want 1", v)
	}
	if code, _ := readyz(); code != http.StatusOK {
		t.Errorf("readyz with a certificate still valid: %d, want 200 (overdue is for status, not for taking traffic)", code)
	}

	// Expired: /readyz and status both say so.
	time.Sleep(time.Until(ci.ExpiresAt) + time.Second)
	rcode, body := readyz()
	code, st, out = status()
	if rcode != http.StatusServiceUnavailable || !strings.Contains(body, "serving an expired certificate for "+host) {
		t.Errorf("readyz once expired: %d %s", rcode, body)
	}
	if code != 1 || cert(st).State != "expired" || !strings.Contains(strings.Join(st.Problems, "\n"), "certificate "+host+" expired on") {
		t.Errorf("status once expired: exit %d\n%s", code, out)
	}

	// One failure streak, one run of each hook, however many retries.
	got := readRuns()
	mu.Lock()
	hooks := append([]map[string]any(nil), posts...)
	mu.Unlock()
	t.Logf("failures in the streak: %d; onFailureScript runs: %d; webhook posts: %d", cert(st).Failures, len(got), len(hooks))
	if len(got) != 1 || !strings.HasPrefix(got[0], host+"|") || !strings.Contains(got[0], "connection refused") {
		t.Errorf("onFailureScript runs: %q, want one naming %s and the error", got, host)
	}
	if len(hooks) != 1 || hooks[0]["hostname"] != host || hooks[0]["error"] == "" || hooks[0]["problem"] != nil || hooks[0]["at"] == nil {
		t.Errorf("webhook posts: %v, want one {hostname, error, problem: null, at}", hooks)
	}
	fams, scraped := scrapeMetrics(t, "http://"+metricsAddr+"/metrics")
	for _, h := range []string{"script", "webhook"} {
		if v, _ := sample(fams, "pryvtls_failure_hook_runs_total", map[string]string{"hook": h, "result": "ok"}); v != 1 {
			t.Errorf("failure_hook_runs_total{hook=%s,result=ok} = %v, want 1", h, v)
		}
	}
	if v, _ := sample(fams, "pryvtls_acme_consecutive_failures", map[string]string{"hostname": host}); v < 2 {
		t.Errorf("consecutive_failures = %v, want at least 2", v)
	}
	if strings.Contains(scraped, "T0KEN") || strings.Contains(c.logs.String(), "T0KEN") {
		t.Error("the webhook's token is in the log or the metrics")
	}
}

// TestStatusQuorumLost: status on a core of a 3-core cluster whose two
// other cores were killed (its PlatformDB member has no quorum) answers
// within its bounds, naming what did not answer, instead of waiting for
// etcd (issue 18: "status hangs (> 10 s) on a partitioned core").
func TestStatusQuorumLost(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-core cluster")
	}
	needRoot(t)
	fc := startFaultCluster(t)
	status := func() (int, admin.Status, time.Duration) {
		t.Helper()
		start := time.Now()
		out, code := cli(t, fc.dirs[0], append(append([]string{"status"}, fc.args[0]...), "--json")...)
		took := time.Since(start)
		var st admin.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json (exit %d, %v): %v\n%s", code, took, err, out)
		}
		return code, st, took
	}
	code, st, took := status()
	t.Logf("status with quorum: exit %d in %v", code, took.Round(time.Millisecond))
	if len(st.Unreachable) != 0 {
		t.Fatalf("unreachable with quorum: %q (%q)", st.Unreachable, st.Problems)
	}

	fc.cores[1].kill9()
	fc.cores[2].kill9()
	// Past the cached health (5 s) and etcd noticing its peers are gone.
	time.Sleep(6 * time.Second)
	for i := range 3 {
		code, st, took = status()
		// Bounded without a clock here: the CLI gives up after its own
		// timeout (5 s) and prints no JSON, so a JSON answer is one in time.
		t.Logf("status without quorum #%d: exit %d in %v, unreachable %q", i+1, code, took.Round(time.Millisecond), st.Unreachable)
		if code != 1 || !slices.Contains(st.Unreachable, "the certificates") {
			t.Errorf("exit %d, unreachable %q, problems %q; want 1 naming the certificates unreachable", code, st.Unreachable, st.Problems)
		}
		if st.Core.ID != "core1" || st.Core.PlatformDB.Up {
			t.Errorf("this core's own part: %+v", st.Core)
		}
	}
	// The front still serves its last certificate meanwhile.
	if _, err := servedSerial(t, fc.front(0), faultHost, fc.p.roots); err != nil {
		t.Errorf("core1 stopped serving without quorum: %v", err)
	}
}
