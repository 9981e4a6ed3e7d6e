package join

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pryv/pryv-tls/internal/platformdb"
)

// TokenPrefix holds join tokens, one per core being added: join-token/<coreId>.
// Only the token's hash is stored.
const TokenPrefix = "join-token/"

// Token is a join token's row.
type Token struct {
	CoreID          string    `json:"coreId"`
	Hash            string    `json:"hash"`                 // sha256 of the token, hex
	NodeFingerprint string    `json:"nodeFingerprint"`      // sha256 of the joiner's node certificate DER
	NodeSerial      string    `json:"nodeSerial,omitempty"` // that certificate's serial, hex
	NodeSPKI        string    `json:"nodeSpki,omitempty"`   // and its public key's sha256, hex
	NodeNotAfter    time.Time `json:"nodeNotAfter,omitzero"`
	PeerURL         string    `json:"peerUrl"`
	CreatedAt       time.Time `json:"createdAt"`
	ExpiresAt       time.Time `json:"expiresAt"`
	ConsumedAt      time.Time `json:"consumedAt,omitzero"`
}

// NewToken is 256 random bits, base64url.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// HashToken is what is stored of a token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Errors a join can end with; their text is what the joiner prints.
var (
	ErrTokenUnknown  = errors.New("join refused: no join token for this core id (revoked, or never made: run \"pryv-tls bootstrap new-core\" on the CA holder)")
	ErrTokenMismatch = errors.New("join refused: the token does not match (use the bundle made for this core)")
	ErrTokenExpired  = errors.New("join refused: the join token expired: make a new bundle with \"pryv-tls bootstrap new-core\"")
	ErrTokenUsed     = errors.New("join refused: the join token was already used by another member")
	ErrWrongNodeCert = errors.New("join refused: the client certificate is not the node certificate issued with this token")
	ErrRevoked       = errors.New("refused: this node certificate was revoked (its core was removed with \"pryv-tls bootstrap remove-core\"; to bring it back, run \"pryv-tls bootstrap new-core\" again)")
)

// check validates a presented token against its row t.
func (t Token) check(token, fingerprint, peerURL string, now time.Time) error {
	if subtle.ConstantTimeCompare([]byte(HashToken(token)), []byte(t.Hash)) != 1 {
		return ErrTokenMismatch
	}
	if subtle.ConstantTimeCompare([]byte(fingerprint), []byte(t.NodeFingerprint)) != 1 {
		return ErrWrongNodeCert
	}
	// Expiry first: a used token is not a way around it, even for the
	// core that used it (a removed core coming back with its old bundle).
	if now.After(t.ExpiresAt) {
		return ErrTokenExpired
	}
	if !t.ConsumedAt.IsZero() && t.PeerURL != peerURL {
		return ErrTokenUsed
	}
	return nil // unused, or the same core running its join again: idempotent
}

// Tokens reads and writes token rows.
type Tokens struct {
	KV interface {
		Get(ctx context.Context, key string) (platformdb.Entry, error)
		Put(ctx context.Context, key string, value []byte) (int64, error)
		CompareAndSwap(ctx context.Context, key string, value []byte, expect int64) (int64, error)
		Delete(ctx context.Context, key string) error
		List(ctx context.Context, prefix string) ([]platformdb.Entry, int64, error)
	}
}

// Put stores a token row, and records its node certificate (remove-core
// denies every certificate recorded for the core).
func (s Tokens) Put(ctx context.Context, t Token) error {
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if t.NodeSerial != "" {
		if err := s.RecordNodeCert(ctx, NodeCert{CoreID: t.CoreID, Serial: t.NodeSerial, SPKI: t.NodeSPKI, NotAfter: t.NodeNotAfter, IssuedAt: t.CreatedAt}); err != nil {
			return err
		}
	}
	_, err = s.KV.Put(ctx, TokenPrefix+t.CoreID, data)
	return err
}

// NodeCertPrefix records the node certificates issued to each core:
// node-cert/<coreId>/<serial, hex>.
const NodeCertPrefix = "node-cert/"

// NodeCert is a node certificate issued by the CA holder (by new-core or a
// renewal).
type NodeCert struct {
	CoreID   string    `json:"coreId"`
	Serial   string    `json:"serial"`
	SPKI     string    `json:"spki"`
	NotAfter time.Time `json:"notAfter"`
	IssuedAt time.Time `json:"issuedAt"`
}

// NodeCertOf describes a certificate issued to coreID.
func NodeCertOf(coreID string, c *x509.Certificate, now time.Time) NodeCert {
	return NodeCert{CoreID: coreID, Serial: platformdb.SerialHex(c), SPKI: platformdb.SPKIHash(c), NotAfter: c.NotAfter, IssuedAt: now}
}

// RecordNodeCert stores a node-cert row.
func (s Tokens) RecordNodeCert(ctx context.Context, n NodeCert) error {
	data, err := json.Marshal(n)
	if err != nil {
		return err
	}
	_, err = s.KV.Put(ctx, NodeCertPrefix+n.CoreID+"/"+n.Serial, data)
	return err
}

// NodeCerts lists the certificates recorded for coreID.
func (s Tokens) NodeCerts(ctx context.Context, coreID string) ([]NodeCert, error) {
	entries, _, err := s.KV.List(ctx, NodeCertPrefix+coreID+"/")
	if err != nil {
		return nil, err
	}
	out := make([]NodeCert, 0, len(entries))
	for _, e := range entries {
		var n NodeCert
		if json.Unmarshal(e.Value, &n) == nil && n.Serial != "" {
			out = append(out, n)
		}
	}
	return out, nil
}

// Get reads a token row and its revision.
func (s Tokens) Get(ctx context.Context, coreID string) (Token, int64, error) {
	var t Token
	e, err := s.KV.Get(ctx, TokenPrefix+coreID)
	if errors.Is(err, platformdb.ErrNotFound) {
		return t, 0, ErrTokenUnknown
	}
	if err != nil {
		return t, 0, err
	}
	if err := json.Unmarshal(e.Value, &t); err != nil {
		return t, 0, fmt.Errorf("%s%s: unreadable: %w", TokenPrefix, coreID, err)
	}
	return t, e.Revision, nil
}

// List returns every token row.
func (s Tokens) List(ctx context.Context) ([]Token, error) {
	entries, _, err := s.KV.List(ctx, TokenPrefix)
	if err != nil {
		return nil, err
	}
	var out []Token
	for _, e := range entries {
		var t Token
		if json.Unmarshal(e.Value, &t) == nil {
			out = append(out, t)
		}
	}
	return out, nil
}

// Revoke deletes a token row.
func (s Tokens) Revoke(ctx context.Context, coreID string) error {
	if _, _, err := s.Get(ctx, coreID); err != nil {
		return err
	}
	return s.KV.Delete(ctx, TokenPrefix+coreID)
}

// consume marks a token used, with compare-and-swap: of two joins racing
// with one token, one wins.
func (s Tokens) consume(ctx context.Context, t Token, rev int64, now time.Time) error {
	if !t.ConsumedAt.IsZero() {
		return nil
	}
	t.ConsumedAt = now
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if _, err := s.KV.CompareAndSwap(ctx, TokenPrefix+t.CoreID, data, rev); err != nil {
		if errors.Is(err, platformdb.ErrConflict) {
			return ErrTokenUsed
		}
		return err
	}
	return nil
}

// Fingerprint is the sha256 of a certificate's DER, hex, as stored.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}
