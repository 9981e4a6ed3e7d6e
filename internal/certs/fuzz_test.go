package certs

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/devpki"
)

// FuzzParsePair feeds arbitrary certificate and key files to ParsePair, the
// gate every certificate passes before it may be served. It must never panic;
// a pair it accepts is valid now, its chain links sign each other and its key
// matches the leaf; an error never quotes the private key.
func FuzzParsePair(f *testing.F) {
	root := newCA(f, "Fuzz Root")
	inter, err := root.NewIntermediate("Fuzz Intermediate")
	if err != nil {
		f.Fatal(err)
	}
	good := mustIssue(f, inter, devpki.Leaf{Names: []string{"a.example.com", "*.example.com"}})
	other := mustIssue(f, inter, devpki.Leaf{Names: []string{"b.example.com"}, KeyType: "rsa2048"})
	f.Add(good.FullChain, good.KeyPEM)
	f.Add(good.FullChain, other.KeyPEM)
	f.Add(good.FullChain[:len(good.FullChain)/2], good.KeyPEM)
	f.Add(append(append([]byte{}, good.FullChain...), root.CertPEM()...), good.KeyPEM)
	f.Add(other.FullChain, other.KeyPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	now := time.Now()
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		c, err := ParsePair(certPEM, keyPEM, now)
		if err != nil {
			for _, line := range keyLines(keyPEM) {
				if strings.Contains(err.Error(), line) {
					t.Fatalf("the error quotes the private key: %v", err)
				}
			}
			return
		}
		leaf := c.Leaf
		if leaf == nil {
			t.Fatal("accepted a pair without its parsed leaf")
		}
		if now.After(leaf.NotAfter) || leaf.NotBefore.After(now.Add(clockSkew)) {
			t.Fatalf("accepted a leaf outside its validity: %s - %s", leaf.NotBefore, leaf.NotAfter)
		}
		signer, ok := c.PrivateKey.(crypto.Signer)
		if !ok {
			t.Fatalf("accepted a private key that cannot sign: %T", c.PrivateKey)
		}
		if !publicKeysEqual(signer.Public(), leaf.PublicKey) {
			t.Fatal("accepted a key that does not match the leaf")
		}
		prev := leaf
		for i, der := range c.Certificate[1:] {
			ca, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatalf("accepted an unparsable chain certificate %d: %v", i+2, err)
			}
			if err := prev.CheckSignatureFrom(ca); err != nil {
				t.Fatalf("accepted a broken chain at certificate %d: %v", i+2, err)
			}
			prev = ca
		}
	})
}

// keyLines are the base64 lines of every PEM block in keyPEM, the parts of a
// key an error must never repeat.
func keyLines(keyPEM []byte) []string {
	var lines []string
	for rest := keyPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		for _, l := range bytes.Split(pem.EncodeToMemory(&pem.Block{Type: "X", Bytes: b.Bytes}), []byte("\n")) {
			if len(l) >= 24 && !bytes.HasPrefix(l, []byte("-----")) {
				lines = append(lines, string(l))
			}
		}
	}
	return lines
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}
