package certs

import (
	"crypto/tls"
	"errors"
	"sync"
	"testing"
	"time"
)

// certName names a certificate in failure messages.
func certName(c *tls.Certificate) string {
	if c == nil {
		return "<nil>"
	}
	if c.Leaf == nil {
		return "<no leaf>"
	}
	return Describe(c.Leaf)
}

func TestSetLookup(t *testing.T) {
	ca := newCA(t, "set CA")
	fallback := mustPair(t, ca, "fallback.test")
	wild := mustPair(t, ca, "*.example.com")
	// Listed after the wildcard that also covers www.example.com: exact must
	// win whatever the order.
	exact := mustPair(t, ca, "www.example.com", "Mixed.Example.ORG")
	deep := mustPair(t, ca, "a.b.example.com")
	apex := mustPair(t, ca, "example.net", "*.example.net")
	dotted := mustPair(t, ca, "trailing.example.org.")
	s := newSet([]*tls.Certificate{fallback, wild, exact, deep, apex, dotted}, "", time.Now())

	tests := []struct {
		name string
		sni  string
		want *tls.Certificate
	}{
		{"exact", "www.example.com", exact},
		{"exact, upper-case SNI", "WWW.EXAMPLE.COM", exact},
		{"exact, mixed-case SNI", "Www.Example.Com", exact},
		{"exact, mixed-case name in the certificate", "mixed.example.org", exact},
		{"exact, trailing dot", "www.example.com.", exact},
		{"exact, upper case and trailing dot", "WWW.Example.COM.", exact},
		{"exact, trailing dot in the certificate", "trailing.example.org", dotted},
		{"exact beats wildcard", "www.example.com", exact},
		{"fallback by its own name", "fallback.test", fallback},
		{"wildcard, one label", "a.example.com", wild},
		{"wildcard, upper case", "API.EXAMPLE.COM", wild},
		{"wildcard, trailing dot", "a.example.com.", wild},
		{"wildcard, not two labels", "x.b.example.com", fallback},
		{"wildcard, not two labels unless named", "a.b.example.com", deep},
		{"wildcard, not the bare domain", "example.com", fallback},
		{"wildcard, bare domain when named", "example.net", apex},
		{"wildcard next to apex", "a.example.net", apex},
		{"wildcard next to apex, not two labels", "a.b.example.net", fallback},
		{"wildcard, empty first label", ".example.com", fallback},
		{"unknown name", "unknown.test", fallback},
		{"unknown TLD-only name", "com", fallback},
		{"empty SNI", "", fallback},
		{"lone dot", ".", fallback},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Lookup(tt.sni); got != tt.want {
				t.Errorf("Lookup(%q) = %s, want %s", tt.sni, certName(got), certName(tt.want))
			}
		})
	}

	if s.Len() != 6 || len(s.Certificates()) != 6 {
		t.Errorf("Len() = %d, len(Certificates()) = %d, want 6", s.Len(), len(s.Certificates()))
	}
}

func TestSetNewestIssuedWins(t *testing.T) {
	ca := newCA(t, "dup CA")
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	older := pairAt(t, ca, t0, "dup.example.com", "*.wild.example.com")
	newer := pairAt(t, ca, t0.Add(time.Minute), "dup.example.com", "*.wild.example.com", "only-newer.example.com")
	twin := pairAt(t, ca, t0, "dup.example.com")
	for _, order := range [][]*tls.Certificate{{older, newer}, {newer, older}} {
		s := newSet(order, "", time.Now())
		for sni, want := range map[string]*tls.Certificate{
			"dup.example.com":        newer,
			"x.wild.example.com":     newer,
			"only-newer.example.com": newer,
			"nothing.example.com":    order[0], // no default name: the first certificate
		} {
			if got := s.Lookup(sni); got != want {
				t.Errorf("Lookup(%q) = %s, want %s", sni, certName(got), certName(want))
			}
		}
	}
	// Same NotBefore: the earlier in the list keeps the name.
	if got := newSet([]*tls.Certificate{older, twin}, "", time.Now()).Lookup("dup.example.com"); got != older {
		t.Errorf("tie: got %s, want the first", certName(got))
	}
	// A default name picks the fallback.
	s := newSet([]*tls.Certificate{older, newer}, "only-newer.example.com", time.Now())
	if got := s.Lookup("unknown.test"); got != newer {
		t.Errorf("fallback with default name: %s, want the certificate for the default name", certName(got))
	}
}

func TestSetCertificateWithoutLeafIsFallbackOnly(t *testing.T) {
	ca := newCA(t, "leafless CA")
	named := mustPair(t, ca, "named.example.com")
	bare := &tls.Certificate{Certificate: named.Certificate, PrivateKey: named.PrivateKey}
	s := newSet([]*tls.Certificate{bare}, "", time.Now())
	if got := s.Lookup("named.example.com"); got != bare {
		t.Errorf("Lookup = %s, want the leafless certificate as fallback", certName(got))
	}
}

func TestEmptyStore(t *testing.T) {
	s := NewCache()
	for _, sni := range []string{"", "www.example.com"} {
		c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
		if c != nil || !errors.Is(err, errNoCertificate) {
			t.Errorf("GetCertificate(%q) on an empty store = %v, %v; want nil, %v", sni, c, err, errNoCertificate)
		}
	}
	if s.HasReal() {
		t.Error("HasReal() on an empty store = true")
	}
	if n := s.Current().Len(); n != 0 {
		t.Errorf("Current().Len() = %d, want 0", n)
	}
}

func get(t *testing.T, s *Cache, sni string) *tls.Certificate {
	t.Helper()
	c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
	if err != nil {
		t.Fatalf("GetCertificate(%q): %v", sni, err)
	}
	return c
}

func TestCacheRanking(t *testing.T) {
	ca := newCA(t, "ranking CA")
	fromFiles := mustPair(t, ca, "pryv.example.com")
	fromStore := mustPair(t, ca, "pryv.example.com", "other.example.com")
	placeholder, err := Placeholder([]string{"pryv.example.com"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("newest issued wins across sources", func(t *testing.T) {
		t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
		fileOld := pairAt(t, ca, t0, "pryv.example.com")
		storeNew := pairAt(t, ca, t0.Add(time.Minute), "pryv.example.com", "other.example.com")
		s := NewCache()
		s.SetDefaultName("pryv.example.com")
		s.Replace(SourceFiles, fileOld)
		s.Replace(SourceStore, storeNew)
		if got := get(t, s, "pryv.example.com"); got != storeNew {
			t.Errorf("pryv.example.com -> %s, want the newer store certificate", certName(got))
		}
		fileNewest := pairAt(t, ca, t0.Add(2*time.Minute), "pryv.example.com")
		s.Replace(SourceFiles, fileNewest)
		if got := get(t, s, "pryv.example.com"); got != fileNewest {
			t.Errorf("pryv.example.com -> %s, want the newest (files) certificate", certName(got))
		}
		if got := get(t, s, "other.example.com"); got != storeNew {
			t.Errorf("other.example.com -> %s, want the store certificate", certName(got))
		}
		if got := get(t, s, "unknown.test"); got != fileNewest {
			t.Errorf("fallback -> %s, want the default name's certificate", certName(got))
		}
		s.Replace(SourceFiles) // clearing files uncovers the store
		if got := get(t, s, "pryv.example.com"); got != storeNew {
			t.Errorf("after clearing files, pryv.example.com -> %s, want the store certificate", certName(got))
		}
	})

	t.Run("placeholder only while nothing real", func(t *testing.T) {
		s := NewCache()
		s.Replace(SourcePlaceholder, placeholder)
		if s.HasReal() {
			t.Error("HasReal() with only a placeholder = true")
		}
		for _, sni := range []string{"pryv.example.com", "unknown.test", ""} {
			if got := get(t, s, sni); got != placeholder {
				t.Errorf("placeholder alone: %q -> %s", sni, certName(got))
			}
		}

		s.Replace(SourceStore, fromStore)
		if !s.HasReal() {
			t.Error("HasReal() with a store certificate = false")
		}
		if n := s.Current().Len(); n != 1 {
			t.Errorf("with a real certificate the set has %d certificates, want 1 (placeholder dropped)", n)
		}
		for _, sni := range []string{"pryv.example.com", "unknown.test", ""} {
			if got := get(t, s, sni); got != fromStore {
				t.Errorf("real certificate present: %q -> %s, want the store certificate", sni, certName(got))
			}
		}

		s.Replace(SourceStore) // the real source is cleared: the placeholder is back
		if s.HasReal() {
			t.Error("HasReal() after clearing = true")
		}
		if got := get(t, s, "pryv.example.com"); got != placeholder {
			t.Errorf("after clearing the real source: %s, want the placeholder", certName(got))
		}

		s.Replace(SourceFiles, fromFiles)
		if got := get(t, s, "unknown.test"); got != fromFiles {
			t.Errorf("files certificate present: fallback %s, want the files certificate", certName(got))
		}
		// "nil clears it": an explicit nil must behave like no argument.
		s.Replace(SourceFiles, nil)
		if s.HasReal() {
			t.Error("HasReal() after Replace(SourceFiles, nil) = true")
		}
		if got := get(t, s, "pryv.example.com"); got != placeholder {
			t.Errorf("after Replace(SourceFiles, nil): %s, want the placeholder", certName(got))
		}
	})
}

func TestCacheConcurrentReplaceAndGet(t *testing.T) {
	ca := newCA(t, "concurrent CA")
	a := mustPair(t, ca, "pryv.example.com", "*.pryv.example.com")
	b := mustPair(t, ca, "pryv.example.com", "*.pryv.example.com")
	c := mustPair(t, ca, "other.example.com")
	valid := map[*tls.Certificate]bool{a: true, b: true, c: true}

	s := NewCache()
	s.Replace(SourceFiles, a)

	const writes, readers, reads = 500, 4, 2000
	var wg sync.WaitGroup
	errs := make(chan string, readers)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range writes {
			switch i % 3 {
			case 0:
				s.Replace(SourceFiles, b)
			case 1:
				s.Replace(SourceStore, c)
			default:
				s.Replace(SourceStore)
				s.Replace(SourceFiles, a)
			}
		}
	}()
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hellos := []*tls.ClientHelloInfo{
				{ServerName: "pryv.example.com"},
				{ServerName: "core.pryv.example.com"},
				{ServerName: "other.example.com"},
				{ServerName: ""},
			}
			for i := range reads {
				got, err := s.GetCertificate(hellos[(i+r)%len(hellos)])
				if err != nil || !valid[got] {
					errs <- certName(got)
					return
				}
				_ = s.HasReal()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("a reader got an unexpected certificate: %s", e)
	}
}

// The handshake path must not allocate, whatever kind of match it makes.
func TestGetCertificateDoesNotAllocate(t *testing.T) {
	ca := newCA(t, "alloc CA")
	s := NewCache()
	s.Replace(SourceFiles,
		mustPair(t, ca, "fallback.test"),
		mustPair(t, ca, "pryv.example.com", "*.pryv.example.com"))
	for _, tt := range []struct{ name, sni string }{
		{"exact hit", "pryv.example.com"},
		{"wildcard hit", "core.pryv.example.com"},
		{"fallback", "unknown.test"},
		{"fallback, no SNI", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hello := &tls.ClientHelloInfo{ServerName: tt.sni}
			var sink *tls.Certificate
			allocs := testing.AllocsPerRun(1000, func() {
				sink, _ = s.GetCertificate(hello)
			})
			if sink == nil {
				t.Fatal("no certificate")
			}
			if allocs != 0 {
				t.Errorf("GetCertificate(%q) allocates %v times per call, want 0", tt.sni, allocs)
			}
		})
	}
}

// GetCertificate counts each lookup by kind of match, for the metrics.
func TestCacheCountsLookups(t *testing.T) {
	ca := newCA(t, "lookups CA")
	s := NewCache()
	hello := func(sni string) *tls.ClientHelloInfo { return &tls.ClientHelloInfo{ServerName: sni} }
	if _, err := s.GetCertificate(hello("pryv.example.com")); err == nil {
		t.Fatal("an empty store served a certificate")
	}
	s.Replace(SourceFiles, mustPair(t, ca, "pryv.example.com", "*.pryv.example.com"))
	for _, sni := range []string{"pryv.example.com", "PRYV.example.com.", "alice.pryv.example.com", "other.test", ""} {
		if _, err := s.GetCertificate(hello(sni)); err != nil {
			t.Fatalf("%q: %v", sni, err)
		}
	}
	want := Lookups{Exact: 2, Wildcard: 1, Default: 2, None: 1}
	if got := s.Lookups(); got != want {
		t.Fatalf("Lookups() = %+v, want %+v", got, want)
	}
}

// Served names the certificate actually served for each name, and its source.
func TestCacheServed(t *testing.T) {
	ca := newCA(t, "served CA")
	now := time.Now()
	s := NewCache()
	ph, err := Placeholder([]string{"pryv.example.com"}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	s.Replace(SourcePlaceholder, ph)
	got := s.Served()
	if len(got) != 1 || got[0].Name != "pryv.example.com" || got[0].Source != SourcePlaceholder || got[0].Source.String() != "placeholder" {
		t.Fatalf("placeholder only: %+v", got)
	}
	older := pairAt(t, ca, now.Add(-48*time.Hour), "pryv.example.com", "*.pryv.example.com")
	newer := pairAt(t, ca, now.Add(-time.Hour), "pryv.example.com")
	s.Replace(SourceFiles, older)
	s.Replace(SourceStore, newer)
	got = s.Served()
	if len(got) != 2 {
		t.Fatalf("want 2 names (placeholder dropped), got %+v", got)
	}
	if got[0].Name != "*.pryv.example.com" || got[0].Source != SourceFiles || got[0].Leaf.SerialNumber.Cmp(older.Leaf.SerialNumber) != 0 {
		t.Errorf("wildcard: %+v", got[0])
	}
	if got[1].Name != "pryv.example.com" || got[1].Source != SourceStore || got[1].Leaf.SerialNumber.Cmp(newer.Leaf.SerialNumber) != 0 || !got[1].Leaf.NotBefore.Equal(newer.Leaf.NotBefore) {
		t.Errorf("exact name should be the newer store certificate: %+v", got[1])
	}
}
