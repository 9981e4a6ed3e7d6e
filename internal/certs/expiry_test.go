package certs

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

// TestExpiredLosesToValid: an expired certificate never shadows a valid one
// for the same name, and an expired exact name yields to a valid wildcard
// (issue 18: an old core1.{domain} certificate beat *.{domain}).
func TestExpiredLosesToValid(t *testing.T) {
	ca := newCA(t, "expiry CA")
	now := time.Now().Truncate(time.Second)
	day := 24 * time.Hour
	expiredExact := pairWindow(t, ca, now.Add(-10*day), now.Add(-day), "core1.pryv.example.com")
	freshExpired := pairWindow(t, ca, now.Add(-2*day), now.Add(-time.Hour), "core1.pryv.example.com")
	validExact := pairWindow(t, ca, now.Add(-30*day), now.Add(60*day), "core1.pryv.example.com")
	validWild := pairWindow(t, ca, now.Add(-20*day), now.Add(70*day), "*.pryv.example.com", "pryv.example.com")
	expiredWild := pairWindow(t, ca, now.Add(-20*day), now.Add(-day), "*.pryv.example.com", "pryv.example.com")
	other := pairWindow(t, ca, now.Add(-day), now.Add(day), "other.example.com")

	cases := []struct {
		name  string
		certs []*tls.Certificate
		sni   string
		want  *tls.Certificate
	}{
		{"valid wildcard beats expired exact", []*tls.Certificate{expiredExact, validWild}, "core1.pryv.example.com", validWild},
		{"whatever the order", []*tls.Certificate{validWild, expiredExact}, "core1.pryv.example.com", validWild},
		{"valid exact beats valid wildcard", []*tls.Certificate{validExact, validWild}, "core1.pryv.example.com", validExact},
		{"older valid beats newer expired", []*tls.Certificate{freshExpired, validExact}, "core1.pryv.example.com", validExact},
		{"both expired: the exact stays", []*tls.Certificate{expiredExact, expiredWild}, "core1.pryv.example.com", expiredExact},
		{"both expired: the newest exact", []*tls.Certificate{expiredExact, freshExpired, expiredWild}, "core1.pryv.example.com", freshExpired},
		{"expired exact alone is still the exact", []*tls.Certificate{other, expiredExact}, "core1.pryv.example.com", expiredExact},
		{"the wildcard's own names untouched", []*tls.Certificate{expiredExact, validWild}, "pryv.example.com", validWild},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := newSet(tc.certs, "", now).Lookup(tc.sni); got != tc.want {
				t.Errorf("newSet: %s -> %s, want %s", tc.sni, certName(got), certName(tc.want))
			}
			s := NewCache()
			for i, c := range tc.certs {
				s.Update(SourceStore, Change{Key: string(rune('a' + i)), Cert: c})
			}
			if got := get(t, s, tc.sni); got != tc.want {
				t.Errorf("Cache: %s -> %s, want %s", tc.sni, certName(got), certName(tc.want))
			}
		})
	}
}

// TestCacheExpiresOnItsOwn: with nothing changing in any source, the store
// stops serving an exact certificate once it expires when a valid wildcard
// covers the name (its timer re-ranks), and a real client then gets the
// wildcard.
func TestCacheExpiresOnItsOwn(t *testing.T) {
	ca := newCA(t, "timer CA")
	now := time.Now()
	// NotAfter has second precision: 2 to 3 s from now.
	soon := pairWindow(t, ca, now.Add(-time.Hour), now.Add(3*time.Second).Truncate(time.Second), "core1.pryv.example.com")
	wild := pairWindow(t, ca, now.Add(-2*time.Hour), now.Add(90*24*time.Hour), "*.pryv.example.com", "pryv.example.com")
	s := NewCache()
	s.Update(SourceFiles, Change{Key: "core1", Cert: soon})
	s.Update(SourceStore, Change{Key: "*.pryv.example.com", Cert: wild})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	addr := serveTLS(t, &tls.Config{GetCertificate: s.GetCertificate, MinVersion: tls.VersionTLS12})

	leaf, err := handshake(addr, "core1.pryv.example.com", roots)
	if err != nil || !strings.HasPrefix(leaf.DNSNames[0], "core1.") {
		t.Fatalf("before expiry: %v, %v; want the exact certificate", leaf, err)
	}
	// The order of events, not a duration: the exact certificate serves up
	// to its NotAfter, the wildcard after it. The deadline is a hang guard:
	// without the expiry timer the exact one would stay until the hourly
	// wake (maxWake).
	deadline := soon.Leaf.NotAfter.Add(30 * time.Second)
	for {
		c := get(t, s, "core1.pryv.example.com")
		at := time.Now()
		if c == wild {
			if !at.After(soon.Leaf.NotAfter) {
				t.Errorf("the wildcard took over at %s, before the exact certificate's NotAfter %s", at, soon.Leaf.NotAfter)
			}
			break
		}
		if at.After(deadline) {
			t.Fatalf("30 s after the exact certificate expired (%s) it is still served", soon.Leaf.NotAfter)
		}
		time.Sleep(50 * time.Millisecond)
	}
	leaf, err = handshake(addr, "core1.pryv.example.com", roots)
	if err != nil || leaf.DNSNames[0] != "*.pryv.example.com" {
		t.Fatalf("after expiry: %v, %v; want the wildcard", leaf, err)
	}
	for _, sv := range s.Served() {
		if sv.Name == "core1.pryv.example.com" {
			t.Errorf("Served() still lists the expired exact name")
		}
	}
}
