package clusterca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/certs"
)

var loopback = []net.IP{net.IPv4(127, 0, 0, 1)}

func newCA(t *testing.T) (*CA, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ca, dir
}

// dirNames lists dir's entries, sorted, space-separated.
func dirNames(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestCreateAndLoad(t *testing.T) {
	t.Parallel()
	ca, dir := newCA(t)

	if m := mode(t, dir); m != 0o700 {
		t.Errorf("dir mode %#o, want 0700", m)
	}
	if m := mode(t, filepath.Join(dir, CACertName)); m != 0o644 {
		t.Errorf("ca.pem mode %#o, want 0644", m)
	}
	if m := mode(t, filepath.Join(dir, CAKeyName)); m != 0o600 {
		t.Errorf("ca.key mode %#o, want 0600", m)
	}
	if got := dirNames(t, dir); got != "ca.crt ca.key ca.pem" {
		t.Errorf("dir holds %s, want ca.crt ca.key ca.pem", got)
	}
	if ca.CertFile() != filepath.Join(dir, CoreCACertName) {
		t.Errorf("CertFile %s, want ca.crt", ca.CertFile())
	}

	c := ca.Certificate()
	if c.Subject.CommonName != CACommonName || !c.IsCA || !c.BasicConstraintsValid ||
		c.MaxPathLen != 0 || !c.MaxPathLenZero ||
		c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Fatalf("CA certificate: CN %q IsCA %v MaxPathLen %d/%v KeyUsage %v", c.Subject.CommonName, c.IsCA, c.MaxPathLen, c.MaxPathLenZero, c.KeyUsage)
	}
	if life := c.NotAfter.Sub(c.NotBefore); life < CAValidity || life > CAValidity+time.Hour {
		t.Fatalf("CA lifetime %v", life)
	}
	if pk, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pk.Curve != elliptic.P256() {
		t.Fatalf("CA key %T, want ECDSA P-256", c.PublicKey)
	}
	keyPEM, _ := os.ReadFile(filepath.Join(dir, CAKeyName))
	if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "PRIVATE KEY" {
		t.Fatalf("ca.key is not PKCS#8 PEM")
	} else if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{CACertName, CoreCACertName} {
		if m := mode(t, filepath.Join(dir, name)); m != 0o644 {
			t.Errorf("%s mode %#o, want 0644", name, m)
		}
		certPEM, _ := os.ReadFile(filepath.Join(dir, name))
		if !bytes.Equal(certPEM, ca.CertPEM()) {
			t.Fatalf("CertPEM differs from %s", name)
		}
	}

	// Load, and LoadOrCreate of an existing CA, give the same CA.
	for _, load := range []func(string) (*CA, error){LoadCA, LoadOrCreateCA} {
		ca2, err := load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ca2.CertPEM(), ca.CertPEM()) || ca2.Fingerprint() != ca.Fingerprint() {
			t.Fatal("loaded CA differs")
		}
		// It can sign: a certificate it issues verifies against the first.
		certPEM, _, err := ca2.IssueNode("core-1", nil, loopback, 0)
		if err != nil {
			t.Fatal(err)
		}
		verify(t, ca, certPEM, x509.ExtKeyUsageServerAuth)
	}

	// Fingerprint: sha256 of the DER, stable, different per CA.
	sum := sha256.Sum256(c.Raw)
	if want := "sha256:" + hex.EncodeToString(sum[:]); ca.Fingerprint() != want {
		t.Fatalf("Fingerprint %s, want %s", ca.Fingerprint(), want)
	}
	if a, b := ca.Fingerprint(), ca.Fingerprint(); a != b {
		t.Fatal("Fingerprint not stable")
	}
	other, _ := newCA(t)
	if other.Fingerprint() == ca.Fingerprint() {
		t.Fatal("two CAs share a fingerprint")
	}

	if _, err := LoadCA(t.TempDir()); err == nil {
		t.Fatal("LoadCA of an empty dir succeeded")
	}
}

func TestLoadRefuses(t *testing.T) {
	t.Parallel()
	copyCA := func(t *testing.T, from string) string {
		dir := filepath.Join(t.TempDir(), "ca")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{CACertName, CAKeyName} {
			b, err := os.ReadFile(filepath.Join(from, n))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	expectErr := func(t *testing.T, dir string, want ...string) {
		t.Helper()
		for _, load := range []func(string) (*CA, error){LoadCA, LoadOrCreateCA} {
			_, err := load(dir)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not contain %q", err, w)
				}
			}
		}
	}
	_, good := newCA(t)
	_, other := newCA(t)

	t.Run("KeyReadableByGroup", func(t *testing.T) {
		dir := copyCA(t, good)
		key := filepath.Join(dir, CAKeyName)
		for _, m := range []os.FileMode{0o640, 0o604, 0o660} {
			if err := os.Chmod(key, m); err != nil {
				t.Fatal(err)
			}
			expectErr(t, dir, key, "chmod 600")
		}
		if err := os.Chmod(key, 0o400); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCA(dir); err != nil {
			t.Fatalf("mode 0400: %v", err)
		}
	})
	t.Run("Mismatch", func(t *testing.T) {
		dir := copyCA(t, good)
		b, _ := os.ReadFile(filepath.Join(other, CAKeyName))
		if err := os.WriteFile(filepath.Join(dir, CAKeyName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		expectErr(t, dir, "does not match")
	})
	t.Run("NotACA", func(t *testing.T) {
		ca, err := LoadCA(good)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, keyPEM, err := ca.IssueNode("core-1", nil, loopback, 0)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "ca")
		_ = os.Mkdir(dir, 0o700)
		_ = os.WriteFile(filepath.Join(dir, CACertName), certPEM, 0o644)
		_ = os.WriteFile(filepath.Join(dir, CAKeyName), keyPEM, 0o600)
		expectErr(t, dir, "not a CA")
	})
	t.Run("HalfMissing", func(t *testing.T) {
		dir := copyCA(t, good)
		if err := os.Remove(filepath.Join(dir, CAKeyName)); err != nil {
			t.Fatal(err)
		}
		expectErr(t, dir, CAKeyName, "missing")
		// And nothing was created in its place.
		if _, err := os.Stat(filepath.Join(dir, CAKeyName)); err == nil {
			t.Fatal("LoadOrCreateCA created a key next to an existing ca.pem")
		}
		dir = copyCA(t, good)
		if err := os.Remove(filepath.Join(dir, CACertName)); err != nil {
			t.Fatal(err)
		}
		expectErr(t, dir, CAKeyName, "no certificate beside it")
		if _, err := os.Stat(filepath.Join(dir, CoreCACertName)); err == nil {
			t.Fatal("LoadOrCreateCA created a certificate next to an existing ca.key")
		}
	})
	t.Run("Garbage", func(t *testing.T) {
		dir := copyCA(t, good)
		_ = os.WriteFile(filepath.Join(dir, CACertName), []byte("not pem"), 0o644)
		expectErr(t, dir, filepath.Join(dir, CACertName))
	})
}

// verify checks certPEM against ca's pool for the usage, and returns the
// leaf.
func verify(t *testing.T, ca *CA, certPEM []byte, usage x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Fatalf("verify for %v: %v", usage, err)
	}
	return cert
}

func TestIssueNode(t *testing.T) {
	t.Parallel()
	ca, _ := newCA(t)
	other, _ := newCA(t)
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP("10.0.0.5"), net.ParseIP("fd00::5")}
	certPEM, keyPEM, err := ca.IssueNode("core-1", []string{"core-1.example.com"}, ips, 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf := verify(t, ca, certPEM, x509.ExtKeyUsageServerAuth)
	verify(t, ca, certPEM, x509.ExtKeyUsageClientAuth)
	if leaf.Subject.CommonName != "core-1" {
		t.Fatalf("CN %q", leaf.Subject.CommonName)
	}
	if got := strings.Join(leaf.DNSNames, ","); got != "core-1,core-1.example.com" {
		t.Fatalf("DNS SANs %s", got)
	}
	if len(leaf.IPAddresses) != 3 {
		t.Fatalf("IP SANs %v", leaf.IPAddresses)
	}
	for _, h := range []string{"127.0.0.1", "10.0.0.5", "fd00::5", "core-1", "core-1.example.com"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Fatalf("%s: %v", h, err)
		}
	}
	if leaf.IsCA {
		t.Fatal("node certificate is a CA")
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < DefaultNodeValidity || life > DefaultNodeValidity+time.Hour {
		t.Fatalf("lifetime %v", life)
	}
	if pk, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pk.Curve != elliptic.P256() {
		t.Fatalf("key %T", leaf.PublicKey)
	}
	if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "PRIVATE KEY" {
		t.Fatal("key is not PKCS#8 PEM")
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}

	// Another CA does not accept it.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: other.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Fatal("certificate verifies against another CA")
	}

	// Validity given; an IP id goes into the IP SANs.
	certPEM, _, err = ca.IssueNode("127.0.0.2", nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf = verify(t, ca, certPEM, x509.ExtKeyUsageClientAuth)
	if len(leaf.DNSNames) != 0 || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 2)) {
		t.Fatalf("IP id: DNS %v IP %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life > 2*time.Hour {
		t.Fatalf("lifetime %v, want about 1h", life)
	}

	// Bad ids and names.
	for _, id := range []string{"", "core 1", "a/b", strings.Repeat("x", 65)} {
		if _, _, err := ca.IssueNode(id, nil, nil, 0); err == nil {
			t.Errorf("id %q accepted", id)
		}
	}
	if _, _, err := ca.IssueNode("core-1", []string{"bad name"}, nil, 0); err == nil {
		t.Error("DNS name with a space accepted")
	}
}

// TestMutualTLS: two node certificates from the CA complete a mutually
// authenticated handshake; a client with a certificate of another CA, or
// with none, is refused.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	ca, _ := newCA(t)
	other, _ := newCA(t)
	pair := func(ca *CA, id string) tls.Certificate {
		c, k, err := ca.IssueNode(id, nil, loopback, 0)
		if err != nil {
			t.Fatal(err)
		}
		kp, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	server := &tls.Config{Certificates: []tls.Certificate{pair(ca, "core-1")}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
	handshake := func(client *tls.Config) error { return handshake(t, server, client) }
	good := &tls.Config{ServerName: "127.0.0.1", RootCAs: ca.Pool(), Certificates: []tls.Certificate{pair(ca, "core-2")}}
	if err := handshake(good); err != nil {
		t.Fatalf("node to node: %v", err)
	}
	stranger := &tls.Config{ServerName: "127.0.0.1", RootCAs: ca.Pool(), Certificates: []tls.Certificate{pair(other, "core-2")}}
	if err := handshake(stranger); err == nil {
		t.Fatal("client from another CA accepted")
	}
	anonymous := &tls.Config{ServerName: "127.0.0.1", RootCAs: ca.Pool()}
	if err := handshake(anonymous); err == nil {
		t.Fatal("client without a certificate accepted")
	}
}

// handshake runs a TLS handshake over a pipe and one byte from the server:
// in TLS 1.3 the client learns of a refused client certificate on its first
// read.
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	srvErr := make(chan error, 1)
	go func() {
		s := tls.Server(b, server)
		err := s.HandshakeContext(ctx)
		if err == nil {
			_, err = s.Write([]byte("x"))
		}
		srvErr <- err
		s.Close()
	}()
	c := tls.Client(a, client)
	err := c.HandshakeContext(ctx)
	if err == nil {
		_, err = c.Read(make([]byte, 1))
	}
	if serr := <-srvErr; err == nil {
		err = serr
	}
	return err
}

func TestEnsureNodeCert(t *testing.T) {
	t.Parallel()
	ca, _ := newCA(t)
	dir := filepath.Join(t.TempDir(), "node")
	read := func() (cert, key []byte) {
		t.Helper()
		cert, err := os.ReadFile(filepath.Join(dir, NodeCertName))
		if err != nil {
			t.Fatal(err)
		}
		key, err = os.ReadFile(filepath.Join(dir, NodeKeyName))
		if err != nil {
			t.Fatal(err)
		}
		return cert, key
	}
	ensure := func(ca *CA, dns []string, ips []net.IP) {
		t.Helper()
		cf, kf, err := EnsureNodeCert(ca, dir, Node{ID: "core-1", DNSNames: dns, IPs: ips})
		if err != nil {
			t.Fatal(err)
		}
		if cf != filepath.Join(dir, NodeCertName) || kf != filepath.Join(dir, NodeKeyName) {
			t.Fatalf("paths %s %s", cf, kf)
		}
	}

	// Created.
	ensure(ca, []string{"core-1.example.com"}, loopback)
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("dir mode %#o", m)
	}
	if m := mode(t, filepath.Join(dir, NodeCertName)); m != 0o644 {
		t.Errorf("node.pem mode %#o", m)
	}
	if m := mode(t, filepath.Join(dir, NodeKeyName)); m != 0o600 {
		t.Errorf("node-key.pem mode %#o", m)
	}
	cert1, key1 := read()
	if _, err := tls.X509KeyPair(cert1, key1); err != nil {
		t.Fatal(err)
	}
	verify(t, ca, cert1, x509.ExtKeyUsageServerAuth)
	verify(t, ca, cert1, x509.ExtKeyUsageClientAuth)

	// Kept: same request (names in another order, with duplicates and
	// another case; the IP in its 16-byte form).
	ensure(ca, []string{"CORE-1.example.com", "core-1"}, []net.IP{net.ParseIP("127.0.0.1").To16(), net.IPv4(127, 0, 0, 1)})
	if cert, key := read(); !bytes.Equal(cert, cert1) || !bytes.Equal(key, key1) {
		t.Fatal("re-issued for the same request")
	}

	// SANs differ (one more IP, then one fewer name): re-issued, key kept.
	ensure(ca, []string{"core-1.example.com"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)})
	cert2, key2 := read()
	if bytes.Equal(cert2, cert1) || !bytes.Equal(key2, key1) {
		t.Fatal("new IP: want a new certificate on the same key")
	}
	if leaf := verify(t, ca, cert2, x509.ExtKeyUsageClientAuth); leaf.VerifyHostname("127.0.0.2") != nil {
		t.Fatal("new IP missing")
	}
	ensure(ca, nil, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)})
	cert3, _ := read()
	if bytes.Equal(cert3, cert2) {
		t.Fatal("name removed: not re-issued")
	}
	if leaf := verify(t, ca, cert3, x509.ExtKeyUsageClientAuth); len(leaf.DNSNames) != 1 {
		t.Fatalf("DNS SANs %v", leaf.DNSNames)
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)}

	// Signed by another CA: re-issued by this one.
	other, _ := newCA(t)
	ensure(other, nil, ips)
	cert4, _ := read()
	verify(t, other, cert4, x509.ExtKeyUsageClientAuth)
	ensure(ca, nil, ips)
	cert5, _ := read()
	verify(t, ca, cert5, x509.ExtKeyUsageClientAuth)

	// Less than 30 days left: re-issued for a year.
	short, err := ca.issueForTest("core-1", ips, 29*24*time.Hour, key1)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, NodeCertName), short, 0o644); err != nil {
		t.Fatal(err)
	}
	ensure(ca, nil, ips)
	cert6, _ := read()
	if leaf := verify(t, ca, cert6, x509.ExtKeyUsageClientAuth); time.Until(leaf.NotAfter) < DefaultNodeValidity-time.Hour {
		t.Fatalf("renewed certificate ends %v", leaf.NotAfter)
	}
	// 31 days left: kept.
	long, err := ca.issueForTest("core-1", ips, 31*24*time.Hour, key1)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, NodeCertName), long, 0o644)
	ensure(ca, nil, ips)
	if cert, _ := read(); !bytes.Equal(cert, long) {
		t.Fatal("certificate with 31 days left re-issued")
	}

	// A key readable by others is not reused: new key, new certificate.
	_ = os.Chmod(filepath.Join(dir, NodeKeyName), 0o644)
	ensure(ca, nil, ips)
	cert7, key7 := read()
	if bytes.Equal(key7, key1) || bytes.Equal(cert7, long) {
		t.Fatal("loose key kept")
	}
	if m := mode(t, filepath.Join(dir, NodeKeyName)); m != 0o600 {
		t.Fatalf("new key mode %#o", m)
	}
	if _, err := tls.X509KeyPair(cert7, key7); err != nil {
		t.Fatal(err)
	}
	// Missing certificate or key: issued again, a pair.
	_ = os.Remove(filepath.Join(dir, NodeCertName))
	ensure(ca, nil, ips)
	cert8, key8 := read()
	if !bytes.Equal(key8, key7) {
		t.Fatal("key replaced when only the certificate was missing")
	}
	_ = os.Remove(filepath.Join(dir, NodeKeyName))
	ensure(ca, nil, ips)
	cert9, key9 := read()
	if bytes.Equal(cert9, cert8) || bytes.Equal(key9, key8) {
		t.Fatal("missing key: not re-issued")
	}
	if _, err := tls.X509KeyPair(cert9, key9); err != nil {
		t.Fatal(err)
	}
	// No temporary files left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("dir holds %v", names)
	}
}

// issueForTest signs a certificate of a given validity for the key in
// keyPEM (as EnsureNodeCert would, but with any lifetime).
func (ca *CA) issueForTest(id string, ips []net.IP, validity time.Duration, keyPEM []byte) ([]byte, error) {
	key, err := certs.ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	cert, err := ca.issue(Node{ID: id, IPs: ips}, validity, key.Public())
	return cert, err
}
