// Package corerowstest writes rows as an open-pryv.io core's own ACME
// writes them, for tests of what reads them (corerows, migrate-core). It is
// written from the core's format, not from corerows, so a mistake in one
// does not hide in the other. Imported by tests only.
package corerowstest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
)

// Seal is the core's at-rest envelope: AES-256-GCM under the raw 32-byte
// key, no associated data; base64(0x01 || 12-byte IV || 16-byte tag ||
// ciphertext). Go's GCM appends the tag to the ciphertext; the core puts it
// in front.
func Seal(key, plaintext []byte) string {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	iv := make([]byte, 12)
	if _, err := rand.Read(iv); err != nil {
		panic(err)
	}
	sealed := gcm.Seal(nil, iv, plaintext, nil)
	ct, tag := sealed[:len(sealed)-16], sealed[len(sealed)-16:]
	env := append([]byte{1}, iv...)
	env = append(env, tag...)
	env = append(env, ct...)
	return base64.StdEncoding.EncodeToString(env)
}

// SplitChain cuts a full chain as the core does: the first certificate
// (with one trailing newline) and everything after it.
func SplitChain(full string) (leaf, chain string) {
	const end = "-----END CERTIFICATE-----"
	i := strings.Index(full, end)
	if i < 0 {
		return full, ""
	}
	cut := i + len(end)
	leaf = strings.TrimRight(full[:cut], " \t\r\n") + "\n"
	rest := strings.TrimLeft(full[cut:], " \t\r\n")
	if !strings.Contains(rest, "BEGIN CERTIFICATE") {
		rest = ""
	}
	return leaf, rest
}

// CertValue is a tls-cert/<hostname> value: the leaf and issuers of
// fullChain, keyPEM sealed, issuedAt/expiresAt from the leaf in ms.
func CertValue(key, fullChain, keyPEM []byte) string {
	leaf, chain := SplitChain(string(fullChain))
	b, _ := pem.Decode([]byte(leaf))
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		panic(err)
	}
	v, _ := json.Marshal(map[string]any{
		"certPem":   leaf,
		"chainPem":  chain,
		"keyPem":    Seal(key, keyPEM),
		"issuedAt":  c.NotBefore.UnixMilli(),
		"expiresAt": c.NotAfter.UnixMilli(),
	})
	return string(v)
}

// AccountValue is the tls-acme-account value.
func AccountValue(key, accountKeyPEM []byte, accountURL, email string) string {
	v, _ := json.Marshal(map[string]any{
		"accountKey": Seal(key, accountKeyPEM),
		"accountUrl": accountURL,
		"email":      email,
	})
	return string(v)
}
