package join

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/clusterca"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// TestRenewNodeCert: a node presenting its current certificate over mutual
// TLS gets a fresh one for the same key, names and addresses; a stranger
// (another CA's certificate) gets nothing.
func TestRenewNodeCert(t *testing.T) {
	dir := t.TempDir()
	ca, err := clusterca.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	// The CA holder's listener.
	hcert, hkey, err := ca.IssueNode("core1", nil, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	holder, err := LoadServerCert(write("h.pem", hcert), write("h.key", hkey))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", holder.TLSConfig(ca.Pool()))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: &Server{Renew: func(old *x509.Certificate) ([]byte, error) {
		return ca.Renew(old, clusterca.DefaultNodeValidity)
	}}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	joinURL := "https://" + ln.Addr().String() + "/join"
	caFile := write("ca.pem", ca.CertPEM())

	// A node certificate about to expire.
	ncert, nkey, err := ca.IssueNode("core2", []string{"core2.mc.example.com"}, []net.IP{net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := write("node.pem", ncert), write("node-key.pem", nkey)
	got, err := RenewNodeCert(context.Background(), joinURL, platformdb.TLSFiles{CAFile: caFile, CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(got, nkey); err != nil {
		t.Fatalf("the renewed certificate does not match the node's key: %v", err)
	}
	b, _ := pem.Decode(got)
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "core2" || !strings.Contains(strings.Join(leaf.DNSNames, " "), "core2.mc.example.com") || len(leaf.IPAddresses) != 2 {
		t.Errorf("renewed certificate: CN %q names %v ips %v", leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses)
	}
	if time.Until(leaf.NotAfter) < 300*24*time.Hour {
		t.Errorf("renewed certificate valid until %s, want about a year", leaf.NotAfter)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("renewed certificate does not verify against the cluster CA: %v", err)
	}

	// Another CA's certificate is refused by the TLS handshake itself.
	foreign, _ := devpki.NewCA("foreign")
	fl, _ := foreign.Issue(devpki.Leaf{Names: []string{"core2"}})
	if _, err := RenewNodeCert(context.Background(), joinURL, platformdb.TLSFiles{CAFile: caFile, CertFile: write("f.pem", fl.FullChain), KeyFile: write("f.key", fl.KeyPEM)}); err == nil {
		t.Fatal("a certificate from another CA was renewed")
	}
}
