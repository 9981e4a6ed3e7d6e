package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/join"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// probeLoop counts the probes of a loop that succeeded and failed; the
// handshake loop dials TLS to addr (SNI name, verified against roots) until
// stopped, and counts what succeeded and what failed (bounded: at most
// max handshakes).
type probeLoop struct {
	ok, failed atomic.Int64
	firstErr   atomic.Value
	stop       chan struct{}
	done       sync.WaitGroup
}

func startHandshakes(addr, name string, roots *x509.CertPool, max int) *probeLoop {
	l := &probeLoop{stop: make(chan struct{})}
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		for i := 0; i < max; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
			if err != nil {
				l.failed.Add(1)
				l.firstErr.CompareAndSwap(nil, err.Error())
			} else {
				l.ok.Add(1)
				c.Close()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return l
}

// startDNSQueries asks addr for name's A record (over UDP) until stopped,
// counting the answers that are want and those that are not.
func startDNSQueries(addr, name, want string, max int) *probeLoop {
	l := &probeLoop{stop: make(chan struct{})}
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		cl := &dns.Client{Timeout: 2 * time.Second}
		for i := 0; i < max; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			r, _, err := cl.Exchange(m, addr)
			if err == nil && (len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != want) {
				err = fmt.Errorf("answer %v", r)
			}
			if err != nil {
				l.failed.Add(1)
				l.firstErr.CompareAndSwap(nil, err.Error())
			} else {
				l.ok.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return l
}

func (l *probeLoop) end() (ok, failed int64, first string) {
	close(l.stop)
	l.done.Wait()
	if v := l.firstErr.Load(); v != nil {
		first = v.(string)
	}
	return l.ok.Load(), l.failed.Load(), first
}

// TestLiveCluster: a single core serving, with data, becomes the CA holder
// without a restart while a handshake loop runs (0 failures), a core joins
// right after and sees the data, then is removed: its node certificate is
// refused by the CA holder's PlatformDB listener and join listener, and its
// rows are gone.
func TestLiveCluster(t *testing.T) {
	const domain = "lc.example.com"
	front, dnsPort, peer, client, joinPort := freePort(t), freeUDPTCPPort(t), freePort(t), freePort(t), freePort(t)
	root := t.TempDir()
	dirs := map[string]string{"core1": filepath.Join(root, "core1"), "core2": filepath.Join(root, "core2")}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const ip1, ip2 = "127.0.0.11", "127.0.0.12"
	at := func(ip string, port int) string { return fmt.Sprintf("%s:%d", ip, port) }
	key := strings.TrimSpace(mustOut(t, binary, "keygen"))
	cfg1 := filepath.Join(dirs["core1"], "default-config.yml")
	// PlatformDB starts on loopback with the core's own CA, as a single
	// core does; core.ip is where the conversion moves it.
	writeFile(t, cfg1, yamlConfig(
		"http: {ip: "+ip1+", port: "+itoa(front)+"}",
		"core: {id: core1, ip: "+ip1+", url: 'https://core1."+domain+"'}",
		"dns: {active: true, domain: "+domain+", ip: "+ip1+", port: "+itoa(dnsPort)+"}",
		"letsEncrypt: {enabled: true, certRenewer: false, email: ops@"+domain+", atRestKey: '"+key+"'}",
		"auth: {adminAccessKey: lc-admin}",
		"platformDB: {peerAddress: '127.0.0.1:"+itoa(peer)+"', clientAddress: '127.0.0.1:"+itoa(client)+"'}",
		"cluster: {ca: {path: "+filepath.Join(dirs["core1"], "ca")+"}, joinPort: "+itoa(joinPort)+"}",
	), 0o600)
	c1 := startCoreIn(t, dirs["core1"], at(ip1, front), "--config", cfg1)

	// Data written while single: a certificate imported, a user pinned.
	p := newPKI(t, root)
	wild := p.issue(t, devpki.Leaf{Names: []string{"*." + domain, domain}})
	writeFile(t, filepath.Join(dirs["core1"], "in", "c.pem"), wild.FullChain, 0o644)
	writeFile(t, filepath.Join(dirs["core1"], "in", "k.pem"), wild.KeyPEM, 0o600)
	mustCLI(t, dirs["core1"], "certs", "import", "--config", cfg1, "--cert", "in/c.pem", "--key", "in/k.pem")
	mustCLI(t, dirs["core1"], "users", "set-core", "--config", cfg1, "alice", "core1")
	records := filepath.Join(dirs["core1"], "records.yml")
	writeFile(t, records, []byte("records:\n  - subdomain: mail\n    records: {a: [192.0.2.25]}\n"), 0o644)
	mustCLI(t, dirs["core1"], "dns-records", "load", "--config", cfg1, records)
	waitSerialNamed(t, at(ip1, front), "alice."+domain, p.roots, serial(wild), 15*time.Second)
	waitDNS(t, ip1, dnsPort, "alice."+domain, ip1, 10*time.Second)

	// init-ca-holder on the running core, under a handshake loop.
	loop := startHandshakes(at(ip1, front), "alice."+domain, p.roots, 20000)
	dnsLoop := startDNSQueries(at(ip1, dnsPort), "alice."+domain, ip1, 20000)
	time.Sleep(300 * time.Millisecond) // some handshakes before the switch
	start := time.Now()
	out := mustCLI(t, dirs["core1"], "bootstrap", "init-ca-holder", "--config", cfg1)
	switchTook := time.Since(start)
	if !strings.Contains(out, "switched live") {
		t.Fatalf("init-ca-holder on a running core:\n%s", out)
	}
	override1 := filepath.Join(dirs["core1"], "cluster-config.yml")
	cfg := []string{"--config", cfg1, "--config", override1}

	// new-core right after: no wait, no race.
	bundle := filepath.Join(dirs["core2"], "core2.bundle")
	out = mustCLI(t, dirs["core1"], append(append([]string{"bootstrap", "new-core"}, cfg...),
		"--id", "core2", "--ip", ip2, "--url", "https://core2."+domain, "--out", bundle)...)
	ok, failed, first := loop.end()
	dnsOK, dnsFailed, dnsFirst := dnsLoop.end()
	t.Logf("init-ca-holder switched live in %s; during the switch and new-core: %d handshakes ok, %d failed; %d DNS answers ok, %d failed",
		switchTook.Round(time.Millisecond), ok, failed, dnsOK, dnsFailed)
	if failed != 0 || ok < 20 {
		t.Fatalf("handshakes through the live conversion: %d ok, %d failed (first: %s)\n%s", ok, failed, first, c1.logs.String())
	}
	if dnsFailed != 0 || dnsOK < 20 {
		t.Fatalf("DNS answers through the live conversion: %d ok, %d failed (first: %s)", dnsOK, dnsFailed, dnsFirst)
	}
	waitLog(t, c1, "CA holder: answering joining cores", 5*time.Second)

	// PlatformDB now listens on core.ip, with node certificates of the cluster CA.
	caPool, _ := certPool(t, filepath.Join(dirs["core1"], "ca", "ca.crt"))
	node1, err := tls.LoadX509KeyPair(filepath.Join(dirs["core1"], "var-pryv/platformdb-tls/node.pem"), filepath.Join(dirs["core1"], "var-pryv/platformdb-tls/node-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if code, body := etcdVersion(t, at(ip1, client), caPool, node1); code != 200 {
		t.Fatalf("PlatformDB on %s with the cluster CA: %d %s", at(ip1, client), code, body)
	}
	// The data written before is there after (the socket answers from the reopened member).
	if out := mustCLI(t, dirs["core1"], append([]string{"users", "get"}, append(cfg, "alice")...)...); !strings.Contains(out, "core1") {
		t.Errorf("users get alice after the conversion: %s", out)
	}

	// A reload reads the override too (what now runs): not refused for
	// the PlatformDB addresses the switch changed.
	c1.signal(syscall.SIGHUP)
	waitLog(t, c1, "configuration reloaded", 10*time.Second)
	if strings.Contains(c1.logs.String(), "configuration not reloaded") {
		t.Fatalf("SIGHUP after the live switch was refused:\n%s", c1.logs.String())
	}

	// core2 joins and sees the data.
	writeFile(t, filepath.Join(dirs["core2"], "pass"), []byte(passphraseFrom(t, out)+"\n"), 0o600)
	own2 := filepath.Join(dirs["core2"], "default-config.yml")
	writeFile(t, own2, []byte("# this core's own settings would go here\n"), 0o600)
	c2 := startCoreIn(t, dirs["core2"], at(ip2, front), "--config", own2, "--bootstrap", bundle,
		"--bootstrap-passphrase-file", filepath.Join(dirs["core2"], "pass"))
	waitSerialNamed(t, at(ip2, front), "alice."+domain, p.roots, serial(wild), 30*time.Second)
	waitDNS(t, ip2, dnsPort, "alice."+domain, ip1, 15*time.Second)
	waitDNS(t, ip2, dnsPort, "mail."+domain, "192.0.2.25", 5*time.Second)
	waitLog(t, c2, "PlatformDB ready", 30*time.Second)

	// remove-core core2.
	out = mustCLI(t, dirs["core1"], append(append([]string{"bootstrap", "remove-core"}, cfg...), "core2")...)
	t.Logf("remove-core: %s", strings.TrimSpace(out))
	if !strings.Contains(out, "its PlatformDB member removed") || !strings.Contains(out, "core-info/core2") {
		t.Errorf("remove-core output: %s", out)
	}
	// core2's node certificate: refused by core1's PlatformDB client
	// listener and by /renew, while core1's own is accepted.
	node2Dir := filepath.Join(dirs["core2"], "var-pryv/platformdb-tls")
	node2, err := tls.LoadX509KeyPair(filepath.Join(node2Dir, "node.pem"), filepath.Join(node2Dir, "node-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if code, body := etcdVersion(t, at(ip1, client), caPool, node2); code != 0 {
		t.Errorf("core1's PlatformDB listener after remove-core, with core2's certificate: %d %s (want refused)", code, body)
	}
	if code, body := etcdVersion(t, at(ip1, client), caPool, node1); code != 200 {
		t.Errorf("core1's own certificate after remove-core: %d %s", code, body)
	}
	if err := peerMembers(at(ip1, peer), caPool, node2); err == nil {
		t.Error("core1's PlatformDB peer listener after remove-core accepted core2's certificate")
	}
	if err := peerMembers(at(ip1, peer), caPool, node1); err != nil {
		t.Errorf("core1's peer listener with its own certificate: %v", err)
	}
	joinURL := "https://" + at(ip1, joinPort) + "/join"
	if _, err := join.RenewNodeCert(context.Background(), joinURL, platformdb.TLSFiles{CAFile: filepath.Join(node2Dir, "cluster-ca.pem"), CertFile: filepath.Join(node2Dir, "node.pem"), KeyFile: filepath.Join(node2Dir, "node-key.pem")}); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("/renew with core2's certificate after remove-core: %v", err)
	}
	// Its rows are gone; the member list is core1 alone.
	code, body, err := socketGet(t, dirs["core1"], "/cores")
	if err != nil || code != 200 {
		t.Fatalf("GET /cores: %d %s %v", code, body, err)
	}
	var cores struct{ Cores []struct{ ID string } }
	if err := json.Unmarshal(body, &cores); err != nil {
		t.Fatal(err)
	}
	for _, c := range cores.Cores {
		if c.ID == "core2" {
			t.Errorf("core2 still listed after remove-core: %s", body)
		}
	}
	if out := mustCLI(t, dirs["core1"], append([]string{"bootstrap", "list-tokens"}, cfg...)...); strings.Contains(out, "core2") {
		t.Errorf("core2's join token still listed: %s", out)
	}
	// The CA holder's own node certificate is recorded too, and removing
	// the core the command runs on is refused without --force.
	n1Dir := filepath.Join(dirs["core1"], "var-pryv/platformdb-tls")
	conn, err := platformdb.Connect(context.Background(), platformdb.ConnectOptions{Endpoints: []string{at(ip1, client)},
		Logger: platformdbLogger(), TLS: &platformdb.TLSFiles{CAFile: filepath.Join(dirs["core1"], "ca", "ca.crt"),
			CertFile: filepath.Join(n1Dir, "node.pem"), KeyFile: filepath.Join(n1Dir, "node-key.pem")}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Get(context.Background(), join.NodeCertPrefix+"core1/"+node1.Leaf.SerialNumber.Text(16)); err != nil {
		t.Errorf("the CA holder's own node certificate is not recorded: %v", err)
	}
	if out, code := cli(t, dirs["core1"], append(append([]string{"bootstrap", "remove-core"}, cfg...), "core1")...); code == 0 || !strings.Contains(out, "add --force") {
		t.Errorf("remove-core of the core it runs on: exit %d %s", code, out)
	}

	// core1 keeps serving.
	waitSerialNamed(t, at(ip1, front), "alice."+domain, p.roots, serial(wild), 5*time.Second)
	_ = c2
}

// peerMembers is GET /members on a PlatformDB peer listener with a client
// certificate: nil on a 200.
func peerMembers(addr string, roots *x509.CertPool, cert tls.Certificate) error {
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: strings.Split(addr, ":")[0], RootCAs: roots, Certificates: []tls.Certificate{cert}},
	}}
	defer cl.CloseIdleConnections()
	resp, err := cl.Get("https://" + addr + "/members")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// TestLiveClusterSwitchFails: when the member cannot open on core.ip (its
// client port is taken), init-ca-holder says so, and the core reopens its
// member as it was: its data answers, the front serves throughout.
func TestLiveClusterSwitchFails(t *testing.T) {
	const domain = "lf.example.com"
	const ip = "127.0.0.13"
	front, dnsPort, peer, client, joinPort := freePort(t), freeUDPTCPPort(t), freePort(t), freePort(t), freePort(t)
	dir := t.TempDir()
	key := strings.TrimSpace(mustOut(t, binary, "keygen"))
	cfg := filepath.Join(dir, "default-config.yml")
	writeFile(t, cfg, yamlConfig(
		"http: {ip: "+ip+", port: "+itoa(front)+"}",
		"core: {id: core1, ip: "+ip+"}",
		"dns: {active: true, domain: "+domain+", ip: "+ip+", port: "+itoa(dnsPort)+"}",
		"letsEncrypt: {enabled: true, certRenewer: false, email: ops@"+domain+", atRestKey: '"+key+"'}",
		"platformDB: {peerAddress: '127.0.0.1:"+itoa(peer)+"', clientAddress: '127.0.0.1:"+itoa(client)+"'}",
		"cluster: {ca: {path: "+filepath.Join(dir, "ca")+"}, joinPort: "+itoa(joinPort)+"}",
	), 0o600)
	c := startCoreIn(t, dir, fmt.Sprintf("%s:%d", ip, front), "--config", cfg)
	mustCLI(t, dir, "users", "set-core", "--config", cfg, "alice", "core1")
	waitDNS(t, ip, dnsPort, "alice."+domain, ip, 10*time.Second)

	taken, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, client)) // where the switch would put the client listener
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dnsLoop := startDNSQueries(fmt.Sprintf("%s:%d", ip, dnsPort), "alice."+domain, ip, 20000)
	out, code := cli(t, dir, "bootstrap", "init-ca-holder", "--config", cfg)
	dnsOK, dnsFailed, first := dnsLoop.end()
	if code == 0 || !strings.Contains(out, "it was reopened on its old addresses") || !strings.Contains(out, "did not switch") {
		t.Fatalf("init-ca-holder with the client port taken: exit %d\n%s", code, out)
	}
	t.Logf("refused: %s", strings.TrimSpace(out[strings.LastIndex(out, "pryv-tls bootstrap"):]))
	if dnsFailed != 0 || dnsOK < 10 {
		t.Errorf("DNS through the failed switch: %d ok, %d failed (%s)", dnsOK, dnsFailed, first)
	}
	// PlatformDB is back where it was, with its data.
	if out := mustCLI(t, dir, "users", "get", "--config", cfg, "alice"); !strings.Contains(out, "core1") {
		t.Errorf("users get alice after the failed switch: %s", out)
	}
	node, err := tls.LoadX509KeyPair(filepath.Join(dir, "var-pryv/platformdb-tls/node.pem"), filepath.Join(dir, "var-pryv/platformdb-tls/node-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caPool, _ := certPool(t, filepath.Join(dir, "ca", "ca.crt"))
	if code, body := etcdVersion(t, fmt.Sprintf("127.0.0.1:%d", client), caPool, node); code != 200 {
		t.Errorf("PlatformDB on its old address after the failed switch: %d %s", code, body)
	}
	// Once the port is free, the same command switches.
	taken.Close()
	if out := mustCLI(t, dir, "bootstrap", "init-ca-holder", "--config", cfg); !strings.Contains(out, "switched live") {
		t.Fatalf("init-ca-holder once the port is free:\n%s", out)
	}
	waitLog(t, c, "CA holder: answering joining cores", 5*time.Second)
}
