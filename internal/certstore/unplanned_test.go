package certstore

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/platformdb"
	"github.com/pryv/pryv-tls/internal/platformdb/platformdbtest"
)

// racingKV rewrites one row just before the sweep deletes it, as a renewal
// landing between the listing and the delete would.
type racingKV struct {
	*etcdKV
	row     string
	rewrite func()
}

type etcdKV = platformdb.Etcd

func (k *racingKV) DeleteIf(ctx context.Context, key string, expect int64) error {
	if key == k.row && k.rewrite != nil {
		k.rewrite()
		k.rewrite = nil
	}
	return k.etcdKV.DeleteIf(ctx, key, expect)
}

// TestUnplannedSweep: only expired records that no planned name needs are
// dropped, and a row rewritten meanwhile stays.
func TestUnplannedSweep(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	ca := newCA(t)
	now := time.Now()
	past := now.Add(-30 * 24 * time.Hour)
	keys := testKeys(t, 7)
	storeAt := func(at time.Time, host string, l devpki.Leaf) {
		t.Helper()
		iss := issue(t, ca, l)
		cat := &Catalog{KV: db, Keys: keys, Now: func() time.Time { return at }}
		if _, err := cat.Store(ctx, Input{Hostname: host, Source: SourceImport, Chain: iss.FullChain, Key: iss.KeyPEM}); err != nil {
			t.Fatalf("storing %s: %v", host, err)
		}
	}
	expiredLeaf := func(names ...string) devpki.Leaf {
		return devpki.Leaf{Names: names, NotBefore: past.Add(-time.Hour), NotAfter: now.Add(-time.Hour)}
	}
	storeAt(past, "core1.pryv.example.com", expiredLeaf("core1.pryv.example.com"))             // dropped
	storeAt(past, "core2.pryv.example.com", expiredLeaf("core2.pryv.example.com"))             // planned
	storeAt(past, "old.example.org", expiredLeaf("old.example.org", "core3.pryv.example.com")) // carries a planned name
	storeAt(past, "*.other.test", expiredLeaf("*.other.test"))                                 // covers a planned name
	storeAt(past, "gone.example.org", expiredLeaf("gone.example.org"))                         // rewritten meanwhile
	storeAt(now, "valid.example.org", devpki.Leaf{Names: []string{"valid.example.org"}})       // not expired

	planned := []string{"*.pryv.example.com", "pryv.example.com", "core2.pryv.example.com", "core3.pryv.example.com", "core9.other.test"}
	kv := &racingKV{etcdKV: db, row: RowKey("gone.example.org")}
	kv.rewrite = func() {
		storeAt(past, "gone.example.org", expiredLeaf("gone.example.org"))
	}
	log := &logBuf{}
	u := &Unplanned{KV: kv, Planned: func(context.Context) ([]string, error) { return planned, nil }, Logger: log.logger()}
	dropped, err := u.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || dropped[0].Hostname != "core1.pryv.example.com" || dropped[0].Source != SourceImport {
		t.Fatalf("dropped %+v, want core1.pryv.example.com only", dropped)
	}
	recs, _, err := (&Catalog{KV: db, Keys: keys}).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, r := range recs {
		left = append(left, r.Hostname)
	}
	want := []string{"*.other.test", "core2.pryv.example.com", "gone.example.org", "old.example.org", "valid.example.org"}
	if !slices.Equal(left, want) {
		t.Errorf("rows left %v, want %v", left, want)
	}
	if got := log.String(); !strings.Contains(got, "certificate record dropped") || !strings.Contains(got, "tls-cert/core1.pryv.example.com") {
		t.Errorf("the drop is not logged with its row: %s", got)
	}

	// A second sweep drops the rewritten row (still expired, still unplanned).
	if dropped, err = u.Sweep(ctx); err != nil || len(dropped) != 1 || dropped[0].Hostname != "gone.example.org" {
		t.Fatalf("second sweep dropped %+v, %v; want gone.example.org", dropped, err)
	}
	// A topology that plans nothing drops nothing.
	u.Planned = func(context.Context) ([]string, error) { return nil, nil }
	if dropped, err = u.Sweep(ctx); err != nil || len(dropped) != 0 {
		t.Fatalf("with no plans dropped %+v, %v", dropped, err)
	}
}
