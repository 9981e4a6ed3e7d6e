// Package corerows reads the rows an open-pryv.io v2 core's own ACME
// (letsEncrypt, "Strategy A") leaves in its PlatformDB, for
// `pryv-tls migrate-core`:
//
//	tls-cert/<hostname>  {certPem, chainPem, keyPem, issuedAt, expiresAt}
//	tls-acme-account     {accountKey, accountUrl, email}
//
// hostname is as the core ordered it ("*.mc.example.com" for the wildcard);
// certPem is the leaf alone and chainPem the issuers after it, so the chain
// served is certPem followed by chainPem; issuedAt and expiresAt are ms since
// the epoch. keyPem and accountKey are the core's envelope (Open) of a PEM
// private key: acme-client's PKCS#8 RSA 2048 for both, though any PKCS#8,
// PKCS#1 or SEC 1 key is taken.
//
// The rows are another program's: every field is checked and an error names
// the row and what is wrong. Keys are never in an error.
package corerows

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/rqlite"
)

// The core's row names.
const (
	CertPrefix = "tls-cert/"
	AccountRow = "tls-acme-account"
)

// Envelope layout: version || IV || tag || ciphertext, base64 (standard,
// padded, as Node's Buffer.toString('base64') writes it).
const (
	envelopeVersion = 1
	ivSize          = 12
	tagSize         = 16
	KeySize         = 32 // letsEncrypt.atRestKey, raw
)

// ErrOpen is a row that does not open under the key: wrong
// letsEncrypt.atRestKey or a changed row. GCM cannot tell them apart.
var ErrOpen = errors.New("wrong letsEncrypt.atRestKey or tampered row")

// Open decrypts one of the core's sealed fields with the raw 32-byte
// letsEncrypt.atRestKey: AES-256-GCM, no key derivation, no associated data.
func Open(key []byte, sealed string) ([]byte, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("the key must be %d bytes, got %d", KeySize, len(key))
	}
	if sealed == "" {
		return nil, errors.New("empty")
	}
	env, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sealed))
	if err != nil {
		return nil, errors.New("not base64 (not the core's envelope)")
	}
	if len(env) < 1+ivSize+tagSize {
		return nil, fmt.Errorf("envelope too short (%d bytes; the core's has at least %d)", len(env), 1+ivSize+tagSize)
	}
	if env[0] != envelopeVersion {
		return nil, fmt.Errorf("envelope version %d (this build reads version %d, the one open-pryv.io writes)", env[0], envelopeVersion)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	iv, tag, ct := env[1:1+ivSize], env[1+ivSize:1+ivSize+tagSize], env[1+ivSize+tagSize:]
	// The core stores the tag before the ciphertext; Go's GCM wants it after.
	buf := make([]byte, 0, len(ct)+tagSize)
	buf = append(append(buf, ct...), tag...)
	pt, err := gcm.Open(nil, iv, buf, nil)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// Cert is one tls-cert/ row, opened.
type Cert struct {
	Row       string // tls-cert/<hostname>
	Hostname  string // as the core ordered it
	CertPEM   string // the leaf
	ChainPEM  string // the issuers, possibly empty
	KeyPEM    []byte // opened: secret
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// FullChain is what the core serves: the leaf, then the issuers.
func (c *Cert) FullChain() []byte {
	leaf := c.CertPEM
	if c.ChainPEM != "" && !strings.HasSuffix(leaf, "\n") {
		leaf += "\n"
	}
	return []byte(leaf + c.ChainPEM)
}

type certJSON struct {
	CertPEM   *string  `json:"certPem"`
	ChainPEM  *string  `json:"chainPem"`
	KeyPEM    *string  `json:"keyPem"`
	IssuedAt  *float64 `json:"issuedAt"`
	ExpiresAt *float64 `json:"expiresAt"`
}

// ParseCert reads a tls-cert/ row and opens its key.
func ParseCert(row, value string, key []byte) (*Cert, error) {
	name := printableRow(row)
	host, ok := strings.CutPrefix(row, CertPrefix)
	if !ok || host == "" {
		return nil, fmt.Errorf("%s: not a %s<hostname> row", name, CertPrefix)
	}
	var j certJSON
	if err := json.Unmarshal([]byte(value), &j); err != nil {
		return nil, fmt.Errorf("%s: not the core's certificate JSON {certPem, chainPem, keyPem, issuedAt, expiresAt}: %w", name, err)
	}
	switch {
	case j.CertPEM == nil || *j.CertPEM == "":
		return nil, fmt.Errorf("%s: no certPem", name)
	case j.KeyPEM == nil || *j.KeyPEM == "":
		return nil, fmt.Errorf("%s: no keyPem", name)
	}
	c := &Cert{Row: row, Hostname: host, CertPEM: *j.CertPEM}
	if j.ChainPEM != nil {
		c.ChainPEM = *j.ChainPEM
	}
	if j.IssuedAt != nil {
		c.IssuedAt = time.UnixMilli(int64(*j.IssuedAt)).UTC()
	}
	if j.ExpiresAt != nil {
		c.ExpiresAt = time.UnixMilli(int64(*j.ExpiresAt)).UTC()
	}
	pt, err := Open(key, *j.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("cannot open %s (keyPem): %w", name, err)
	}
	if b, _ := pem.Decode(pt); b == nil || !strings.HasSuffix(b.Type, "PRIVATE KEY") {
		return nil, fmt.Errorf("%s: keyPem opens, but to no PEM private key", name)
	}
	c.KeyPEM = pt
	return c, nil
}

// printableRow names a row in an error: as it is when it is printable, else
// quoted, so a key written by another program cannot drive the terminal.
func printableRow(row string) string {
	for _, r := range row {
		if !unicode.IsPrint(r) {
			return strconv.Quote(row)
		}
	}
	return row
}

// Account is the tls-acme-account row, opened.
type Account struct {
	URL    string // the account URL at the CA (the JWS kid)
	Email  string
	Key    crypto.Signer // secret
	KeyPEM []byte        // secret
}

// KeyType names the account key's type, for printing.
func (a *Account) KeyType() string {
	switch k := a.Key.(type) {
	case *rsa.PrivateKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PrivateKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PrivateKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", a.Key)
}

type accountJSON struct {
	AccountKey *string `json:"accountKey"`
	AccountURL *string `json:"accountUrl"`
	Email      *string `json:"email"`
}

// ParseAccount reads the tls-acme-account row and opens its key.
func ParseAccount(value string, key []byte) (*Account, error) {
	var j accountJSON
	if err := json.Unmarshal([]byte(value), &j); err != nil {
		return nil, fmt.Errorf("%s: not the core's account JSON {accountKey, accountUrl, email}: %w", AccountRow, err)
	}
	switch {
	case j.AccountKey == nil || *j.AccountKey == "":
		return nil, fmt.Errorf("%s: no accountKey", AccountRow)
	case j.AccountURL == nil || *j.AccountURL == "":
		return nil, fmt.Errorf("%s: no accountUrl", AccountRow)
	case !strings.HasPrefix(*j.AccountURL, "https://"):
		return nil, fmt.Errorf("%s: accountUrl %q is not an https URL", AccountRow, *j.AccountURL)
	}
	a := &Account{URL: *j.AccountURL}
	if j.Email != nil {
		a.Email = *j.Email
	}
	pt, err := Open(key, *j.AccountKey)
	if err != nil {
		return nil, fmt.Errorf("cannot open %s (accountKey): %w", AccountRow, err)
	}
	signer, err := certs.ParseKeyPEM(pt)
	if err != nil {
		return nil, fmt.Errorf("%s: accountKey opens, but holds no usable private key: %w", AccountRow, err)
	}
	a.Key, a.KeyPEM = signer, pt
	return a, nil
}

// Source is where the rows are read: the core's rqlite (rqlite.Client).
type Source interface {
	Get(ctx context.Context, key string) (string, bool, error)
	List(ctx context.Context, prefix string) ([]rqlite.KV, error)
}

// Rows is everything read. Bad holds the rows that could not be used, each
// error naming its row; Certs and Account only the good ones.
type Rows struct {
	Certs   []*Cert
	Account *Account // nil: no tls-acme-account row (or a bad one, in Bad)
	Bad     []error
}

// Read reads and opens every row. The error is the source's (unreachable,
// no leader); problems with rows are in Rows.Bad.
func Read(ctx context.Context, src Source, key []byte) (*Rows, error) {
	rows, err := src.List(ctx, CertPrefix)
	if err != nil {
		return nil, fmt.Errorf("listing %s rows: %w", CertPrefix, err)
	}
	out := &Rows{}
	for _, r := range rows {
		c, err := ParseCert(r.Key, r.Value, key)
		if err != nil {
			out.Bad = append(out.Bad, err)
			continue
		}
		out.Certs = append(out.Certs, c)
	}
	v, found, err := src.Get(ctx, AccountRow)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", AccountRow, err)
	}
	if found {
		a, err := ParseAccount(v, key)
		if err != nil {
			out.Bad = append(out.Bad, err)
		} else {
			out.Account = a
		}
	}
	return out, nil
}
