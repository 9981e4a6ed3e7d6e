package corerows_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/corerows"
	"github.com/pryv/pryv-tls/internal/corerows/corerowstest"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/rqlite"
	"github.com/pryv/pryv-tls/internal/rqlite/rqlitetest"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestOpenNodeVector opens an envelope made by Node's crypto the way the
// core's AtRestEncryption makes one (key 0x00..0x1f, IV 0x07*12, plaintext
// below), so Open is checked against the real thing and not only against
// corerowstest.Seal.
func TestOpenNodeVector(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	const sealed = "AQcHBwcHBwcHBwcHByUQRvptZHfOtq9wGZnUXO8iR4txQk2Ss4/TM9DSGKLa9RmtOM2urDTTlnPwdKxLbS1p3FOsbbHcRt7xr4tBmHL+aPgMjIwsJrDF6w=="
	pt, err := corerows.Open(key, sealed)
	if err != nil || string(pt) != "-----BEGIN PRIVATE KEY-----\npryv\n-----END PRIVATE KEY-----\n" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	// And corerowstest.Seal writes the same layout.
	env, _ := base64.StdEncoding.DecodeString(corerowstest.Seal(key, []byte("pryv")))
	if env[0] != 1 || len(env) != 1+12+16+4 {
		t.Fatalf("Seal's envelope: version %d, %d bytes", env[0], len(env))
	}
	if pt, err := corerows.Open(key, corerowstest.Seal(key, []byte("pryv"))); err != nil || string(pt) != "pryv" {
		t.Fatalf("Open(Seal) = %q, %v", pt, err)
	}
}

func TestOpen(t *testing.T) {
	key := newKey(t)
	good := corerowstest.Seal(key, []byte("-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"))
	env, _ := base64.StdEncoding.DecodeString(good)
	mutate := func(f func(b []byte) []byte) string {
		b := f(bytes.Clone(env))
		return base64.StdEncoding.EncodeToString(b)
	}
	tests := []struct {
		name     string
		key      []byte
		sealed   string
		isOpen   bool // errors.Is ErrOpen
		contains string
	}{
		{"wrong key", newKey(t), good, true, "wrong letsEncrypt.atRestKey or tampered row"},
		{"tampered ciphertext", key, mutate(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), true, "tampered"},
		{"tampered tag", key, mutate(func(b []byte) []byte { b[1+12] ^= 1; return b }), true, "tampered"},
		{"tampered iv", key, mutate(func(b []byte) []byte { b[1] ^= 1; return b }), true, "tampered"},
		// Go's order (ciphertext || tag) must not open: the layout is the core's.
		{"tag after ciphertext", key, mutate(func(b []byte) []byte {
			tag := bytes.Clone(b[13:29])
			return append(append(b[:13:13], b[29:]...), tag...)
		}), true, "tampered"},
		{"bad version", key, mutate(func(b []byte) []byte { b[0] = 2; return b }), false, "envelope version 2"},
		{"short", key, base64.StdEncoding.EncodeToString(env[:28]), false, "too short (28 bytes"},
		{"bad base64", key, "not*base64!", false, "not base64"},
		{"empty", key, "", false, "empty"},
		{"short key", key[:16], good, false, "must be 32 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := corerows.Open(tt.key, tt.sealed)
			if err == nil {
				t.Fatalf("Open = %q, nil; want an error", pt)
			}
			if errors.Is(err, corerows.ErrOpen) != tt.isOpen || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("err = %v; want ErrOpen=%v and %q", err, tt.isOpen, tt.contains)
			}
		})
	}
	if pt, err := corerows.Open(key, good); err != nil || !bytes.HasPrefix(pt, []byte("-----BEGIN")) {
		t.Fatalf("Open(good) = %q, %v", pt, err)
	}
}

type fixture struct {
	key   []byte
	ca    *devpki.CA
	inter *devpki.CA
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, err := devpki.NewCA("test root")
	if err != nil {
		t.Fatal(err)
	}
	inter, err := ca.NewIntermediate("test intermediate")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{key: newKey(t), ca: ca, inter: inter}
}

func (f *fixture) issue(t *testing.T, names ...string) *devpki.Issued {
	t.Helper()
	is, err := f.inter.Issue(devpki.Leaf{Names: names, KeyType: "rsa2048"})
	if err != nil {
		t.Fatal(err)
	}
	return is
}

func TestParseCert(t *testing.T) {
	f := newFixture(t)
	is := f.issue(t, "*.mc.example.com", "mc.example.com")
	c, err := corerows.ParseCert("tls-cert/*.mc.example.com", corerowstest.CertValue(f.key, is.FullChain, is.KeyPEM), f.key)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "*.mc.example.com" || !bytes.Equal(c.KeyPEM, is.KeyPEM) {
		t.Fatalf("cert = %s, key equal %v", c.Hostname, bytes.Equal(c.KeyPEM, is.KeyPEM))
	}
	// The chain served must be the one issued: leaf then intermediate.
	if !bytes.Equal(c.FullChain(), is.FullChain) {
		t.Fatalf("FullChain differs from the issued chain:\n%s\nwant\n%s", c.FullChain(), is.FullChain)
	}
	if !c.ExpiresAt.Equal(is.Cert.NotAfter.Truncate(time.Millisecond)) || !c.IssuedAt.Equal(is.Cert.NotBefore.Truncate(time.Millisecond)) {
		t.Fatalf("dates %v %v, want %v %v", c.IssuedAt, c.ExpiresAt, is.Cert.NotBefore, is.Cert.NotAfter)
	}

	sealedKey := corerowstest.Seal(f.key, is.KeyPEM)
	notKey := corerowstest.Seal(f.key, []byte("hello"))
	bad := []struct {
		name, row, value, contains string
		key                        []byte
	}{
		{"not json", "tls-cert/a", "{", "not the core's certificate JSON", f.key},
		{"no certPem", "tls-cert/a", `{"keyPem":"` + sealedKey + `"}`, "tls-cert/a: no certPem", f.key},
		{"no keyPem", "tls-cert/a", `{"certPem":"x"}`, "tls-cert/a: no keyPem", f.key},
		{"wrong key", "tls-cert/*.x", corerowstest.CertValue(f.key, is.FullChain, is.KeyPEM), "cannot open tls-cert/*.x (keyPem): wrong letsEncrypt.atRestKey or tampered row", newKey(t)},
		{"key not pem", "tls-cert/a", `{"certPem":"x","keyPem":"` + notKey + `"}`, "opens, but to no PEM private key", f.key},
		{"wrong row", "tls-certs/a", `{}`, "not a tls-cert/<hostname> row", f.key},
		{"empty host", "tls-cert/", `{}`, "not a tls-cert/<hostname> row", f.key},
		{"number as pem", "tls-cert/a", `{"certPem":3}`, "not the core's certificate JSON", f.key},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := corerows.ParseCert(tt.row, tt.value, tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("err = %v, want %q", err, tt.contains)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY-----\n") {
				t.Fatalf("a key in the error: %v", err)
			}
		})
	}
}

func pemKey(t *testing.T, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParseAccount(t *testing.T) {
	key := newKey(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	url := "https://acme-v02.api.letsencrypt.org/acme/acct/123"
	good := []struct {
		name, keyType string
		pem           []byte
	}{
		{"acme-client v5: PKCS#8 RSA", "RSA 2048", pemKey(t, "PRIVATE KEY", pkcs8)},
		{"PKCS#1 RSA", "RSA 2048", pemKey(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))},
		{"SEC 1 EC", "ECDSA P-256", pemKey(t, "EC PRIVATE KEY", sec1)},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			a, err := corerows.ParseAccount(corerowstest.AccountValue(key, tt.pem, url, "ops@example.com"), key)
			if err != nil {
				t.Fatal(err)
			}
			if a.URL != url || a.Email != "ops@example.com" || a.KeyType() != tt.keyType || !bytes.Equal(a.KeyPEM, tt.pem) {
				t.Fatalf("account = %s %s %s", a.URL, a.Email, a.KeyType())
			}
		})
	}
	bad := []struct {
		name, value, contains string
		key                   []byte
	}{
		{"wrong key", corerowstest.AccountValue(key, pemKey(t, "PRIVATE KEY", pkcs8), url, "e"), "cannot open tls-acme-account (accountKey): wrong letsEncrypt.atRestKey or tampered row", newKey(t)},
		{"no url", `{"accountKey":"x"}`, "no accountUrl", key},
		{"http url", `{"accountKey":"x","accountUrl":"http://ca/acct/1"}`, "is not an https URL", key},
		{"no key", `{"accountUrl":"` + url + `"}`, "no accountKey", key},
		{"jwk not pem", corerowstest.AccountValue(key, []byte(`{"kty":"RSA"}`), url, "e"), "no PEM block", key},
		{"certificate not key", corerowstest.AccountValue(key, pemKey(t, "CERTIFICATE", []byte{1}), url, "e"), `"CERTIFICATE" block, not a private key`, key},
		{"garbage der", corerowstest.AccountValue(key, pemKey(t, "PRIVATE KEY", []byte{1, 2}), url, "e"), "does not parse", key},
		{"not json", "[]", "not the core's account JSON", key},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := corerows.ParseAccount(tt.value, tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("err = %v, want %q", err, tt.contains)
			}
		})
	}
}

func TestRead(t *testing.T) {
	f := newFixture(t)
	s := rqlitetest.Start(t)
	a := f.issue(t, "*.mc.example.com", "mc.example.com")
	b := f.issue(t, "other.example.com")
	s.Set("tls-cert/*.mc.example.com", corerowstest.CertValue(f.key, a.FullChain, a.KeyPEM))
	s.Set("tls-cert/other.example.com", corerowstest.CertValue(f.key, b.FullChain, b.KeyPEM))
	s.Set("tls-cert/broken.example.com", `{"certPem":"x"}`)
	s.Set("TLS-CERT/upper", "not the core's: its prefix is lower case")
	s.Set("user-core/alice", "core-a")
	ak, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ak)
	s.Set("tls-acme-account", corerowstest.AccountValue(f.key, pemKey(t, "PRIVATE KEY", der), "https://ca.example/acct/7", "ops@example.com"))

	c, err := rqlite.New(rqlite.Options{URL: s.URL})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := corerows.Read(context.Background(), c, f.key)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows.Certs) != 2 || rows.Certs[0].Hostname != "*.mc.example.com" || rows.Certs[1].Hostname != "other.example.com" {
		t.Fatalf("certs = %+v", rows.Certs)
	}
	if len(rows.Bad) != 1 || !strings.Contains(rows.Bad[0].Error(), "tls-cert/broken.example.com: no keyPem") {
		t.Fatalf("bad = %v", rows.Bad)
	}
	if rows.Account == nil || rows.Account.URL != "https://ca.example/acct/7" {
		t.Fatalf("account = %+v", rows.Account)
	}

	s.NoLeader(1)
	if _, err := corerows.Read(context.Background(), c, f.key); !errors.Is(err, rqlite.ErrNoLeader) {
		t.Fatalf("during an election: err = %v, want ErrNoLeader (not an empty migration)", err)
	}
	s.Delete("tls-acme-account")
	rows, err = corerows.Read(context.Background(), c, f.key)
	if err != nil || rows.Account != nil {
		t.Fatalf("no account row: %+v, %v", rows, err)
	}
}
