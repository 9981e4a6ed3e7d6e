package dnsdata

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/authdns"
	"github.com/pryv/pryv-tls/internal/testutil"
)

// SetStatic (a reload) while Run follows the store: the new static entries
// and TTL are answered at once and the rows from the store stay; a static
// part that does not build is refused and the zone before it keeps
// answering.
func TestWatcherSetStatic(t *testing.T) {
	kv := newScriptedKV()
	kv.put(CoreInfoPrefix+"core1", `{"id":"core1","ip":"192.0.2.10","available":true}`)
	kv.put(UserCorePrefix+"alice", `{"core":"core1"}`)
	var (
		mu   sync.Mutex
		zone *authdns.Zone
	)
	w := &Watcher{Static: staticConfig(), KV: kv, Swap: func(z *authdns.Zone) { mu.Lock(); zone = z; mu.Unlock() }}
	last := func() *authdns.Zone { mu.Lock(); defer mu.Unlock(); return zone }
	if err := w.ServeStatic(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	a := func(name string) string {
		return strings.Join(rdata(ask(last(), name+"."+testDomain, dns.TypeA).Answer, dns.TypeA), ",")
	}
	testutil.Eventually(t, 5*time.Second, "alice from the store", func() (bool, string) { g := a("alice"); return g == "192.0.2.10", g })

	next := staticConfig()
	next.TTL = 120
	next.Entries = []Entry{{Subdomain: "www", Records: Records{A: []string{"192.0.2.81"}}}}
	if err := w.SetStatic(next); err != nil {
		t.Fatal(err)
	}
	if got := a("www"); got != "192.0.2.81" {
		t.Fatalf("www = %q after SetStatic, want 192.0.2.81", got)
	}
	if got := a("alice"); got != "192.0.2.10" {
		t.Fatalf("alice = %q after SetStatic: the store's rows were lost", got)
	}
	if rr := ask(last(), "www."+testDomain, dns.TypeA).Answer; len(rr) != 1 || rr[0].Header().Ttl != 120 {
		t.Fatalf("www's TTL after SetStatic: %v, want 120", rr)
	}

	bad := next
	bad.Root = Records{CNAME: "elsewhere.example."} // no CNAME at the apex
	if err := w.SetStatic(bad); err == nil {
		t.Fatal("a static part that cannot build was accepted")
	}
	if got := a("www"); got != "192.0.2.81" {
		t.Fatalf("www = %q after a refused SetStatic, want the zone before it", got)
	}
	if w.Static.Root.CNAME != "" {
		t.Fatal("a refused SetStatic left its Static in place")
	}
}
