package e2e

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/devpki"
)

// TestStrategyAOnCertbotFiles: a core moved from certbot (Strategy C) to
// Strategy A with certbot's live/ symlinks as http.ssl serves certbot's
// valid pair from its first handshake (not the placeholder), and the first
// certificate PlatformDB gets for the primary is written through the links:
// live/ still holds symlinks into archive/, and certbot's files hold the new
// pair.
func TestStrategyAOnCertbotFiles(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	hook := filepath.Join(dir, "hooks", "noop.sh")
	writeFile(t, hook, []byte("#!/bin/sh\n"), 0o755)

	// certbot's layout after its first issuance.
	certbot := p.issue(t, devpki.Leaf{})
	archive, live := filepath.Join(dir, "letsencrypt", "archive", host), filepath.Join(dir, "letsencrypt", "live", host)
	writeFile(t, filepath.Join(archive, "fullchain1.pem"), certbot.FullChain, 0o644)
	writeFile(t, filepath.Join(archive, "privkey1.pem"), certbot.KeyPEM, 0o600)
	if err := os.MkdirAll(live, 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"fullchain.pem": "fullchain1.pem", "privkey.pem": "privkey1.pem"} {
		if err := os.Symlink(filepath.Join("..", "..", "archive", host, target), filepath.Join(live, link)); err != nil {
			t.Fatal(err)
		}
	}

	cfg := strategyA(t, dir, port, hook)
	ssl := filepath.Join(dir, "ssl-override.yml")
	writeFile(t, ssl, yamlConfig(
		"http:",
		"  ssl:",
		"    certFile: "+filepath.Join(live, "fullchain.pem"),
		"    keyFile: "+filepath.Join(live, "privkey.pem"),
	), 0o644)
	cfg = append(cfg, "--config", ssl)
	c := startCoreIn(t, dir, addr, cfg...)

	if got, err := servedSerial(t, addr, host, p.roots); err != nil || got != serial(certbot) {
		t.Fatalf("first handshake: serial %q, %v; want certbot's pair %s (not the placeholder)\n%s", got, err, serial(certbot), c.logs.String())
	}

	fresh := p.issue(t, devpki.Leaf{})
	writeFile(t, filepath.Join(dir, "in", "c.pem"), fresh.FullChain, 0o644)
	writeFile(t, filepath.Join(dir, "in", "k.pem"), fresh.KeyPEM, 0o600)
	if out, code := cli(t, dir, append(append([]string{"certs", "import"}, cfg...), "--cert", "in/c.pem", "--key", "in/k.pem")...); code != 0 {
		t.Fatalf("certs import: exit %d\n%s", code, out)
	}
	waitSerial(t, addr, host, p.roots, serial(fresh))

	want := map[string][]byte{"fullchain1.pem": fresh.FullChain, "privkey1.pem": fresh.KeyPEM}
	written := func() bool {
		for name, data := range want {
			if b, _ := os.ReadFile(filepath.Join(archive, name)); !bytes.Equal(b, data) {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(10 * time.Second); !written(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("certbot's archive files do not hold the imported pair 10 s after it was served")
		}
	}
	for link, target := range map[string]string{"fullchain.pem": "fullchain1.pem", "privkey.pem": "privkey1.pem"} {
		path := filepath.Join(live, link)
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("%s is no longer a symlink", path)
		}
		if dest, _ := os.Readlink(path); dest != filepath.Join("..", "..", "archive", host, target) {
			t.Errorf("%s points at %s now", path, dest)
		}
	}
	if fi, err := os.Stat(filepath.Join(archive, "privkey1.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("certbot's key file: %v, %v; want mode 0600", fi, err)
	}
	if entries, _ := os.ReadDir(archive); len(entries) != 2 {
		t.Errorf("%d entries in certbot's archive directory, want its 2 files", len(entries))
	}
	if log := c.logs.String(); !strings.Contains(log, "serving the pair at http.ssl until PlatformDB has the primary") {
		t.Errorf("the start-up read of http.ssl is not logged:\n%s", log)
	}
}

// TestDNSLessClusterCertificates is the spec's "Multi-core with DNSless
// overrides: per-core plain certs (one cert per core.url)" on 127.0.0.1 and
// 127.0.0.2 with Pebble. core1 (certRenewer, CA holder) orders its own
// core.url; core2 joins with a bundle made without --url, its own files
// naming its core.url and listener (which the join override leaves to
// them); core2 registers its core.url, the renewer knows that plan
// (force-renew of core2's name), and core2 serves its own certificate from
// replication.
func TestDNSLessClusterCertificates(t *testing.T) {
	cl := startCluster(t, clusterOptions{cores: 2, acme: true})
	roots, first := cl.roots, cl.first
	front := func(ip string) string { return fmt.Sprintf("%s:%d", ip, cl.ports.front) }
	// core2's bundle is made without --url: its own files name it; core1's
	// certificate reaching core2 (replication) is the join done.
	cl.join()
	c1, c2 := cl.cores["core1"], cl.cores["core2"]
	if log := c2.logs.String(); !strings.Contains(log, "core.url, http.ip, http.port left to this core's own configuration") {
		t.Errorf("serve --bootstrap does not say it kept core2's own settings:\n%s", log)
	}

	// The renewer knows core2's plan as soon as core2 registered it; its
	// next pass would order it, force-renew does it now.
	begin := time.Now()
	forceRenew(t, cl.socket("core1"), "core2.example.org", c1)
	t.Logf("force-renew of core2.example.org answered after %s", time.Since(begin).Round(time.Millisecond))
	got := waitWildcard(t, front("127.0.0.2"), "core2.example.org", roots, 30*time.Second, c2)
	if got == first {
		t.Fatal("core2.example.org is served core1's certificate")
	}
	// And core2's own certificate is its primary: what it serves without SNI.
	conn, err := tls.Dial("tcp", front("127.0.0.2"), &tls.Config{RootCAs: roots, ServerName: "core2.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if leaf.DNSNames[0] != "core2.example.org" {
		t.Errorf("core2 serves %v for its own name", leaf.DNSNames)
	}
	_ = c1
}

// TestExpiredExactNameYieldsAndIsDropped: issue 18's old core1.{domain}
// certificate. An exact-name certificate beside a valid wildcard is served
// until it expires, then the wildcard is, with nothing else happening (the
// SNI set re-ranks on its own); the certRenewer then drops the record of
// that name, which the topology does not plan, at its sweep (at start),
// and keeps the wildcard's, still valid.
func TestExpiredExactNameYieldsAndIsDropped(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	hook := filepath.Join(dir, "hooks", "noop.sh")
	writeFile(t, hook, []byte("#!/bin/sh\n"), 0o755)
	cfg := strategyA(t, dir, port, hook)
	c := startCoreIn(t, dir, addr, cfg...)
	importPair := func(is *devpki.Issued) {
		t.Helper()
		writeFile(t, filepath.Join(dir, "in", "c.pem"), is.FullChain, 0o644)
		writeFile(t, filepath.Join(dir, "in", "k.pem"), is.KeyPEM, 0o600)
		if out, code := cli(t, dir, append(append([]string{"certs", "import"}, cfg...), "--cert", "in/c.pem", "--key", "in/k.pem")...); code != 0 {
			t.Fatalf("certs import: exit %d\n%s", code, out)
		}
	}
	wild := p.issue(t, devpki.Leaf{Names: []string{"*.example.org", "example.org"}})
	now := time.Now()
	exact := p.issue(t, devpki.Leaf{Names: []string{"core1.example.org"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(4 * time.Second).Truncate(time.Second)})
	importPair(wild)
	importPair(exact)
	waitSerial(t, addr, "core1.example.org", p.roots, serial(exact))

	// The order of events, not a duration: the exact certificate serves up
	// to its NotAfter, the wildcard after it. The deadline is a hang guard.
	for deadline := exact.Cert.NotAfter.Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got, err := servedSerial(t, addr, "core1.example.org", p.roots)
		at := time.Now()
		if err == nil && got == serial(wild) {
			if !at.After(exact.Cert.NotAfter) {
				t.Errorf("the wildcard was served at %s, before the exact certificate's NotAfter %s", at, exact.Cert.NotAfter)
			}
			break
		}
		if at.After(deadline) {
			t.Fatalf("30 s after the exact certificate expired (%s) the wildcard is not served (last: %q, %v)", exact.Cert.NotAfter, got, err)
		}
	}

	c.signal(syscall.SIGTERM)
	if code := c.wait(20 * time.Second); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	c = startCoreIn(t, dir, addr, cfg...)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(c.logs.String(), "certificate record dropped") {
		if time.Now().After(deadline) {
			t.Fatalf("no drop logged:\n%s", c.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, code := cli(t, dir, append([]string{"certs", "list", "--json"}, cfg...)...)
	if code != 0 || strings.Contains(out, `"core1.example.org"`) || !strings.Contains(out, `"*.example.org"`) {
		t.Fatalf("certs list after the sweep: exit %d\n%s", code, out)
	}
	if log := c.logs.String(); !strings.Contains(log, "tls-cert/core1.example.org") {
		t.Errorf("the drop does not name the row:\n%s", log)
	}
	waitSerial(t, addr, "core1.example.org", p.roots, serial(wild))
}
