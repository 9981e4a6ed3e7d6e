package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/acme/pebbledev"
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
	const domain = "mc.example.com"
	ports := clusterPorts{freeUDPTCPPort(t), freeUDPTCPPort(t), freePort(t), freePort(t), freePort(t)}
	pebble := acmetest.Start(t, acmetest.Options{Options: pebbledev.Options{DNSServer: fmt.Sprintf("127.0.0.1:%d", ports.dns)}})
	root := t.TempDir()
	dirs := map[string]string{}
	for _, id := range []string{"core1", "core2", "core3"} {
		dirs[id] = filepath.Join(root, id)
		if err := os.MkdirAll(dirs[id], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	key := strings.TrimSpace(mustOut(t, binary, "keygen"))
	cfg1 := filepath.Join(dirs["core1"], "default-config.yml")
	writeFile(t, cfg1, yamlConfig(
		"http: {ip: 127.0.0.1, port: "+itoa(ports.front)+"}",
		"core: {id: core1, ip: 127.0.0.1, url: 'https://core1."+domain+"'}",
		"dns: {active: true, domain: "+domain+", ip: 127.0.0.1, port: "+itoa(ports.dns)+", dnssec: true, userLookup: {source: 'off'}}",
		"letsEncrypt:",
		"  enabled: true",
		"  email: ops@"+domain,
		"  atRestKey: '"+key+"'",
		"  certRenewer: true",
		"  directoryUrl: "+pebble.DirectoryURL,
		"  directoryCaFile: "+pebble.CAFile,
		"  http01Port: "+itoa(pebble.HTTPPort),
		"  profile: shortlived",
		"auth: {adminAccessKey: cluster-admin}",
		"platformDB: {peerAddress: '127.0.0.1:"+itoa(ports.peer)+"', clientAddress: '127.0.0.1:"+itoa(ports.client)+"'}",
		"cluster: {ca: {path: "+filepath.Join(dirs["core1"], "ca")+"}, joinPort: "+itoa(ports.join)+"}",
	), 0o600)
	front := func(ip string) string { return fmt.Sprintf("%s:%d", ip, ports.front) }
	roots := pebble.IssuerRoots(t)
	c1 := startCoreIn(t, dirs["core1"], front("127.0.0.1"), "--config", cfg1)
	wildcard := waitWildcard(t, front("127.0.0.1"), "alice."+domain, roots, 90*time.Second, c1)
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
	mustCLI(t, dirs["core1"], "bootstrap", "init-ca-holder", "--config", cfg1)
	override1 := filepath.Join(dirs["core1"], "cluster-config.yml")
	c1.signal(syscall.SIGTERM)
	c1.wait(20 * time.Second)
	c1 = startCoreIn(t, dirs["core1"], front("127.0.0.1"), "--config", cfg1, "--config", override1)
	joined := map[string]*core{}
	for i, id := range []string{"core2", "core3"} {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		bundle := filepath.Join(dirs[id], id+".bundle")
		out := mustCLI(t, dirs["core1"], "bootstrap", "new-core", "--config", cfg1, "--config", override1,
			"--id", id, "--ip", ip, "--url", "https://"+id+"."+domain, "--out", bundle)
		writeFile(t, filepath.Join(dirs[id], "pass"), []byte(passphraseFrom(t, out)+"\n"), 0o600)
		own := filepath.Join(dirs[id], "default-config.yml")
		writeFile(t, own, []byte("dns: {userLookup: {source: 'off'}}\n"), 0o600)
		joined[id] = startCoreIn(t, dirs[id], front(ip), "--config", own, "--bootstrap", bundle,
			"--bootstrap-passphrase-file", filepath.Join(dirs[id], "pass"))
		waitSerialNamed(t, front(ip), "alice."+domain, roots, wildcard, 30*time.Second)
	}
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
