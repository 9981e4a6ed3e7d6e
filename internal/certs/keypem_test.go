package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func TestParseKeyPEM(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	must := func(der []byte, err error) []byte {
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	pkcs8 := block("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(ec)))
	sec1 := block("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(ec)))
	pkcs1 := block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))
	ed := block("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(edk)))
	cert := block("CERTIFICATE", []byte{1, 2, 3})
	encrypted := "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"
	for _, tt := range []struct {
		name, in string
		want     crypto.PublicKey // the public key the result must have
		err      string           // a substring of the error
	}{
		{name: "PKCS#8 ECDSA", in: pkcs8, want: &ec.PublicKey},
		{name: "SEC 1", in: sec1, want: &ec.PublicKey},
		{name: "PKCS#1", in: pkcs1, want: &rk.PublicKey},
		{name: "PKCS#8 Ed25519", in: ed, want: edk.Public()},
		{name: "openssl ecparam: EC PARAMETERS first", in: block("EC PARAMETERS", []byte{6, 8, 42}) + sec1, want: &ec.PublicKey},
		{name: "a certificate before the key", in: cert + pkcs8, want: &ec.PublicKey},
		{name: "not PEM", in: `{"kty":"RSA"}`, err: "no PEM block"},
		{name: "empty", in: "", err: "no PEM block"},
		{name: "a certificate only", in: cert, err: `a PEM "CERTIFICATE" block, not a private key`},
		{name: "garbage DER", in: block("PRIVATE KEY", []byte{1, 2}), err: "its PRIVATE KEY block does not parse: "},
		{name: "encrypted, legacy", in: encrypted, err: "the key is encrypted: store it unencrypted (openssl pkey"},
		{name: "encrypted, PKCS#8", in: block("ENCRYPTED PRIVATE KEY", []byte{1}), err: "the key is encrypted"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKeyPEM([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pub, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(tt.want) {
				t.Fatalf("key %T with another public key than the one written", k)
			}
		})
	}
}
