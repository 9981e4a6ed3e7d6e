package authdns

import (
	"crypto/ecdsa"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testKey is a new ECDSA P-256 (algorithm 13) key for the test zone.
func testKey(t testing.TB) Key {
	t.Helper()
	k := &dns.DNSKEY{Hdr: dns.RR_Header{Name: testOrigin, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
		Flags: 257, Protocol: 3, Algorithm: dns.ECDSAP256SHA256}
	priv, err := k.Generate(256)
	if err != nil {
		t.Fatal(err)
	}
	return Key{DNSKEY: k, Signer: priv.(*ecdsa.PrivateKey)}
}

// signedZone is testZone (or the records given) with keys published and
// signing.
func signedZone(t testing.TB, keys []Key, members *Members) *Zone {
	t.Helper()
	rrs := testRecords(t)
	for _, k := range keys {
		rrs = append(rrs, k.DNSKEY)
	}
	m := Members{}
	if members != nil {
		m = *members
	}
	z, err := NewZoneMembers(testOrigin, testSOA(t), rrs, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := z.Sign(keys, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	return z
}

func doQuery(name string, qtype uint16) *dns.Msg {
	m := query(name, qtype)
	m.SetEdns0(1232, true)
	return m
}

// verifySets checks that every RRset of a section has a valid RRSIG by one
// of the keys, and returns the RRsets' types in order.
func verifySets(t *testing.T, section []dns.RR, keys []Key) []string {
	t.Helper()
	type set struct {
		rrs  []dns.RR
		sigs []*dns.RRSIG
	}
	var order []string
	sets := map[string]*set{}
	for _, rr := range section {
		h := rr.Header()
		if sig, ok := rr.(*dns.RRSIG); ok {
			k := strings.ToLower(h.Name) + "/" + dns.TypeToString[sig.TypeCovered]
			if sets[k] == nil {
				t.Errorf("RRSIG before its RRset: %v", sig)
				continue
			}
			sets[k].sigs = append(sets[k].sigs, sig)
			continue
		}
		k := strings.ToLower(h.Name) + "/" + dns.TypeToString[h.Rrtype]
		if sets[k] == nil {
			sets[k] = &set{}
			order = append(order, k)
		}
		sets[k].rrs = append(sets[k].rrs, rr)
	}
	for _, k := range order {
		s := sets[k]
		if len(s.sigs) != len(keys) {
			t.Errorf("%s: %d RRSIGs, want %d (one per signing key)", k, len(s.sigs), len(keys))
		}
		for _, sig := range s.sigs {
			ok := false
			for _, key := range keys {
				if sig.KeyTag == key.DNSKEY.KeyTag() && sig.Verify(key.DNSKEY, s.rrs) == nil && sig.ValidityPeriod(time.Now()) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s: RRSIG %v does not verify", k, sig)
			}
		}
	}
	return order
}

func TestSignedAnswers(t *testing.T) {
	keys := []Key{testKey(t)}
	z := signedZone(t, keys, nil)
	for _, c := range []struct {
		name     string
		qname    string
		qtype    uint16
		rcode    int
		answer   string // RRsets in order, as owner/TYPE
		ns       string
		nsecBits string // the NSEC's type bitmap
	}{
		{"A", "alice.mc.example.com.", dns.TypeA, dns.RcodeSuccess, "alice.mc.example.com./A", "", ""},
		{"0x20", "AlIcE.mc.example.com.", dns.TypeA, dns.RcodeSuccess, "alice.mc.example.com./A", "", ""},
		{"DNSKEY", "mc.example.com.", dns.TypeDNSKEY, dns.RcodeSuccess, "mc.example.com./DNSKEY", "", ""},
		{"CNAME chain", "c1.mc.example.com.", dns.TypeA, dns.RcodeSuccess,
			"c1.mc.example.com./CNAME c2.mc.example.com./CNAME www.mc.example.com./CNAME alice.mc.example.com./A", "", ""},
		{"wildcard, signed as the name", "x.wild.mc.example.com.", dns.TypeA, dns.RcodeSuccess, "x.wild.mc.example.com./A", "", ""},
		{"NODATA", "alice.mc.example.com.", dns.TypeTXT, dns.RcodeSuccess, "",
			"mc.example.com./SOA alice.mc.example.com./NSEC", "A AAAA RRSIG NSEC"},
		{"empty non-terminal", "a.mc.example.com.", dns.TypeA, dns.RcodeSuccess, "",
			"mc.example.com./SOA a.mc.example.com./NSEC", "RRSIG NSEC"},
		{"NXDOMAIN is a black lie", "nobody.mc.example.com.", dns.TypeA, dns.RcodeSuccess, "",
			"mc.example.com./SOA nobody.mc.example.com./NSEC", "RRSIG NSEC NXNAME"},
		{"CNAME to a missing name", "dangling.mc.example.com.", dns.TypeA, dns.RcodeSuccess, "dangling.mc.example.com./CNAME",
			"mc.example.com./SOA nothere.mc.example.com./NSEC", "RRSIG NSEC NXNAME"},
		{"referral with DS", "x.sub.mc.example.com.", dns.TypeA, dns.RcodeSuccess, "", "sub.mc.example.com./NS sub.mc.example.com./DS", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := packs(t, Answer(z, doQuery(c.qname, c.qtype), 65535, true))
			if r.Rcode != c.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode])
			}
			if opt := r.IsEdns0(); opt == nil || !opt.Do() {
				t.Error("DO not set in the response")
			}
			if got := strings.Join(verifyAnswer(t, r.Answer, keys), " "); got != c.answer {
				t.Errorf("answer %q, want %q", got, c.answer)
			}
			var ns []dns.RR
			for _, rr := range r.Ns {
				if rr.Header().Rrtype != dns.TypeNS || !strings.HasPrefix(c.name, "referral") {
					ns = append(ns, rr)
				}
			}
			order := verifySets(t, ns, keys)
			if strings.HasPrefix(c.name, "referral") {
				order = append([]string{"sub.mc.example.com./NS"}, order...)
			}
			if got := strings.Join(order, " "); got != c.ns {
				t.Errorf("authority %q, want %q", got, c.ns)
			}
			for _, rr := range r.Ns {
				if nsec, ok := rr.(*dns.NSEC); ok {
					var bits []string
					for _, b := range nsec.TypeBitMap {
						bits = append(bits, dns.TypeToString[b])
					}
					if got := strings.Join(bits, " "); got != c.nsecBits || nsec.NextDomain != "\\000."+strings.ToLower(nsec.Hdr.Name) {
						t.Errorf("NSEC %v: want bitmap %q, next name \\000.<owner>", nsec, c.nsecBits)
					}
				}
			}
			if t.Failed() {
				t.Log(r)
			}
		})
	}
}

func verifyAnswer(t *testing.T, answer []dns.RR, keys []Key) []string {
	t.Helper()
	return verifySets(t, answer, keys)
}

func TestSignedNeedsDO(t *testing.T) {
	z := signedZone(t, []Key{testKey(t)}, nil)
	for _, req := range []*dns.Msg{query("alice.mc.example.com.", dns.TypeA), ednsQuery("alice.mc.example.com.", dns.TypeA, 1232)} {
		r := Answer(z, req, 1232, false)
		for _, rr := range append(append([]dns.RR{}, r.Answer...), r.Ns...) {
			if ty := rr.Header().Rrtype; ty == dns.TypeRRSIG || ty == dns.TypeNSEC {
				t.Fatalf("a DNSSEC record without DO: %v", rr)
			}
		}
	}
	// Without DO an NXDOMAIN stays one.
	if r := Answer(z, ednsQuery("nobody.mc.example.com.", dns.TypeA, 1232), 1232, false); r.Rcode != dns.RcodeNameError {
		t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
	}
}

func TestSignedMembersAndRollover(t *testing.T) {
	old, cur := testKey(t), testKey(t)
	a := &dns.A{Hdr: dns.RR_Header{Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: []byte{192, 0, 2, 9}}
	z := signedZone(t, []Key{old, cur}, &Members{Labels: map[string]uint32{"user1": 0, "user2": 0}, Groups: [][]dns.RR{{a}}})
	before := z.sig.cache.Signs()
	for range 3 {
		r := packs(t, Answer(z, doQuery("user1.mc.example.com.", dns.TypeA), 1232, false))
		if got := strings.Join(verifySets(t, r.Answer, []Key{old, cur}), " "); got != "user1.mc.example.com./A" {
			t.Fatalf("answer %q", got)
		}
	}
	if n := z.sig.cache.Signs() - before; n != 1 {
		t.Errorf("%d signings for three queries of one name, want 1 (cached)", n)
	}
	// A published-only key does not sign.
	z = signedZone(t, []Key{{DNSKEY: old.DNSKEY}, cur}, nil)
	r := packs(t, Answer(z, doQuery("alice.mc.example.com.", dns.TypeA), 1232, false))
	verifySets(t, r.Answer, []Key{cur})
	if dk := packs(t, Answer(z, doQuery(testOrigin, dns.TypeDNSKEY), 1232, false)); len(dk.Answer) != 3 {
		t.Errorf("DNSKEY answer %v: want both keys and one RRSIG", dk.Answer)
	}
}

// TestSigCacheAcrossSnapshots: a new snapshot of the zone signed with the
// same cache makes no signature again for what did not change; a changed
// record and a rollover (other keys) do.
func TestSigCacheAcrossSnapshots(t *testing.T) {
	key := testKey(t)
	cache := NewSigCache()
	a := &dns.A{Hdr: dns.RR_Header{Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: []byte{192, 0, 2, 9}}
	build := func(labels map[string]uint32, group dns.RR, keys []Key) *Zone {
		t.Helper()
		rrs := testRecords(t)
		for _, k := range keys {
			rrs = append(rrs, k.DNSKEY)
		}
		z, err := NewZoneMembers(testOrigin, testSOA(t), rrs, Members{Labels: labels, Groups: [][]dns.RR{{group}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := z.Sign(keys, time.Now(), cache); err != nil {
			t.Fatal(err)
		}
		return z
	}
	ask := func(z *Zone, name string) {
		t.Helper()
		r := packs(t, Answer(z, doQuery(name, dns.TypeA), 1232, false))
		if len(r.Answer) != 2 {
			t.Fatalf("%s: %v", name, r.Answer)
		}
	}
	z1 := build(map[string]uint32{"user1": 0}, a, []Key{key})
	ask(z1, "user1.mc.example.com.")
	before := cache.Signs()
	z2 := build(map[string]uint32{"user1": 0, "user2": 0}, a, []Key{key}) // a user added
	ask(z2, "user1.mc.example.com.")
	if n := cache.Signs() - before; n != 0 {
		t.Errorf("%d signatures made again by a rebuild that changed nothing signed", n)
	}
	b := *a
	b.A = []byte{192, 0, 2, 10}
	z3 := build(map[string]uint32{"user1": 0}, &b, []Key{key}) // the user's core moved
	before = cache.Signs()
	ask(z3, "user1.mc.example.com.")
	if n := cache.Signs() - before; n != 1 {
		t.Errorf("%d signatures for a changed address, want 1", n)
	}
	before = cache.Signs()
	other := testKey(t)
	z4 := build(map[string]uint32{"user1": 0}, &b, []Key{key, other}) // a rollover
	if cache.Signs() == before {
		t.Error("a rollover made no signature with the new key")
	}
	r := packs(t, Answer(z4, doQuery("user1.mc.example.com.", dns.TypeA), 1232, false))
	verifySets(t, r.Answer, []Key{key, other})
}

// TestSignRenewsOldSignatures: a snapshot signed when the cache's
// signatures of its own RRsets are due within a day makes them again, so
// they last until the next daily rebuild.
func TestSignRenewsOldSignatures(t *testing.T) {
	keys := []Key{testKey(t)}
	cache := NewSigCache()
	t0 := time.Now()
	build := func(now time.Time) *Zone {
		t.Helper()
		rrs := append(testRecords(t), keys[0].DNSKEY)
		z, err := NewZone(testOrigin, testSOA(t), rrs)
		if err != nil {
			t.Fatal(err)
		}
		if err := z.Sign(keys, now, cache); err != nil {
			t.Fatal(err)
		}
		return z
	}
	build(t0)
	made := cache.Signs()
	if build(t0.Add(time.Hour)); cache.Signs() != made {
		t.Fatalf("an hour later: %d signatures made again, want 0", cache.Signs()-made)
	}
	z := build(t0.Add(60 * time.Hour)) // 12 h before the entries are due
	if cache.Signs() != 2*made {
		t.Fatalf("2.5 days later: %d signatures made again, want %d (every RRset)", cache.Signs()-made, made)
	}
	if left := time.Unix(z.sig.refresh, 0).Sub(t0.Add(60 * time.Hour)); left < 25*time.Hour {
		t.Fatalf("the new snapshot's signatures are due in %s", left)
	}
}

// TestSignedAbsentUserTTL: the denial of a looked-up user that does not
// exist lives as briefly as its SOA (the lookup's negative lifetime):
// NSEC and RRSIGs included, so no resolver keeps it longer.
func TestSignedAbsentUserTTL(t *testing.T) {
	keys := []Key{testKey(t)}
	z := signedZone(t, keys, nil)
	m, lk := z.AnswerUsers(doQuery("carol.mc.example.com.", dns.TypeA), 1232, false, &Resolved{Host: UserAbsent(30), Lookup: LookupAbsent})
	if lk != LookupAbsent {
		t.Fatalf("lookup %v", lk)
	}
	r := packs(t, m)
	if got := strings.Join(verifySets(t, r.Ns, keys), " "); got != "mc.example.com./SOA carol.mc.example.com./NSEC" {
		t.Fatalf("authority %q", got)
	}
	for _, rr := range r.Ns {
		if rr.Header().Ttl > 30 {
			t.Errorf("%v: TTL over the lookup's 30 s", rr)
		}
	}
}
