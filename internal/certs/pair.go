package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// clockSkew is how far in the future a NotBefore may be: CAs backdate, but a
// host whose clock lags a little must not refuse a fresh certificate.
const clockSkew = 5 * time.Minute

// LoadFiles reads a certificate chain, its key and an optional extra chain
// (caFile, appended after the certificate file's own chain) and checks them
// with ParsePair. Errors name the file at fault.
func LoadFiles(certFile, keyFile, caFile string, now time.Time) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("reading certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("reading private key: %w", err)
	}
	if caFile != "" {
		caPEM, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("reading extra chain: %w", err)
		}
		if !hasBlock(caPEM, "CERTIFICATE") {
			return nil, fmt.Errorf("%s: no PEM certificate found", caFile)
		}
		certPEM = append(append(certPEM, '\n'), caPEM...)
	}
	c, err := ParsePair(certPEM, keyPEM, now)
	if err != nil {
		return nil, fmt.Errorf("%s + %s: %w", certFile, keyFile, err)
	}
	return c, nil
}

// ParsePair turns PEM into a servable certificate and refuses anything a
// client would reject or that would lose the good one being served: no
// certificate, no key, a key that does not match, a chain whose links do not
// sign each other, an expired or not-yet-valid leaf.
func ParsePair(certPEM, keyPEM []byte, now time.Time) (*tls.Certificate, error) {
	if !hasBlock(certPEM, "CERTIFICATE") {
		return nil, fmt.Errorf("no PEM certificate found in the certificate file")
	}
	if !hasKeyBlock(keyPEM) {
		return nil, fmt.Errorf("no PEM private key found in the key file")
	}
	if !allBlocksDecode(certPEM) {
		// A half-written chain (leaf complete, intermediate cut) would
		// otherwise be served without its intermediates.
		return nil, fmt.Errorf("incomplete PEM block in the certificate chain (file still being written?)")
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return nil, fmt.Errorf("the private key does not match the certificate")
		}
		return nil, fmt.Errorf("parsing the pair: %w", err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parsing the certificate: %w", err)
		}
	}
	leaf := c.Leaf
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("certificate %s expired on %s", Describe(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if leaf.NotBefore.After(now.Add(clockSkew)) {
		return nil, fmt.Errorf("certificate %s is not valid before %s (is this host's clock right?)", Describe(leaf), leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	prev := leaf
	for i := 1; i < len(c.Certificate); i++ {
		ca, err := x509.ParseCertificate(c.Certificate[i])
		if err != nil {
			return nil, fmt.Errorf("parsing chain certificate %d: %w", i+1, err)
		}
		if err := prev.CheckSignatureFrom(ca); err != nil {
			return nil, fmt.Errorf("broken chain: certificate %d (%s) did not sign certificate %d (%s)", i+1, ca.Subject, i, prev.Subject)
		}
		prev = ca
		c.Certificate[i] = sharedDER(c.Certificate[i])
	}
	return &c, nil
}

// maxShared bounds the table of shared chain certificates: a core's
// certificates come from a few CAs, each with a few intermediates; past the
// bound a chain keeps its own copy, as before.
const maxShared = 64

var shared struct {
	mu  sync.Mutex // parsing is never on a handshake's path
	der map[string][]byte
}

// sharedDER returns the one copy of a chain (non-leaf) certificate every
// pair carrying it holds: 10,000 certificates from one CA otherwise hold
// 10,000 copies of its intermediate (1.3 KB each for Let's Encrypt's).
// TLS only reads the bytes.
func sharedDER(der []byte) []byte {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if d, ok := shared.der[string(der)]; ok {
		return d
	}
	if shared.der == nil {
		shared.der = make(map[string][]byte)
	}
	if len(shared.der) < maxShared {
		shared.der[string(der)] = der
	}
	return der
}

// Describe names a certificate in logs and errors: its names and serial.
func Describe(c *x509.Certificate) string {
	names := c.DNSNames
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = []string{c.Subject.CommonName}
	}
	return fmt.Sprintf("[%s] serial %s", strings.Join(names, " "), c.SerialNumber.Text(16))
}

func hasBlock(data []byte, typ string) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if b.Type == typ {
			return true
		}
	}
}

func hasKeyBlock(data []byte) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if b.Type == "PRIVATE KEY" || strings.HasSuffix(b.Type, " PRIVATE KEY") {
			return true
		}
	}
}

// allBlocksDecode reports whether every "-----BEGIN " line starts a block
// that decodes: pem.Decode silently skips a cut or corrupt block.
func allBlocksDecode(data []byte) bool {
	begins := bytes.Count(data, []byte("\n-----BEGIN "))
	if bytes.HasPrefix(data, []byte("-----BEGIN ")) {
		begins++
	}
	blocks := 0
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return blocks == begins
		}
		blocks++
	}
}
