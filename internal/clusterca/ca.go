// Package clusterca holds what the cores of a deployment share to trust each
// other: the cluster CA, a self-signed authority that signs only node
// certificates, and the node certificates themselves, which every core uses
// both as a server (its PlatformDB peer and client listeners) and as a client
// (dialing another core's member, or its own).
//
// Everything is pure Go (crypto/x509): node keys are ECDSA P-256 in PKCS#8
// PEM, certificates PEM. On disk:
//
//	<ca dir>/ca.key          the CA key (0600): only where node certs are signed
//	<ca dir>/ca.crt          the CA certificate (0644), open-pryv.io's name
//	<ca dir>/ca.pem          the same certificate, pryv-tls's name before it
//	                         shared the CA with open-pryv.io (either or both)
//	<ca dir>/ca.srl          openssl's serial file: open-pryv.io's, never touched
//	<node dir>/node.pem      this core's certificate (0644)
//	<node dir>/node-key.pem  its key (0600)
//
// A CA made by open-pryv.io's bootstrap (ca.key from openssl ecparam, SEC 1;
// ca.crt from openssl req -x509) is used as it is: this package never
// writes, renames or rewrites a file that exists in the CA directory.
package clusterca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pryv/pryv-tls/internal/atomicfile"
	"github.com/pryv/pryv-tls/internal/certs"
)

// File names in the CA and node directories.
const (
	// CACertName is pryv-tls's own name for the CA certificate.
	CACertName = "ca.pem"
	// CoreCACertName is open-pryv.io's name for it (bootstrap's ClusterCA);
	// a CA made here is written under both names.
	CoreCACertName = "ca.crt"
	// CAKeyName is the CA key, the same name in both layouts.
	CAKeyName = "ca.key"
	// CASerialName is openssl's serial file beside open-pryv.io's CA. It is
	// neither read nor written here: serials are random (see newSerial).
	CASerialName = "ca.srl"
	NodeCertName = "node.pem"
	NodeKeyName  = "node-key.pem"
)

const (
	// CACommonName is the subject of the cluster CA.
	CACommonName = "pryv-tls cluster CA"
	// CAValidity is the lifetime of a new cluster CA.
	CAValidity = 10 * 365 * 24 * time.Hour
	// DefaultNodeValidity is the lifetime of a node certificate when
	// IssueNode is given none, and the one EnsureNodeCert issues.
	DefaultNodeValidity = 365 * 24 * time.Hour
	// RenewBefore: EnsureNodeCert re-issues a node certificate that has
	// less than this left.
	RenewBefore = 30 * 24 * time.Hour

	// backdate is how far before "now" a certificate starts, for clocks of
	// different cores that disagree a little.
	backdate = 5 * time.Minute
)

// CA is the cluster certificate authority: its certificate and its key.
// It is safe for concurrent use.
type CA struct {
	cert     *x509.Certificate
	certPEM  []byte
	certFile string
	key      crypto.Signer
}

// Certificate returns the CA certificate (do not modify it).
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the CA certificate in PEM (re-encoded from its DER:
// whatever text surrounds the block in the file is not carried).
func (ca *CA) CertPEM() []byte { return slices.Clone(ca.certPEM) }

// CertFile is the file the CA certificate was loaded from: ca.crt when it
// exists, else ca.pem. It is what PlatformDB's listeners trust.
func (ca *CA) CertFile() string { return ca.certFile }

// Pool returns a new certificate pool holding only the CA certificate: the
// roots for verifying node certificates, as servers and as clients.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Fingerprint is "sha256:" and the lowercase hex SHA-256 of the CA
// certificate's DER: what a join token pins.
func (ca *CA) Fingerprint() string {
	sum := sha256.Sum256(ca.cert.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// IssueNode makes a new ECDSA P-256 key and a node certificate for it,
// signed by the CA: CN id, subject alternative names id, dnsNames and ips
// (exactly those: the caller adds 127.0.0.1 and every address the core
// connects from, since etcd's peer listener checks the client
// certificate's IP SANs against the connection's source address), extended
// key usage server and client authentication. An id that is an IP address
// goes into the IP SANs. validity <= 0 means DefaultNodeValidity; the
// certificate never outlives the CA. It returns the certificate and the
// key (PKCS#8) in PEM.
func (ca *CA) IssueNode(id string, dnsNames []string, ips []net.IP, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: issue node certificate: generate key: %w", err)
	}
	certPEM, err = ca.issue(Node{ID: id, DNSNames: dnsNames, IPs: ips}, validity, key.Public())
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: issue node certificate: %w", err)
	}
	return certPEM, encodePEM("PRIVATE KEY", keyDER), nil
}

// Renew issues a fresh certificate for the holder of old: the same id, names,
// addresses and public key, so the node keeps its key and only swaps the
// certificate. old must be a node certificate this CA issued (the caller has
// verified it, e.g. as a TLS client certificate).
func (ca *CA) Renew(old *x509.Certificate, validity time.Duration) ([]byte, error) {
	if err := old.CheckSignatureFrom(ca.cert); err != nil {
		return nil, fmt.Errorf("cluster: renew: not a certificate of this CA: %w", err)
	}
	names := slices.DeleteFunc(slices.Clone(old.DNSNames), func(n string) bool { return n == old.Subject.CommonName })
	return ca.issue(Node{ID: old.Subject.CommonName, DNSNames: names, IPs: old.IPAddresses}, validity, old.PublicKey)
}

// Node is what a node certificate names: CN ID, and as subject alternative
// names ID, DNSNames and IPs (see IssueNode).
type Node struct {
	ID       string
	DNSNames []string
	IPs      []net.IP
}

// issue signs a node certificate for pub.
func (ca *CA) issue(n Node, validity time.Duration, pub crypto.PublicKey) ([]byte, error) {
	id := n.ID
	names, addrs, err := wantSANs(n)
	if err != nil {
		return nil, fmt.Errorf("cluster: issue node certificate: %w", err)
	}
	if validity <= 0 {
		validity = DefaultNodeValidity
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: id},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              names,
		IPAddresses:           addrs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("cluster: issue node certificate for %q: %w", id, err)
	}
	return encodePEM("CERTIFICATE", der), nil
}

// EnsureNodeCert makes sure dir holds a node certificate for n (node.pem,
// 0644) and its key (node-key.pem, 0600), signed by ca, naming exactly n's
// ID, DNSNames and IPs, with at least RenewBefore left; it returns the two
// paths. It keeps the files when they pass; otherwise it issues a new
// certificate for DefaultNodeValidity. dir is created 0700 if missing.
//
// The key is kept when it is still good (present, parsable, mode 0600 or
// stricter): the certificate is then replaced alone, by a rename, so a
// reader that loads the pair on every handshake (etcd does) never sees a
// certificate that does not match its key. Only when the key itself is
// missing or unusable is a new key written (rename) just before the new
// certificate.
func EnsureNodeCert(ca *CA, dir string, n Node) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, NodeCertName), filepath.Join(dir, NodeKeyName)
	names, addrs, err := wantSANs(n)
	if err != nil {
		return "", "", fmt.Errorf("cluster: node certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("cluster: node certificate: %w", err)
	}

	key := readNodeKey(keyFile)
	if key != nil && nodeCertGood(ca, certFile, key, Node{ID: n.ID, DNSNames: names, IPs: addrs}) {
		return certFile, keyFile, nil
	}
	newKey := key == nil
	if newKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", "", fmt.Errorf("cluster: node certificate: generate key: %w", err)
		}
		key = k
	}
	certPEM, err := ca.issue(n, DefaultNodeValidity, key.Public())
	if err != nil {
		return "", "", err
	}
	if newKey {
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return "", "", fmt.Errorf("cluster: node certificate: %w", err)
		}
		if err := atomicfile.Write(filepath.Join(dir, NodeKeyName), encodePEM("PRIVATE KEY", keyDER), 0o600); err != nil {
			return "", "", fmt.Errorf("cluster: node certificate: %w", err)
		}
	}
	if err := atomicfile.Write(filepath.Join(dir, NodeCertName), certPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("cluster: node certificate: %w", err)
	}
	return certFile, keyFile, nil
}

// readNodeKey returns the node key at path if it can be reused: a regular
// file of mode 0600 or stricter holding a private key. Else nil.
func readNodeKey(path string) crypto.Signer {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	key, err := certs.ParseKeyPEM(b)
	if err != nil {
		return nil
	}
	return key
}

// nodeCertGood reports whether the certificate at path can be kept: it
// is for key, verifies against ca for server and client authentication,
// has CN want.ID and exactly want's SANs (normalised: wantSANs), and has
// RenewBefore left.
func nodeCertGood(ca *CA, path string, key crypto.Signer, want Node) bool {
	id, names, addrs := want.ID, want.DNSNames, want.IPs
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	cert, err := parseCertPEM(b)
	if err != nil || !publicKeyEqual(cert.PublicKey, key.Public()) {
		return false
	}
	now := time.Now()
	if cert.NotAfter.Sub(now) < RenewBefore || now.Before(cert.NotBefore) {
		return false
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       ca.Pool(),
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return false
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       ca.Pool(),
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return false
	}
	if cert.Subject.CommonName != id {
		return false
	}
	gotNames, gotAddrs, err := normSANs(cert.DNSNames, cert.IPAddresses)
	if err != nil {
		return false
	}
	return slices.Equal(gotNames, names) && slices.EqualFunc(gotAddrs, addrs, net.IP.Equal)
}

// wantSANs returns the SANs of a node certificate for n,
// normalised (see normSANs). n.ID must be a plain name (letters, digits,
// '.', '-', '_', at most 64 characters, the limit of a CN) or an IP
// address.
func wantSANs(n Node) ([]string, []net.IP, error) {
	id, dnsNames, ips := n.ID, n.DNSNames, n.IPs
	if id == "" {
		return nil, nil, errors.New("empty node id")
	}
	if len(id) > 64 {
		return nil, nil, fmt.Errorf("node id %q: longer than 64 characters", id)
	}
	names := slices.Clone(dnsNames)
	addrs := slices.Clone(ips)
	if ip := net.ParseIP(id); ip != nil {
		addrs = append(addrs, ip)
	} else {
		names = append(names, id)
	}
	return normSANs(names, addrs)
}

// normSANs checks and normalises SANs for comparison: DNS names lowercased,
// sorted, without duplicates; IPs in their 4-byte form when IPv4, sorted,
// without duplicates.
func normSANs(dnsNames []string, ips []net.IP) ([]string, []net.IP, error) {
	names := make([]string, 0, len(dnsNames))
	for _, n := range dnsNames {
		if !validName(n) {
			return nil, nil, fmt.Errorf("invalid DNS name %q", n)
		}
		names = append(names, strings.ToLower(n))
	}
	slices.Sort(names)
	names = slices.Compact(names)

	addrs := make([]net.IP, 0, len(ips))
	for _, ip := range ips {
		switch {
		case ip.To4() != nil:
			addrs = append(addrs, ip.To4())
		case len(ip) == net.IPv6len:
			addrs = append(addrs, ip)
		default:
			return nil, nil, fmt.Errorf("invalid IP address %v", ip)
		}
	}
	slices.SortFunc(addrs, func(a, b net.IP) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return bytes.Compare(a, b)
	})
	addrs = slices.CompactFunc(addrs, net.IP.Equal)
	return names, addrs, nil
}

// validName accepts host names (and node ids): letters, digits, '-', '_'
// and '.', with a leading "*." for a wildcard, at most 253 characters.
func validName(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > 253 || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// newSerial is a random serial in [1, 2^127]. openssl, signing for
// open-pryv.io's bootstrap from the same CA, counts up from a random
// 159-bit start kept in ca.srl; 127 random bits make a collision with
// either negligible, so ca.srl is left alone (decision 0017).
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("cluster: serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil // never 0
}

func encodePEM(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// parseCertPEM returns the first certificate of a PEM file.
func parseCertPEM(b []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}
