// Package atrest encrypts the private keys pryv-tls keeps in PlatformDB (TLS
// keys, the ACME account key), so that nothing readable by whoever can read
// the store (a backup, an etcd snapshot, a peer's disk) is a usable key.
//
// Every value is sealed with AES-256-GCM under a key derived by HKDF-SHA256
// from letsEncrypt.atRestKey (the "master": 32 random bytes, the same on every
// core) and a purpose label, and bound to the PlatformDB row it is stored in.
//
// # Envelope format, version 0x01
//
//	offset  size  field
//	0       1     version, 0x01
//	1       4     key id: HKDF-SHA256(master, salt, info "key-check"), 4 bytes
//	5       12    nonce, random for every Seal
//	17      n     AES-256-GCM ciphertext of the n-byte plaintext
//	17+n    16    GCM tag
//
// A version 0x01 envelope is therefore exactly 33 bytes longer than its
// plaintext. The AES key is HKDF-SHA256(master, salt, info = purpose), with
// salt = "pryv-tls at-rest v1". The additional authenticated data is
//
//	version || purpose || 0x00 || row
//
// so an envelope opened under another row name, another purpose or with a
// changed version byte does not authenticate. The key id is not in the AAD
// but is compared with this Keyring's own before decrypting, so changing it
// cannot go unnoticed either; it exists so that a wrong master is reported as
// such (and not as tampering) without trying to decrypt. It is a 32-bit PRF
// output of a 256-bit random master: it identifies the key without helping to
// find it.
//
// # Rotation
//
// A Keyring made with previous masters (letsEncrypt.atRestKeyPrevious) opens
// what any of them sealed, choosing by key id, and seals with the current one
// only; certstore.Reseal rewrites every sealed row under the current master,
// after which the previous one can go.
//
// Nothing here ever puts key material or plaintext into an error or into the
// text form of a Keyring. A wrong master is ErrWrongKey: the caller must then
// refuse to go on rather than overwrite the row with a fresh value.
package atrest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// Purpose is the HKDF info label of one kind of secret: each purpose gets its
// own AES key, and a value sealed for one purpose does not open for another.
//
// Adding a purpose: give it a new label, add it to purposes below, and never
// reuse, rename or repurpose a label once a release has written rows with it
// (renaming makes every such row unreadable; reusing mixes two kinds of
// secret under one key). Labels must not contain 0x00 and must not be
// keyCheckInfo.
type Purpose string

const (
	// PurposeTLSKey seals the private key of a TLS certificate.
	PurposeTLSKey Purpose = "tls-key"
	// PurposeACMEAccount seals the ACME (Let's Encrypt) account key.
	PurposeACMEAccount Purpose = "acme-account-key"
	// PurposeDNSSECKey seals the zone's DNSSEC signing key (dns.dnssec).
	PurposeDNSSECKey Purpose = "dnssec-key"
)

// purposes is every Purpose a Keyring accepts; New derives one key for each.
var purposes = []Purpose{PurposeTLSKey, PurposeACMEAccount, PurposeDNSSECKey}

const (
	// MasterSize is the size of letsEncrypt.atRestKey, decoded.
	MasterSize = 32

	// Version is the envelope version Seal writes.
	Version byte = 0x01

	// hkdfSalt is fixed for this format; a new derivation scheme needs both
	// a new salt and a new Version.
	hkdfSalt = "pryv-tls at-rest v1"
	// keyCheckInfo is the HKDF info of the key id. It is not a Purpose.
	keyCheckInfo = "key-check"

	keyIDSize  = 4
	nonceSize  = 12 // what cipher.NewGCMWithRandomNonce prepends
	tagSize    = 16
	headerSize = 1 + keyIDSize
	// Overhead is how much longer than its plaintext an envelope is.
	Overhead = headerSize + nonceSize + tagSize
)

// The errors Open wraps, for errors.Is. Their text is part of the message
// users see, after "opening <row>: ".
var (
	// ErrWrongKey: the envelope was written under another atRestKey. Do not
	// overwrite the row; fix the configuration.
	ErrWrongKey = errors.New("the atRestKey differs from the one that wrote this row (check letsEncrypt.atRestKey is the same on every core)")
	// ErrNotAuthentic: right key, but the envelope was altered, moved from
	// another row, or sealed for another purpose.
	ErrNotAuthentic = errors.New("the envelope does not authenticate (tampered, or moved from another row)")
	// ErrUnknownVersion: the version byte is not one this build reads.
	ErrUnknownVersion = errors.New("unknown envelope version")
	// ErrTruncated: too short to be an envelope of its version.
	ErrTruncated = errors.New("envelope truncated")
)

// Keyring seals and opens at-rest envelopes. It holds only derived keys, not
// the master. It is immutable after New and safe for concurrent use. Every
// way of printing it (fmt verbs, slog) yields "atrest.Keyring(<redacted>)".
type Keyring struct {
	keyID    [keyIDSize]byte
	aeads    map[Purpose]cipher.AEAD // read-only after New
	previous []*Keyring              // open only; none of them has previous
}

// New derives a Keyring from the 32 raw bytes of letsEncrypt.atRestKey. It
// does not keep or modify master. Rows sealed under a previous master (a
// rotation under way) open too; Seal always uses master.
func New(master []byte, previous ...[]byte) (*Keyring, error) {
	k, err := derive(master)
	if err != nil {
		return nil, err
	}
	for i, p := range previous {
		pk, err := derive(p)
		if err != nil {
			return nil, fmt.Errorf("previous key %d: %w", i+1, err)
		}
		if pk.keyID == k.keyID {
			return nil, fmt.Errorf("atrest: previous key %d is the current atRestKey (or shares its key id): drop it", i+1)
		}
		for _, o := range k.previous {
			if o.keyID == pk.keyID {
				return nil, fmt.Errorf("atrest: previous key %d is given twice", i+1)
			}
		}
		k.previous = append(k.previous, pk)
	}
	return k, nil
}

// derive makes the single-master Keyring of master.
func derive(master []byte) (*Keyring, error) {
	if len(master) != MasterSize {
		return nil, fmt.Errorf("atrest: the atRestKey must be exactly %d bytes (got %d)", MasterSize, len(master))
	}
	k := &Keyring{aeads: make(map[Purpose]cipher.AEAD, len(purposes))}
	id, err := hkdf.Key(sha256.New, master, []byte(hkdfSalt), keyCheckInfo, keyIDSize)
	if err != nil {
		return nil, fmt.Errorf("atrest: deriving the key id: %w", err)
	}
	copy(k.keyID[:], id)
	for _, p := range purposes {
		key, err := hkdf.Key(sha256.New, master, []byte(hkdfSalt), string(p), 32)
		if err != nil {
			return nil, fmt.Errorf("atrest: deriving the %s key: %w", p, err)
		}
		block, err := aes.NewCipher(key)
		clear(key) // the cipher keeps its own expanded copy
		if err != nil {
			return nil, fmt.Errorf("atrest: %w", err)
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("atrest: %w", err)
		}
		k.aeads[p] = aead
	}
	return k, nil
}

// Seal encrypts plaintext for purpose, bound to row (the PlatformDB key it
// will be stored under), and returns a fresh envelope: two seals of the same
// plaintext differ.
func (k *Keyring) Seal(purpose Purpose, row string, plaintext []byte) ([]byte, error) {
	aead, err := k.aead(purpose, row)
	if err != nil {
		return nil, fmt.Errorf("sealing %s: %w", row, err)
	}
	out := make([]byte, headerSize, Overhead+len(plaintext))
	out[0] = Version
	copy(out[1:headerSize], k.keyID[:])
	return aead.Seal(out, nil, plaintext, additionalData(Version, purpose, row)), nil //nolint:gosec // G407: NewGCMWithRandomNonce draws the nonce itself and takes nil
}

// Open checks and decrypts an envelope Seal wrote for purpose and row. Its
// errors name the row, wrap ErrWrongKey, ErrNotAuthentic, ErrUnknownVersion
// or ErrTruncated, and never contain key material or plaintext.
func (k *Keyring) Open(purpose Purpose, row string, envelope []byte) ([]byte, error) {
	aead, err := k.aead(purpose, row)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", row, err)
	}
	if len(envelope) == 0 {
		return nil, fmt.Errorf("opening %s: %w (0 bytes)", row, ErrTruncated)
	}
	// The version decides the layout, so it is checked before the length.
	if v := envelope[0]; v != Version {
		return nil, fmt.Errorf("opening %s: %w %d (written by a newer pryv-tls?)", row, ErrUnknownVersion, v)
	}
	if len(envelope) < Overhead {
		return nil, fmt.Errorf("opening %s: %w (%d bytes)", row, ErrTruncated, len(envelope))
	}
	if subtle.ConstantTimeCompare(envelope[1:headerSize], k.keyID[:]) != 1 {
		for _, p := range k.previous {
			if subtle.ConstantTimeCompare(envelope[1:headerSize], p.keyID[:]) == 1 { //nolint:gosec // G602: len(envelope) >= Overhead > headerSize (checked above)
				return p.Open(purpose, row, envelope)
			}
		}
		return nil, fmt.Errorf("opening %s: %w", row, ErrWrongKey)
	}
	plaintext, err := aead.Open(nil, nil, envelope[headerSize:], additionalData(envelope[0], purpose, row))
	if err != nil {
		// GCM's own error says nothing more; do not wrap it.
		return nil, fmt.Errorf("opening %s: %w", row, ErrNotAuthentic)
	}
	return plaintext, nil
}

// Current reports whether envelope is sealed under the current master (a
// row Reseal need not rewrite). It checks the header only.
func (k *Keyring) Current(envelope []byte) bool {
	return k != nil && len(envelope) >= headerSize && envelope[0] == Version &&
		subtle.ConstantTimeCompare(envelope[1:headerSize], k.keyID[:]) == 1
}

// Previous is how many previous masters k opens with.
func (k *Keyring) Previous() int { return len(k.previous) }

// aead returns the AEAD of purpose, or an error for an unusable call.
func (k *Keyring) aead(purpose Purpose, row string) (cipher.AEAD, error) {
	if k == nil || k.aeads == nil {
		return nil, errors.New("atrest: Keyring not initialised (use atrest.New)")
	}
	if row == "" {
		return nil, errors.New("atrest: empty row name")
	}
	aead, ok := k.aeads[purpose]
	if !ok {
		return nil, fmt.Errorf("atrest: unknown purpose %q", string(purpose))
	}
	return aead, nil
}

// additionalData is version || purpose || 0x00 || row.
func additionalData(version byte, purpose Purpose, row string) []byte {
	ad := make([]byte, 0, 1+len(purpose)+1+len(row))
	ad = append(ad, version)
	ad = append(ad, purpose...)
	ad = append(ad, 0)
	return append(ad, row...)
}

const redacted = "atrest.Keyring(<redacted>)"

// String never shows key material.
func (Keyring) String() string { return redacted }

// GoString makes %#v as safe as %v.
func (Keyring) GoString() string { return redacted }

// Format makes every fmt verb (%d and %x included, which would otherwise
// print the fields) yield the redacted form.
func (Keyring) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue keeps slog handlers (JSON included) from walking the fields.
func (Keyring) LogValue() slog.Value { return slog.StringValue(redacted) }
