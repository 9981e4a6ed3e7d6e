// Package certstore keeps certificates in PlatformDB and brings them to every
// core: records under tls-cert/<hostname> with the private key sealed by
// internal/atrest, and the materialiser that turns each record into files on
// disk and a certificate in the front's SNI set.
package certstore

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certs"
)

// Prefix is the PlatformDB table of certificates. The row is the hostname,
// with "*" kept literally for a wildcard ("tls-cert/*.example.com").
const Prefix = "tls-cert/"

// Sources of a record.
const (
	SourceACME   = "acme"
	SourceFile   = "file"
	SourceImport = "import"
	// SourceCore: imported from an open-pryv.io core's own ACME rows
	// (pryv-tls migrate-core).
	SourceCore = "core"
)

// Record is one stored certificate. Only Key is secret, and it is sealed.
type Record struct {
	Hostname  string    `json:"hostname"`
	Names     []string  `json:"names"`     // every name the certificate covers
	Chain     string    `json:"chain"`     // PEM: leaf then intermediates
	Key       []byte    `json:"key"`       // atrest envelope of the PEM private key
	IssuedAt  time.Time `json:"issuedAt"`  // the leaf's NotBefore
	ExpiresAt time.Time `json:"expiresAt"` // the leaf's NotAfter
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"` // hex
	Source    string    `json:"source"`
	Hash      string    `json:"hash"` // sha256 of chain and key PEM: changes iff the content does
	StoredAt  time.Time `json:"storedAt"`
}

// RowKey is the PlatformDB key of hostname's record.
func RowKey(hostname string) string { return Prefix + strings.ToLower(hostname) }

// InvalidError is a certificate or key that cannot be stored as it is: the
// caller's to fix, unlike a store failure.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// Input is a certificate to store, as it is given: its PEM chain (leaf
// first) and key, the row it goes in (Hostname; "" means the certificate's
// first name) and where it came from (Source*).
type Input struct {
	Hostname, Source string
	Chain, Key       []byte
}

// NewRecord checks a PEM pair exactly as the front would before serving it
// (certs.ParsePair) and seals the key for the input's row.
func NewRecord(keys *atrest.Keyring, in Input, now time.Time) (*Record, *tls.Certificate, error) {
	hostname, source, chainPEM, keyPEM := in.Hostname, in.Source, in.Chain, in.Key
	c, err := certs.ParsePair(chainPEM, keyPEM, now)
	if err != nil {
		return nil, nil, &InvalidError{err}
	}
	names := c.Leaf.DNSNames
	if len(names) == 0 && c.Leaf.Subject.CommonName != "" {
		names = []string{c.Leaf.Subject.CommonName}
	}
	if hostname == "" {
		if len(names) == 0 {
			return nil, nil, &InvalidError{fmt.Errorf("the certificate names no host (no DNS SAN, no common name)")}
		}
		hostname = names[0]
	}
	hostname = strings.ToLower(hostname)
	if !covers(names, hostname) {
		return nil, nil, &InvalidError{fmt.Errorf("the certificate does not cover %s (it names %s)", hostname, strings.Join(names, ", "))}
	}
	sealed, err := keys.Seal(atrest.PurposeTLSKey, RowKey(hostname), keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("sealing the key of %s: %w", hostname, err)
	}
	h := sha256.New()
	h.Write(chainPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	r := &Record{
		Hostname:  hostname,
		Names:     names,
		Chain:     string(chainPEM),
		Key:       sealed,
		IssuedAt:  c.Leaf.NotBefore.UTC(),
		ExpiresAt: c.Leaf.NotAfter.UTC(),
		Issuer:    issuerName(c),
		Serial:    c.Leaf.SerialNumber.Text(16),
		Source:    source,
		Hash:      hex.EncodeToString(h.Sum(nil)),
		StoredAt:  now.UTC(),
	}
	return r, c, nil
}

// Open unseals the key and re-checks the pair, so a record that was damaged
// or written by something careless is refused rather than served.
func (r *Record) Open(keys *atrest.Keyring, now time.Time) (*tls.Certificate, []byte, error) {
	keyPEM, err := keys.Open(atrest.PurposeTLSKey, RowKey(r.Hostname), r.Key)
	if err != nil {
		return nil, nil, err
	}
	c, err := certs.ParsePair([]byte(r.Chain), keyPEM, now)
	if err != nil {
		return nil, nil, fmt.Errorf("record %s: %w", RowKey(r.Hostname), err)
	}
	return c, keyPEM, nil
}

// Leaf parses the record's leaf certificate (public data: no key needed).
func (r *Record) Leaf() (*x509.Certificate, error) {
	b, _ := pem.Decode([]byte(r.Chain))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("record %s: no certificate in the chain", RowKey(r.Hostname))
	}
	return x509.ParseCertificate(b.Bytes)
}

// Marshal and Unmarshal are the row's wire format (JSON; the sealed key is base64).
func (r *Record) Marshal() ([]byte, error) { return json.Marshal(r) }

// Unmarshal's errors are *DecodeError: the row is there but unusable.
func Unmarshal(key string, data []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, &DecodeError{Key: key, Err: fmt.Errorf("not a certificate record: %w", err)}
	}
	if Prefix+r.Hostname != key { // exact: NewRecord writes rows in lower case
		return nil, &DecodeError{Key: key, Err: fmt.Errorf("names hostname %q, which belongs in another row", r.Hostname)}
	}
	return &r, nil
}

// recordHash is a row's Hash, decoded alone ("" if the row does not
// decode): what tells a listing that a row is the one already served
// without decoding its chain and sealed key.
func recordHash(data []byte) string {
	var r struct {
		Hash string `json:"hash"`
	}
	if json.Unmarshal(data, &r) != nil {
		return ""
	}
	return r.Hash
}

// DecodeError is a row that exists but does not decode as a record (written
// by hand, by another program, or damaged): unlike a store error, reading it
// again will not help; replacing it will.
type DecodeError struct {
	Key string
	Err error
}

func (e *DecodeError) Error() string { return fmt.Sprintf("record %s: %v", e.Key, e.Err) }
func (e *DecodeError) Unwrap() error { return e.Err }

// DaysLeft is whole days until expiry (negative once expired).
func (r *Record) DaysLeft(now time.Time) int {
	return int(r.ExpiresAt.Sub(now).Hours() / 24)
}

// DirName is the directory a hostname materialises to: "*.x" -> "wildcard.x".
func DirName(hostname string) string {
	if rest, ok := strings.CutPrefix(hostname, "*."); ok {
		return "wildcard." + rest
	}
	return hostname
}

func covers(names []string, host string) bool {
	for _, n := range names {
		n = strings.ToLower(n)
		if n == host {
			return true
		}
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			if i := strings.IndexByte(host, '.'); i > 0 && host[i+1:] == rest && !strings.HasPrefix(host, "*.") {
				return true
			}
		}
	}
	return false
}

func issuerName(c *tls.Certificate) string {
	is := c.Leaf.Issuer
	if len(is.Organization) > 0 && is.CommonName != "" {
		return is.Organization[0] + " / " + is.CommonName
	}
	if is.CommonName != "" {
		return is.CommonName
	}
	return is.String()
}
