package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/join"
)

// clusterPorts are the ports every core uses, each on its own address.
type clusterPorts struct{ front, dns, peer, client, join int }

// TestClusterOfThree is the README's cluster walkthrough on 127.0.0.1,
// 127.0.0.2 and 127.0.0.3: one core gets the wildcard by DNS-01, becomes the
// CA holder, two cores join with bundles, and everything replicates.
func TestClusterOfThree(t *testing.T) {
	cl := startCluster(t, clusterOptions{dns: true, acme: true, profile: "shortlived"})
	domain, ports, dirs, roots := cl.domain, cl.ports, cl.dirs, cl.roots
	cfg1, override1 := cl.cfg1, cl.override1
	front := func(ip string) string { return fmt.Sprintf("%s:%d", ip, ports.front) }
	root := cl.root

	// 1. A single core with the wildcard, and data written before the conversion.
	mustCLI(t, dirs["core1"], "users", "set-core", "--config", cfg1, "alice", "core1")

	// 2. It becomes the CA holder, live (TestLiveCluster covers the
	// switch itself), then restarts with the override, as its unit would;
	// 3. two cores join with bundles.
	joinStart := time.Now()
	cl.join()
	t.Logf("CA holder and two joins: %s", time.Since(joinStart).Round(time.Millisecond))
	if out := cl.caHolder; !strings.Contains(out, "fingerprint") || !strings.Contains(out, "switched live") {
		t.Fatalf("init-ca-holder: %s", out)
	}
	if out := mustCLI(t, dirs["core1"], "bootstrap", "init-ca-holder", "--config", cfg1); !strings.Contains(out, "already was the CA holder") {
		t.Fatalf("init-ca-holder again (idempotent): %s", out)
	}
	c1, joins := cl.cores["core1"], cl.cores
	for _, ip := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		waitDNS(t, ip, ports.dns, "alice."+domain, "127.0.0.1", 10*time.Second)
	}

	t.Run("cores endpoint", func(t *testing.T) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			var res struct{ Cores []admin.CoreStatus }
			adminGET(t, front("127.0.0.2"), "alice."+domain, roots, admin.OwnPrefix+"/cores", &res)
			healthy := 0
			for _, c := range res.Cores {
				if c.Member && c.Healthy && c.Available {
					healthy++
				}
				if c.ID == "core1" && c.UserCount != 1 {
					t.Fatalf("core1 userCount %d, want 1", c.UserCount)
				}
			}
			if healthy == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cores: %+v, want 3 healthy voting members", res.Cores)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})

	t.Run("rotation reaches every core", func(t *testing.T) {
		p := newPKI(t, root)
		client := admin.SocketClient(filepath.Join(dirs["core1"], "var-pryv/run/pryv-tls.sock"))
		var took []time.Duration
		for i := 0; i < 20; i++ {
			is, err := p.ca.Issue(devpki.Leaf{Names: []string{"*." + domain, domain}})
			if err != nil {
				t.Fatal(err)
			}
			body, _ := json.Marshal(admin.ImportRequest{Hostname: "*." + domain, Chain: string(is.FullChain), Key: string(is.KeyPEM)})
			start := time.Now()
			resp, err := client.Post("http://pryv-tls/certs", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("import: %s", resp.Status)
			}
			for _, ip := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
				waitSerialNamed(t, front(ip), "bob."+domain, p.roots, serial(is), 10*time.Second)
			}
			took = append(took, time.Since(start))
		}
		sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
		t.Logf("write on core1 -> served by all 3 cores, 20 rotations: p50 %s, p99 %s", took[len(took)/2], took[len(took)-1])
	})

	t.Run("join refusals", func(t *testing.T) {
		// A spent token, presented again for another member, at the real
		// join endpoint.
		bundle := filepath.Join(dirs["core2"], "core2.bundle.copy")
		b, err := join.ReadBundle(bundle, filepath.Join(dirs["core2"], "pass"), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		b.PeerURL = fmt.Sprintf("https://127.0.0.4:%d", ports.peer)
		if _, err := join.Call(context.Background(), b); err == nil || !strings.Contains(err.Error(), "already used") {
			t.Errorf("a spent token for another member: %v", err)
		}
		// The same member running its join again is fine (idempotent).
		b.PeerURL = fmt.Sprintf("https://127.0.0.2:%d", ports.peer)
		if _, err := join.Call(context.Background(), b); err != nil {
			t.Errorf("re-running core2's join: %v", err)
		}
		// A certificate from another CA cannot even reach the join endpoint.
		foreign, _ := devpki.NewCA("foreign")
		fl, _ := foreign.Issue(devpki.Leaf{Names: []string{"core2", "127.0.0.2"}})
		b.NodeCert, b.NodeKey = string(fl.FullChain), string(fl.KeyPEM)
		if _, err := join.Call(context.Background(), b); err == nil {
			t.Error("a node certificate from a foreign CA was accepted by the join endpoint")
		}
		other := filepath.Join(root, "other")
		if err := os.MkdirAll(other, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(other, "c.yml"), []byte("# nothing\n"), 0o600)
		// Wrong passphrase.
		writeFile(t, filepath.Join(other, "wrong"), []byte("not the passphrase\n"), 0o600)
		out, code := serveOnce(t, other, "--config", filepath.Join(other, "c.yml"), "--bootstrap", bundle, "--bootstrap-passphrase-file", filepath.Join(other, "wrong"))
		if code == 0 || !strings.Contains(out, "wrong passphrase") {
			t.Errorf("wrong passphrase: %d %s", code, out)
		}
		// Tampered bundle.
		data, _ := os.ReadFile(bundle)
		i := bytes.Index(data, []byte(`"data": "`)) + len(`"data": "`) + 10
		tampered := bytes.Clone(data)
		if tampered[i] == 'A' {
			tampered[i] = 'B'
		} else {
			tampered[i] = 'A'
		}
		writeFile(t, filepath.Join(other, "tampered"), tampered, 0o600)
		out, code = serveOnce(t, other, "--config", filepath.Join(other, "c.yml"), "--bootstrap", filepath.Join(other, "tampered"), "--bootstrap-passphrase-file", filepath.Join(dirs["core2"], "pass"))
		if code == 0 || !strings.Contains(out, "wrong passphrase, or the bundle was modified") {
			t.Errorf("tampered bundle: %d %s", code, out)
		}
		// Expired.
		exp := filepath.Join(other, "expired.bundle")
		out = mustCLI(t, dirs["core1"], "bootstrap", "new-core", "--config", cfg1, "--config", override1,
			"--id", "core9", "--ip", "127.0.0.9", "--out", exp, "--token-ttl", "1ms")
		writeFile(t, filepath.Join(other, "pass9"), []byte(passphraseFrom(t, out)), 0o600)
		time.Sleep(10 * time.Millisecond)
		out, code = serveOnce(t, other, "--config", filepath.Join(other, "c.yml"), "--bootstrap", exp, "--bootstrap-passphrase-file", filepath.Join(other, "pass9"))
		if code == 0 || !strings.Contains(out, "expired") {
			t.Errorf("expired bundle: %d %s", code, out)
		}
		tokens := mustCLI(t, dirs["core1"], "bootstrap", "list-tokens", "--config", cfg1, "--config", override1)
		if !strings.Contains(tokens, "core9") || !strings.Contains(tokens, "used") {
			t.Errorf("list-tokens: %s", tokens)
		}
		mustCLI(t, dirs["core1"], "bootstrap", "revoke-token", "--config", cfg1, "--config", override1, "core9")
	})

	t.Run("the renewer dies: every core keeps serving", func(t *testing.T) {
		c1.signal(syscall.SIGKILL)
		c1.wait(10 * time.Second)
		for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
			if _, err := tlsDialInsecure(front(ip), "alice."+domain); err != nil {
				t.Fatalf("%s after the renewer died: %v", ip, err)
			}
		}
		// Two of three: quorum holds, writes go on (the first one may meet
		// the election of a new leader: the CLI sends it again on 503; the loop
		// is a safety net for a slow election on a loaded machine).
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, code := cli(t, dirs["core2"], "users", "set-core", "--config", filepath.Join(dirs["core2"], "default-config.yml"),
				"--config", filepath.Join(dirs["core2"], "cluster-config.yml"), "carol", "core2")
			if code == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no write accepted 30s after the renewer died: %s", out)
			}
		}
		waitDNS(t, "127.0.0.3", ports.dns, "carol."+domain, "127.0.0.2", 10*time.Second)
	})

	t.Run("quorum lost, then back", func(t *testing.T) {
		joins["core2"].signal(syscall.SIGKILL)
		joins["core2"].wait(10 * time.Second)
		// core3 alone: no quorum, still serving TLS and DNS from what it has.
		if _, err := tlsDialInsecure(front("127.0.0.3"), "alice."+domain); err != nil {
			t.Fatalf("core3 without quorum: %v", err)
		}
		waitDNS(t, "127.0.0.3", ports.dns, "carol."+domain, "127.0.0.2", 5*time.Second)
		// core3 restarted without quorum serves its last materialised certificate.
		joins["core3"].signal(syscall.SIGKILL)
		joins["core3"].wait(10 * time.Second)
		cfg3 := []string{"--config", filepath.Join(dirs["core3"], "default-config.yml"), "--config", filepath.Join(dirs["core3"], "cluster-config.yml")}
		c3 := startCoreIn(t, dirs["core3"], front("127.0.0.3"), cfg3...)
		if _, err := tlsDialInsecure(front("127.0.0.3"), "alice."+domain); err != nil {
			t.Fatalf("core3 restarted without quorum: %v", err)
		}
		// Quorum returns with core1: core3 catches up.
		c1 = startCoreIn(t, dirs["core1"], front("127.0.0.1"), "--config", cfg1, "--config", override1)
		deadline := time.Now().Add(60 * time.Second)
		for {
			_, code := cli(t, dirs["core1"], "users", "set-core", "--config", cfg1, "--config", override1, "dave", "core1")
			if code == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no quorum 60s after core1 came back")
			}
			time.Sleep(500 * time.Millisecond)
		}
		waitDNS(t, "127.0.0.3", ports.dns, "dave."+domain, "127.0.0.1", 30*time.Second)
		_ = c3
	})
}

func itoa(i int) string { return fmt.Sprint(i) }

func mustOut(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := run(t, 30*time.Second, name, args...)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}

func mustCLI(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, code := cli(t, dir, args...)
	if code != 0 {
		t.Fatalf("pryv-tls %v: exit %d\n%s", args, code, out)
	}
	return out
}

// serveOnce runs a serve that is expected to fail at start.
func serveOnce(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	return cli(t, dir, append([]string{"serve"}, args...)...)
}

func passphraseFrom(t *testing.T, out string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if p, ok := strings.CutPrefix(line, "passphrase: "); ok {
			return strings.TrimSpace(p)
		}
	}
	t.Fatalf("no passphrase line in:\n%s", out)
	return ""
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, b, 0o600)
}

// waitWildcard waits for a certificate naming *.domain and domain, and returns its serial.
func waitWildcard(t *testing.T, addr, name string, roots interface{}, d time.Duration, c *core) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: rootsOf(roots)})
		if err == nil {
			s := conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
			conn.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no wildcard certificate on %s within %s: %v\n%s", addr, d, err, c.logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitSerialNamed(t *testing.T, addr, name string, roots interface{}, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var got string
	var err error
	for time.Now().Before(deadline) {
		got, err = servedSerial(t, addr, name, rootsOf(roots))
		if err == nil && got == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s (%s): serial %q not served within %s (last %q, %v)", addr, name, want, d, got, err)
}

func waitDNS(t *testing.T, ip string, port int, name, wantA string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	for {
		r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, fmt.Sprintf("%s:%d", ip, port))
		if err == nil && len(r.Answer) == 1 {
			if a, ok := r.Answer[0].(*dns.A); ok && a.A.String() == wantA {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("DNS on %s: %s A %s not answered within %s (last: %v %v)", ip, name, wantA, d, r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func adminGET(t *testing.T, addr, name string, roots interface{}, path string, into any) {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: name, RootCAs: rootsOf(roots)},
		DialTLSContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			d := &tls.Dialer{Config: &tls.Config{ServerName: name, RootCAs: rootsOf(roots)}}
			return d.DialContext(ctx, network, addr)
		},
	}}
	req, _ := http.NewRequest("GET", "https://"+name+path, nil)
	req.Header.Set("Authorization", "cluster-admin")
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func rootsOf(r interface{}) *x509.CertPool { return r.(*x509.CertPool) }
