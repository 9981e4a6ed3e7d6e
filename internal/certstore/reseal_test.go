package certstore_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme"
	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/platformdb"
	"github.com/pryv/pryv-tls/internal/platformdb/platformdbtest"
)

func master(seed byte) []byte { return bytes.Repeat([]byte{seed}, atrest.MasterSize) }

func ring(t *testing.T, current []byte, previous ...[]byte) *atrest.Keyring {
	t.Helper()
	k, err := atrest.New(current, previous...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const directory = "https://acme.example.test/directory"

// seed stores n certificates and the ACME account under keys, as the
// certificate store and the renewer write them.
func seed(t *testing.T, ctx context.Context, db *platformdb.Etcd, keys *atrest.Keyring, hosts ...string) (keyPEMs map[string][]byte) {
	t.Helper()
	root, err := devpki.NewCA("reseal root")
	if err != nil {
		t.Fatal(err)
	}
	keyPEMs = map[string][]byte{}
	cat := &certstore.Catalog{KV: db, Keys: keys}
	for _, h := range hosts {
		iss, err := root.Issue(devpki.Leaf{Names: []string{h}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cat.Store(ctx, certstore.Input{Hostname: h, Source: certstore.SourceImport, Chain: iss.FullChain, Key: iss.KeyPEM}); err != nil {
			t.Fatal(err)
		}
		keyPEMs[h] = iss.KeyPEM
	}
	acct, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, _, err := acme.ImportAccount(ctx, db, keys, acme.ImportedAccount{Directory: directory, Email: "ops@example.com", URI: "https://acme.example.test/acct/1", Key: acct}); err != nil {
		t.Fatal(err)
	}
	return keyPEMs
}

// TestReseal: with the new key current and the old one previous, every
// sealed row (certificate keys, ACME account) is rewritten under the new
// key, after which a core with the new key alone reads them all; the rest
// of each row is unchanged; a second run rewrites nothing; a row no key
// opens is reported by name and left as it is.
func TestReseal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db := platformdbtest.Open(t)
	old, next, stranger := master(1), master(2), master(3)
	keyPEMs := seed(t, ctx, db, ring(t, old), "a.example.com", "*.pryv.example.com")
	// A row sealed under a key this core never had.
	foreign := &certstore.Catalog{KV: db, Keys: ring(t, stranger)}
	root, _ := devpki.NewCA("foreign")
	iss, _ := root.Issue(devpki.Leaf{Names: []string{"foreign.example.com"}})
	if _, err := foreign.Store(ctx, certstore.Input{Source: certstore.SourceImport, Chain: iss.FullChain, Key: iss.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	before, _, _ := db.List(ctx, certstore.Prefix)

	rep, err := certstore.Reseal(ctx, db, ring(t, next, old))
	if err != nil {
		t.Fatal(err)
	}
	wantResealed := []string{"tls-cert/*.pryv.example.com", "tls-cert/a.example.com", acme.AccountRow(directory)}
	if got := slices.Sorted(slices.Values(rep.Resealed)); !slices.Equal(got, slices.Sorted(slices.Values(wantResealed))) {
		t.Errorf("resealed %v, want %v", got, wantResealed)
	}
	if len(rep.Left) != 1 || rep.Left[0].Row != "tls-cert/foreign.example.com" || !strings.Contains(rep.Left[0].Error, "atRestKey differs") {
		t.Errorf("left %+v, want tls-cert/foreign.example.com with the wrong-key reason", rep.Left)
	}

	// The new key alone now opens everything that was ours.
	only := ring(t, next)
	cat := &certstore.Catalog{KV: db, Keys: only}
	for h, want := range keyPEMs {
		_, got, err := cat.Export(ctx, h)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("with the new key alone, %s: %v (same key: %v)", h, err, bytes.Equal(got, want))
		}
	}
	if _, err := acme.LoadAccountInfo(ctx, db, only, directory); err != nil {
		t.Errorf("with the new key alone, the ACME account: %v", err)
	}
	if _, _, err := (&certstore.Catalog{KV: db, Keys: ring(t, old)}).Export(ctx, "a.example.com"); !errors.Is(err, atrest.ErrWrongKey) {
		t.Errorf("the old key alone still opens a resealed row: %v", err)
	}
	// Everything but the sealed key is as it was.
	after, _, _ := db.List(ctx, certstore.Prefix)
	for i := range before {
		var b, a map[string]any
		_ = json.Unmarshal(before[i].Value, &b)
		_ = json.Unmarshal(after[i].Value, &a)
		delete(b, "key")
		delete(a, "key")
		bj, _ := json.Marshal(b)
		aj, _ := json.Marshal(a)
		if !bytes.Equal(bj, aj) {
			t.Errorf("%s changed beyond its key:\n%s\n%s", before[i].Key, bj, aj)
		}
	}

	again, err := certstore.Reseal(ctx, db, ring(t, next, old))
	if err != nil || len(again.Resealed) != 0 || again.Current != 3 || len(again.Left) != 1 {
		t.Errorf("second run: %+v, %v; want nothing resealed, 3 current, the foreign row left", again, err)
	}

	// The report never carries a key: neither master nor a private key.
	out, _ := json.Marshal(rep)
	for _, secret := range [][]byte{old, next, keyPEMs["a.example.com"]} {
		if bytes.Contains(out, secret) || bytes.Contains(out, []byte(base64.StdEncoding.EncodeToString(secret))) {
			t.Fatalf("the report carries a secret: %s", out)
		}
	}
}

// racing rewrites a row (sealed under the old key, as a core not yet
// restarted would) just before Reseal's first compare-and-swap on it.
type racing struct {
	*platformdb.Etcd
	row   string
	write func()
}

func (r *racing) CompareAndSwap(ctx context.Context, key string, value []byte, expect int64) (int64, error) {
	if key == r.row && r.write != nil {
		r.write()
		r.write = nil
	}
	return r.Etcd.CompareAndSwap(ctx, key, value, expect)
}

// TestResealRowRewrittenMeanwhile: a renewal landing between Reseal's read
// and its write is not overwritten: the new content is read and resealed.
func TestResealRowRewrittenMeanwhile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db := platformdbtest.Open(t)
	old, next := master(1), master(2)
	seed(t, ctx, db, ring(t, old), "a.example.com")
	root, _ := devpki.NewCA("renewal")
	renewed, _ := root.Issue(devpki.Leaf{Names: []string{"a.example.com"}})
	kv := &racing{Etcd: db, row: "tls-cert/a.example.com", write: func() {
		if _, err := (&certstore.Catalog{KV: db, Keys: ring(t, old)}).Store(ctx, certstore.Input{Source: certstore.SourceACME, Chain: renewed.FullChain, Key: renewed.KeyPEM}); err != nil {
			t.Error(err)
		}
	}}
	rep, err := certstore.Reseal(ctx, kv, ring(t, next, old))
	if err != nil || len(rep.Left) != 0 {
		t.Fatalf("Reseal: %+v, %v", rep, err)
	}
	chain, key, err := (&certstore.Catalog{KV: db, Keys: ring(t, next)}).Export(ctx, "a.example.com")
	if err != nil || !bytes.Equal(chain, renewed.FullChain) || !bytes.Equal(key, renewed.KeyPEM) {
		t.Fatalf("after the race the row holds the renewal under the new key? %v (chain %v, key %v)", err, bytes.Equal(chain, renewed.FullChain), bytes.Equal(key, renewed.KeyPEM))
	}
}

// TestSealedTablesAreTheSealedRows: SealedTables names the prefixes the sealing
// packages really write under.
func TestSealedTablesAreTheSealedRows(t *testing.T) {
	want := map[string]atrest.Purpose{certstore.Prefix: atrest.PurposeTLSKey}
	acct := acme.AccountRow(directory)
	want[acct[:strings.IndexByte(acct, '/')+1]] = atrest.PurposeACMEAccount
	want[dnsdata.DNSSECKeyPrefix] = atrest.PurposeDNSSECKey
	got := map[string]atrest.Purpose{}
	for _, tb := range certstore.SealedTables {
		got[tb.Prefix] = tb.Purpose
	}
	if len(got) != len(want) {
		t.Fatalf("Tables %v, want %v", got, want)
	}
	for p, purpose := range want {
		if got[p] != purpose {
			t.Errorf("Tables[%s] = %q, want %q", p, got[p], purpose)
		}
	}
}

// TestRotateAPI: the control socket's route answers the report.
func TestRotateAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db := platformdbtest.Open(t)
	seed(t, ctx, db, ring(t, master(1)), "a.example.com")
	h := &certstore.RotateAPI{KV: db, Keys: ring(t, master(2), master(1)), Logger: slog.New(slog.DiscardHandler)}
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/keys/rotate", http.StatusMethodNotAllowed, "only POST"},
		{"POST", "/keys/other", http.StatusNotFound, "no such resource"},
		{"POST", "/keys/rotate", http.StatusOK, `"resealed":["tls-cert/a.example.com","` + acme.AccountRow(directory) + `"]`},
		{"POST", "/keys/rotate", http.StatusOK, `"resealed":[],"current":2,"left":[]`},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.body) {
			t.Errorf("%s %s: %d %s; want %d with %s", tc.method, tc.path, w.Code, w.Body, tc.code, tc.body)
		}
	}
}
