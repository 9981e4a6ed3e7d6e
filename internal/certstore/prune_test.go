package certstore

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// scriptKV is a KV the test drives step by step: List returns the rows,
// Watch the queued events and then closes, so Materialiser.watch returns
// once it has handled them.
type scriptKV struct {
	mu     sync.Mutex
	rows   map[string][]byte
	queued []platformdb.Event
}

func (k *scriptKV) Get(context.Context, string) (platformdb.Entry, error) {
	return platformdb.Entry{}, platformdb.ErrNotFound
}
func (k *scriptKV) Put(context.Context, string, []byte) (int64, error) { return 0, nil }
func (k *scriptKV) Delete(context.Context, string) error               { return nil }

func (k *scriptKV) List(context.Context, string) ([]platformdb.Entry, int64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []platformdb.Entry
	for _, key := range slices.Sorted(maps.Keys(k.rows)) {
		out = append(out, platformdb.Entry{Key: key, Value: k.rows[key]})
	}
	return out, 1, nil
}

func (k *scriptKV) Watch(context.Context, string, int64) <-chan platformdb.Event {
	k.mu.Lock()
	defer k.mu.Unlock()
	ch := make(chan platformdb.Event, len(k.queued))
	for _, ev := range k.queued {
		ch <- ev
	}
	k.queued = nil
	close(ch)
	return ch
}

func (k *scriptKV) put(key string, value []byte, event bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rows[key] = value
	if event {
		k.queued = append(k.queued, platformdb.Event{Type: platformdb.EventPut, Entry: platformdb.Entry{Key: key, Value: value}})
	}
}

func (k *scriptKV) delete(key string, event bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.rows, key)
	if event {
		k.queued = append(k.queued, platformdb.Event{Type: platformdb.EventDelete, Entry: platformdb.Entry{Key: key}})
	}
}

// listing is every entry of dir and, for symlinks, its target.
func listing(t testing.TB, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(entries))
	for _, e := range entries {
		target := ""
		if e.Type()&os.ModeSymlink != 0 {
			target, _ = os.Readlink(filepath.Join(dir, e.Name()))
		}
		out[e.Name()] = target
	}
	return out
}

func describeListing(l map[string]string) string {
	var lines []string
	for n, target := range l {
		if target != "" {
			n += " -> " + target
		}
		lines = append(lines, n)
	}
	sort.Strings(lines)
	return fmt.Sprint(lines)
}

// TestMaterialiserPrunesOnlyWhatChanged: random puts, deletes, refused
// records, re-lists and restarts, each checked against the whole directory:
// a name written in a step has exactly its new version and the one its link
// named before; a deleted name has nothing left; every other entry (other
// names' versions, an operator's directory moved aside, stale temporaries,
// unknown files, and the versions of names not written) is untouched — what
// a scan of the whole directory after each write would leave, without the
// scan. The served set (through Update into a certs.Cache) follows the rows.
func TestMaterialiserPrunesOnlyWhatChanged(t *testing.T) {
	ca := newCA(t)
	keys := testKeys(t, 1)
	other := testKeys(t, 2)
	ctx := testCtx(t)
	// Names whose directories are prefixes of one another, and a wildcard.
	hosts := []string{"a.example.com", "*.a.example.com", "b.example.com", "b.example.com.x", "c.example.com"}
	type version struct {
		value      []byte
		chain, key []byte
		serial     string
		refused    bool
	}
	pool := map[string][]version{}
	for _, h := range hosts {
		for range 4 {
			iss := issueFor(t, ca, h)
			r, _, err := NewRecord(keys, Input{Hostname: h, Source: SourceACME, Chain: iss.FullChain, Key: iss.KeyPEM}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			data, _ := r.Marshal()
			pool[h] = append(pool[h], version{value: data, chain: iss.FullChain, key: iss.KeyPEM, serial: serialOf(iss)})
		}
		// One that does not open: refused, whatever is served stays.
		iss := issueFor(t, ca, h)
		r, _, err := NewRecord(other, Input{Hostname: h, Source: SourceACME, Chain: iss.FullChain, Key: iss.KeyPEM}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		data, _ := r.Marshal()
		pool[h] = append(pool[h], version{value: data, refused: true})
	}

	for seed := range uint64(6) {
		rng := rand.New(rand.NewPCG(seed, 7))
		tlsDir := t.TempDir()
		// Left by others or by earlier runs: none of it is the
		// materialiser's to remove, except versions of a name it rewrites.
		for _, d := range []string{".other.example.com.1700000000000000001", ".other.example.com.1700000000000000002",
			".a.example.com.previous-1700000000", ".c.example.com.1700000000000000003.tmp", "operator"} {
			if err := os.Mkdir(filepath.Join(tlsDir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(tlsDir, "notes.txt"), []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(".other.example.com.1700000000000000002", filepath.Join(tlsDir, "other.example.com")); err != nil {
			t.Fatal(err)
		}
		// c.example.com on disk from an earlier run, with an extra old
		// version: a scan finds it, so c's first write removes it.
		if err := os.Mkdir(filepath.Join(tlsDir, ".c.example.com.1700000000000000004"), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := WritePair(tlsDir, "c.example.com", pool["c.example.com"][0].chain, pool["c.example.com"][0].key); err != nil {
			t.Fatal(err)
		}

		kv := &scriptKV{rows: map[string][]byte{}}
		rec := &recorder{}
		newMat := func() *Materialiser {
			return &Materialiser{Catalog: &Catalog{KV: kv, Keys: keys}, TLSDir: tlsDir, Update: rec.update, Logger: quietLogger()}
		}
		m := newMat()
		m.LoadDisk()
		if _, err := m.sync(ctx); err != nil {
			t.Fatal(err)
		}
		// c's row is not stored: forgotten, files and all (not the
		// temporary directory: not a version).
		want := listing(t, tlsDir)
		if len(versionDirs(t, tlsDir, "c.example.com")) != 0 || want["c.example.com"] != "" ||
			len(want) != 7 || want[".c.example.com.1700000000000000003.tmp"] != "" {
			t.Fatalf("seed %d: after forgetting c.example.com: %s", seed, describeListing(want))
		}
		stored := map[string]version{} // what each host's row holds (not refused)
		for step := range 60 {
			before := listing(t, tlsDir)
			written := map[string]bool{} // DirName -> written in this step
			gone := map[string]bool{}
			var did []string
			op := rng.IntN(10)
			switch {
			case op < 7: // events: distinct hosts, so each name is written at most once
				for _, i := range rng.Perm(len(hosts))[:1+rng.IntN(3)] {
					h := hosts[i]
					if _, ok := stored[h]; ok && rng.IntN(4) == 0 {
						kv.delete(RowKey(h), true)
						delete(stored, h)
						gone[DirName(h)] = true
						did = append(did, "delete "+h)
						continue
					}
					v := pool[h][rng.IntN(len(pool[h]))]
					kv.put(RowKey(h), v.value, true)
					did = append(did, fmt.Sprintf("put %s (refused %v)", h, v.refused))
					if v.refused {
						continue
					}
					if cur, ok := stored[h]; !ok || cur.serial != v.serial {
						written[DirName(h)] = true
					}
					stored[h] = v
				}
				m.watch(ctx, 0)
			case op < 8: // rows changed while not watching, then a re-list
				h := hosts[rng.IntN(len(hosts))]
				v := pool[h][rng.IntN(len(pool[h])-1)]
				kv.put(RowKey(h), v.value, false)
				if cur, ok := stored[h]; !ok || cur.serial != v.serial {
					written[DirName(h)] = true
				}
				stored[h] = v
				did = append(did, "re-list after a put of "+h)
				if _, err := m.sync(ctx); err != nil {
					t.Fatal(err)
				}
			default: // a restart over the same directory
				m = newMat()
				m.LoadDisk()
				if _, err := m.sync(ctx); err != nil {
					t.Fatal(err)
				}
				did = append(did, "restart")
			}
			got := listing(t, tlsDir)
			// The expected listing: before, with the written names' old
			// versions replaced by the new one and the one before.
			for name := range written {
				if gone[name] {
					t.Fatalf("a name both written and deleted in one step")
				}
				prev := before[name]
				cur := got[name]
				if !isVersionOf(cur, name) || cur == prev {
					t.Fatalf("seed %d step %d (%v): %s links to %q (was %q)", seed, step, did, name, cur, prev)
				}
				for n := range before {
					if isVersionOf(n, name) && n != prev {
						delete(want, n)
					}
				}
				want[name] = cur
				want[cur] = ""
			}
			for name := range gone {
				for n := range before {
					if n == name || isVersionOf(n, name) {
						delete(want, n)
					}
				}
			}
			if !maps.Equal(got, want) {
				t.Fatalf("seed %d step %d (%v):\n got %s\nwant %s", seed, step, did, describeListing(got), describeListing(want))
			}
			for h, v := range stored {
				checkPair(t, tlsDir, DirName(h), v.chain, v.key)
			}
			served := rec.served()
			if len(served) != len(stored) {
				t.Fatalf("seed %d step %d (%v): serving %v, want %d hosts", seed, step, did, served, len(stored))
			}
			for h, v := range stored {
				if served[h] != v.serial {
					t.Fatalf("seed %d step %d (%v): serving %q for %s, want %q", seed, step, did, served[h], h, v.serial)
				}
			}
			want = got
		}
	}
}

// TestMaterialiserServeAndUpdateAgree: the whole list (Serve) and the
// changes (Update) give the front the same set, step after step.
func TestMaterialiserServeAndUpdateAgree(t *testing.T) {
	ca := newCA(t)
	keys := testKeys(t, 1)
	ctx := testCtx(t)
	hosts := []string{"a.example.com", "*.a.example.com", "b.example.com", "www.a.example.com"}
	kv := &scriptKV{rows: map[string][]byte{}}
	full, changes := certs.NewCache(), certs.NewCache()
	mk := func(s *certs.Cache, incremental bool) *Materialiser {
		m := &Materialiser{Catalog: &Catalog{KV: kv, Keys: keys}, TLSDir: t.TempDir(), Logger: quietLogger()}
		if incremental {
			m.Update = func(ch []certs.Change) { s.Update(certs.SourceStore, ch...) }
		} else {
			m.Serve = func(l []*tls.Certificate) { s.Replace(certs.SourceStore, l...) }
		}
		return m
	}
	ms := [2]*Materialiser{mk(full, false), mk(changes, true)}
	for _, m := range ms {
		if _, err := m.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	for step := range 40 {
		var queued []platformdb.Event
		for range 1 + rng.IntN(3) {
			h := hosts[rng.IntN(len(hosts))]
			if rng.IntN(4) == 0 {
				kv.delete(RowKey(h), true)
				continue
			}
			// Few issue times: names contested by a host and a wildcard tie.
			names := []string{h}
			if h == "*.a.example.com" {
				names = append(names, "a.example.com")
			}
			iss := issue(t, ca, devpki.Leaf{Names: names, NotBefore: t0.Add(time.Duration(rng.IntN(2)) * time.Minute)})
			r, _, err := NewRecord(keys, Input{Hostname: h, Source: SourceACME, Chain: iss.FullChain, Key: iss.KeyPEM}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			data, _ := r.Marshal()
			kv.put(RowKey(h), data, true)
		}
		kv.mu.Lock()
		queued = kv.queued
		kv.mu.Unlock()
		for _, m := range ms {
			kv.mu.Lock()
			kv.queued = slices.Clone(queued)
			kv.mu.Unlock()
			m.watch(ctx, 0)
		}
		// Each materialiser opened its own copy: compare serials.
		a, b := servedNames(full.Served()), servedNames(changes.Served())
		if !slices.Equal(a, b) {
			t.Fatalf("step %d: Serve gives %v, Update %v", step, a, b)
		}
		for _, sni := range []string{"a.example.com", "x.a.example.com", "b.example.com", "www.a.example.com", "unknown.test"} {
			if x, y := serial(full.Current().Lookup(sni)), serial(changes.Current().Lookup(sni)); x != y {
				t.Fatalf("step %d: %s -> %s with Serve, %s with Update", step, sni, x, y)
			}
		}
		if full.Current().Len() != changes.Current().Len() {
			t.Fatalf("step %d: %d certificates with Serve, %d with Update", step, full.Current().Len(), changes.Current().Len())
		}
	}
}

func serial(c *tls.Certificate) string {
	if c == nil {
		return "<none>"
	}
	return leafOf(c).SerialNumber.Text(16)
}

func servedNames(list []certs.Served) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.Name+"="+s.Leaf.SerialNumber.Text(16))
	}
	return out
}
