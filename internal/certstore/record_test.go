package certstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/devpki"
)

func TestNewRecordKeyTypes(t *testing.T) {
	ca := newCA(t)
	keys := testKeys(t, 1)
	for _, kt := range []string{"ec256", "ec384", "rsa2048"} {
		t.Run(kt, func(t *testing.T) {
			nb := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
			na := nb.Add(60 * 24 * time.Hour)
			iss := issue(t, ca, devpki.Leaf{Names: []string{"core1.example.com", "www.example.com"}, KeyType: kt, NotBefore: nb, NotAfter: na})
			now := time.Now()
			r, c, err := NewRecord(keys, Input{Source: SourceFile, Chain: iss.FullChain, Key: iss.KeyPEM}, now)
			if err != nil {
				t.Fatal(err)
			}
			if r.Hostname != "core1.example.com" {
				t.Errorf("Hostname %q: \"\" must mean the certificate's first name", r.Hostname)
			}
			if !slices.Equal(r.Names, []string{"core1.example.com", "www.example.com"}) {
				t.Errorf("Names %v", r.Names)
			}
			if r.Chain != string(iss.FullChain) {
				t.Error("Chain is not the PEM chain given")
			}
			if !r.IssuedAt.Equal(nb) || !r.ExpiresAt.Equal(na) || r.IssuedAt.Location() != time.UTC || r.ExpiresAt.Location() != time.UTC {
				t.Errorf("IssuedAt %v ExpiresAt %v, want %v and %v in UTC", r.IssuedAt, r.ExpiresAt, nb.UTC(), na.UTC())
			}
			if r.Serial != serialOf(iss) {
				t.Errorf("Serial %q, want %q", r.Serial, serialOf(iss))
			}
			if r.Issuer != "Test Intermediate" {
				t.Errorf("Issuer %q", r.Issuer)
			}
			if r.Source != SourceFile || !r.StoredAt.Equal(now) || r.StoredAt.Location() != time.UTC {
				t.Errorf("Source %q StoredAt %v", r.Source, r.StoredAt)
			}
			if len(r.Hash) != 64 || r.Hash != pairHash(iss.FullChain, iss.KeyPEM) {
				t.Errorf("Hash %q is not the pair's hash", r.Hash)
			}
			if c == nil || c.Leaf == nil || c.Leaf.SerialNumber.Cmp(iss.Cert.SerialNumber) != 0 {
				t.Fatal("NewRecord did not return the parsed certificate")
			}
			if len(c.Certificate) != 2 {
				t.Errorf("the parsed certificate has %d links, want leaf + intermediate", len(c.Certificate))
			}
			if bytes.Contains(r.Key, iss.KeyPEM) || len(r.Key) != len(iss.KeyPEM)+atrest.Overhead {
				t.Error("Key is not an atrest envelope of the key PEM")
			}
			if got := r.DaysLeft(nb.Add(20 * 24 * time.Hour)); got != 40 {
				t.Errorf("DaysLeft = %d, want 40", got)
			}

			// Open gives the key back and re-checks the pair.
			oc, keyPEM, err := r.Open(keys, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(keyPEM, iss.KeyPEM) {
				t.Error("Open returned another key")
			}
			if oc.Leaf.SerialNumber.Cmp(iss.Cert.SerialNumber) != 0 {
				t.Error("Open returned another certificate")
			}
			// Once expired, the record no longer opens.
			if _, _, err := r.Open(keys, na.Add(time.Minute)); err == nil || !strings.Contains(err.Error(), "expired") {
				t.Errorf("Open after expiry: %v", err)
			}
		})
	}
}

func TestNewRecordHostname(t *testing.T) {
	ca := newCA(t)
	keys := testKeys(t, 1)
	iss := issueFor(t, ca, "a.example.com", "B.example.com")

	r, _, err := NewRecord(keys, Input{Hostname: "B.EXAMPLE.com", Source: SourceImport, Chain: iss.FullChain, Key: iss.KeyPEM}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if r.Hostname != "b.example.com" {
		t.Errorf("Hostname %q, want it lowercased", r.Hostname)
	}
	if _, _, err := r.Open(keys, time.Now()); err != nil {
		t.Errorf("a record for a second name does not open: %v", err)
	}
}

func TestNewRecordWildcard(t *testing.T) {
	ca := newCA(t)
	keys := testKeys(t, 1)
	iss := issueFor(t, ca, "*.mc.example.com", "mc.example.com")

	for _, host := range []string{"", "*.mc.example.com", "*.MC.example.com"} {
		r, _, err := NewRecord(keys, Input{Hostname: host, Source: SourceACME, Chain: iss.FullChain, Key: iss.KeyPEM}, time.Now())
		if err != nil {
			t.Fatalf("NewRecord(%q): %v", host, err)
		}
		if r.Hostname != "*.mc.example.com" {
			t.Errorf("NewRecord(%q).Hostname = %q", host, r.Hostname)
		}
		if got := RowKey(r.Hostname); got != "tls-cert/*.mc.example.com" {
			t.Errorf("RowKey = %q: the * must be kept literally", got)
		}
		if _, _, err := r.Open(keys, time.Now()); err != nil {
			t.Errorf("the wildcard record does not open: %v", err)
		}
	}
	if got := RowKey("*.MC.Example.com"); got != "tls-cert/*.mc.example.com" {
		t.Errorf("RowKey = %q", got)
	}
	if got := DirName("*.mc.example.com"); got != "wildcard.mc.example.com" {
		t.Errorf("DirName = %q", got)
	}
	if got := DirName("mc.example.com"); got != "mc.example.com" {
		t.Errorf("DirName = %q", got)
	}

	// The apex and a host one level below are covered too.
	for _, host := range []string{"mc.example.com", "core7.mc.example.com"} {
		r, _, err := NewRecord(keys, Input{Hostname: host, Source: SourceACME, Chain: iss.FullChain, Key: iss.KeyPEM}, time.Now())
		if err != nil {
			t.Errorf("NewRecord(%q): %v", host, err)
			continue
		}
		if r.Hostname != host {
			t.Errorf("Hostname %q, want %q", r.Hostname, host)
		}
	}
}

// wantInvalid fails unless err is an *InvalidError whose text contains want.
func wantInvalid(t *testing.T, err error, want string) {
	t.Helper()
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("error %v (%T) is not an *InvalidError", err, err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	if inv.Unwrap() == nil {
		t.Fatal("InvalidError wraps nothing")
	}
}

func TestNewRecordInvalid(t *testing.T) {
	ca := newCA(t)
	keys := testKeys(t, 1)
	iss := issueFor(t, ca, "a.example.com")
	other := issueFor(t, ca, "a.example.com")
	wild := issueFor(t, ca, "*.mc.example.com", "mc.example.com")
	expired := issue(t, ca, devpki.Leaf{Names: []string{"a.example.com"},
		NotBefore: time.Now().Add(-100 * 24 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	now := time.Now()

	cases := []struct {
		name        string
		host        string
		chain, key  []byte
		wantMessage string
	}{
		{"host not covered", "b.example.com", iss.FullChain, iss.KeyPEM, "does not cover b.example.com (it names a.example.com)"},
		{"subdomain not covered", "x.a.example.com", iss.FullChain, iss.KeyPEM, "does not cover x.a.example.com"},
		{"two levels under a wildcard", "a.b.mc.example.com", wild.FullChain, wild.KeyPEM, "does not cover a.b.mc.example.com"},
		{"another wildcard", "*.example.com", wild.FullChain, wild.KeyPEM, "does not cover *.example.com"},
		{"mismatched pair", "a.example.com", iss.FullChain, other.KeyPEM, "the private key does not match the certificate"},
		{"no certificate", "", nil, iss.KeyPEM, "no PEM certificate"},
		{"no key", "", iss.FullChain, nil, "no PEM private key"},
		{"key as chain", "", iss.KeyPEM, iss.KeyPEM, "no PEM certificate"},
		{"expired", "", expired.FullChain, expired.KeyPEM, "expired"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, tc, err := NewRecord(keys, Input{Hostname: c.host, Source: SourceImport, Chain: c.chain, Key: c.key}, now)
			if r != nil || tc != nil {
				t.Error("a record was returned with the error")
			}
			wantInvalid(t, err, c.wantMessage)
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("the error shows key material: %v", err)
			}
		})
	}
}

func TestRecordMarshalRoundTrip(t *testing.T) {
	ca := newCA(t)
	keys := testKeys(t, 1)
	iss := issueFor(t, ca, "*.mc.example.com", "mc.example.com")
	r, _, err := NewRecord(keys, Input{Source: SourceACME, Chain: iss.FullChain, Key: iss.KeyPEM}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	data, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}

	// No part of the private key is in the row.
	if bytes.Contains(data, []byte("PRIVATE KEY")) {
		t.Fatal("the marshalled record contains \"PRIVATE KEY\"")
	}
	for line := range strings.Lines(string(iss.KeyPEM)) {
		if line = strings.TrimSpace(line); line != "" && bytes.Contains(data, []byte(line)) {
			t.Fatalf("the marshalled record contains the key PEM line %q", line)
		}
	}
	// The row is the documented JSON.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := range fields {
		names = append(names, k)
	}
	slices.Sort(names)
	want := []string{"chain", "expiresAt", "hash", "hostname", "issuedAt", "issuer", "key", "names", "serial", "source", "storedAt"}
	if !slices.Equal(names, want) {
		t.Fatalf("record fields %v, want %v", names, want)
	}

	got, err := Unmarshal(RowKey(r.Hostname), data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hostname != r.Hostname || !slices.Equal(got.Names, r.Names) || got.Chain != r.Chain ||
		!bytes.Equal(got.Key, r.Key) || !got.IssuedAt.Equal(r.IssuedAt) || !got.ExpiresAt.Equal(r.ExpiresAt) ||
		got.Issuer != r.Issuer || got.Serial != r.Serial || got.Source != r.Source || got.Hash != r.Hash ||
		!got.StoredAt.Equal(r.StoredAt) {
		t.Fatalf("round trip changed the record:\n got %+v\nwant %+v", got, r)
	}
	_, keyPEM, err := got.Open(keys, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(keyPEM, iss.KeyPEM) {
		t.Fatal("the unmarshalled record opens to another key")
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	ca := newCA(t)
	keys := testKeys(t, 1)
	iss := issueFor(t, ca, "a.example.com", "b.example.com")
	r, _, err := NewRecord(keys, Input{Hostname: "a.example.com", Source: SourceFile, Chain: iss.FullChain, Key: iss.KeyPEM}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	data, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}

	// In another row, even one the certificate covers.
	_, err = Unmarshal("tls-cert/b.example.com", data)
	if err == nil || !strings.Contains(err.Error(), "tls-cert/b.example.com") || !strings.Contains(err.Error(), "another row") {
		t.Fatalf("record in the wrong row: %v", err)
	}
	// Not JSON.
	_, err = Unmarshal("tls-cert/a.example.com", []byte("not json"))
	if err == nil || !strings.Contains(err.Error(), "tls-cert/a.example.com: not a certificate record") {
		t.Fatalf("garbage: %v", err)
	}
	// Hostname missing.
	_, err = Unmarshal("tls-cert/a.example.com", []byte(`{"chain":"x"}`))
	if err == nil {
		t.Fatal("a record without a hostname was accepted")
	}
}

func TestOpenWrongAtRestKey(t *testing.T) {
	ca := newCA(t)
	iss := issueFor(t, ca, "*.mc.example.com", "mc.example.com")
	r, _, err := NewRecord(testKeys(t, 1), Input{Source: SourceACME, Chain: iss.FullChain, Key: iss.KeyPEM}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, keyPEM, err := r.Open(testKeys(t, 2), time.Now())
	if c != nil || keyPEM != nil {
		t.Fatal("a wrong key returned something")
	}
	if !errors.Is(err, atrest.ErrWrongKey) {
		t.Fatalf("error %v, want atrest.ErrWrongKey", err)
	}
	if !strings.Contains(err.Error(), "differs") || !strings.Contains(err.Error(), "opening tls-cert/*.mc.example.com") {
		t.Fatalf("error %q does not say the key differs and name the row", err)
	}
}

func TestOpenMovedKey(t *testing.T) {
	ca := newCA(t)
	keys := testKeys(t, 1)
	iss := issueFor(t, ca, "*.mc.example.com", "mc.example.com")
	wild, _, err := NewRecord(keys, Input{Hostname: "*.mc.example.com", Source: SourceACME, Chain: iss.FullChain, Key: iss.KeyPEM}, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	// The same record rewritten for another name the certificate covers:
	// the sealed key is bound to the wildcard row.
	moved := *wild
	moved.Hostname = "mc.example.com"
	if _, _, err := moved.Open(keys, time.Now()); !errors.Is(err, atrest.ErrNotAuthentic) ||
		!strings.Contains(err.Error(), "tls-cert/mc.example.com") {
		t.Fatalf("a key moved to another row: %v", err)
	}

	// Another record's sealed key put into this one.
	other := issueFor(t, ca, "b.example.com")
	b, _, err := NewRecord(keys, Input{Source: SourceFile, Chain: other.FullChain, Key: other.KeyPEM}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	swapped := *wild
	swapped.Key = b.Key
	if _, _, err := swapped.Open(keys, time.Now()); !errors.Is(err, atrest.ErrNotAuthentic) {
		t.Fatalf("another row's key: %v", err)
	}

	// A chain swapped under a correctly sealed key is refused by the pair check.
	iss2 := issueFor(t, ca, "*.mc.example.com")
	forged := *wild
	forged.Chain = string(iss2.FullChain)
	_, _, err = forged.Open(keys, time.Now())
	if err == nil || !strings.Contains(err.Error(), "record tls-cert/*.mc.example.com") ||
		!strings.Contains(err.Error(), "does not match") {
		t.Fatalf("a chain that does not match the key: %v", err)
	}
}

func TestCovers(t *testing.T) {
	cases := []struct {
		names []string
		host  string
		want  bool
	}{
		{[]string{"a.example.com"}, "a.example.com", true},
		{[]string{"A.Example.com"}, "a.example.com", true},
		{[]string{"a.example.com"}, "b.example.com", false},
		{[]string{"*.example.com"}, "a.example.com", true},
		{[]string{"*.example.com"}, "*.example.com", true},
		{[]string{"*.example.com"}, "example.com", false},
		{[]string{"*.example.com"}, "a.b.example.com", false},
		{[]string{"*.example.com"}, ".example.com", false},
		{[]string{"*.b.example.com"}, "*.example.com", false},
		{[]string{"*.example.com"}, "*.x.example.com", false},
		{nil, "a.example.com", false},
	}
	for _, c := range cases {
		if got := covers(c.names, c.host); got != c.want {
			t.Errorf("covers(%v, %q) = %v, want %v", c.names, c.host, got, c.want)
		}
	}
}
