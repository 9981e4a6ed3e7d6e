package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/acme/pebbledev"
	"github.com/pryv/pryv-tls/internal/admin"
)

// TestTLSALPN01OnTheFront is issue 14 item 4: letsEncrypt.challenge:
// tls-alpn-01 in a DNS-less cluster of two cores (127.0.0.1, 127.0.0.2),
// with nothing listening on the HTTP-01 port of either. Pebble's VA dials
// the front's own port (its tlsPort is the front's port). core1 (the
// certRenewer) gets its core.url's certificate validated on its own front;
// then the renewer orders core2's core.url, which Pebble resolves to
// 127.0.0.2: the validation handshake is answered by core2, the core that
// did not order, from the key authorisation it read from PlatformDB.
func TestTLSALPN01OnTheFront(t *testing.T) {
	ports := clusterPorts{front: freePort(t), peer: freePort(t), client: freePort(t), join: freePort(t)}
	http01 := freePort(t) // nothing may listen there
	pebble := acmetest.Start(t, acmetest.Options{Options: pebbledev.Options{HTTPPort: http01, TLSALPNPort: ports.front}})
	pebble.SetA(t, "core2.example.org", "127.0.0.2")
	root := t.TempDir()
	dirs := map[string]string{"core1": filepath.Join(root, "core1"), "core2": filepath.Join(root, "core2")}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	key := strings.TrimSpace(mustOut(t, binary, "keygen"))
	cfg1 := filepath.Join(dirs["core1"], "default-config.yml")
	writeFile(t, cfg1, yamlConfig(
		"http: {ip: 127.0.0.1, port: "+itoa(ports.front)+"}",
		"core: {id: core1, ip: 127.0.0.1, url: 'https://core1.example.org'}",
		"letsEncrypt:",
		"  enabled: true",
		"  email: ops@example.org",
		"  atRestKey: '"+key+"'",
		"  certRenewer: true",
		"  challenge: tls-alpn-01",
		"  directoryUrl: "+pebble.DirectoryURL,
		"  directoryCaFile: "+pebble.CAFile,
		"  http01Port: "+itoa(http01),
		"auth: {adminAccessKey: cluster-admin}",
		"platformDB: {peerAddress: '127.0.0.1:"+itoa(ports.peer)+"', clientAddress: '127.0.0.1:"+itoa(ports.client)+"'}",
		"cluster: {ca: {path: "+filepath.Join(dirs["core1"], "ca")+"}, joinPort: "+itoa(ports.join)+"}",
	), 0o600)
	front := func(ip string) string { return fmt.Sprintf("%s:%d", ip, ports.front) }
	roots := pebble.IssuerRoots(t)
	nothingOnHTTP01 := func(ip string) {
		t.Helper()
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, itoa(http01)), 2*time.Second); err == nil {
			c.Close()
			t.Fatalf("something listens on %s:%d, the HTTP-01 port, with letsEncrypt.challenge: tls-alpn-01", ip, http01)
		}
	}

	begin := time.Now()
	c1 := startCoreIn(t, dirs["core1"], front("127.0.0.1"), "--config", cfg1)
	first := waitWildcard(t, front("127.0.0.1"), "core1.example.org", roots, 60*time.Second, c1)
	t.Logf("core1.example.org issued by tls-alpn-01 %s after core1's start", time.Since(begin).Round(time.Millisecond))
	nothingOnHTTP01("127.0.0.1")
	if log := c1.logs.String(); !strings.Contains(log, "TLS-ALPN-01: challenges answered on the front's port") || strings.Contains(log, "HTTP-01 listener up") {
		t.Errorf("core1 does not say it answers TLS-ALPN-01 without an HTTP-01 listener:\n%s", log)
	}
	mustCLI(t, dirs["core1"], "bootstrap", "init-ca-holder", "--config", cfg1)
	override1 := filepath.Join(dirs["core1"], "cluster-config.yml")
	c1.signal(syscall.SIGTERM)
	c1.wait(20 * time.Second)
	c1 = startCoreIn(t, dirs["core1"], front("127.0.0.1"), "--config", cfg1, "--config", override1)
	waitSerialNamed(t, front("127.0.0.1"), "core1.example.org", roots, first, 15*time.Second)

	bundle := filepath.Join(dirs["core2"], "core2.bundle")
	out := mustCLI(t, dirs["core1"], "bootstrap", "new-core", "--config", cfg1, "--config", override1,
		"--id", "core2", "--ip", "127.0.0.2", "--out", bundle)
	writeFile(t, filepath.Join(dirs["core2"], "pass"), []byte(passphraseFrom(t, out)+"\n"), 0o600)
	own := filepath.Join(dirs["core2"], "default-config.yml")
	writeFile(t, own, yamlConfig(
		"core: {url: 'https://core2.example.org'}",
		"http: {ip: 127.0.0.2, port: "+itoa(ports.front)+"}",
	), 0o600)
	c2 := startCoreIn(t, dirs["core2"], front("127.0.0.2"), "--config", own, "--bootstrap", bundle,
		"--bootstrap-passphrase-file", filepath.Join(dirs["core2"], "pass"))
	waitSerialNamed(t, front("127.0.0.2"), "core1.example.org", roots, first, 30*time.Second)
	nothingOnHTTP01("127.0.0.2") // the bundle carried letsEncrypt.challenge

	// A validator's handshake on core2 before any order: refused (no
	// challenge for that name), not answered with the served certificate.
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", front("127.0.0.2"),
		&tls.Config{ServerName: "core2.example.org", NextProtos: []string{"acme-tls/1"}, InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Error("an acme-tls/1 handshake with no challenge under way succeeded on core2")
	}

	client := admin.SocketClient(filepath.Join(dirs["core1"], "var-pryv/run/pryv-tls.sock"))
	client.Timeout = 2 * time.Minute
	deadline := time.Now().Add(30 * time.Second)
	begin = time.Now()
	for {
		resp, err := client.Post("http://pryv-tls/certs/force-renew", "application/json", strings.NewReader(`{"hostname":"core2.example.org"}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) || !strings.Contains(string(body), "not a hostname") {
			t.Fatalf("force-renew of core2.example.org: %s %s\ncore1:\n%s\ncore2:\n%s", resp.Status, body, c1.logs.String(), c2.logs.String())
		}
		time.Sleep(200 * time.Millisecond) // core2's core-info row is not there yet
	}
	t.Logf("core2.example.org ordered by core1, validated on core2's front: %s", time.Since(begin).Round(time.Millisecond))
	got := waitWildcard(t, front("127.0.0.2"), "core2.example.org", roots, 30*time.Second, c2)
	if got == first {
		t.Fatal("core2.example.org is served core1's certificate")
	}
}
