// Package join adds a core to a cluster: the join bundle sealed under a
// passphrase, the one-time join tokens bound to a core id and its node
// certificate, and the CA holder's join endpoint with its client.
package join

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
)

// Bundle is everything a new core needs to join: its identity and node
// certificate, the cluster CA to pin, the one-time token, where to call, and
// the cluster-wide configuration it must share (atRestKey, admin key...),
// as an override YAML written verbatim next to its own configuration.
type Bundle struct {
	Version   int       `json:"version"`
	CoreID    string    `json:"coreId"`
	IP        string    `json:"ip"`
	CACert    string    `json:"caCert"` // PEM: the only root the joiner trusts for the join call
	NodeCert  string    `json:"nodeCert"`
	NodeKey   string    `json:"nodeKey"`
	Token     string    `json:"token"`
	JoinURL   string    `json:"joinUrl"` // https://<CA holder>:<joinPort>/join
	PeerURL   string    `json:"peerUrl"` // the new member's PlatformDB peer URL
	Override  string    `json:"override"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// sealedBundle is the file format: the bundle JSON under AES-256-GCM with a
// key derived from the passphrase by Argon2id.
type sealedBundle struct {
	Format string `json:"format"` // "pryv-tls join bundle v1"
	Salt   []byte `json:"salt"`
	Nonce  []byte `json:"nonce"`
	Data   []byte `json:"data"`
}

const bundleFormat = "pryv-tls join bundle v1"

// Argon2id parameters (RFC 9106's second recommended option): the
// passphrase travels over another channel, the bundle may be intercepted.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 2
)

// NewPassphrase is 120 random bits in base32: easy to read out, hard to guess.
func NewPassphrase() (string, error) {
	b := make([]byte, 15)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return strings.ToLower(base32.StdEncoding.EncodeToString(b)), nil
}

func bundleKey(passphrase string, salt []byte) []byte {
	return argon2.IDKey([]byte(strings.TrimSpace(passphrase)), salt, argonTime, argonMemory, argonThreads, 32)
}

// Seal encrypts b under passphrase.
func (b *Bundle) Seal(passphrase string) ([]byte, error) {
	plain, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	gcm, err := newGCM(bundleKey(passphrase, salt))
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return json.MarshalIndent(sealedBundle{
		Format: bundleFormat, Salt: salt, Nonce: nonce,
		Data: gcm.Seal(nil, nonce, plain, []byte(bundleFormat)),
	}, "", "  ")
}

// OpenBundle decrypts and checks a bundle file's content. The errors say
// which of "not a bundle", "wrong passphrase or tampered" and "expired" it is.
func OpenBundle(data []byte, passphrase string, now time.Time) (*Bundle, error) {
	var s sealedBundle
	if err := json.Unmarshal(data, &s); err != nil || s.Format != bundleFormat {
		return nil, errors.New("not a pryv-tls join bundle (made by \"pryv-tls bootstrap new-core\" on the CA holder)")
	}
	gcm, err := newGCM(bundleKey(passphrase, s.Salt))
	if err != nil {
		return nil, err
	}
	if len(s.Nonce) != gcm.NonceSize() {
		return nil, errors.New("join bundle damaged (bad nonce)")
	}
	plain, err := gcm.Open(nil, s.Nonce, s.Data, []byte(bundleFormat))
	if err != nil {
		return nil, errors.New("cannot open the join bundle: wrong passphrase, or the bundle was modified")
	}
	var b Bundle
	if err := json.Unmarshal(plain, &b); err != nil {
		return nil, fmt.Errorf("join bundle content: %w", err)
	}
	if b.Version != 1 || b.CoreID == "" || b.CACert == "" || b.NodeCert == "" || b.NodeKey == "" || b.Token == "" || b.JoinURL == "" {
		return nil, errors.New("join bundle incomplete (made by another version of pryv-tls?)")
	}
	if now.After(b.ExpiresAt) {
		return nil, fmt.Errorf("join bundle for %s expired at %s: make a new one with \"pryv-tls bootstrap new-core\" on the CA holder",
			b.CoreID, b.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return &b, nil
}

// ReadBundle opens the bundle file with the passphrase in passphraseFile.
func ReadBundle(path, passphraseFile string, now time.Time) (*Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("join bundle: %w", err)
	}
	pass, err := os.ReadFile(passphraseFile)
	if err != nil {
		return nil, fmt.Errorf("join bundle passphrase: %w", err)
	}
	b, err := OpenBundle(data, string(pass), now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
