package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/admin"
)

// TestStandbyRenewsWhenThePreferredIsKilled is issue 14 item 3: a DNS-less
// cluster of three cores (127.0.0.1-3), HTTP-01, Pebble's 120-second
// profile. core1 is the certRenewer; core2 and core3 are standbys. core1
// orders core2's certificate, then is killed with SIGKILL (its leases
// stay until they time out). When that certificate is due, a standby
// finds the preferred renewer gone and renews it — one order, not two —
// and core2's status names the core that renewed and why.
func TestStandbyRenewsWhenThePreferredIsKilled(t *testing.T) {
	cl := startCluster(t, clusterOptions{acme: true, profile: "short120s"})
	dirs, roots := cl.dirs, cl.roots
	front := func(ip string) string { return fmt.Sprintf("%s:%d", ip, cl.ports.front) }
	cl.join()
	cores, c1 := cl.cores, cl.cores["core1"]
	for _, id := range []string{"core2", "core3"} {
		if log := cores[id].logs.String(); !strings.Contains(log, "standby renewer:") {
			t.Fatalf("%s does not say it stands by:\n%s", id, log)
		}
	}
	c2, c3 := cores["core2"], cores["core3"]

	// core1 orders core2's certificate (force-renew: its plan exists once
	// core2 registered its core.url).
	forceRenew(t, filepath.Join(dirs["core1"], "var-pryv/run/pryv-tls.sock"), "core2.example.org", c1)
	issued := waitWildcard(t, front("127.0.0.2"), "core2.example.org", roots, 30*time.Second, c2)
	due := plannedRenewal(t, dirs["core2"], "core2.example.org")

	killed := time.Now()
	c1.signal(syscall.SIGKILL)
	c1.wait(10 * time.Second)
	t.Logf("core1 (preferred renewer) killed; core2.example.org (serial %s) due at %s, in %s", issued, due.Format(time.TimeOnly), time.Until(due).Round(time.Second))

	renewed := waitNewSerial(t, front("127.0.0.2"), "core2.example.org", roots, issued, time.Until(due)+90*time.Second, c2, c3)
	served := time.Now()
	t.Logf("failover: renewed serial %s served %s after the kill (the schedule's renewal point was %s after it; the CA's ARI window may be earlier)",
		renewed, served.Sub(killed).Round(100*time.Millisecond), due.Sub(killed).Round(100*time.Millisecond))

	// One order for that name after the kill, by one standby.
	n2, n3 := countIssued(c2.logs.String(), "core2.example.org"), countIssued(c3.logs.String(), "core2.example.org")
	t.Logf("orders of core2.example.org after the kill: core2 %d, core3 %d", n2, n3)
	if n2+n3 != 1 {
		t.Errorf("core2.example.org issued %d times by the standbys, want once", n2+n3)
	}
	standbyLogs := c2.logs.String() + c3.logs.String()
	if decided, ok := logTime(standbyLogs, "certificate due for renewal", "core2.example.org", "standby"); ok {
		done, _ := logTime(standbyLogs, "certificate issued", "core2.example.org")
		t.Logf("the standby decided %s after the kill (the presence lease is 30 s), its order took %s",
			decided.Sub(killed).Round(100*time.Millisecond), done.Sub(decided).Round(100*time.Millisecond))
		if planned, ok := logAttrTime(standbyLogs, "planned", "certificate due for renewal", "core2.example.org", "standby"); ok {
			t.Logf("failover time: the standby ordered %s after the planned renewal (%s, %s after the kill)",
				decided.Sub(planned).Round(100*time.Millisecond), planned.Format(time.TimeOnly), planned.Sub(killed).Round(100*time.Millisecond))
		}
	} else {
		t.Errorf("no standby logged why it renewed core2.example.org:\n%s", standbyLogs)
	}
	st := statusOf(t, dirs["core2"])
	var by, why string
	for _, c := range st.Certs {
		if c.Hostname == "core2.example.org" {
			by, why = c.RenewedBy, c.RenewedWhy
		}
	}
	if (by != "core2" && by != "core3") || !strings.Contains(why, "the preferred renewer is gone") {
		t.Errorf("status says core2.example.org renewed by %q because %q", by, why)
	}
	t.Logf("status: renewed by %s, %s", by, why)
}

// statusOf is GET /status on dir's control socket.
func statusOf(t *testing.T, dir string) admin.Status {
	t.Helper()
	client := admin.SocketClient(filepath.Join(dir, "var-pryv/run/pryv-tls.sock"))
	client.Timeout = 10 * time.Second
	resp, err := client.Get("http://pryv-tls/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st admin.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// plannedRenewal is hostname's planned renewal as dir's status shows it.
func plannedRenewal(t *testing.T, dir, hostname string) time.Time {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, c := range statusOf(t, dir).Certs {
			if c.Hostname == hostname && c.NextRenewal != nil && c.NextRenewal.After(c.IssuedAt) {
				return *c.NextRenewal
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no planned renewal for %s in %s's status", hostname, dir)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitNewSerial waits for addr to serve name a certificate other than old.
func waitNewSerial(t *testing.T, addr, name string, roots interface{}, old string, d time.Duration, cs ...*core) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if s, err := servedSerial(t, addr, name, rootsOf(roots)); err == nil && s != old {
			return s
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for _, c := range cs {
				logs.WriteString(c.logs.String() + "\n----\n")
			}
			t.Fatalf("%s still serves %s for %s after %s\n%s", addr, old, name, d, logs.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// countIssued counts the renewer's "certificate issued" lines for hostname.
func countIssued(logs, hostname string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "certificate issued") && strings.Contains(line, hostname) {
			n++
		}
	}
	return n
}

// logTime is the time of the first text-log line holding every one of subs.
func logTime(logs string, subs ...string) (time.Time, bool) {
	for _, line := range strings.Split(logs, "\n") {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(line, sub)
		}
		if v, ok := strings.CutPrefix(line, "time="); all && ok {
			if at, err := time.Parse(time.RFC3339Nano, strings.Fields(v)[0]); err == nil {
				return at, true
			}
		}
	}
	return time.Time{}, false
}

// logAttrTime is the time attribute attr of the first text-log line holding subs.
func logAttrTime(logs, attr string, subs ...string) (time.Time, bool) {
	for _, line := range strings.Split(logs, "\n") {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(line, sub)
		}
		if _, v, ok := strings.Cut(line, " "+attr+"="); all && ok {
			if at, err := time.Parse(time.RFC3339Nano, strings.Fields(v)[0]); err == nil {
				return at, true
			}
		}
	}
	return time.Time{}, false
}
