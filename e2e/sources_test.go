package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
