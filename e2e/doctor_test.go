package e2e

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// doctorResult is one line of "pryv-tls doctor --json".
type doctorResult struct {
	Check, Status, Detail, Fix string
}

// runDoctor runs doctor --json on the core in dir and returns its exit
// code and results; it must answer within 15 s whatever the cores do.
func runDoctor(t *testing.T, dir string, args ...string) (int, []doctorResult, string) {
	t.Helper()
	start := time.Now()
	out, code := cli(t, dir, append([]string{"doctor", "--json"}, args...)...)
	took := time.Since(start)
	if took > 15*time.Second {
		t.Errorf("doctor took %s", took)
	}
	t.Logf("doctor %v: exit %d in %s", args, code, took.Round(time.Millisecond))
	var rs []doctorResult
	if i := strings.Index(out, "["); i < 0 || json.Unmarshal([]byte(out[i:]), &rs) != nil {
		t.Fatalf("doctor --json (exit %d) printed no JSON list:\n%s", code, out)
	}
	return code, rs, out
}

// byCheck groups results by check.
func byCheck(rs []doctorResult) map[string][]doctorResult {
	m := map[string][]doctorResult{}
	for _, r := range rs {
		m[r.Check] = append(m[r.Check], r)
	}
	return m
}

// TestDoctorClusterOfThree: "pryv-tls doctor" on a real platform — a core
// with the wildcard from Pebble by DNS-01, CAA bound to Pebble's account,
// DNSSEC on — passes alone (the public resolvers unreachable from here are
// a warning, answered within the bound), passes once two more cores have
// joined (every per-core check for all three), and names core3's DNS and
// PlatformDB member when core3 is killed.
func TestDoctorClusterOfThree(t *testing.T) {
	cl := startCluster(t, clusterOptions{dns: true, dnsExtra: "dnssec: true, userLookup: {source: 'off'}", acme: true, profile: "shortlived",
		joinerConfig: []string{"dns: {userLookup: {source: 'off'}}"}})
	domain, ports, dirs, pebble := cl.domain, cl.ports, cl.dirs, cl.pebble
	cfg1, c1 := cl.cfg1, cl.cores["core1"]
	account := regexp.MustCompile(`ACME account registered.* account=(\S+)`).FindStringSubmatch(c1.logs.String())
	if account == nil {
		t.Fatalf("no account registration in the logs:\n%s", c1.logs.String())
	}

	// 1. One core. The CAA records follow the account a moment after the
	// issuance: wait for doctor to see them.
	var rs []doctorResult
	var code int
	var out string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		code, rs, out = runDoctor(t, dirs["core1"], "--config", cfg1, "--public")
		if code == 0 || time.Now().After(deadline) {
			break
		}
	}
	if code != 0 {
		t.Fatalf("doctor on a healthy single core: exit %d\n%s\n%s", code, out, c1.logs.String())
	}
	checks := byCheck(rs)
	for _, want := range []struct{ check, status, detail string }{
		{"dns", "pass", "core core1 (127.0.0.1): answers " + domain + " authoritatively"},
		{"ns", "pass", "NS core." + domain + ". resolve to the cores' addresses"},
		{"caa", "pass", `CAA issue "pebble.letsencrypt.org; accounturi=` + strings.Trim(account[1], `"`) + `; validationmethods=dns-01"`},
		{"caa", "pass", "CAA issuewild"},
		{"dnssec", "pass", "core core1 (127.0.0.1): DNSKEY"},
		{"http-01 port", "skip", "no planned name is validated by HTTP-01"},
		{"tls-alpn-01", "skip", "no planned name is validated by TLS-ALPN-01"},
		// Pebble's root is not this machine's: a real certificate, warned.
		{"tls", "warn", "core core1 (127.0.0.1): the certificate for " + domain},
		{"clock", "pass", "core core1 (127.0.0.1): clock within"},
		{"platformdb", "pass", "PlatformDB: 1 of 1 members healthy, this core leads"},
		{"acme directory", "pass", "ACME directory " + pebble.DirectoryURL + " answers (CAA identities: pebble.letsencrypt.org)"},
		{"public dns", "warn", "public resolver 8.8.8.8:53 unreachable from here"},
	} {
		found := false
		for _, r := range checks[want.check] {
			found = found || r.Status == want.status && strings.Contains(r.Detail, want.detail)
		}
		if !found {
			t.Errorf("single core: no %s %s with %q:\n%s", want.check, want.status, want.detail, out)
		}
	}

	// 2. Three cores, made as an operator makes them.
	cl.join()
	joined, override1 := cl.cores, cl.override1
	doctorArgs := []string{"--config", cfg1, "--config", override1}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		code, rs, out = runDoctor(t, dirs["core1"], doctorArgs...)
		if code == 0 && len(byCheck(rs)["dns"]) == 3 || time.Now().After(deadline) {
			break
		}
	}
	if code != 0 {
		t.Fatalf("doctor on a healthy cluster of three: exit %d\n%s", code, out)
	}
	checks = byCheck(rs)
	for _, c := range []string{"dns", "dnssec", "tls", "clock"} {
		for _, id := range []string{"core1 (127.0.0.1)", "core2 (127.0.0.2)", "core3 (127.0.0.3)"} {
			found := false
			for _, r := range checks[c] {
				found = found || r.Status != "fail" && r.Status != "skip" && strings.Contains(r.Detail, "core "+id)
			}
			if !found {
				t.Errorf("cluster: %s has no result for core %s:\n%s", c, id, out)
			}
		}
	}
	if p := checks["platformdb"]; len(p) != 1 || !strings.Contains(p[0].Detail, "3 of 3 members healthy") {
		t.Errorf("cluster: platformdb %+v", p)
	}

	// 3. core3 dies: doctor fails and names its DNS and its member.
	joined["core3"].kill9()
	wantDNS := fmt.Sprintf("core core3 (127.0.0.3): its DNS at 127.0.0.3:%d", ports.dns)
	var text string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		start := time.Now()
		text, code = cli(t, dirs["core1"], append([]string{"doctor"}, doctorArgs...)...)
		t.Logf("doctor with core3 killed: exit %d in %s", code, time.Since(start).Round(time.Millisecond))
		if code == 1 && strings.Contains(text, wantDNS) && strings.Contains(text, "PlatformDB members down: core3") || time.Now().After(deadline) {
			break
		}
	}
	if code != 1 || !strings.Contains(text, wantDNS) || !strings.Contains(text, "PlatformDB members down: core3 (2 of 3 answer)") {
		t.Fatalf("doctor with core3 killed: exit %d, want 1 naming core3's DNS and member:\n%s", code, text)
	}
	for _, want := range []string{"Fails (", "fix: start pryv-tls on core3", "check(s) fail."} {
		if !strings.Contains(text, want) {
			t.Errorf("doctor's text output lacks %q:\n%s", want, text)
		}
	}
	t.Logf("doctor with core3 killed:\n%s", text)
}
