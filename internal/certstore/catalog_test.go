package certstore

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/platformdb"
	"github.com/pryv/pryv-tls/internal/platformdb/platformdbtest"
)

func TestCatalog(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	ca := newCA(t)
	keys := testKeys(t, 1)
	fixed := time.Now().Add(-time.Minute).Truncate(time.Second).UTC()
	cat := &Catalog{KV: db, Keys: keys, Now: func() time.Time { return fixed }}

	a := issueFor(t, ca, "a.example.com")
	c := issueFor(t, ca, "c.example.com")
	wild := issueFor(t, ca, "*.mc.example.com", "mc.example.com")
	rsa := issue(t, ca, devpki.Leaf{Names: []string{"b.example.com"}, KeyType: "rsa2048"})

	// Stored out of order, hostnames given or taken from the certificate.
	for _, s := range []struct {
		host  string
		chain []byte
		key   []byte
	}{
		{"C.example.com", c.FullChain, c.KeyPEM},
		{"", wild.FullChain, wild.KeyPEM},
		{"", a.FullChain, a.KeyPEM},
		{"b.example.com", rsa.FullChain, rsa.KeyPEM},
	} {
		r, err := cat.Store(ctx, Input{Hostname: s.host, Source: SourceImport, Chain: s.chain, Key: s.key})
		if err != nil {
			t.Fatalf("Store(%q): %v", s.host, err)
		}
		if !r.StoredAt.Equal(fixed) {
			t.Errorf("StoredAt %v, want the catalog's clock %v", r.StoredAt, fixed)
		}
	}

	// The raw row is the record, and holds no plaintext key.
	rows := map[string][]byte{
		"tls-cert/a.example.com":    a.KeyPEM,
		"tls-cert/b.example.com":    rsa.KeyPEM,
		"tls-cert/c.example.com":    c.KeyPEM,
		"tls-cert/*.mc.example.com": wild.KeyPEM,
	}
	for row, keyPEM := range rows {
		e, err := db.Get(ctx, row)
		if err != nil {
			t.Fatalf("raw Get(%s): %v", row, err)
		}
		assertNoKey(t, e.Value, keyPEM)
		if _, err := Unmarshal(row, e.Value); err != nil {
			t.Fatalf("raw row %s: %v", row, err)
		}
	}

	// Get.
	r, err := cat.Get(ctx, "*.MC.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if r.Hostname != "*.mc.example.com" || r.Serial != serialOf(wild) || r.Source != SourceImport {
		t.Fatalf("Get returned %+v", r)
	}
	if _, err := cat.Get(ctx, "nope.example.com"); !errors.Is(err, ErrNoRecord) || !strings.Contains(err.Error(), "nope.example.com") {
		t.Fatalf("Get of a missing host: %v", err)
	}

	// A bad row among the good ones.
	if _, err := db.Put(ctx, "tls-cert/garbage.example.com", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	misplaced, err := db.Get(ctx, "tls-cert/a.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Put(ctx, "tls-cert/misplaced.example.com", misplaced.Value); err != nil {
		t.Fatal(err)
	}
	// Rows outside the table are not the catalog's.
	if _, err := db.Put(ctx, "tls-certx/other", []byte("x")); err != nil {
		t.Fatal(err)
	}
	recs, errs, err := cat.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, r := range recs {
		hosts = append(hosts, r.Hostname)
	}
	if want := []string{"*.mc.example.com", "a.example.com", "b.example.com", "c.example.com"}; !slices.Equal(hosts, want) {
		t.Fatalf("List = %v, want %v", hosts, want)
	}
	if len(errs) != 2 {
		t.Fatalf("List errs = %v, want the garbage and the misplaced rows", errs)
	}
	joined := errors.Join(errs...).Error()
	for _, want := range []string{"tls-cert/garbage.example.com", "tls-cert/misplaced.example.com"} {
		if !strings.Contains(joined, want) {
			t.Errorf("List errs %q do not name %s", joined, want)
		}
	}

	// Export.
	chain, key, err := cat.Export(ctx, "B.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(chain, rsa.FullChain) || !bytes.Equal(key, rsa.KeyPEM) {
		t.Fatal("Export returned another pair")
	}
	if _, _, err := cat.Export(ctx, "nope.example.com"); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("Export of a missing host: %v", err)
	}
	wrongKey := &Catalog{KV: db, Keys: testKeys(t, 9)}
	if _, _, err := wrongKey.Export(ctx, "b.example.com"); !errors.Is(err, atrest.ErrWrongKey) {
		t.Fatalf("Export with another atRestKey: %v", err)
	}

	// Store replaces; an invalid pair writes nothing.
	a2 := issueFor(t, ca, "a.example.com")
	if _, err := cat.Store(ctx, Input{Source: SourceACME, Chain: a2.FullChain, Key: a2.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	before, err := db.Get(ctx, "tls-cert/a.example.com")
	if err != nil {
		t.Fatal(err)
	}
	_, err = cat.Store(ctx, Input{Hostname: "a.example.com", Source: SourceACME, Chain: a2.FullChain, Key: a.KeyPEM})
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("Store of a mismatched pair: %v", err)
	}
	after, err := db.Get(ctx, "tls-cert/a.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision != before.Revision {
		t.Fatal("a refused Store wrote the row")
	}
	r, err = cat.Get(ctx, "a.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if r.Serial != serialOf(a2) || r.Source != SourceACME {
		t.Fatalf("after replacing: serial %s source %s", r.Serial, r.Source)
	}

	// Delete.
	if err := cat.Delete(ctx, "c.example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Get(ctx, "tls-cert/c.example.com"); !errors.Is(err, platformdb.ErrNotFound) {
		t.Fatalf("the row is still there after Delete: %v", err)
	}
	if _, err := cat.Get(ctx, "c.example.com"); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if err := cat.Delete(ctx, "c.example.com"); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("second Delete: %v", err)
	}
	if err := cat.Delete(ctx, "never.example.com"); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("Delete of a missing host: %v", err)
	}
	if err := cat.Delete(ctx, "*.MC.example.com"); err != nil {
		t.Fatal(err)
	}
	recs, _, err = cat.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hosts = hosts[:0]
	for _, r := range recs {
		hosts = append(hosts, r.Hostname)
	}
	if want := []string{"a.example.com", "b.example.com"}; !slices.Equal(hosts, want) {
		t.Fatalf("List after Delete = %v, want %v", hosts, want)
	}
}

func TestCatalogStoreClosedStore(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	ca := newCA(t)
	cat := &Catalog{KV: db, Keys: testKeys(t, 1)}
	iss := issueFor(t, ca, "a.example.com")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := cat.Store(ctx, Input{Source: SourceFile, Chain: iss.FullChain, Key: iss.KeyPEM})
	var inv *InvalidError
	if err == nil || errors.As(err, &inv) {
		t.Fatalf("Store on a closed store: %v (a store failure is not the caller's mistake)", err)
	}
	if !errors.Is(err, platformdb.ErrClosed) || !strings.Contains(err.Error(), "storing tls-cert/a.example.com") {
		t.Fatalf("Store on a closed store: %v", err)
	}
	if _, _, err := cat.List(ctx); !errors.Is(err, platformdb.ErrClosed) {
		t.Fatalf("List on a closed store: %v", err)
	}
	if _, err := cat.Get(ctx, "a.example.com"); errors.Is(err, ErrNoRecord) || !errors.Is(err, platformdb.ErrClosed) {
		t.Fatalf("Get on a closed store: %v", err)
	}
}

// assertNoKey fails if data holds the key PEM or any line of it.
func assertNoKey(t testing.TB, data, keyPEM []byte) {
	t.Helper()
	if bytes.Contains(data, []byte("PRIVATE KEY")) {
		t.Fatal("the value contains \"PRIVATE KEY\"")
	}
	for line := range strings.Lines(string(keyPEM)) {
		if line = strings.TrimSpace(line); line != "" && bytes.Contains(data, []byte(line)) {
			t.Fatalf("the value contains the key PEM line %q", line)
		}
	}
}
