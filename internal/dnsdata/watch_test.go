package dnsdata

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/authdns"
	"github.com/pryv/pryv-tls/internal/platformdb"
	"github.com/pryv/pryv-tls/internal/platformdb/platformdbtest"
	"github.com/pryv/pryv-tls/internal/testutil"
)

// TestWatcherEndToEnd drives a real DNS server through a Watcher fed by a
// real embedded etcd, asking over UDP and TCP.
func TestWatcherEndToEnd(t *testing.T) {
	db := platformdbtest.Open(t)
	rows := Rows{KV: db}
	ctx := testCtx(t)

	// Rows that exist before the watcher starts.
	if err := rows.SetCoreInfo(ctx, CoreInfo{ID: "core0", IP: "127.0.0.4", Available: true}); err != nil {
		t.Fatal(err)
	}
	if err := rows.SetUserCore(ctx, "early", "core0"); err != nil {
		t.Fatal(err)
	}

	h := newHarness(t, db, staticConfig())

	// Before the rows are read a name the zone lacks may exist (a user, a
	// core): SERVFAIL, which a resolver does not cache as it would NXDOMAIN.
	t.Run("static zone before PlatformDB is read", func(t *testing.T) {
		for _, netw := range []string{"udp", "tcp"} {
			resp := mustQuery(t, netw, h.addr, testDomain, dns.TypeSOA)
			if resp.Rcode != dns.RcodeSuccess || !resp.Authoritative || soaOf(resp.Answer) == nil {
				t.Errorf("%s SOA: %v", netw, resp)
			}
			resp = mustQuery(t, netw, h.addr, testDomain, dns.TypeNS)
			if got := rdata(resp.Answer, dns.TypeNS); !slices.Equal(got, []string{"core.mc.example.com."}) {
				t.Errorf("%s NS %q", netw, got)
			}
			if got := rdata(resp.Extra, dns.TypeA); !slices.Equal(got, []string{"127.0.0.1"}) {
				t.Errorf("%s NS glue %q", netw, got)
			}
			for name, want := range map[string]string{testDomain: "192.0.2.1", "www." + testDomain: "192.0.2.80", "core." + testDomain: "127.0.0.1", "early." + testDomain: "SERVFAIL"} {
				if got := answerA(netw, h.addr, name); got != want {
					t.Errorf("%s A %s = %s, want %s", netw, name, got, want)
				}
			}
		}
		if n := h.swaps.Load(); n != 1 {
			t.Errorf("%d swaps before Run, want 1 (ServeStatic)", n)
		}
	})

	h.run()
	h.waitA("udp", "early."+testDomain, "127.0.0.4")
	serial0 := h.serial()
	if serial0 == 0 {
		t.Errorf("serial still 0 after the first listing")
	}

	t.Run("user on a new core", func(t *testing.T) {
		if err := rows.SetUserCore(ctx, "alice", "core1"); err != nil {
			t.Fatal(err)
		}
		if err := rows.SetCoreInfo(ctx, CoreInfo{ID: "core1", IP: "127.0.0.5", Available: true}); err != nil {
			t.Fatal(err)
		}
		h.waitA("udp", "alice."+testDomain, "127.0.0.5")
		h.waitA("tcp", "alice."+testDomain, "127.0.0.5")
		h.waitA("tcp", "ALICE."+strings.ToUpper(testDomain), "127.0.0.5")
		// The reserved names follow the available cores.
		h.waitA("udp", "reg."+testDomain, "127.0.0.4,127.0.0.5")
	})

	var serial1 uint32
	t.Run("serial increases with the zone", func(t *testing.T) {
		serial1 = h.serial()
		if serial1 <= serial0 {
			t.Errorf("serial %d after a change, was %d", serial1, serial0)
		}
	})

	t.Run("user moves", func(t *testing.T) {
		if err := rows.SetCoreInfo(ctx, CoreInfo{ID: "core2", IP: "127.0.0.6", IPv6: "::1", Available: true}); err != nil {
			t.Fatal(err)
		}
		if err := rows.SetUserCore(ctx, "alice", "core2"); err != nil {
			t.Fatal(err)
		}
		h.waitA("udp", "alice."+testDomain, "127.0.0.6")
		h.waitA("tcp", "alice."+testDomain, "127.0.0.6")
		resp := mustQuery(t, "tcp", h.addr, "alice."+testDomain, dns.TypeAAAA)
		if got := rdata(resp.Answer, dns.TypeAAAA); !slices.Equal(got, []string{"::1"}) {
			t.Errorf("AAAA %q", got)
		}
		if s := h.serial(); s <= serial1 {
			t.Errorf("serial %d after a move, was %d", s, serial1)
		}
	})

	t.Run("write to answer latency", func(t *testing.T) {
		const n = 50
		for i := range n {
			if err := rows.SetCoreInfo(ctx, CoreInfo{ID: fmt.Sprintf("lat%d", i), IP: fmt.Sprintf("127.0.1.%d", i+1)}); err != nil {
				t.Fatal(err)
			}
		}
		h.waitA("udp", fmt.Sprintf("lat%d.%s", n-1, testDomain), fmt.Sprintf("127.0.1.%d", n))

		var lat, writes []time.Duration
		for i := range n {
			want := fmt.Sprintf("127.0.1.%d", i+1)
			w0 := time.Now()
			if err := rows.SetUserCore(ctx, "mover", fmt.Sprintf("lat%d", i)); err != nil {
				t.Fatal(err)
			}
			t0 := time.Now() // the write has returned
			writes = append(writes, t0.Sub(w0))
			deadline := t0.Add(5 * time.Second)
			for {
				got := answerA("udp", h.addr, "mover."+testDomain)
				if got == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("change %d: mover still answers %s 5 s after the write, want %s", i, got, want)
				}
				time.Sleep(200 * time.Microsecond)
			}
			lat = append(lat, time.Since(t0))
		}
		p50, p99, worst := percentile(lat, 50), percentile(lat, 99), slices.Max(lat)
		t.Logf("write-to-answer latency over %d changes (UDP, -race=%v): p50 %v, p99 %v, max %v (write itself: p50 %v)",
			n, raceEnabled, p50.Round(time.Microsecond), p99.Round(time.Microsecond), worst.Round(time.Microsecond),
			percentile(writes, 50).Round(time.Microsecond))
		if p99 >= time.Second {
			t.Errorf("p99 write-to-answer latency %v, target < 1 s", p99)
		}
	})

	t.Run("deleted user is NXDOMAIN with the SOA", func(t *testing.T) {
		if err := rows.DeleteUser(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		h.waitA("udp", "alice."+testDomain, "NXDOMAIN")
		for _, netw := range []string{"udp", "tcp"} {
			resp := mustQuery(t, netw, h.addr, "alice."+testDomain, dns.TypeA)
			if resp.Rcode != dns.RcodeNameError || len(resp.Answer) != 0 || !resp.Authoritative {
				t.Errorf("%s: %v", netw, resp)
			}
			if s := soaOf(resp.Ns); s == nil || s.Hdr.Name != "mc.example.com." {
				t.Errorf("%s: no zone SOA in authority: %v", netw, resp.Ns)
			}
		}
	})

	t.Run("dns-record row appears and disappears", func(t *testing.T) {
		before := h.serial()
		if err := rows.SetRecords(ctx, Entry{Subdomain: "app", Records: Records{A: []string{"192.0.2.90"}, TXT: []string{"hello"}}}); err != nil {
			t.Fatal(err)
		}
		h.waitA("udp", "app."+testDomain, "192.0.2.90")
		resp := mustQuery(t, "tcp", h.addr, "app."+testDomain, dns.TypeTXT)
		if got := txtValues(resp.Answer); !slices.Equal(got, []string{"hello"}) {
			t.Errorf("TXT %q", got)
		}
		mid := h.serial()
		if mid <= before {
			t.Errorf("serial %d after adding a record, was %d", mid, before)
		}
		if err := rows.DeleteRecords(ctx, "app"); err != nil {
			t.Fatal(err)
		}
		h.waitA("udp", "app."+testDomain, "NXDOMAIN")
		h.waitA("tcp", "app."+testDomain, "NXDOMAIN")
		if s := h.serial(); s <= mid {
			t.Errorf("serial %d after removing a record, was %d", s, mid)
		}
	})

	t.Run("static entry wins over a row, warned once", func(t *testing.T) {
		if err := rows.SetRecords(ctx, Entry{Subdomain: "www", Records: Records{A: []string{"192.0.2.99"}}}); err != nil {
			t.Fatal(err)
		}
		conflict := func() int {
			n := 0
			for _, l := range h.logs.all() {
				if strings.Contains(l, "www.mc.example.com") && strings.Contains(l, "dns-record row") {
					n++
				}
			}
			return n
		}
		testutil.Eventually(t, 10*time.Second, "conflict warning", func() (bool, string) {
			return conflict() == 1, fmt.Sprint(h.logs.all())
		})
		if got := answerA("udp", h.addr, "www."+testDomain); got != "192.0.2.80" {
			t.Errorf("www A %s, want the static 192.0.2.80", got)
		}
		// Another rebuild: the same conflict is not logged again.
		if err := rows.SetUserCore(ctx, "later", "core1"); err != nil {
			t.Fatal(err)
		}
		h.waitA("udp", "later."+testDomain, "127.0.0.5")
		if n := conflict(); n != 1 {
			t.Errorf("conflict logged %d times, want once", n)
		}
	})
}

// TestWatcherBurstAndRestart writes 1,000 users at once, then restarts the
// watcher on the same store.
func TestWatcherBurstAndRestart(t *testing.T) {
	db := platformdbtest.Open(t)
	rows := Rows{KV: db}
	ctx := testCtx(t)
	if err := rows.SetCoreInfo(ctx, CoreInfo{ID: "core1", IP: "127.0.0.5", IPv6: "::5", Available: true}); err != nil {
		t.Fatal(err)
	}
	if err := rows.SetCoreInfo(ctx, CoreInfo{ID: "core2", CNAME: "edge.example.net", Available: true}); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, db, staticConfig())
	h.run()
	h.waitA("udp", "core1."+testDomain, "127.0.0.5")

	const users = 1000
	names0 := h.srv.Zone().Names()
	swaps0 := h.swaps.Load()
	begin := time.Now()
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		errs = make(chan error, 32)
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= users {
					return
				}
				core := "core1"
				if i%10 == 9 {
					core = "core2"
				}
				if err := rows.SetUserCore(ctx, fmt.Sprintf("user%04d", i), core); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	written := time.Since(begin)
	testutil.Eventually(t, 20*time.Second, "all users in the zone", func() (bool, string) {
		n := h.srv.Zone().Names()
		return n == names0+users, fmt.Sprintf("%d names, want %d", n, names0+users)
	})
	rebuilds := h.swaps.Load() - swaps0
	t.Logf("burst: %d user writes in %v, zone complete %v after the first, %d rebuilds", users, written.Round(time.Millisecond),
		time.Since(begin).Round(time.Millisecond), rebuilds)
	if rebuilds < 1 || rebuilds > users/5 {
		t.Errorf("%d rebuilds for %d writes: a burst must be coalesced (want at most %d)", rebuilds, users, users/5)
	}
	// At most one rebuild per 100 ms (Spacing), plus the one at the end.
	if most := int64(time.Since(begin)/(100*time.Millisecond)) + 2; rebuilds > most {
		t.Errorf("%d rebuilds in %v: want at most %d (one per 100 ms)", rebuilds, time.Since(begin).Round(time.Millisecond), most)
	}

	// Every user answers, over UDP (and a sample over TCP).
	check := func(addr string) {
		t.Helper()
		for i := range users {
			name := fmt.Sprintf("user%04d.%s", i, testDomain)
			if i%10 == 9 {
				resp := mustQuery(t, "udp", addr, name, dns.TypeA)
				if got := rdata(resp.Answer, dns.TypeCNAME); !slices.Equal(got, []string{"edge.example.net."}) {
					t.Fatalf("%s: CNAME %q", name, got)
				}
				continue
			}
			netw := "udp"
			if i%100 == 0 {
				netw = "tcp"
			}
			if got := answerA(netw, addr, name); got != "127.0.0.5" {
				t.Fatalf("%s %s: %s", netw, name, got)
			}
		}
	}
	check(h.addr)

	t.Run("restart rebuilds the same zone", func(t *testing.T) {
		h.stop()
		old := h.srv.Zone()
		h2 := newHarness(t, db, staticConfig())
		h2.run()
		testutil.Eventually(t, 10*time.Second, "restarted zone", func() (bool, string) {
			z := h2.srv.Zone()
			return z.Names() == old.Names(), fmt.Sprintf("%d names, want %d", z.Names(), old.Names())
		})
		nz := h2.srv.Zone()
		if nz.Len() != old.Len() {
			t.Errorf("restarted zone has %d records, was %d", nz.Len(), old.Len())
		}
		// A start writes SerialRow: the serial is its revision, past the old one.
		row, err := db.Get(ctx, SerialRow)
		if err != nil {
			t.Fatalf("the serial row after a start: %v", err)
		}
		if nz.Serial() != uint32(row.Revision) || nz.Serial() <= old.Serial() {
			t.Errorf("restarted serial %d, was %d; the serial row's revision %d", nz.Serial(), old.Serial(), row.Revision)
		}
		check(h2.addr)
		for _, name := range []string{testDomain, "reg." + testDomain, "core." + testDomain, "www." + testDomain, "core2." + testDomain} {
			for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeNS, dns.TypeTXT} {
				a := mustQuery(t, "udp", h.addr, name, qt)
				b := mustQuery(t, "udp", h2.addr, name, qt)
				if a.Rcode != b.Rcode || !slices.Equal(rdata(a.Answer, qt), rdata(b.Answer, qt)) || len(a.Answer) != len(b.Answer) {
					t.Errorf("%s %s: before restart %v, after %v", name, dns.TypeToString[qt], a.Answer, b.Answer)
				}
			}
		}
	})
}

// TestWatcherResetRelists checks the EventReset path with a scripted store:
// the watcher lists again and the zone follows the new listing.
func TestWatcherResetRelists(t *testing.T) {
	kv := newScriptedKV()
	kv.put(CoreInfoPrefix+"core1", `{"id":"core1","ip":"192.0.2.10","available":true}`)
	kv.put(UserCorePrefix+"alice", `{"core":"core1"}`)

	var (
		mu    sync.Mutex
		zones []*authdns.Zone
	)
	w := &Watcher{Static: Static{Domain: testDomain, TTL: 60}, KV: kv, Swap: func(z *authdns.Zone) {
		mu.Lock()
		zones = append(zones, z)
		mu.Unlock()
	}}
	last := func() *authdns.Zone {
		mu.Lock()
		defer mu.Unlock()
		return zones[len(zones)-1]
	}
	if err := w.ServeStatic(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return")
		}
	})
	aliceIs := func(want string) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, "alice = "+want, func() (bool, string) {
			got := strings.Join(rdata(ask(last(), "alice."+testDomain, dns.TypeA).Answer, dns.TypeA), ",")
			return got == want, got
		})
	}
	aliceIs("192.0.2.10")
	if kv.lists.Load() != int64(len(tables)) {
		t.Errorf("%d listings, want one per table", kv.lists.Load())
	}

	// An event moves alice; then history is lost while bob was added.
	kv.event(t, CoreInfoPrefix, platformdb.Event{Type: platformdb.EventPut, Entry: kv.put(CoreInfoPrefix+"core2", `{"id":"core2","ip":"192.0.2.20"}`)})
	kv.event(t, UserCorePrefix, platformdb.Event{Type: platformdb.EventPut, Entry: kv.put(UserCorePrefix+"alice", `{"core":"core2"}`)})
	aliceIs("192.0.2.20")
	kv.put(UserCorePrefix+"bob", `{"core":"core1"}`)
	kv.event(t, UserCorePrefix, platformdb.Event{Type: platformdb.EventReset})
	testutil.Eventually(t, 5*time.Second, "bob after the reset", func() (bool, string) {
		got := strings.Join(rdata(ask(last(), "bob."+testDomain, dns.TypeA).Answer, dns.TypeA), ",")
		return got == "192.0.2.10", got
	})
	if n := kv.lists.Load(); n != 2*int64(len(tables)) {
		t.Errorf("%d listings after a reset, want %d", n, 2*len(tables))
	}
	if s := last().Serial(); s != uint32(kv.rev.Load()) {
		t.Errorf("serial %d after relisting, want the listing revision %d", s, kv.rev.Load())
	}
	// A row that cannot be read is no user.
	kv.event(t, UserCorePrefix, platformdb.Event{Type: platformdb.EventPut, Entry: kv.put(UserCorePrefix+"bob", `{broken`)})
	testutil.Eventually(t, 5*time.Second, "bob gone", func() (bool, string) {
		r := ask(last(), "bob."+testDomain, dns.TypeA)
		return r.Rcode == dns.RcodeNameError, dns.RcodeToString[r.Rcode]
	})
}

// scriptedKV lists from a map and delivers the events the test sends.
type scriptedKV struct {
	mu      sync.Mutex
	data    map[string]platformdb.Entry
	rev     atomic.Int64
	lists   atomic.Int64
	watches map[string]chan platformdb.Event
}

func newScriptedKV() *scriptedKV {
	return &scriptedKV{data: map[string]platformdb.Entry{}, watches: map[string]chan platformdb.Event{}}
}

func (k *scriptedKV) put(key, value string) platformdb.Entry {
	k.mu.Lock()
	defer k.mu.Unlock()
	e := platformdb.Entry{Key: key, Value: []byte(value), Revision: k.rev.Add(1)}
	k.data[key] = e
	return e
}

// Put is the watcher's write of SerialRow.
func (k *scriptedKV) Put(_ context.Context, key string, value []byte) (int64, error) {
	return k.put(key, string(value)).Revision, nil
}

func (k *scriptedKV) List(_ context.Context, prefix string) ([]platformdb.Entry, int64, error) {
	k.lists.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []platformdb.Entry
	for key, e := range k.data {
		if strings.HasPrefix(key, prefix) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b platformdb.Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, k.rev.Load(), nil
}

func (k *scriptedKV) Watch(ctx context.Context, prefix string, _ int64) <-chan platformdb.Event {
	ch := make(chan platformdb.Event)
	k.mu.Lock()
	k.watches[prefix] = ch
	k.mu.Unlock()
	out := make(chan platformdb.Event)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-ch:
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// event delivers ev on the current watch of prefix (waiting for one).
func (k *scriptedKV) event(t *testing.T, prefix string, ev platformdb.Event) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		k.mu.Lock()
		ch := k.watches[prefix]
		k.mu.Unlock()
		if ch != nil {
			select {
			case ch <- ev:
				return
			case <-time.After(50 * time.Millisecond):
			}
		} else {
			time.Sleep(time.Millisecond)
		}
	}
	t.Fatalf("no watcher took the event for %s", prefix)
}

func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

// Watcher.Cores hears the core-info rows after a rebuild that follows a
// change of them, and only then.
func TestWatcherCores(t *testing.T) {
	var got []string
	w := &Watcher{Static: staticConfig(), Swap: func(*authdns.Zone) {}, Cores: func(cs []CoreInfo) {
		var ids []string
		for _, c := range cs {
			ids = append(ids, c.ID+"="+c.URL)
		}
		got = append(got, strings.Join(ids, ","))
	}}
	if err := w.ServeStatic(); err != nil {
		t.Fatal(err)
	}
	put := func(key, value string) {
		w.rows.apply(platformdb.Event{Type: platformdb.EventPut, Entry: platformdb.Entry{Key: key, Value: []byte(value)}})
	}
	put(CoreInfoPrefix+"core2", `{"ip":"192.0.2.2","url":"https://api-2.example.org"}`) // no id in the value: the key's
	put(CoreInfoPrefix+"core1", `{"id":"core1","ip":"192.0.2.1"}`)
	if err := w.rebuild(); err != nil {
		t.Fatal(err)
	}
	put(UserCorePrefix+"alice", `{"core":"core1"}`) // not a core: no call
	if err := w.rebuild(); err != nil {
		t.Fatal(err)
	}
	w.rows.apply(platformdb.Event{Type: platformdb.EventDelete, Entry: platformdb.Entry{Key: CoreInfoPrefix + "core2"}})
	if err := w.rebuild(); err != nil {
		t.Fatal(err)
	}
	want := []string{"", "core1=,core2=https://api-2.example.org", "core1="}
	if !slices.Equal(got, want) {
		t.Fatalf("Cores heard %q, want %q", got, want)
	}
}

// TestWatcherListedOnce: Listed runs once, when the first listing's zone is
// already served (a user row written before the start answers), and not
// again for later changes.
func TestWatcherListedOnce(t *testing.T) {
	db := platformdbtest.Open(t)
	rows := Rows{KV: db}
	ctx := testCtx(t)
	if err := rows.SetCoreInfo(ctx, CoreInfo{ID: "core0", IP: "127.0.0.4", Available: true}); err != nil {
		t.Fatal(err)
	}
	if err := rows.SetUserCore(ctx, "early", "core0"); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, db, staticConfig())
	var calls atomic.Int32
	answered := make(chan string, 4)
	h.w.Listed = func() {
		calls.Add(1)
		answered <- answerA("udp", h.addr, "early."+testDomain)
	}
	h.run()
	select {
	case got := <-answered:
		if got != "127.0.0.4" {
			t.Errorf("A early at Listed = %s, want 127.0.0.4", got)
		}
	case <-time.After(time.Minute):
		t.Fatal("Listed never called")
	}
	if err := rows.SetUserCore(ctx, "late", "core0"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for answerA("udp", h.addr, "late."+testDomain) != "127.0.0.4" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("Listed called %d times, want 1", n)
	}
}
