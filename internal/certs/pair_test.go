package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/devpki"
)

// pairCase is one certificate/key/extra-chain combination, checked both
// through ParsePair (with the extra chain appended by hand) and LoadFiles.
type pairCase struct {
	name          string
	cert, key, ca []byte // ca nil: no caFile
	wantErr       string // distinctive part of the error; "" means accepted
	filesOnly     bool   // a LoadFiles check ParsePair cannot make
	// accepted pairs
	wantChain  int
	wantKey    string // "ecdsa" or "rsa"
	wantSerial *big.Int
}

func pairCases(t *testing.T) []pairCase {
	t.Helper()
	caA := newCA(t, "pair CA A")
	caB := newCA(t, "pair CA B")
	interA, err := caA.NewIntermediate("pair intermediate A")
	if err != nil {
		t.Fatal(err)
	}
	interB, err := caB.NewIntermediate("pair intermediate B")
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"pryv.example.com"}
	now := time.Now()

	ec := mustIssue(t, caA, devpki.Leaf{Names: names, KeyType: "ec256"})
	rsaLeaf := mustIssue(t, caA, devpki.Leaf{Names: names, KeyType: "rsa2048"})
	other := mustIssue(t, caA, devpki.Leaf{Names: names})
	chained := mustIssue(t, interA, devpki.Leaf{Names: names})
	leafOnly := devpki.EncodeCert(chained.Cert)
	expired := mustIssue(t, caA, devpki.Leaf{Names: names, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
	future := mustIssue(t, caA, devpki.Leaf{Names: names, NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(48 * time.Hour)})
	skewed := mustIssue(t, caA, devpki.Leaf{Names: names, NotBefore: now.Add(time.Minute), NotAfter: now.Add(48 * time.Hour)})

	garbage := []byte("this is not a certificate\nnor a key\n")
	garbageCertBlock := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("definitely not DER")})
	garbageKeyBlock := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("definitely not PKCS#8")})
	// A writer caught halfway: the leaf complete, the intermediate cut.
	halfChain := chained.FullChain[:len(leafOnly)+(len(chained.FullChain)-len(leafOnly))/2]

	return []pairCase{
		{name: "good ECDSA pair", cert: ec.FullChain, key: ec.KeyPEM, wantChain: 1, wantKey: "ecdsa", wantSerial: ec.Cert.SerialNumber},
		{name: "good RSA-2048 pair", cert: rsaLeaf.FullChain, key: rsaLeaf.KeyPEM, wantChain: 1, wantKey: "rsa", wantSerial: rsaLeaf.Cert.SerialNumber},
		{name: "good pair with intermediate chain", cert: chained.FullChain, key: chained.KeyPEM, wantChain: 2, wantKey: "ecdsa", wantSerial: chained.Cert.SerialNumber},
		{name: "caFile appended", cert: leafOnly, key: chained.KeyPEM, ca: interA.CertPEM(), wantChain: 2, wantKey: "ecdsa", wantSerial: chained.Cert.SerialNumber},
		{name: "caFile with intermediate and root", cert: leafOnly, key: chained.KeyPEM, ca: append(interA.CertPEM(), caA.CertPEM()...), wantChain: 3, wantKey: "ecdsa", wantSerial: chained.Cert.SerialNumber},
		{name: "not yet valid within clock skew", cert: skewed.FullChain, key: skewed.KeyPEM, wantChain: 1, wantKey: "ecdsa", wantSerial: skewed.Cert.SerialNumber},

		{name: "mismatched key", cert: ec.FullChain, key: other.KeyPEM, wantErr: "the private key does not match the certificate"},
		{name: "mismatched key type", cert: ec.FullChain, key: rsaLeaf.KeyPEM, wantErr: "does not match"},
		{name: "garbage cert", cert: garbage, key: ec.KeyPEM, wantErr: "no PEM certificate found"},
		{name: "garbage DER in a certificate block", cert: garbageCertBlock, key: ec.KeyPEM, wantErr: "parsing the pair"},
		{name: "garbage key", cert: ec.FullChain, key: garbage, wantErr: "no PEM private key found"},
		{name: "garbage DER in a key block", cert: ec.FullChain, key: garbageKeyBlock, wantErr: "parsing the pair"},
		{name: "empty files", cert: []byte{}, key: []byte{}, wantErr: "no PEM certificate found"},
		{name: "empty key file", cert: ec.FullChain, key: []byte{}, wantErr: "no PEM private key found"},
		{name: "key in the certificate file", cert: ec.KeyPEM, key: ec.KeyPEM, wantErr: "no PEM certificate found"},
		{name: "certificate in the key file", cert: ec.FullChain, key: ec.FullChain, wantErr: "no PEM private key found"},
		{name: "expired", cert: expired.FullChain, key: expired.KeyPEM, wantErr: "expired on"},
		{name: "not yet valid", cert: future.FullChain, key: future.KeyPEM, wantErr: "is not valid before"},
		{name: "broken chain", cert: append(bytes.Clone(ec.FullChain), interB.CertPEM()...), key: ec.KeyPEM, wantErr: "broken chain: certificate 2"},
		{name: "caFile of another CA", cert: leafOnly, key: chained.KeyPEM, ca: interB.CertPEM(), wantErr: "broken chain"},
		{name: "caFile without a certificate", cert: leafOnly, key: chained.KeyPEM, ca: garbage, wantErr: "no PEM certificate found", filesOnly: true},
		{name: "truncated cert file", cert: ec.FullChain[:len(ec.FullChain)/2], key: ec.KeyPEM, wantErr: "no PEM certificate found"},
		{name: "truncated full chain", cert: halfChain, key: chained.KeyPEM, wantErr: "incomplete PEM block"},
		{name: "cut block in the middle of the chain", cert: bytes.Join([][]byte{leafOnly, interA.CertPEM()[:100], caA.CertPEM()}, nil), key: chained.KeyPEM, wantErr: "incomplete PEM block"},
		{name: "truncated key file", cert: ec.FullChain, key: ec.KeyPEM[:len(ec.KeyPEM)/2], wantErr: "no PEM private key found"},
	}
}

// keySecrets are fragments of a key that must never show in an error: its
// base64 lines and its DER in hex.
func keySecrets(keyPEM []byte) []string {
	var out []string
	for _, line := range strings.Split(string(keyPEM), "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			out = append(out, line)
		}
	}
	if b, _ := pem.Decode(keyPEM); b != nil && len(b.Bytes) >= 16 {
		h := hex.EncodeToString(b.Bytes)
		mid := len(h) / 2
		out = append(out, h[mid-16:mid+16])
	}
	return out
}

func TestParsePair(t *testing.T) {
	for _, tc := range pairCases(t) {
		if tc.filesOnly {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			certPEM := tc.cert
			if tc.ca != nil {
				certPEM = append(append(bytes.Clone(tc.cert), '\n'), tc.ca...)
			}
			c, err := ParsePair(certPEM, tc.key, time.Now())
			checkPair(t, tc, c, err, nil)
		})
	}
}

func TestLoadFiles(t *testing.T) {
	for _, tc := range pairCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile := filepath.Join(dir, "fullchain.pem")
			keyFile := filepath.Join(dir, "privkey.pem")
			caFile := ""
			mustWrite(t, certFile, tc.cert)
			mustWrite(t, keyFile, tc.key)
			if tc.ca != nil {
				caFile = filepath.Join(dir, "chain.pem")
				mustWrite(t, caFile, tc.ca)
			}
			c, err := LoadFiles(certFile, keyFile, caFile, time.Now())
			want := []string{certFile}
			if tc.filesOnly {
				want = []string{caFile}
			}
			checkPair(t, tc, c, err, want)
		})
	}
}

func TestLoadFilesMissing(t *testing.T) {
	ca := newCA(t, "missing CA")
	iss := mustIssue(t, ca, devpki.Leaf{Names: []string{"pryv.example.com"}})
	dir := t.TempDir()
	certFile := filepath.Join(dir, "fullchain.pem")
	keyFile := filepath.Join(dir, "privkey.pem")
	caFile := filepath.Join(dir, "chain.pem")
	missing := filepath.Join(dir, "missing.pem")
	mustWrite(t, certFile, iss.FullChain)
	mustWrite(t, keyFile, iss.KeyPEM)
	mustWrite(t, caFile, ca.CertPEM())

	for _, tt := range []struct {
		name                string
		cert, key, ca, want string
	}{
		{"no certificate file", missing, keyFile, "", "reading certificate"},
		{"no key file", certFile, missing, "", "reading private key"},
		{"no caFile", certFile, keyFile, missing, "reading extra chain"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadFiles(tt.cert, tt.key, tt.ca, time.Now())
			if err == nil {
				t.Fatal("LoadFiles accepted a missing file")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), missing) {
				t.Errorf("error %q: want %q and the file name %q", err, tt.want, missing)
			}
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error %q does not wrap fs.ErrNotExist", err)
			}
		})
	}
}

func checkPair(t *testing.T, tc pairCase, c *tls.Certificate, err error, wantNames []string) {
	t.Helper()
	if tc.wantErr != "" {
		if err == nil {
			t.Fatalf("accepted; want an error containing %q", tc.wantErr)
		}
		if c != nil {
			t.Errorf("returned a certificate along with error %q", err)
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.wantErr) {
			t.Errorf("error %q does not contain %q", msg, tc.wantErr)
		}
		for _, n := range wantNames {
			if !strings.Contains(msg, n) {
				t.Errorf("error %q does not name the file %q", msg, n)
			}
		}
		for _, s := range keySecrets(tc.key) {
			if strings.Contains(msg, s) {
				t.Errorf("error %q leaks private key material %q", msg, s)
			}
		}
		return
	}
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if c.Leaf == nil {
		t.Fatal("Leaf not set")
	}
	if c.Leaf.SerialNumber.Cmp(tc.wantSerial) != 0 {
		t.Errorf("leaf serial %x, want %x", c.Leaf.SerialNumber, tc.wantSerial)
	}
	if len(c.Certificate) != tc.wantChain {
		t.Errorf("chain length %d, want %d", len(c.Certificate), tc.wantChain)
	}
	switch k := c.PrivateKey.(type) {
	case *ecdsa.PrivateKey:
		if tc.wantKey != "ecdsa" {
			t.Errorf("key is ECDSA, want %s", tc.wantKey)
		}
	case *rsa.PrivateKey:
		if tc.wantKey != "rsa" || k.N.BitLen() != 2048 {
			t.Errorf("key is RSA-%d, want %s", k.N.BitLen(), tc.wantKey)
		}
	default:
		t.Errorf("key type %T", k)
	}
}

func mustWrite(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDescribe(t *testing.T) {
	ca := newCA(t, "describe CA")
	iss := mustIssue(t, ca, devpki.Leaf{Names: []string{"a.example.com", "b.example.com"}})
	got := Describe(iss.Cert)
	want := "[a.example.com b.example.com] serial " + iss.Cert.SerialNumber.Text(16)
	if got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	iss.Cert.DNSNames = nil
	if got := Describe(iss.Cert); !strings.HasPrefix(got, "[a.example.com] serial ") {
		t.Errorf("Describe without SANs = %q, want the common name", got)
	}
}
