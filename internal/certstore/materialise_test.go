package certstore

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/platformdb/platformdbtest"
	"github.com/pryv/pryv-tls/internal/testutil"
)

// TestMaterialiserInitialListing: records stored before Run are served,
// written and announced.
func TestMaterialiserInitialListing(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	ca := newCA(t)
	cat := &Catalog{KV: db, Keys: testKeys(t, 1)}
	a := issueFor(t, ca, "a.example.com")
	wild := issueFor(t, ca, "*.mc.example.com", "mc.example.com")
	for _, iss := range [][2][]byte{{a.FullChain, a.KeyPEM}, {wild.FullChain, wild.KeyPEM}} {
		if _, err := cat.Store(ctx, Input{Source: SourceFile, Chain: iss[0], Key: iss[1]}); err != nil {
			t.Fatal(err)
		}
	}
	// A row that does not decode does not stop the others.
	if _, err := db.Put(ctx, "tls-cert/garbage.example.com", []byte("garbage")); err != nil {
		t.Fatal(err)
	}

	tlsDir := filepath.Join(t.TempDir(), "tls")
	rec := &recorder{}
	var logs logBuf
	run(t, rec.materialiser(cat, tlsDir, logs.logger()))

	testutil.EventuallyTrue(t, waitTimeout, "both certificates to be served", func() bool {
		s := rec.served()
		return s["a.example.com"] == serialOf(a) && s["*.mc.example.com"] == serialOf(wild)
	})
	testutil.EventuallyTrue(t, waitTimeout, "both rotations", func() bool {
		return len(rec.rotationsOf("a.example.com")) == 1 && len(rec.rotationsOf("*.mc.example.com")) == 1
	})
	checkPair(t, tlsDir, "a.example.com", a.FullChain, a.KeyPEM)
	checkPair(t, tlsDir, "wildcard.mc.example.com", wild.FullChain, wild.KeyPEM)
	checkRotation(t, rec.rotationsOf("a.example.com")[0], "a.example.com",
		filepath.Join(tlsDir, "a.example.com", "fullchain.pem"), filepath.Join(tlsDir, "a.example.com", "privkey.pem"))
	checkRotation(t, rec.rotationsOf("*.mc.example.com")[0], "*.mc.example.com",
		filepath.Join(tlsDir, "wildcard.mc.example.com", "fullchain.pem"), filepath.Join(tlsDir, "wildcard.mc.example.com", "privkey.pem"))
	if n := len(rec.served()); n != 2 {
		t.Fatalf("%d certificates served, want 2", n)
	}
	if _, err := os.Lstat(filepath.Join(tlsDir, "garbage.example.com")); !os.IsNotExist(err) {
		t.Errorf("the garbage row was materialised: %v", err)
	}
	if l := logs.String(); !strings.Contains(l, "tls-cert/garbage.example.com") || strings.Contains(l, "PRIVATE KEY") {
		t.Errorf("log does not report the garbage row, or shows a key:\n%s", l)
	}
}

func checkRotation(t testing.TB, got rotation, host, cert, key string) {
	t.Helper()
	if got != (rotation{host, cert, key}) {
		t.Fatalf("OnRotate(%q, %q, %q), want (%q, %q, %q)", got.host, got.cert, got.key, host, cert, key)
	}
}

// TestMaterialiserWatch: changes while running are served, written, rotated;
// unchanged rewrites, records that do not open and deletions are handled.
func TestMaterialiserWatch(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	ca := newCA(t)
	keys := testKeys(t, 1)
	cat := &Catalog{KV: db, Keys: keys}
	tlsDir := t.TempDir()
	rec := &recorder{}
	var logs logBuf
	run(t, rec.materialiser(cat, tlsDir, logs.logger()))

	// A put while running.
	a1 := issueFor(t, ca, "a.example.com")
	if _, err := cat.Store(ctx, Input{Source: SourceACME, Chain: a1.FullChain, Key: a1.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyTrue(t, waitTimeout, "a.example.com to be served", func() bool { return rec.servedSerial("a.example.com") == serialOf(a1) })
	testutil.EventuallyTrue(t, waitTimeout, "a.example.com's rotation", func() bool { return len(rec.rotationsOf("a.example.com")) == 1 })
	checkPair(t, tlsDir, "a.example.com", a1.FullChain, a1.KeyPEM)
	checkRotation(t, rec.rotationsOf("a.example.com")[0], "a.example.com",
		filepath.Join(tlsDir, "a.example.com", "fullchain.pem"), filepath.Join(tlsDir, "a.example.com", "privkey.pem"))

	// A wildcard while running.
	wild := issueFor(t, ca, "*.mc.example.com", "mc.example.com")
	if _, err := cat.Store(ctx, Input{Source: SourceACME, Chain: wild.FullChain, Key: wild.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyTrue(t, waitTimeout, "the wildcard to be served", func() bool { return rec.servedSerial("*.mc.example.com") == serialOf(wild) })
	testutil.EventuallyTrue(t, waitTimeout, "the wildcard's rotation", func() bool { return len(rec.rotationsOf("*.mc.example.com")) == 1 })
	checkPair(t, tlsDir, "wildcard.mc.example.com", wild.FullChain, wild.KeyPEM)
	checkRotation(t, rec.rotationsOf("*.mc.example.com")[0], "*.mc.example.com",
		filepath.Join(tlsDir, "wildcard.mc.example.com", "fullchain.pem"), filepath.Join(tlsDir, "wildcard.mc.example.com", "privkey.pem"))
	linkBefore, _ := os.Readlink(filepath.Join(tlsDir, "a.example.com"))

	// The same pair stored again (a fresh envelope, the same hash): no
	// rewrite, no rotation.
	if _, err := cat.Store(ctx, Input{Source: SourceACME, Chain: a1.FullChain, Key: a1.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	barrier(t, ctx, cat, ca, rec)
	if n := len(rec.rotationsOf("a.example.com")); n != 1 {
		t.Fatalf("an unchanged record rotated again (%d rotations)", n)
	}
	if link, _ := os.Readlink(filepath.Join(tlsDir, "a.example.com")); link != linkBefore {
		t.Fatal("an unchanged record was written again")
	}

	// Sealed under another atRestKey: refused, the previous one stays.
	a2 := issueFor(t, ca, "a.example.com")
	other, _, err := NewRecord(testKeys(t, 2), Input{Source: SourceACME, Chain: a2.FullChain, Key: a2.KeyPEM}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	putRecord(t, db, other)
	barrier(t, ctx, cat, ca, rec)
	assertStill(t, rec, tlsDir, "a.example.com", a1.FullChain, a1.KeyPEM, serialOf(a1), linkBefore)
	if l := logs.String(); !strings.Contains(l, "refused") || !strings.Contains(l, "differs") {
		t.Errorf("the refusal is not logged with its reason:\n%s", l)
	}

	// A chain that does not match its (correctly sealed) key, written as raw
	// JSON: refused too.
	good, _, err := NewRecord(keys, Input{Source: SourceACME, Chain: a2.FullChain, Key: a2.KeyPEM}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a3 := issueFor(t, ca, "a.example.com")
	forged := *good
	forged.Chain = string(a3.FullChain)
	forged.Hash = pairHash(a3.FullChain, a2.KeyPEM)
	putRecord(t, db, &forged)
	barrier(t, ctx, cat, ca, rec)
	assertStill(t, rec, tlsDir, "a.example.com", a1.FullChain, a1.KeyPEM, serialOf(a1), linkBefore)

	// The good record after all that is taken.
	putRecord(t, db, good)
	testutil.EventuallyTrue(t, waitTimeout, "the new a.example.com to be served", func() bool { return rec.servedSerial("a.example.com") == serialOf(a2) })
	testutil.EventuallyTrue(t, waitTimeout, "a.example.com's second rotation", func() bool { return len(rec.rotationsOf("a.example.com")) == 2 })
	checkPair(t, tlsDir, "a.example.com", a2.FullChain, a2.KeyPEM)

	// Deleted: no longer served, and not served again from disk either.
	if err := cat.Delete(ctx, "a.example.com"); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyTrue(t, waitTimeout, "a.example.com to be forgotten", func() bool {
		s := rec.served()
		_, ok := s["a.example.com"]
		return !ok && s["*.mc.example.com"] == serialOf(wild)
	})
	if _, err := os.Lstat(filepath.Join(tlsDir, "a.example.com")); !os.IsNotExist(err) {
		t.Errorf("the link of a deleted record is still there: %v", err)
	}
	fresh := &recorder{}
	(&Materialiser{TLSDir: tlsDir, Serve: fresh.serve, Logger: quietLogger()}).LoadDisk()
	if s := fresh.served(); s["*.mc.example.com"] != serialOf(wild) || s["a.example.com"] != "" {
		t.Errorf("LoadDisk after the delete serves %v", s)
	}

	// The wildcard, deleted, is forgotten too.
	if err := cat.Delete(ctx, "*.mc.example.com"); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyTrue(t, waitTimeout, "the wildcard to be forgotten", func() bool {
		_, ok := rec.served()["*.mc.example.com"]
		return !ok
	})
	if l := logs.String(); strings.Contains(l, "PRIVATE KEY") {
		t.Errorf("the log shows a key:\n%s", l)
	}
}

// putRecord writes r into its row as it is, bypassing the catalog's checks.
func putRecord(t testing.TB, kv KV, r *Record) {
	t.Helper()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(testCtx(t), RowKey(r.Hostname), data); err != nil {
		t.Fatal(err)
	}
}

// assertStill checks that host is still served and on disk as before.
func assertStill(t testing.TB, rec *recorder, tlsDir, host string, chain, key []byte, serial, link string) {
	t.Helper()
	if got := rec.servedSerial(host); got != serial {
		t.Fatalf("%s: serving serial %q, want the previous %q", host, got, serial)
	}
	if n := len(rec.rotationsOf(host)); n != 1 {
		t.Fatalf("%s: %d rotations, want still 1", host, n)
	}
	if got, _ := os.Readlink(filepath.Join(tlsDir, DirName(host))); got != link {
		t.Fatalf("%s: the files were replaced (%s -> %s)", host, link, got)
	}
	checkPair(t, tlsDir, DirName(host), chain, key)
}

// TestMaterialiserPrimaryFiles: the primary hostname's pair is also copied
// onto the http.ssl files, and OnRotate is given those.
func TestMaterialiserPrimaryFiles(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	ca := newCA(t)
	cat := &Catalog{KV: db, Keys: testKeys(t, 1)}
	tlsDir := t.TempDir()
	ssl := filepath.Join(t.TempDir(), "ssl") // created on the first write
	certFile, keyFile := filepath.Join(ssl, "cert.pem"), filepath.Join(ssl, "key.pem")
	rec := &recorder{}
	m := rec.materialiser(cat, tlsDir, quietLogger())
	m.Primary, m.CertFile, m.KeyFile = "*.mc.example.com", certFile, keyFile
	run(t, m)

	for i := range 2 {
		wild := issueFor(t, ca, "*.mc.example.com", "mc.example.com")
		if _, err := cat.Store(ctx, Input{Source: SourceACME, Chain: wild.FullChain, Key: wild.KeyPEM}); err != nil {
			t.Fatal(err)
		}
		testutil.EventuallyTrue(t, waitTimeout, "the primary's rotation", func() bool { return len(rec.rotationsOf("*.mc.example.com")) == i+1 })
		checkRotation(t, rec.rotationsOf("*.mc.example.com")[i], "*.mc.example.com", certFile, keyFile)
		checkFile(t, certFile, wild.FullChain, 0o644)
		checkFile(t, keyFile, wild.KeyPEM, 0o600)
		checkPair(t, tlsDir, "wildcard.mc.example.com", wild.FullChain, wild.KeyPEM)
	}
	if entries, _ := os.ReadDir(ssl); len(entries) != 2 {
		t.Errorf("%d entries in the http.ssl directory, want the two files only", len(entries))
	}

	// Another host is not copied there.
	b := issueFor(t, ca, "b.example.com")
	if _, err := cat.Store(ctx, Input{Source: SourceACME, Chain: b.FullChain, Key: b.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyTrue(t, waitTimeout, "b.example.com's rotation", func() bool { return len(rec.rotationsOf("b.example.com")) == 1 })
	checkRotation(t, rec.rotationsOf("b.example.com")[0], "b.example.com",
		filepath.Join(tlsDir, "b.example.com", "fullchain.pem"), filepath.Join(tlsDir, "b.example.com", "privkey.pem"))
	if got, _ := os.ReadFile(certFile); string(got) == string(b.FullChain) {
		t.Fatal("a non-primary host was written onto the http.ssl files")
	}
}

// TestMaterialiserPrimaryIsMaterialised: http.ssl pointing at the
// materialised files themselves is not written twice.
func TestMaterialiserPrimaryIsMaterialised(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	ca := newCA(t)
	cat := &Catalog{KV: db, Keys: testKeys(t, 1)}
	tlsDir := t.TempDir()
	rec := &recorder{}
	m := rec.materialiser(cat, tlsDir, quietLogger())
	m.Primary = "a.example.com"
	m.CertFile = filepath.Join(tlsDir, "a.example.com", "fullchain.pem")
	m.KeyFile = filepath.Join(tlsDir, "a.example.com", "privkey.pem")
	run(t, m)

	a := issueFor(t, ca, "a.example.com")
	if _, err := cat.Store(ctx, Input{Source: SourceACME, Chain: a.FullChain, Key: a.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyTrue(t, waitTimeout, "the rotation", func() bool { return len(rec.rotationsOf("a.example.com")) == 1 })
	checkRotation(t, rec.rotationsOf("a.example.com")[0], "a.example.com", m.CertFile, m.KeyFile)
	// Still a symlink to a version directory: not replaced by plain files.
	checkPair(t, tlsDir, "a.example.com", a.FullChain, a.KeyPEM)
}

// TestMaterialiserLoadDisk: a fresh materialiser over the same TLSDir serves
// what an earlier run wrote before it reaches the store, and does not rewrite
// or rotate it when the store agrees.
func TestMaterialiserLoadDisk(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	ca := newCA(t)
	cat := &Catalog{KV: db, Keys: testKeys(t, 1)}
	tlsDir := t.TempDir()
	a := issueFor(t, ca, "a.example.com")
	wild := issueFor(t, ca, "*.mc.example.com", "mc.example.com")
	for _, iss := range [][2][]byte{{a.FullChain, a.KeyPEM}, {wild.FullChain, wild.KeyPEM}} {
		if _, err := cat.Store(ctx, Input{Source: SourceFile, Chain: iss[0], Key: iss[1]}); err != nil {
			t.Fatal(err)
		}
	}
	first := &recorder{}
	stop := run(t, first.materialiser(cat, tlsDir, quietLogger()))
	testutil.EventuallyTrue(t, waitTimeout, "both rotations", func() bool {
		return len(first.rotationsOf("a.example.com")) == 1 && len(first.rotationsOf("*.mc.example.com")) == 1
	})
	stop()

	// Things LoadDisk must pass over.
	if err := os.Mkdir(filepath.Join(tlsDir, "empty.example.com"), 0o755); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(tlsDir, "bad.example.com")
	if err := os.Mkdir(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	other := issueFor(t, ca, "bad.example.com")
	if err := os.WriteFile(filepath.Join(bad, "fullchain.pem"), other.FullChain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bad, "privkey.pem"), a.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	// No store at all: LoadDisk alone.
	second := &recorder{}
	(&Materialiser{TLSDir: tlsDir, Serve: second.serve, Logger: quietLogger()}).LoadDisk()
	s := second.served()
	if len(s) != 2 || s["a.example.com"] != serialOf(a) || s["*.mc.example.com"] != serialOf(wild) {
		t.Fatalf("LoadDisk served %v, want a.example.com %s and *.mc.example.com %s", s, serialOf(a), serialOf(wild))
	}

	// LoadDisk then Run: the store agrees, so nothing is rewritten.
	third := &recorder{}
	m := third.materialiser(cat, tlsDir, quietLogger())
	m.LoadDisk()
	if s := third.served(); len(s) != 2 {
		t.Fatalf("LoadDisk served %v", s)
	}
	linkA, _ := os.Readlink(filepath.Join(tlsDir, "a.example.com"))
	run(t, m)
	barrier(t, ctx, cat, ca, third)
	if n := len(third.rotationsOf("a.example.com")) + len(third.rotationsOf("*.mc.example.com")); n != 0 {
		t.Fatalf("%d rotations of unchanged certificates after a restart", n)
	}
	if got, _ := os.Readlink(filepath.Join(tlsDir, "a.example.com")); got != linkA {
		t.Fatal("an unchanged certificate was rewritten after a restart")
	}
	s = third.served()
	if s["a.example.com"] != serialOf(a) || s["*.mc.example.com"] != serialOf(wild) {
		t.Fatalf("after Run: serving %v", s)
	}
}

// TestMaterialiserLoadDiskNothing: a missing TLSDir is no error and serves
// nothing.
func TestMaterialiserLoadDiskNothing(t *testing.T) {
	rec := &recorder{}
	var logs logBuf
	(&Materialiser{TLSDir: filepath.Join(t.TempDir(), "none"), Serve: rec.serve, Logger: logs.logger()}).LoadDisk()
	if s := rec.served(); len(s) != 0 {
		t.Fatalf("served %v", s)
	}
	if logs.String() != "" {
		t.Fatalf("a missing TLSDir was logged:\n%s", logs.String())
	}
}

// TestMaterialiserForgetsWhatTheStoreLacks: a certificate loaded from disk
// whose record is gone from the store is no longer served once Run lists.
func TestMaterialiserForgetsWhatTheStoreLacks(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	ca := newCA(t)
	cat := &Catalog{KV: db, Keys: testKeys(t, 1)}
	tlsDir := t.TempDir()
	gone := issueFor(t, ca, "gone.example.com")
	if _, err := WritePair(tlsDir, "gone.example.com", gone.FullChain, gone.KeyPEM); err != nil {
		t.Fatal(err)
	}
	kept := issueFor(t, ca, "kept.example.com")
	if _, err := cat.Store(ctx, Input{Source: SourceFile, Chain: kept.FullChain, Key: kept.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	m := rec.materialiser(cat, tlsDir, quietLogger())
	m.LoadDisk()
	if rec.servedSerial("gone.example.com") != serialOf(gone) {
		t.Fatal("LoadDisk did not serve the certificate on disk")
	}
	run(t, m)
	testutil.EventuallyTrue(t, waitTimeout, "gone.example.com to be forgotten and kept.example.com served", func() bool {
		s := rec.served()
		_, ok := s["gone.example.com"]
		return !ok && s["kept.example.com"] == serialOf(kept)
	})
}

// TestMaterialiserRefusedAtStart: a record that does not open at the first
// listing is not served; the certificate loaded from disk for it stays.
func TestMaterialiserRefusedAtStart(t *testing.T) {
	db := platformdbtest.Open(t)
	ca := newCA(t)
	cat := &Catalog{KV: db, Keys: testKeys(t, 1)}
	tlsDir := t.TempDir()
	onDisk := issueFor(t, ca, "a.example.com")
	if _, err := WritePair(tlsDir, "a.example.com", onDisk.FullChain, onDisk.KeyPEM); err != nil {
		t.Fatal(err)
	}
	link, _ := os.Readlink(filepath.Join(tlsDir, "a.example.com"))
	newer := issueFor(t, ca, "a.example.com")
	r, _, err := NewRecord(testKeys(t, 2), Input{Source: SourceACME, Chain: newer.FullChain, Key: newer.KeyPEM}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	putRecord(t, db, r)

	rec := &recorder{}
	m := rec.materialiser(cat, tlsDir, quietLogger())
	m.LoadDisk()
	run(t, m)
	barrier(t, testCtx(t), cat, ca, rec)
	if got := rec.servedSerial("a.example.com"); got != serialOf(onDisk) {
		t.Fatalf("serving %q for a.example.com, want the one on disk %q", got, serialOf(onDisk))
	}
	if n := len(rec.rotationsOf("a.example.com")); n != 0 {
		t.Fatalf("%d rotations for a refused record", n)
	}
	if got, _ := os.Readlink(filepath.Join(tlsDir, "a.example.com")); got != link {
		t.Fatal("a refused record replaced the files on disk")
	}
}

// TestMaterialiserPrunes: after several rotations only the current and the
// previous version directories remain.
func TestMaterialiserPrunes(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	ca := newCA(t)
	cat := &Catalog{KV: db, Keys: testKeys(t, 1)}
	tlsDir := t.TempDir()
	rec := &recorder{}
	run(t, rec.materialiser(cat, tlsDir, quietLogger()))

	const rotations = 5
	var last []byte
	for i := range rotations {
		wild := issueFor(t, ca, "*.mc.example.com")
		if _, err := cat.Store(ctx, Input{Source: SourceACME, Chain: wild.FullChain, Key: wild.KeyPEM}); err != nil {
			t.Fatal(err)
		}
		testutil.EventuallyTrue(t, waitTimeout, "the rotation", func() bool { return len(rec.rotationsOf("*.mc.example.com")) == i+1 })
		last = wild.FullChain
	}
	got := versionDirs(t, tlsDir, "wildcard.mc.example.com")
	cur, _ := os.Readlink(filepath.Join(tlsDir, "wildcard.mc.example.com"))
	if len(got) != 2 {
		t.Fatalf("%d version directories after %d rotations, want 2: %v", len(got), rotations, got)
	}
	if got[0] != cur && got[1] != cur {
		t.Fatalf("the current version %s is not among %v", cur, got)
	}
	checkFile(t, filepath.Join(tlsDir, "wildcard.mc.example.com", "fullchain.pem"), last, 0o644)
}

// TestMaterialiserOnServed: a record changed while watching is timed from
// its storing to its serving; what the start-up listing finds is not.
func TestMaterialiserOnServed(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	ca := newCA(t)
	cat := &Catalog{KV: db, Keys: testKeys(t, 1)}
	old := issueFor(t, ca, "old.example.com")
	if _, err := cat.Store(ctx, Input{Source: SourceImport, Chain: old.FullChain, Key: old.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	type timing struct {
		host string
		d    time.Duration
	}
	timings := make(chan timing, 4)
	rec := &recorder{}
	m := rec.materialiser(cat, t.TempDir(), nil)
	m.OnServed = func(host string, d time.Duration) { timings <- timing{host, d} }
	run(t, m)
	testutil.EventuallyTrue(t, waitTimeout, "the listed record to be served", func() bool { return rec.servedSerial("old.example.com") == serialOf(old) })

	fresh := issueFor(t, ca, "new.example.com")
	stored := time.Now()
	if _, err := cat.Store(ctx, Input{Source: SourceACME, Chain: fresh.FullChain, Key: fresh.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-timings:
		if got.host != "new.example.com" || got.d < 0 || got.d > time.Since(stored)+time.Second {
			t.Fatalf("OnServed(%q, %v), want new.example.com within %v", got.host, got.d, time.Since(stored))
		}
		t.Logf("stored -> served: %v", got.d)
	case <-time.After(waitTimeout):
		t.Fatal("OnServed not called for a record put while watching")
	}
	select {
	case got := <-timings:
		t.Fatalf("unexpected OnServed(%q, %v): the listed record is not timed", got.host, got.d)
	default:
	}
}
