package certstore

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/platformdb"
	"github.com/pryv/pryv-tls/internal/platformdb/platformdbtest"
	"github.com/pryv/pryv-tls/internal/testutil"
)

// TestMaterialiserServesWithoutParsedLeaves: fed by Update, the Cache
// holds the certificates without their parsed leaf (decision 0034), yet
// ranks them, reports them (Served) and serves them in a real handshake as
// the parsed ones; OnListed runs once the listing is applied.
func TestMaterialiserServesWithoutParsedLeaves(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	ca := newCA(t)
	cat := &Catalog{KV: db, Keys: testKeys(t, 1)}
	want := map[string]*x509.Certificate{}
	for _, h := range []string{"a.example.com", "b.example.com", "*.w.example.com"} {
		iss := issueFor(t, ca, h)
		if _, err := cat.Store(ctx, Input{Source: SourceImport, Chain: iss.FullChain, Key: iss.KeyPEM}); err != nil {
			t.Fatal(err)
		}
		want[h] = iss.Cert
	}
	cache := certs.NewCache()
	var listed atomic.Int32
	m := &Materialiser{
		Catalog: cat, TLSDir: t.TempDir(), Logger: quietLogger(),
		Update:   func(ch []certs.Change) { cache.Update(certs.SourceStore, ch...) },
		OnListed: func() { listed.Add(1) },
	}
	run(t, m)
	testutil.EventuallyTrue(t, waitTimeout, "the listing to be applied", func() bool { return listed.Load() == 1 })
	if n := cache.Current().Len(); n != len(want) {
		t.Fatalf("%d certificates served, want %d", n, len(want))
	}
	for _, c := range cache.Current().Certificates() {
		if c.Leaf != nil {
			t.Errorf("the Cache holds %s with its parsed leaf", c.Leaf.DNSNames)
		}
	}
	for _, sv := range cache.Served() {
		w := want[sv.Name]
		if w == nil || sv.Leaf == nil || sv.Leaf.SerialNumber.Cmp(w.SerialNumber) != 0 || !sv.Leaf.NotAfter.Equal(w.NotAfter) || sv.Leaf.Issuer != w.Issuer.CommonName {
			t.Errorf("Served %s: %+v, want the leaf of %v", sv.Name, sv.Leaf, w.DNSNames)
		}
	}

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: cache.GetCertificate, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(waitTimeout))
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	for sni, host := range map[string]string{"a.example.com": "a.example.com", "x.w.example.com": "*.w.example.com", "b.example.com": "b.example.com"} {
		d := &net.Dialer{Timeout: waitTimeout}
		c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), &tls.Config{ServerName: sni, InsecureSkipVerify: true}) //nolint:gosec // the leaf is compared below
		if err != nil {
			t.Fatalf("handshake for %s: %v", sni, err)
		}
		got := c.ConnectionState().PeerCertificates
		_ = c.Close()
		if len(got) != 2 || got[0].SerialNumber.Cmp(want[host].SerialNumber) != 0 {
			t.Errorf("%s: served %d certificates, leaf %v, want %s's leaf and its intermediate", sni, len(got), got[0].DNSNames, host)
		}
	}
}

// TestMaterialisedHeap logs the live heap per certificate the Cache holds
// after a listing of n records, with parsed leaves (Serve, Replace) and
// without (Update): the numbers of decision 0034. Not asserted: the heap
// is the runtime's.
func TestMaterialisedHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("mints and writes 500 certificates")
	}
	const n = 500
	ca := newCA(t)
	keys := testKeys(t, 1)
	list := make([]platformdb.Entry, n)
	for i := range list {
		h := fmt.Sprintf("h%05d.example.com", i)
		iss := issueFor(t, ca, h)
		r, _, err := NewRecord(keys, Input{Hostname: h, Source: SourceImport, Chain: iss.FullChain, Key: iss.KeyPEM}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		data, _ := r.Marshal()
		list[i] = platformdb.Entry{Key: RowKey(h), Value: data}
	}
	for _, incremental := range []bool{false, true} {
		cache := certs.NewCache()
		m := &Materialiser{Catalog: &Catalog{KV: newFeedKV(list), Keys: keys}, TLSDir: t.TempDir(), Logger: quietLogger()}
		if incremental {
			m.Update = func(ch []certs.Change) { cache.Update(certs.SourceStore, ch...) }
		} else {
			m.Serve = func(l []*tls.Certificate) { cache.Replace(certs.SourceStore, l...) }
		}
		before := liveHeap()
		if _, err := m.sync(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		after := liveHeap()
		if cache.Current().Len() != n {
			t.Fatalf("%d served, want %d", cache.Current().Len(), n)
		}
		t.Logf("update=%v: %d B live per certificate (Cache + materialiser)", incremental, (after-before)/n)
		runtime.KeepAlive(m)
		runtime.KeepAlive(cache)
	}
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
