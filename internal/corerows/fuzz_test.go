package corerows_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
	"unicode"

	"github.com/pryv/pryv-tls/internal/corerows"
	"github.com/pryv/pryv-tls/internal/corerows/corerowstest"
	"github.com/pryv/pryv-tls/internal/devpki"
)

// fuzzKey is the atRestKey every fuzzed row is opened with.
var fuzzKey = bytes.Repeat([]byte{0x5a}, corerows.KeySize)

// FuzzParseCert reads arbitrary tls-cert/ rows as another program (the
// core) could have written them. It must never panic; an error never holds
// the atRestKey or what a sealed field opened to, and is one printable line
// (the CLI prints it on a terminal); a row it accepts has an opened PEM key.
func FuzzParseCert(f *testing.F) {
	ca, err := devpki.NewCA("Fuzz Rows")
	if err != nil {
		f.Fatal(err)
	}
	iss, err := ca.Issue(devpki.Leaf{Names: []string{"core1.example.com"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("tls-cert/core1.example.com", corerowstest.CertValue(fuzzKey, iss.FullChain, iss.KeyPEM))
	f.Add("tls-cert/x", corerowstest.CertValue(fuzzKey, iss.FullChain, []byte("not a key")))
	f.Add("tls-cert/\x1b[31mred", `{"certPem":"x","keyPem":"AQ=="}`)
	f.Add("tls-cert/", `{}`)
	f.Add("other/x", `[]`)
	f.Add("tls-cert/x", `{"certPem":"x","keyPem":"`+corerowstest.Seal(fuzzKey, iss.KeyPEM)+`","issuedAt":1e300}`)
	f.Fuzz(func(t *testing.T, row, value string) {
		c, err := corerows.ParseCert(row, value, fuzzKey)
		if err != nil {
			checkRowError(t, err.Error(), row+"\n"+value)
			return
		}
		if !bytes.Contains(c.KeyPEM, []byte("PRIVATE KEY")) {
			t.Fatalf("accepted a row whose key is no PEM private key")
		}
		if "tls-cert/"+c.Hostname != row {
			t.Fatalf("row %q read as hostname %q", row, c.Hostname)
		}
	})
}

// FuzzParseAccount is FuzzParseCert for the tls-acme-account row.
func FuzzParseAccount(f *testing.F) {
	ca, err := devpki.NewCA("Fuzz Account")
	if err != nil {
		f.Fatal(err)
	}
	iss, err := ca.Issue(devpki.Leaf{Names: []string{"acct.example.com"}})
	if err != nil {
		f.Fatal(err)
	}
	keyPEM := iss.KeyPEM
	f.Add(corerowstest.AccountValue(fuzzKey, keyPEM, "https://acme.example/acct/1", "ops@example.com"))
	f.Add(corerowstest.AccountValue(fuzzKey, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "https://a/1", ""))
	f.Add(`{"accountKey":"x","accountUrl":"http://\u001b[2J"}`)
	f.Add(`{"accountKey":"` + corerowstest.Seal(fuzzKey, []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")) + `","accountUrl":"https://a/1"}`)
	f.Fuzz(func(t *testing.T, value string) {
		a, err := corerows.ParseAccount(value, fuzzKey)
		if err != nil {
			checkRowError(t, err.Error(), value)
			return
		}
		if a.Key == nil || !strings.HasPrefix(a.URL, "https://") {
			t.Fatalf("accepted an account without a key or an https URL: %q", a.URL)
		}
	})
}

// checkRowError fails t when a parser's error msg holds the atRestKey or an
// opened secret, or a byte a terminal would act on. input is what the parser was given (the row's name and value): an error may
// quote the input, and the fuzzer can write the key's own bytes there (a row
// named "ZZZ…", the key's 0x5a bytes as text), which the parser cannot know
// for a secret; such a form is not checked.
func checkRowError(t *testing.T, msg, input string) {
	t.Helper()
	for _, secret := range []string{hex.EncodeToString(fuzzKey), base64.StdEncoding.EncodeToString(fuzzKey), string(fuzzKey)} {
		if strings.Contains(msg, secret) && !strings.Contains(input, secret) {
			t.Fatalf("an error holds the atRestKey: %s", msg)
		}
	}
	// What a sealed field opens to is secret: an error may name the field,
	// never repeat a line of its plaintext.
	for _, sealed := range sealedFields(input) {
		pt, err := corerows.Open(fuzzKey, sealed)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(pt), "\n") {
			if len(line) >= 12 && strings.Contains(msg, line) {
				t.Fatalf("an error repeats an opened secret: %s", msg)
			}
		}
	}
	for _, r := range msg {
		if !unicode.IsPrint(r) {
			t.Fatalf("an error holds the non-printable %U (a row's bytes reach the terminal as they are): %q", r, msg)
		}
	}
}

// sealedFields returns the string values of keyPem and accountKey found in
// a row's JSON, whatever else it holds.
func sealedFields(value string) []string {
	var out []string
	for _, field := range []string{`"keyPem":"`, `"accountKey":"`} {
		if i := strings.Index(value, field); i >= 0 {
			rest := value[i+len(field):]
			if j := strings.IndexByte(rest, '"'); j >= 0 {
				out = append(out, rest[:j])
			}
		}
	}
	return out
}
