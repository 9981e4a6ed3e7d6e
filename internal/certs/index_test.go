package certs

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// storeModel is what a Cache holds, kept the plain way: per source, the
// entries in the set's order (by key, then position). Its Set is newSet of
// the whole list, the definition the Cache's incremental updates must meet.
type storeModel struct {
	sources     [numSources][]modelEntry
	defaultName string
}

type modelEntry struct {
	key  string
	seq  int
	cert *tls.Certificate
}

func (m *storeModel) replace(src Source, certs []*tls.Certificate) {
	m.sources[src] = nil
	for _, c := range certs {
		if c != nil {
			m.sources[src] = append(m.sources[src], modelEntry{"", len(m.sources[src]), c})
		}
	}
}

func (m *storeModel) update(src Source, changes []Change) {
	for _, ch := range changes {
		m.sources[src] = slices.DeleteFunc(m.sources[src], func(e modelEntry) bool { return e.key == ch.Key && e.seq == 0 })
		if ch.Cert != nil {
			m.sources[src] = append(m.sources[src], modelEntry{ch.Key, 0, ch.Cert})
		}
	}
	slices.SortStableFunc(m.sources[src], func(a, b modelEntry) int {
		return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.seq, b.seq))
	})
}

func (m *storeModel) set(now time.Time) *Set {
	var all []*tls.Certificate
	for i, list := range m.sources {
		if Source(i) == SourcePlaceholder && len(all) > 0 {
			break
		}
		for _, e := range list {
			all = append(all, e.cert)
		}
	}
	return newSet(all, m.defaultName, now)
}

// sameSet reports how got differs from want, "" if it does not.
func sameSet(got, want *Set) string {
	switch {
	case !maps.Equal(got.exact, want.exact):
		return fmt.Sprintf("exact names differ:\n got %v\nwant %v", setNames(got.exact), setNames(want.exact))
	case !maps.Equal(got.wildcard, want.wildcard):
		return fmt.Sprintf("wildcard names differ:\n got %v\nwant %v", setNames(got.wildcard), setNames(want.wildcard))
	case got.fallback != want.fallback:
		return fmt.Sprintf("fallback %s, want %s", certName(got.fallback), certName(want.fallback))
	case !slices.Equal(got.all, want.all):
		return fmt.Sprintf("%d certificates, want %d (or another order)", len(got.all), len(want.all))
	}
	return ""
}

// canonSet is s with each certificate replaced by canon's.
func canonSet(s *Set, canon func(*tls.Certificate) *tls.Certificate) *Set {
	out := &Set{exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}, fallback: canon(s.fallback)}
	for n, c := range s.exact {
		out.exact[n] = canon(c)
	}
	for n, c := range s.wildcard {
		out.wildcard[n] = canon(c)
	}
	for _, c := range s.all {
		out.all = append(out.all, canon(c))
	}
	return out
}

func setNames(m map[string]*tls.Certificate) []string {
	var out []string
	for name, c := range m {
		out = append(out, name+"="+certName(c))
	}
	slices.Sort(out)
	return out
}

// TestCacheMatchesRebuild: random sequences of Update, Replace,
// SetDefaultName and the clock passing certificates' expiry leave the Cache
// with exactly the Set newSet builds from scratch out of the same
// certificates at the same time, after every step.
func TestCacheMatchesRebuild(t *testing.T) {
	ca := newCA(t, "rebuild CA")
	t0 := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	// Overlapping names, wildcards, case and trailing dots, and few
	// distinct issue times, so that names are contested and ties happen.
	universe := []string{"a.test", "b.test", "c.test", "*.a.test", "*.test", "www.a.test", "A.Test.", "*.B.test", "x.b.test"}
	rng := rand.New(rand.NewPCG(1, 2))
	var pool []*tls.Certificate
	for i := range 24 {
		var names []string
		for _, j := range rng.Perm(len(universe))[:1+rng.IntN(3)] {
			names = append(names, universe[j])
		}
		nb := t0.Add(time.Duration(i%3) * time.Minute)
		// A third of them expire while the test's clock runs (an hour).
		life := []time.Duration{90 * 24 * time.Hour, 10 * time.Minute, 40 * time.Minute}[(i/3)%3]
		pool = append(pool, pairWindow(t, ca, nb, nb.Add(life), names...))
	}
	// Each certificate also has a twin without its parsed leaf, which
	// Update gets with Change.Leaf (the materialiser's way, decision
	// 0034): it must rank and serve as the certificate with its leaf does.
	full := map[*tls.Certificate]*tls.Certificate{}
	for _, c := range pool {
		full[&tls.Certificate{Certificate: c.Certificate, PrivateKey: c.PrivateKey}] = c
	}
	twin := map[*tls.Certificate]*tls.Certificate{}
	for tw, c := range full {
		twin[c] = tw
	}
	canon := func(c *tls.Certificate) *tls.Certificate {
		if f, ok := full[c]; ok {
			return f
		}
		return c
	}
	leafless := &tls.Certificate{Certificate: pool[0].Certificate, PrivateKey: pool[0].PrivateKey}
	pool = append(pool, leafless)
	keys := []string{"a.test", "b.test", "c.test", "*.a.test", "*.test", "d.test", "e.test", "f.test", "g.test", "h.test", "i.test", "j.test"}
	defaults := []string{"", "a.test", "www.a.test", "y.test", "nothing.test", "Z.B.TEST."}
	probes := append(slices.Clone(universe), "z.a.test", "q.test", "q.b.test", "", "unknown.example", "a.b.test")

	pick := func(rng *rand.Rand) *tls.Certificate {
		if rng.IntN(8) == 0 {
			return nil
		}
		return pool[rng.IntN(len(pool))]
	}
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 99))
		s, m := NewCache(), &storeModel{}
		var clock atomic.Int64 // the timer may read it from its goroutine
		clock.Store(t0.Add(5 * time.Minute).UnixNano())
		now := func() time.Time { return time.Unix(0, clock.Load()) }
		s.mu.Lock()
		s.now = now
		s.mu.Unlock()
		for step := range 150 {
			var did string
			switch op := rng.IntN(22); {
			case op >= 20: // time passes; the store's timer would wake now
				clock.Add(int64(time.Duration(rng.IntN(8)) * time.Minute))
				s.expire()
				did = fmt.Sprintf("the clock at t0+%s", now().Sub(t0))
			case op < 11: // the materialiser's way: by key, in the store source
				src := SourceStore
				if rng.IntN(6) == 0 {
					src = Source(rng.IntN(int(numSources)))
				}
				n := 1 + rng.IntN(3)
				if rng.IntN(4) == 0 {
					n = 1 + rng.IntN(2*mergeAbove+4) // past mergeAbove too
				}
				changes := make([]Change, n)
				given := make([]Change, n) // what the Cache gets: some twins
				for i := range changes {
					changes[i] = Change{Key: keys[rng.IntN(len(keys))], Cert: pick(rng)}
					given[i] = changes[i]
					if tw, ok := twin[changes[i].Cert]; ok && rng.IntN(2) == 0 {
						given[i] = Change{Key: changes[i].Key, Cert: tw, Leaf: changes[i].Cert.Leaf}
					}
				}
				s.Update(src, given...)
				m.update(src, changes)
				did = fmt.Sprintf("Update(%v, %d changes)", src, n)
			case op < 15: // a whole list, often the previous one changed in place
				src := Source(rng.IntN(int(numSources)))
				var list []*tls.Certificate
				for _, e := range m.sources[src] {
					list = append(list, e.cert)
				}
				switch {
				case len(list) > 0 && rng.IntN(2) == 0:
					list[rng.IntN(len(list))] = pick(rng)
				case len(list) > 0 && rng.IntN(2) == 0:
					list = slices.Delete(list, 0, 1)
				default:
					list = nil
					for range rng.IntN(5) {
						list = append(list, pick(rng))
					}
				}
				s.Replace(src, list...)
				m.replace(src, list)
				did = fmt.Sprintf("Replace(%v, %d certificates)", src, len(list))
			case op < 17:
				m.defaultName = defaults[rng.IntN(len(defaults))]
				s.SetDefaultName(m.defaultName)
				did = fmt.Sprintf("SetDefaultName(%q)", m.defaultName)
			default: // clear a source
				src := Source(rng.IntN(int(numSources)))
				s.Replace(src)
				m.replace(src, nil)
				did = fmt.Sprintf("Replace(%v)", src)
			}
			got, want := s.Current(), m.set(now())
			if diff := sameSet(canonSet(got, canon), want); diff != "" {
				t.Fatalf("seed %d, step %d, after %s: %s", seed, step, did, diff)
			}
			for _, p := range probes {
				if c := got.Lookup(p); canon(c) != want.Lookup(p) {
					t.Fatalf("seed %d, step %d, after %s: Lookup(%q) = %s, want %s", seed, step, did, p, certName(canon(c)), certName(want.Lookup(p)))
				}
			}
			if s.HasReal() != (len(m.sources[SourceFiles])+len(m.sources[SourceStore]) > 0) {
				t.Fatalf("seed %d, step %d, after %s: HasReal() = %v", seed, step, did, s.HasReal())
			}
		}
		// Nothing is left indexed once every source is cleared.
		for src := range numSources {
			s.Replace(src)
		}
		if s.cands.len() != 0 || len(s.cands.more) != 0 || s.Current().Len() != 0 || len(s.Current().exact)+len(s.Current().wildcard) != 0 {
			t.Fatalf("seed %d: cleared store still indexes %d names", seed, s.cands.len())
		}
	}
}

// TestCacheUpdate: the keyed source as the materialiser feeds it.
func TestCacheUpdate(t *testing.T) {
	ca := newCA(t, "update CA")
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	a := pairAt(t, ca, t0, "a.example.com", "*.a.example.com")
	b := pairAt(t, ca, t0, "b.example.com")
	a2 := pairAt(t, ca, t0.Add(time.Minute), "a.example.com", "*.a.example.com")
	s := NewCache()
	s.Update(SourceStore, Change{Key: "b.example.com", Cert: b}, Change{Key: "a.example.com", Cert: a})
	if got := get(t, s, "x.a.example.com"); got != a {
		t.Fatalf("wildcard -> %s", certName(got))
	}
	if got := get(t, s, "unknown.test"); got != a {
		t.Fatalf("fallback -> %s, want the first by key", certName(got))
	}
	before := s.Current()
	s.Update(SourceStore, Change{Key: "a.example.com", Cert: a2})
	if got := get(t, s, "a.example.com"); got != a2 {
		t.Fatalf("after rotation -> %s", certName(got))
	}
	if before.Lookup("a.example.com") != a {
		t.Fatal("the previous set changed under its readers")
	}
	s.Update(SourceStore, Change{Key: "a.example.com", Cert: nil})
	if got := get(t, s, "x.a.example.com"); got != b {
		t.Fatalf("after delete, wildcard -> %s, want the fallback", certName(got))
	}
	if s.Current().Len() != 1 {
		t.Fatalf("Len = %d", s.Current().Len())
	}
	// A change that changes nothing shares the maps.
	cur := s.Current()
	s.Update(SourceStore, Change{Key: "b.example.com", Cert: b})
	if next := s.Current(); reflect.ValueOf(next.exact).UnsafePointer() != reflect.ValueOf(cur.exact).UnsafePointer() ||
		reflect.ValueOf(next.wildcard).UnsafePointer() != reflect.ValueOf(cur.wildcard).UnsafePointer() {
		t.Fatal("re-putting the same certificate copied the index")
	}
	s.Update(SourceStore) // nothing
}

// TestCacheConcurrentUpdateAndGet: readers never see a set in the making.
func TestCacheConcurrentUpdateAndGet(t *testing.T) {
	ca := newCA(t, "concurrent update CA")
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	v1 := pairAt(t, ca, t0, "pryv.example.com", "*.pryv.example.com")
	v2 := pairAt(t, ca, t0.Add(time.Minute), "pryv.example.com", "*.pryv.example.com")
	other := pairAt(t, ca, t0, "other.example.com")
	s := NewCache()
	s.Update(SourceStore, Change{Key: "other.example.com", Cert: other}, Change{Key: "pryv.example.com", Cert: v1})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan string, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, sni := range []string{"pryv.example.com", "a.pryv.example.com"} {
					c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
					if err != nil || (c != v1 && c != v2) {
						errs <- sni + " -> " + certName(c)
						return
					}
				}
				if c, _ := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.example.com"}); c != other {
					errs <- "other.example.com -> " + certName(c)
					return
				}
			}
		})
	}
	for i := range 2000 {
		s.Update(SourceStore, Change{Key: "pryv.example.com", Cert: []*tls.Certificate{v1, v2}[i%2]})
	}
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
