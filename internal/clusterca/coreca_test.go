package clusterca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// needOpenSSL returns the openssl binary. Missing, it skips the test on a
// developer's machine but fails it in CI, where .ci/run installs it.
func needOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is required in CI (.ci/run installs it) but is not on PATH")
		}
		t.Skip("openssl not installed")
	}
	return p
}

func runOpenSSL(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(needOpenSSL(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// coreCA makes a CA directory the way open-pryv.io's bootstrap does
// (components/business/src/bootstrap/ClusterCA.ts, ensure(): a SEC 1 P-256
// key from "ecparam -genkey -noout", then "req -x509 -new" with CN
// pryv-cluster-ca for 3650 days and openssl.cnf's default extensions) and
// returns it. extra is appended to the req command (e.g. -addext).
func coreCA(t *testing.T, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	runOpenSSL(t, dir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
	if err := os.Chmod(filepath.Join(dir, "ca.key"), 0o600); err != nil {
		t.Fatal(err)
	}
	runOpenSSL(t, dir, append([]string{"req", "-x509", "-new", "-key", "ca.key", "-days", "3650", "-out", "ca.crt", "-subj", "/CN=pryv-cluster-ca"}, extra...)...)
	return dir
}

// coreNodeCert issues a node certificate from caDir the way open-pryv.io's
// bootstrap does (ClusterCA.issueNodeCert: a CSR signed by openssl x509
// -req with an extfile holding only subjectAltName, serials in ca.srl).
func coreNodeCert(t *testing.T, caDir, id, hostname, ip string) (certFile, keyFile string) {
	t.Helper()
	tmp := t.TempDir()
	runOpenSSL(t, tmp, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "node.key")
	runOpenSSL(t, tmp, "req", "-new", "-key", "node.key", "-out", "node.csr", "-subj", "/CN="+id)
	ext := fmt.Sprintf("subjectAltName = DNS:%s, DNS:%s, IP:%s\n", id, hostname, ip)
	if err := os.WriteFile(filepath.Join(tmp, "node.ext"), []byte(ext), 0o600); err != nil {
		t.Fatal(err)
	}
	runOpenSSL(t, tmp, "x509", "-req", "-in", "node.csr",
		"-CA", filepath.Join(caDir, CoreCACertName), "-CAkey", filepath.Join(caDir, CAKeyName),
		"-CAcreateserial", "-CAserial", filepath.Join(caDir, CASerialName),
		"-days", "365", "-out", "node.crt", "-extfile", "node.ext")
	return filepath.Join(tmp, "node.crt"), filepath.Join(tmp, "node.key")
}

// snapshot is a directory's names, contents, modes and modification times.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&b, "%s %v %s %x\n", e.Name(), fi.Mode(), fi.ModTime().Format(time.RFC3339Nano), sum[:8])
	}
	return b.String()
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCertPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCoreCA: a CA made by open-pryv.io's bootstrap is used as it is — its
// files untouched, ca.srl included — and node certificates from it chain to
// ca.crt, for Go and for openssl; the bootstrap's own node certificates (no
// key usages) pass PlatformDB's mutual TLS.
func TestCoreCA(t *testing.T) {
	t.Parallel()
	dir := coreCA(t)
	if b, _ := os.ReadFile(filepath.Join(dir, CAKeyName)); !bytes.HasPrefix(b, []byte("-----BEGIN EC PRIVATE KEY-----")) {
		t.Fatalf("openssl ecparam wrote %q, not SEC 1 (the test would not test what bootstrap writes)", b[:min(len(b), 40)])
	}
	caCert := readCert(t, filepath.Join(dir, CoreCACertName))
	if caCert.KeyUsage != 0 || !caCert.IsCA || caCert.Subject.CommonName != "pryv-cluster-ca" {
		t.Fatalf("openssl req -x509 made keyUsage %v IsCA %v; this test expects no keyUsage and CA:TRUE", caCert.KeyUsage, caCert.IsCA)
	}
	coreNode, coreNodeKey := coreNodeCert(t, dir, "core-b", "core-b.mc.example.com", "127.0.0.1")
	before := snapshot(t, dir)
	if !strings.Contains(before, CASerialName+" ") {
		t.Fatalf("no ca.srl after openssl signed:\n%s", before)
	}

	ca, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, CACertName)); err == nil {
		t.Fatal("a ca.pem was written beside the core's ca.crt")
	}
	if ca.CertFile() != filepath.Join(dir, CoreCACertName) || ca2.CertFile() != ca.CertFile() {
		t.Fatalf("CertFile %s / %s, want ca.crt", ca.CertFile(), ca2.CertFile())
	}
	sum := sha256.Sum256(caCert.Raw)
	if want := "sha256:" + hex.EncodeToString(sum[:]); ca.Fingerprint() != want || ca2.Fingerprint() != want {
		t.Fatalf("fingerprint %s, want that of ca.crt %s", ca.Fingerprint(), want)
	}

	// Node certificates issued here chain to ca.crt.
	nodeDir := filepath.Join(t.TempDir(), "node")
	certFile, keyFile, err := EnsureNodeCert(ca, nodeDir, Node{ID: "core-a", DNSNames: []string{"core-a.mc.example.com"}, IPs: loopback})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _ := os.ReadFile(certFile)
	leaf := verify(t, ca, certPEM, x509.ExtKeyUsageServerAuth)
	verify(t, ca, certPEM, x509.ExtKeyUsageClientAuth)
	if !bytes.Equal(leaf.AuthorityKeyId, caCert.SubjectKeyId) {
		t.Errorf("authority key id %x, want ca.crt's subject key id %x", leaf.AuthorityKeyId, caCert.SubjectKeyId)
	}
	for _, purpose := range []string{"sslserver", "sslclient"} {
		out := runOpenSSL(t, nodeDir, "verify", "-CAfile", filepath.Join(dir, CoreCACertName), "-purpose", purpose, certFile)
		if strings.TrimSpace(out) != certFile+": OK" {
			t.Fatalf("openssl verify -purpose %s: %s", purpose, out)
		}
	}

	// Nothing in the CA directory changed: not ca.key, ca.crt, nor ca.srl.
	if after := snapshot(t, dir); after != before {
		t.Fatalf("the CA directory changed:\nbefore:\n%safter:\n%s", before, after)
	}

	// The bootstrap's node certificate (subjectAltName only) is a valid
	// client and server certificate under this CA: PlatformDB accepts it as
	// a peer (decision 0017), and pryv-tls's node certificate is accepted
	// the other way round.
	core, err := tls.LoadX509KeyPair(coreNode, coreNodeKey)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	server := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ours}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
	if err := handshake(t, server, &tls.Config{ServerName: "127.0.0.1", RootCAs: ca.Pool(), Certificates: []tls.Certificate{core}}); err != nil {
		t.Fatalf("the bootstrap's node certificate as a client of pryv-tls: %v", err)
	}
	server = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{core}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
	if err := handshake(t, server, &tls.Config{ServerName: "core-b.mc.example.com", RootCAs: ca.Pool(), Certificates: []tls.Certificate{ours}}); err != nil {
		t.Fatalf("pryv-tls's node certificate as a client of the bootstrap's: %v", err)
	}
	// ...and a CA of pryv-tls's does not.
	other, _ := newCA(t)
	server.ClientCAs = other.Pool()
	if err := handshake(t, server, &tls.Config{ServerName: "core-b.mc.example.com", RootCAs: ca.Pool(), Certificates: []tls.Certificate{ours}}); err == nil {
		t.Fatal("a node certificate accepted by a server trusting another CA")
	}
}

// TestCoreFindsOurCA: a CA created here is in the layout open-pryv.io's
// bootstrap reuses (ca.key + ca.crt: its ClusterCA.ensure() makes a new key
// whenever one of them is missing), and openssl signs with it.
func TestCoreFindsOurCA(t *testing.T) {
	t.Parallel()
	ca, dir := newCA(t)
	nodeCert, _ := coreNodeCert(t, dir, "core-b", "core-b.mc.example.com", "127.0.0.1")
	b, _ := os.ReadFile(nodeCert)
	verify(t, ca, b, x509.ExtKeyUsageClientAuth)
	if ca2, err := LoadCA(dir); err != nil || ca2.Fingerprint() != ca.Fingerprint() {
		t.Fatalf("after openssl signed (and wrote ca.srl): %v", err)
	}
}

// TestFirstLayout: a CA of pryv-tls's first layout (ca.pem + ca.key) still
// loads; LoadCA writes nothing, LoadOrCreateCA adds ca.crt beside ca.pem.
func TestFirstLayout(t *testing.T) {
	t.Parallel()
	ca, dir := newCA(t)
	if err := os.Remove(filepath.Join(dir, CoreCACertName)); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.CertFile() != filepath.Join(dir, CACertName) || loaded.Fingerprint() != ca.Fingerprint() {
		t.Fatalf("CertFile %s", loaded.CertFile())
	}
	if after := snapshot(t, dir); after != before {
		t.Fatalf("LoadCA wrote:\n%s", after)
	}
	loaded, err = LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.CertFile() != filepath.Join(dir, CoreCACertName) {
		t.Fatalf("CertFile %s, want ca.crt", loaded.CertFile())
	}
	pemBytes, _ := os.ReadFile(filepath.Join(dir, CACertName))
	crtBytes, _ := os.ReadFile(filepath.Join(dir, CoreCACertName))
	if !bytes.Equal(pemBytes, crtBytes) || mode(t, filepath.Join(dir, CoreCACertName)) != 0o644 {
		t.Fatal("ca.crt is not ca.pem's copy, mode 0644")
	}
	if got := dirNames(t, dir); got != "ca.crt ca.key ca.pem" {
		t.Fatalf("dir holds %s", got)
	}
}

// caFiles writes a CA certificate made from tmpl (self-signed with key) as
// ca.crt and key as ca.key (0600, PEM of type keyType: PKCS#8, SEC 1 or
// PKCS#1) in a new directory.
func caFiles(t *testing.T, tmpl *x509.Certificate, key crypto.Signer, keyType string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	var keyDER []byte
	switch keyType {
	case "PRIVATE KEY":
		keyDER, err = x509.MarshalPKCS8PrivateKey(key)
	case "EC PRIVATE KEY":
		keyDER, err = x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	case "RSA PRIVATE KEY":
		keyDER = x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, CoreCACertName), encodePEM("CERTIFICATE", der), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, CAKeyName), encodePEM(keyType, keyDER), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// caTemplate is what openssl req -x509 makes by default: CA:TRUE, no
// keyUsage, no path length.
func caTemplate() *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: "pryv-cluster-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

func ecKey(t *testing.T, curve elliptic.Curve) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t *testing.T, bits int) crypto.Signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCAKeyTypes: the CA key in PKCS#8, SEC 1 or PKCS#1; ECDSA P-256 and
// P-384 and RSA are used, other keys refused with what to use instead.
func TestCAKeyTypes(t *testing.T) {
	t.Parallel()
	p256, p384, p521 := ecKey(t, elliptic.P256()), ecKey(t, elliptic.P384()), ecKey(t, elliptic.P521())
	rsa2048, rsa1024 := rsaKey(t, 2048), rsaKey(t, 1024)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const use = "cannot be the cluster CA's: use ECDSA P-256 (openssl ecparam -name prime256v1 -genkey -noout), P-384, or RSA of 2048 bits or more"
	for _, tc := range []struct {
		name    string
		key     crypto.Signer
		keyType string
		refusal string // "" when accepted
	}{
		{"P-256 PKCS#8", p256, "PRIVATE KEY", ""},
		{"P-256 SEC 1", p256, "EC PRIVATE KEY", ""},
		{"P-384 PKCS#8", p384, "PRIVATE KEY", ""},
		{"P-384 SEC 1", p384, "EC PRIVATE KEY", ""},
		{"RSA 2048 PKCS#1", rsa2048, "RSA PRIVATE KEY", ""},
		{"RSA 2048 PKCS#8", rsa2048, "PRIVATE KEY", ""},
		{"P-521", p521, "EC PRIVATE KEY", "an ECDSA P-521 key " + use},
		{"RSA 1024", rsa1024, "RSA PRIVATE KEY", "an RSA key of 1024 bits " + use},
		{"Ed25519", ed, "PRIVATE KEY", "an Ed25519 key " + use},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := caFiles(t, caTemplate(), tc.key, tc.keyType)
			ca, err := LoadCA(dir)
			if tc.refusal != "" {
				want := fmt.Sprintf("cluster CA: %s: %s", filepath.Join(dir, CAKeyName), tc.refusal)
				if err == nil || err.Error() != want {
					t.Fatalf("error %v\nwant  %s", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			certPEM, keyPEM, err := ca.IssueNode("core-a", nil, loopback, 0)
			if err != nil {
				t.Fatal(err)
			}
			verify(t, ca, certPEM, x509.ExtKeyUsageServerAuth)
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCoreCARefusals: each way a CA directory can be unusable, with the
// exact message the operator reads.
func TestCoreCARefusals(t *testing.T) {
	t.Parallel()
	p256 := func() crypto.Signer { return ecKey(t, elliptic.P256()) }
	key := p256()
	expect := func(t *testing.T, dir, want string) {
		t.Helper()
		before := snapshot(t, dir)
		for _, load := range []func(string) (*CA, error){LoadCA, LoadOrCreateCA} {
			_, err := load(dir)
			if err == nil || err.Error() != want {
				t.Fatalf("error %v\nwant  %s", err, want)
			}
		}
		if after := snapshot(t, dir); after != before {
			t.Fatalf("a refused CA directory was written to:\n%s", after)
		}
	}

	// Made by openssl, as an operator or another tool could.
	crtOf := func(dir string) string { return filepath.Join(dir, CoreCACertName) }
	t.Run("NotACA", func(t *testing.T) {
		dir := coreCA(t, "-addext", "basicConstraints=critical,CA:FALSE")
		expect(t, dir, fmt.Sprintf("cluster CA: %s is not a CA certificate (no basicConstraints CA:TRUE)", crtOf(dir)))
		tmpl := caTemplate()
		tmpl.BasicConstraintsValid = false // no basicConstraints at all
		dir = caFiles(t, tmpl, key, "PRIVATE KEY")
		expect(t, dir, fmt.Sprintf("cluster CA: %s is not a CA certificate (no basicConstraints CA:TRUE)", crtOf(dir)))
	})
	t.Run("KeyUsageWithoutCertSign", func(t *testing.T) {
		dir := coreCA(t, "-addext", "keyUsage=critical,digitalSignature,cRLSign")
		expect(t, dir, fmt.Sprintf("cluster CA: %s has a key usage without keyCertSign: it may not sign certificates", crtOf(dir)))
		if _, err := LoadCA(coreCA(t, "-addext", "keyUsage=critical,keyCertSign,cRLSign")); err != nil {
			t.Fatalf("keyUsage with keyCertSign: %v", err)
		}
	})
	t.Run("KeyOfAnotherCA", func(t *testing.T) {
		dir, other := coreCA(t), coreCA(t)
		b, _ := os.ReadFile(filepath.Join(other, CAKeyName))
		if err := os.WriteFile(filepath.Join(dir, CAKeyName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		expect(t, dir, fmt.Sprintf("cluster CA: key %s does not match certificate %s", filepath.Join(dir, CAKeyName), crtOf(dir)))
	})
	t.Run("WorldReadableKey", func(t *testing.T) {
		dir := coreCA(t)
		keyPath := filepath.Join(dir, CAKeyName)
		for _, m := range []os.FileMode{0o644, 0o640, 0o604} {
			if err := os.Chmod(keyPath, m); err != nil {
				t.Fatal(err)
			}
			expect(t, dir, fmt.Sprintf("cluster CA: key %s is readable or writable by group or others (mode %#o): run chmod 600 %s", keyPath, m, keyPath))
		}
	})
	t.Run("CoreCAAndOurs", func(t *testing.T) {
		dir := coreCA(t)
		_, ours := newCA(t)
		b, _ := os.ReadFile(filepath.Join(ours, CACertName))
		if err := os.WriteFile(filepath.Join(dir, CACertName), b, 0o644); err != nil {
			t.Fatal(err)
		}
		expect(t, dir, fmt.Sprintf("cluster CA: %s and %s are not the same certificate; ca.key belongs to ca.crt: move %s away",
			crtOf(dir), filepath.Join(dir, CACertName), filepath.Join(dir, CACertName)))
	})
	t.Run("Expired", func(t *testing.T) {
		tmpl := caTemplate()
		tmpl.NotBefore, tmpl.NotAfter = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
		dir := caFiles(t, tmpl, key, "PRIVATE KEY")
		expect(t, dir, fmt.Sprintf("cluster CA: %s expired on 2021-01-01T00:00:00Z", filepath.Join(dir, CoreCACertName)))
	})
	t.Run("WorldReadableKey", func(t *testing.T) {
		dir := caFiles(t, caTemplate(), key, "EC PRIVATE KEY")
		keyPath := filepath.Join(dir, CAKeyName)
		for _, m := range []os.FileMode{0o644, 0o640, 0o604} {
			if err := os.Chmod(keyPath, m); err != nil {
				t.Fatal(err)
			}
			expect(t, dir, fmt.Sprintf("cluster CA: key %s is readable or writable by group or others (mode %#o): run chmod 600 %s", keyPath, m, keyPath))
		}
	})
	t.Run("EncryptedKey", func(t *testing.T) {
		dir := caFiles(t, caTemplate(), key, "EC PRIVATE KEY")
		keyPath := filepath.Join(dir, CAKeyName)
		enc := "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIGbMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAgAAAAAAAAAAAICCAAw\n-----END ENCRYPTED PRIVATE KEY-----\n"
		if err := os.WriteFile(keyPath, []byte(enc), 0o600); err != nil {
			t.Fatal(err)
		}
		expect(t, dir, fmt.Sprintf("cluster CA: %s: the key is encrypted: store it unencrypted (openssl pkey -in KEY -out NEW, then replace KEY with NEW, mode 0600)", keyPath))
	})
	t.Run("CertWithoutKey", func(t *testing.T) {
		dir := caFiles(t, caTemplate(), key, "PRIVATE KEY")
		if err := os.Remove(filepath.Join(dir, CAKeyName)); err != nil {
			t.Fatal(err)
		}
		expect(t, dir, fmt.Sprintf("cluster CA: %s exists but %s is missing: this is not the CA holder (open-pryv.io copies ca.crt alone to the other cores); run this on the core that has ca.key, or restore it from a backup",
			filepath.Join(dir, CoreCACertName), filepath.Join(dir, CAKeyName)))
	})

	// ca.crt and ca.pem side by side: the same certificate is fine, two
	// different ones are refused, naming the one to move away.
	t.Run("BothNames", func(t *testing.T) {
		_, dir := newCA(t) // ca.crt and ca.pem, the same
		if _, err := LoadCA(dir); err != nil {
			t.Fatalf("ca.crt and ca.pem the same certificate: %v", err)
		}
		strangerDir := caFiles(t, caTemplate(), p256(), "PRIVATE KEY")
		stranger, _ := os.ReadFile(filepath.Join(strangerDir, CoreCACertName))
		crt, pemPath := filepath.Join(dir, CoreCACertName), filepath.Join(dir, CACertName)
		good, _ := os.ReadFile(crt)

		_ = os.WriteFile(pemPath, stranger, 0o644)
		expect(t, dir, fmt.Sprintf("cluster CA: %s and %s are not the same certificate; ca.key belongs to ca.crt: move %s away", crt, pemPath, pemPath))

		_ = os.WriteFile(pemPath, good, 0o644)
		_ = os.WriteFile(crt, stranger, 0o644)
		expect(t, dir, fmt.Sprintf("cluster CA: %s and %s are not the same certificate; ca.key belongs to ca.pem: move %s away", crt, pemPath, crt))

		_ = os.WriteFile(pemPath, stranger, 0o644)
		_ = os.WriteFile(crt, good, 0o644)
		_ = os.WriteFile(filepath.Join(dir, CAKeyName), func() []byte {
			b, _ := os.ReadFile(filepath.Join(caFiles(t, caTemplate(), p256(), "PRIVATE KEY"), CAKeyName))
			return b
		}(), 0o600)
		expect(t, dir, fmt.Sprintf("cluster CA: %s and %s are not the same certificate and ca.key matches neither: restore the certificate of ca.key from a backup", crt, pemPath))

		// Two certificates for the one key (a CA certificate re-made).
		twice := caFiles(t, caTemplate(), key, "PRIVATE KEY")
		again := caTemplate()
		again.SerialNumber = big.NewInt(8)
		der, err := x509.CreateCertificate(rand.Reader, again, again, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		_ = os.WriteFile(filepath.Join(twice, CACertName), encodePEM("CERTIFICATE", der), 0o644)
		expect(t, twice, fmt.Sprintf("cluster CA: %s and %s are not the same certificate (both are for ca.key): keep ca.crt (open-pryv.io reads it) and move %s away",
			filepath.Join(twice, CoreCACertName), filepath.Join(twice, CACertName), filepath.Join(twice, CACertName)))
	})
}

// TestCoreCASameCertTwice: ca.pem beside the core's ca.crt is fine when it
// is the same certificate (an operator copied it).
func TestCoreCASameCertTwice(t *testing.T) {
	t.Parallel()
	dir := coreCA(t)
	b, _ := os.ReadFile(filepath.Join(dir, CoreCACertName))
	if err := os.WriteFile(filepath.Join(dir, CACertName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca.Certificate().Raw, readCert(t, filepath.Join(dir, CoreCACertName)).Raw) {
		t.Fatal("not the certificate of ca.crt")
	}
}
