package certs

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/devpki"
)

// newCA makes a throwaway root.
func newCA(tb testing.TB, name string) *devpki.CA {
	tb.Helper()
	ca, err := devpki.NewCA(name)
	if err != nil {
		tb.Fatalf("NewCA(%q): %v", name, err)
	}
	return ca
}

// mustIssue issues a leaf or fails the test.
func mustIssue(tb testing.TB, ca *devpki.CA, l devpki.Leaf) *devpki.Issued {
	tb.Helper()
	iss, err := ca.Issue(l)
	if err != nil {
		tb.Fatalf("Issue(%v): %v", l.Names, err)
	}
	return iss
}

// mustPair issues a leaf and parses it into a servable certificate.
func mustPair(tb testing.TB, ca *devpki.CA, names ...string) *tls.Certificate {
	tb.Helper()
	iss := mustIssue(tb, ca, devpki.Leaf{Names: names})
	c, err := ParsePair(iss.FullChain, iss.KeyPEM, time.Now())
	if err != nil {
		tb.Fatalf("ParsePair(%v): %v", names, err)
	}
	return c
}

// pairAt issues a leaf valid from notBefore, for tests where issue order matters.
func pairAt(tb testing.TB, ca *devpki.CA, notBefore time.Time, names ...string) *tls.Certificate {
	tb.Helper()
	iss := mustIssue(tb, ca, devpki.Leaf{Names: names, NotBefore: notBefore, NotAfter: notBefore.Add(90 * 24 * time.Hour)})
	c, err := ParsePair(iss.FullChain, iss.KeyPEM, time.Now())
	if err != nil {
		tb.Fatalf("ParsePair(%v): %v", names, err)
	}
	return c
}

// pairWindow issues a leaf valid from notBefore to notAfter, parsed as at
// notBefore (it may be expired by now).
func pairWindow(tb testing.TB, ca *devpki.CA, notBefore, notAfter time.Time, names ...string) *tls.Certificate {
	tb.Helper()
	iss := mustIssue(tb, ca, devpki.Leaf{Names: names, NotBefore: notBefore, NotAfter: notAfter})
	c, err := ParsePair(iss.FullChain, iss.KeyPEM, notBefore)
	if err != nil {
		tb.Fatalf("ParsePair(%v): %v", names, err)
	}
	return c
}

// parseKey reads back the PKCS#8 key devpki writes.
func parseKey(tb testing.TB, keyPEM []byte) crypto.Signer {
	tb.Helper()
	b, _ := pem.Decode(keyPEM)
	if b == nil || b.Type != "PRIVATE KEY" {
		tb.Fatalf("no PKCS#8 block in key")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		tb.Fatalf("ParsePKCS8PrivateKey: %v", err)
	}
	return k.(crypto.Signer)
}

// keyPEM encodes a key as PKCS#8, as devpki does.
func keyPEM(tb testing.TB, key crypto.Signer) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("MarshalPKCS8PrivateKey: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// issueWithKey signs a leaf for an existing key with a root CA (devpki always
// makes a new key): to change one file only, or to mint thousands of
// certificates quickly. Zero times mean "from an hour ago, for 90 days".
func issueWithKey(tb testing.TB, ca *devpki.CA, key crypto.Signer, serial int64, l devpki.Leaf) (certPEM []byte, cert *x509.Certificate) {
	tb.Helper()
	nb, na := l.NotBefore, l.NotAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Hour)
	}
	if na.IsZero() {
		na = nb.Add(90 * 24 * time.Hour)
	}
	sn := big.NewInt(serial)
	if serial == 0 {
		var err error
		if sn, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)); err != nil {
			tb.Fatal(err)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: l.Names[0]},
		DNSNames:     l.Names,
		NotBefore:    nb,
		NotAfter:     na,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		tb.Fatalf("CreateCertificate: %v", err)
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("ParseCertificate: %v", err)
	}
	return devpki.EncodeCert(cert), cert
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) Count(s string) int { return strings.Count(b.String(), s) }
