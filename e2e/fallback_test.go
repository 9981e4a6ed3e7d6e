package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/acme/pebbledev"
)

// TestFallbackCAWhenThePrimaryIsDown is issue 14 item 5 with two Pebbles:
// the certificate (120 s) comes from the first; the first is stopped; when
// the certificate is due the order at the first fails, and once it has
// failed for a tenth of the lifetime the renewer orders from the second
// (its own account). The new certificate chains to the second Pebble's root
// only, and status shows it renewed.
func TestFallbackCAWhenThePrimaryIsDown(t *testing.T) {
	http01 := freePort(t)
	primary := acmetest.Start(t, acmetest.Options{Options: pebbledev.Options{HTTPPort: http01}})
	second := acmetest.Start(t, acmetest.Options{Options: pebbledev.Options{HTTPPort: http01}})
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := strategyA(t, dir, port, "")
	// One file trusts both directories' listeners.
	cas := filepath.Join(dir, "directory-cas.pem")
	var pems []byte
	for _, f := range []string{primary.CAFile, second.CAFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pems = append(pems, b...)
	}
	writeFile(t, cas, pems, 0o644)
	acmeCfg := filepath.Join(dir, "acme.yml")
	writeFile(t, acmeCfg, yamlConfig(
		"letsEncrypt:",
		"  directoryUrl: "+primary.DirectoryURL,
		"  directoryCaFile: "+cas,
		fmt.Sprintf("  http01Port: %d", http01),
		"  profile: short120s",
		"  fallback:",
		"    - directoryUrl: "+second.DirectoryURL,
	), 0o644)
	cfg = append(cfg, "--config", acmeCfg)

	c := startCoreIn(t, dir, addr, cfg...)
	primaryRoots := primary.IssuerRoots(t)
	leaf := waitLeaf(t, addr, host, primaryRoots, 60*time.Second, c)
	t.Logf("first certificate from the primary, serial %s", leaf.SerialNumber.Text(16))
	primary.Stop()
	stopped := time.Now()

	secondRoots := second.IssuerRoots(t)
	renewed := waitLeaf(t, addr, host, secondRoots, 4*time.Minute, c)
	t.Logf("renewed by the fallback CA %s after the primary stopped (serial %s)", time.Since(stopped).Round(time.Second), renewed.SerialNumber.Text(16))
	if _, err := renewed.Verify(x509.VerifyOptions{Roots: primaryRoots, DNSName: host}); err == nil {
		t.Error("the renewed certificate also chains to the primary: not the fallback's")
	}
	log := c.logs.String()
	if !strings.Contains(log, "the ACME directory keeps failing; ordering from a fallback CA") {
		t.Errorf("the switch to the fallback is not logged:\n%s", log)
	}
	t.Logf("orders: %d complete (the primary's, then the fallback's), %d failed at the primary before the switch",
		strings.Count(log, "ACME order complete"), strings.Count(log, "certificate order failed"))
	if n := strings.Count(log, "ACME order complete"); n != 2 {
		t.Errorf("%d orders complete, want 2", n)
	}
	if n := strings.Count(log, "ACME account registered"); n != 2 {
		t.Errorf("%d accounts registered, want 2 (one per CA):\n%s", n, log)
	}
}

// waitLeaf waits for addr to serve name a certificate that verifies
// against roots, and returns it.
func waitLeaf(t *testing.T, addr, name string, roots *x509.CertPool, d time.Duration, c *core) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
		if err == nil {
			leaf := conn.ConnectionState().PeerCertificates[0]
			conn.Close()
			return leaf
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for %s verifying against those roots within %s: %v\n%s", name, d, err, c.logs.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
}
