// Package devpki makes throwaway certificate authorities and leaf
// certificates for the demo and the tests. Nothing here is for production
// trust: the public certificate comes from files or ACME, and the cluster CA
// has its own package.
package devpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// CA is a root or intermediate authority.
type CA struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	chain []*x509.Certificate // this CA then its issuers, up to (excluding) the root
}

// NewCA makes a self-signed ECDSA P-256 root valid for ten years.
func NewCA(name string) (*CA, error) {
	key, err := NewKey("ec256")
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	cert, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// NewIntermediate makes a CA signed by ca, so leaves it issues carry a chain.
func (ca *CA) NewIntermediate(name string) (*CA, error) {
	key, err := NewKey("ec256")
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(5, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	cert, err := sign(tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, chain: append([]*x509.Certificate{cert}, ca.chain...)}, nil
}

// CertPEM is the CA certificate, for a client's trust store.
func (ca *CA) CertPEM() []byte { return EncodeCert(ca.Cert) }

// Leaf describes a certificate to issue. Zero times mean "valid from an hour
// ago for 90 days".
type Leaf struct {
	Names     []string // DNS names or IP addresses
	KeyType   string   // ec256 (default), ec384, rsa2048, rsa4096
	NotBefore time.Time
	NotAfter  time.Time
}

// Issued is a leaf with its full chain and key, PEM-encoded as certbot writes them.
type Issued struct {
	Cert      *x509.Certificate
	FullChain []byte // leaf + intermediates
	KeyPEM    []byte // PKCS#8
}

// Issue signs a leaf for l.
func (ca *CA) Issue(l Leaf) (*Issued, error) {
	kt := l.KeyType
	if kt == "" {
		kt = "ec256"
	}
	key, err := NewKey(kt)
	if err != nil {
		return nil, err
	}
	nb, na := l.NotBefore, l.NotAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Hour)
	}
	if na.IsZero() {
		na = nb.Add(90 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		NotBefore:   nb,
		NotAfter:    na,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if len(l.Names) > 0 {
		tmpl.Subject.CommonName = l.Names[0]
	}
	for _, n := range l.Names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	if _, ok := key.(*rsa.PrivateKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	cert, err := sign(tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	full := EncodeCert(cert)
	for _, c := range ca.chain {
		full = append(full, EncodeCert(c)...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Issued{Cert: cert, FullChain: full, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}, nil
}

// NewKey makes a private key of the named type.
func NewKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "ec256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ec384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "rsa4096":
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("unknown key type %q", keyType)
}

// EncodeCert PEM-encodes one certificate.
func EncodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, fmt.Errorf("signing %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}
