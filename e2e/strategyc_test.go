package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/devpki"
)

const host = "your-domain.com"

// sslConfig is the spec's single-core shape with Strategy C files.
func sslConfig(t *testing.T, dir string, port int, certFile, keyFile string) string {
	t.Helper()
	cfg := filepath.Join(dir, "override-config.yml")
	writeFile(t, cfg, yamlConfig(
		"http:",
		"  ip: 127.0.0.1",
		fmt.Sprintf("  port: %d", port),
		"  ssl:",
		"    keyFile: "+keyFile,
		"    certFile: "+certFile,
		"dnsLess:",
		"  isActive: true",
		"  publicUrl: https://"+host,
	), 0o644)
	return cfg
}

// opensslSerial reads the served certificate's serial with openssl s_client.
func opensslSerial(t *testing.T, openssl, addr, caFile string) string {
	t.Helper()
	out, err := run(t, 10*time.Second, "sh", "-c", fmt.Sprintf(
		"%s s_client -connect %s -servername %s -verify_return_error -CAfile %s </dev/null 2>/dev/null | %s x509 -noout -serial",
		openssl, addr, host, caFile, openssl))
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`serial=([0-9A-F]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no serial in openssl output:\n%s", out)
	}
	return strings.TrimLeft(strings.ToLower(m[1]), "0")
}

func TestStrategyCFilesHotSwap(t *testing.T) {
	openssl := needTool(t, "openssl")
	dir := t.TempDir()
	p := newPKI(t, dir)
	certFile := filepath.Join(dir, "tls", host, "fullchain.pem")
	keyFile := filepath.Join(dir, "tls", host, "privkey.pem")
	first := p.issue(t, devpki.Leaf{})
	writeFile(t, certFile, first.FullChain, 0o644)
	writeFile(t, keyFile, first.KeyPEM, 0o600)

	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := startCore(t, addr, "--config", sslConfig(t, dir, port, certFile, keyFile))
	waitSerial(t, addr, host, p.roots, serial(first))
	if got := opensslSerial(t, openssl, addr, p.caPEM); got != serial(first) {
		t.Fatalf("openssl sees serial %s, want %s", got, serial(first))
	}
	current := first

	t.Run("rewritten in place", func(t *testing.T) {
		next := p.issue(t, devpki.Leaf{})
		writeFile(t, keyFile, next.KeyPEM, 0o600)
		writeFile(t, certFile, next.FullChain, 0o644)
		took := waitSerial(t, addr, host, p.roots, serial(next))
		t.Logf("in-place rewrite -> served in %s", took)
		current = next
	})

	t.Run("replaced by rename", func(t *testing.T) {
		next := p.issue(t, devpki.Leaf{})
		writeAtomic(t, keyFile, next.KeyPEM, 0o600)
		writeAtomic(t, certFile, next.FullChain, 0o644)
		took := waitSerial(t, addr, host, p.roots, serial(next))
		t.Logf("rename -> served in %s (the issue's bound is 2s)", took)
		if got := opensslSerial(t, openssl, addr, p.caPEM); got != serial(next) {
			t.Fatalf("openssl sees serial %s, want %s", got, serial(next))
		}
		current = next
	})

	t.Run("RSA certificate", func(t *testing.T) {
		next := p.issue(t, devpki.Leaf{KeyType: "rsa2048"})
		writeAtomic(t, keyFile, next.KeyPEM, 0o600)
		writeAtomic(t, certFile, next.FullChain, 0o644)
		waitSerial(t, addr, host, p.roots, serial(next))
		current = next
	})

	bad := []struct {
		name       string
		cert, key  func() []byte
		wantLogged string
	}{
		{"mismatched key", func() []byte { return p.issue(t, devpki.Leaf{}).FullChain }, func() []byte { return p.issue(t, devpki.Leaf{}).KeyPEM }, "does not match"},
		{"garbage", func() []byte { return []byte("not a certificate\n") }, func() []byte { return []byte("not a key\n") }, "no PEM certificate"},
		{"expired", func() []byte { return nil }, nil, "expired"},
	}
	for _, b := range bad {
		t.Run("refused: "+b.name, func(t *testing.T) {
			var certPEM, keyPEM []byte
			if b.key == nil { // expired: a matching pair, just out of date
				is := p.issue(t, devpki.Leaf{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
				certPEM, keyPEM = is.FullChain, is.KeyPEM
			} else {
				certPEM, keyPEM = b.cert(), b.key()
			}
			before := strings.Count(c.logs.String(), "certificate change refused")
			writeAtomic(t, keyFile, keyPEM, 0o600)
			writeAtomic(t, certFile, certPEM, 0o644)
			deadline := time.Now().Add(5 * time.Second)
			for strings.Count(c.logs.String(), "certificate change refused") == before {
				if time.Now().After(deadline) {
					t.Fatalf("no refusal logged for a bad replacement:\n%s", c.logs.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			logs := c.logs.String()
			if !strings.Contains(logs, b.wantLogged) || !strings.Contains(logs, certFile) {
				t.Fatalf("refusal log does not name the file %s and the reason %q:\n%s", certFile, b.wantLogged, logs)
			}
			if strings.Contains(logs, "PRIVATE KEY") {
				t.Fatal("a private key reached the log")
			}
			stillServes(t, addr, host, p.roots, serial(current), time.Second)
		})
	}

	t.Run("restored after bad replacements", func(t *testing.T) {
		next := p.issue(t, devpki.Leaf{})
		writeAtomic(t, keyFile, next.KeyPEM, 0o600)
		writeAtomic(t, certFile, next.FullChain, 0o644)
		waitSerial(t, addr, host, p.roots, serial(next))
		current = next
	})

	t.Run("SIGHUP forces a re-read", func(t *testing.T) {
		// A change that keeps inode, size and mtime is invisible to the poll;
		// only SIGHUP can bring it in.
		certSt, _ := os.Stat(certFile)
		keySt, _ := os.Stat(keyFile)
		var next *devpki.Issued
		for i := 0; i < 500 && next == nil; i++ {
			is := p.issue(t, devpki.Leaf{}) // ECDSA, like the current one: sizes differ by a byte or two at most
			if int64(len(is.FullChain)) == certSt.Size() && int64(len(is.KeyPEM)) == keySt.Size() {
				next = is
			}
		}
		if next == nil {
			t.Fatal("could not make a same-size certificate")
		}
		for _, f := range []struct {
			path string
			data []byte
			st   os.FileInfo
		}{{certFile, next.FullChain, certSt}, {keyFile, next.KeyPEM, keySt}} {
			fh, err := os.OpenFile(f.path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fh.WriteAt(f.data, 0); err != nil {
				t.Fatal(err)
			}
			fh.Close()
			if err := os.Chtimes(f.path, f.st.ModTime(), f.st.ModTime()); err != nil {
				t.Fatal(err)
			}
		}
		stillServes(t, addr, host, p.roots, serial(current), 700*time.Millisecond)
		c.signal(syscall.SIGHUP)
		waitSerial(t, addr, host, p.roots, serial(next))
		current = next
	})

	c.signal(syscall.SIGTERM)
	if code := c.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
}

// TestStrategyCCertbotLayout re-points symlinks the way "certbot renew" does:
// live/<name>/*.pem -> ../../archive/<name>/*N.pem.
func TestStrategyCCertbotLayout(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	le := filepath.Join(dir, "letsencrypt")
	live := filepath.Join(le, "live", host)
	archive := filepath.Join(le, "archive", host)
	put := func(n int, is *devpki.Issued) {
		writeFile(t, filepath.Join(archive, fmt.Sprintf("fullchain%d.pem", n)), is.FullChain, 0o644)
		writeFile(t, filepath.Join(archive, fmt.Sprintf("privkey%d.pem", n)), is.KeyPEM, 0o600)
		if err := os.MkdirAll(live, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"fullchain", "privkey"} {
			tmp := filepath.Join(live, f+".pem.new")
			if err := os.Symlink(fmt.Sprintf("../../archive/%s/%s%d.pem", host, f, n), tmp); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(live, f+".pem")); err != nil {
				t.Fatal(err)
			}
		}
	}
	first := p.issue(t, devpki.Leaf{})
	put(1, first)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	startCore(t, addr, "--config", sslConfig(t, dir, port, filepath.Join(live, "fullchain.pem"), filepath.Join(live, "privkey.pem")))
	waitSerial(t, addr, host, p.roots, serial(first))

	for n := 2; n <= 3; n++ {
		next := p.issue(t, devpki.Leaf{})
		put(n, next)
		took := waitSerial(t, addr, host, p.roots, serial(next))
		t.Logf("certbot symlink flip %d -> served in %s", n, took)
	}
}

// TestPlaceholderUntilFilesAppear: TLS configured, no certificate yet.
func TestPlaceholderUntilFilesAppear(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	certFile := filepath.Join(dir, "tls", host, "fullchain.pem")
	keyFile := filepath.Join(dir, "tls", host, "privkey.pem")
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := startCore(t, addr, "--config", sslConfig(t, dir, port, certFile, keyFile))

	// The port answers with a self-signed certificate for the derived hostname.
	if _, err := servedSerial(t, addr, host, p.roots); err == nil {
		t.Fatal("the placeholder must not be trusted by a real client")
	}
	conn, err := tlsDialInsecure(addr, host)
	if err != nil {
		t.Fatalf("the port must answer with a placeholder: %v", err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if !strings.Contains(leaf.Subject.CommonName, "placeholder") || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != host {
		t.Fatalf("placeholder subject %q names %v; want a placeholder for [%s]", leaf.Subject.CommonName, leaf.DNSNames, host)
	}
	if time.Until(leaf.NotAfter) > 25*time.Hour {
		t.Fatalf("placeholder valid until %s: it must be short-lived", leaf.NotAfter)
	}
	if !strings.Contains(c.logs.String(), "PLACEHOLDER") {
		t.Fatalf("the placeholder must be logged loudly:\n%s", c.logs.String())
	}

	real := p.issue(t, devpki.Leaf{})
	writeAtomic(t, keyFile, real.KeyPEM, 0o600)
	writeAtomic(t, certFile, real.FullChain, 0o644)
	waitSerial(t, addr, host, p.roots, serial(real))
}
