package dnsdata

import (
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/platformdb/platformdbtest"
	"github.com/pryv/pryv-tls/internal/testutil"
)

func testKeyring(t testing.TB) *atrest.Keyring {
	t.Helper()
	master := make([]byte, atrest.MasterSize)
	_, _ = rand.Read(master)
	k, err := atrest.New(master)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// dnskeysAndSigs asks the server for the apex DNSKEY set with DO and checks
// every RRSIG over it verifies; it returns the key tags published and the
// key tags that signed.
func dnskeysAndSigs(t *testing.T, addr string) (published, signed []uint16) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(testDomain+".", dns.TypeDNSKEY)
	m.SetEdns0(1232, true)
	c := &dns.Client{Net: "tcp", Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	var keys []dns.RR
	var sigs []*dns.RRSIG
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.DNSKEY:
			keys = append(keys, rr)
			published = append(published, rr.KeyTag())
		case *dns.RRSIG:
			sigs = append(sigs, rr)
		}
	}
	for _, s := range sigs {
		ok := false
		for _, k := range keys {
			if k.(*dns.DNSKEY).KeyTag() == s.KeyTag && s.Verify(k.(*dns.DNSKEY), keys) == nil {
				ok = true
			}
		}
		if !ok {
			t.Errorf("RRSIG %d over the DNSKEY set does not verify", s.KeyTag)
		}
		signed = append(signed, s.KeyTag)
	}
	return published, signed
}

func TestDNSSECKeysInPlatformDB(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	keys := testKeyring(t)
	now := time.Now()
	store := &KeyStore{KV: db, Keys: keys, Domain: testDomain, TTL: 60, Now: func() time.Time { return now }}

	// Two cores starting at once make one key.
	var wg sync.WaitGroup
	made := make(chan bool, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := store.Ensure(ctx)
			if err != nil {
				t.Error(err)
			}
			made <- c
		}()
	}
	wg.Wait()
	close(made)
	n := 0
	for c := range made {
		if c {
			n++
		}
	}
	infos, err := store.Infos(ctx)
	if err != nil || len(infos) != 1 || n != 1 {
		t.Fatalf("after two Ensure at once: %d created, keys %v, %v", n, infos, err)
	}
	if !strings.Contains(infos[0].DS, "\tDS\t") || !strings.Contains(infos[0].DS, " 13 2 ") {
		t.Errorf("DS %q: want algorithm 13, digest type 2", infos[0].DS)
	}

	h := newHarness(t, db, staticConfig())
	h.w.Keys = keys
	h.run()
	first := infos[0].KeyTag
	testutil.Eventually(t, 5*time.Second, "the zone signed with the key", func() (bool, string) {
		p, s := dnskeysAndSigs(t, h.addr)
		return len(p) == 1 && p[0] == first && len(s) == 1 && s[0] == first, "published " + tags(p) + " signed " + tags(s)
	})

	// Rollover: both published, both sign.
	next, err := store.Rollover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Rollover(ctx); err == nil || !strings.Contains(err.Error(), "already under way") {
		t.Errorf("a second rollover: %v", err)
	}
	testutil.Eventually(t, 5*time.Second, "both keys published and signing", func() (bool, string) {
		p, s := dnskeysAndSigs(t, h.addr)
		return len(p) == 2 && len(s) == 2, "published " + tags(p) + " signed " + tags(s)
	})
	// Finishing at once is refused: resolvers may hold the old DNSKEY set.
	if _, err := store.FinishRollover(ctx); err == nil || !strings.Contains(err.Error(), "two DNSKEY TTLs") {
		t.Fatalf("finish at once: %v", err)
	}
	now = now.Add(121 * time.Second)
	if deleted, err := store.FinishRollover(ctx); err != nil || len(deleted) != 1 {
		t.Fatalf("finish: %v %v", deleted, err)
	}
	testutil.Eventually(t, 5*time.Second, "only the new key", func() (bool, string) {
		p, s := dnskeysAndSigs(t, h.addr)
		return len(p) == 1 && p[0] == next.KeyTag && len(s) == 1 && s[0] == next.KeyTag, "published " + tags(p) + " signed " + tags(s)
	})
}

func TestDNSSECKeyOtherAtRestKey(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	store := &KeyStore{KV: db, Keys: testKeyring(t), Domain: testDomain, TTL: 60}
	if _, err := store.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, db, staticConfig())
	h.w.Keys = testKeyring(t) // another core's atRestKey
	h.run()
	testutil.Eventually(t, 5*time.Second, "a warning naming the key", func() (bool, string) {
		logs := strings.Join(h.logs.all(), "\n")
		return strings.Contains(logs, "DNSSEC key "+DNSSECKeyPrefix+"000001") && strings.Contains(logs, "atRestKey"), logs
	})
	if p, s := dnskeysAndSigs(t, h.addr); len(p)+len(s) != 0 {
		t.Fatalf("a key that does not open is published %v / signs %v", p, s)
	}
}

func tags(ts []uint16) string { return fmt.Sprint(ts) }

// TestDNSSECKeyResealed: an atRestKey rotation (certstore.Reseal) rewrites the
// key row, and the zone keeps signing with the same key under the new
// atRestKey alone.
func TestDNSSECKeyResealed(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	m1, m2 := make([]byte, atrest.MasterSize), make([]byte, atrest.MasterSize)
	_, _ = rand.Read(m1)
	_, _ = rand.Read(m2)
	old, _ := atrest.New(m1)
	store := &KeyStore{KV: db, Keys: old, Domain: testDomain, TTL: 60}
	if _, err := store.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	both, _ := atrest.New(m2, m1)
	rep, err := certstore.Reseal(ctx, db, both)
	if err != nil || !slices.Contains(rep.Resealed, DNSSECKeyPrefix+"000001") {
		t.Fatalf("Reseal: %+v %v", rep, err)
	}
	infos, _ := store.Infos(ctx)
	h := newHarness(t, db, staticConfig())
	h.w.Keys, _ = atrest.New(m2) // the old atRestKey forgotten
	h.run()
	testutil.Eventually(t, 5*time.Second, "the zone signed under the new atRestKey", func() (bool, string) {
		p, s := dnskeysAndSigs(t, h.addr)
		return len(p) == 1 && len(s) == 1 && s[0] == infos[0].KeyTag, "published " + tags(p) + " signed " + tags(s)
	})
}
