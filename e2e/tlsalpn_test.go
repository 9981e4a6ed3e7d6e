package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
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
	cl := startCluster(t, clusterOptions{cores: 2, acme: true, challenge: "tls-alpn-01"})
	roots, first, http01 := cl.roots, cl.first, cl.pebble.HTTPPort
	front := func(ip string) string { return fmt.Sprintf("%s:%d", ip, cl.ports.front) }
	nothingOnHTTP01 := func(ip string) {
		t.Helper()
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, itoa(http01)), 2*time.Second); err == nil {
			c.Close()
			t.Fatalf("something listens on %s:%d, the HTTP-01 port, with letsEncrypt.challenge: tls-alpn-01", ip, http01)
		}
	}

	c1 := cl.cores["core1"]
	t.Logf("core1.example.org issued by tls-alpn-01 %s after core1's start", cl.firstTook.Round(time.Millisecond))
	nothingOnHTTP01("127.0.0.1")
	if log := c1.logs.String(); !strings.Contains(log, "TLS-ALPN-01: challenges answered on the front's port") || strings.Contains(log, "HTTP-01 listener up") {
		t.Errorf("core1 does not say it answers TLS-ALPN-01 without an HTTP-01 listener:\n%s", log)
	}
	cl.join()
	c1, c2 := cl.cores["core1"], cl.cores["core2"]
	nothingOnHTTP01("127.0.0.2") // the bundle carried letsEncrypt.challenge

	// A validator's handshake on core2 before any order: refused (no
	// challenge for that name), not answered with the served certificate.
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", front("127.0.0.2"),
		&tls.Config{ServerName: "core2.example.org", NextProtos: []string{"acme-tls/1"}, InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Error("an acme-tls/1 handshake with no challenge under way succeeded on core2")
	}

	begin := time.Now()
	forceRenew(t, cl.socket("core1"), "core2.example.org", c1, c2)
	t.Logf("core2.example.org ordered by core1, validated on core2's front: %s", time.Since(begin).Round(time.Millisecond))
	got := waitWildcard(t, front("127.0.0.2"), "core2.example.org", roots, 30*time.Second, c2)
	if got == first {
		t.Fatal("core2.example.org is served core1's certificate")
	}
}
