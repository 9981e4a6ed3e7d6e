package platformdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func TestEtcdContract(t *testing.T) {
	t.Parallel()
	testStore(t, func(t *testing.T) Store { return openEtcd(t, "") })
}

func TestConnContract(t *testing.T) {
	t.Parallel()
	testStore(t, func(t *testing.T) Store {
		e := openEtcd(t, "")
		return connect(t, e, 0)
	})
}

// ---- embedded etcd specifics ----

func TestOpenStartupTimeAndMemory(t *testing.T) {
	rss0 := vmRSS(t)
	start := time.Now()
	e := openEtcd(t, "")
	ready := time.Since(start)
	rss1 := vmRSS(t)
	for i := range 100 {
		mustPut(t, e, fmt.Sprintf("k/%d", i), make([]byte, 2048))
	}
	rss2 := vmRSS(t)
	t.Logf("start-to-ready %v (peer %s, client %s); VmRSS %d kB before Open, %d kB after (+%d kB), %d kB after 100 puts of 2 KiB",
		ready.Round(time.Millisecond), e.PeerAddress(), e.ClientAddress(), rss0, rss1, rss1-rss0, rss2)

	fi, err := os.Stat(e.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Fatalf("data dir mode %v, want 0700", perm)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// Restart on the same data dir.
	start = time.Now()
	openEtcd(t, e.DataDir())
	t.Logf("restart-to-ready %v", time.Since(start).Round(time.Millisecond))

	// A few more fresh starts: the election delay is random (1 to 6
	// heartbeats).
	var times []string
	for range 4 {
		start := time.Now()
		e := openEtcd(t, "")
		times = append(times, time.Since(start).Round(time.Millisecond).String())
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("more fresh starts: %s", strings.Join(times, " "))
}

func vmRSS(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Logf("no /proc/self/status: %v", err)
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return n
		}
	}
	return 0
}

func TestOpenPortTaken(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := filepath.Join(t.TempDir(), "db")
	log, _ := testLogger(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = Open(ctx, Options{DataDir: dir, PeerAddress: "127.0.0.1:0", ClientAddress: ln.Addr().String(), Logger: log})
	if err == nil {
		t.Fatal("Open on a taken port succeeded")
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("error does not name the data dir and address: %v", err)
	}
	t.Log(err)

	if _, err := Open(ctx, Options{PeerAddress: "127.0.0.1:0"}); err == nil {
		t.Fatal("Open without a data dir succeeded")
	}
	if _, err := Open(ctx, Options{DataDir: dir, ClientAddress: "127.0.0.1"}); err == nil {
		t.Fatal("Open with a bad address succeeded")
	}
}

func TestRestartKeepsData(t *testing.T) {
	t.Parallel()
	e := openEtcd(t, "")
	dir := e.DataDir()
	want := map[string][]byte{}
	revs := map[string]int64{}
	for i := range 20 {
		k := fmt.Sprintf("tls-cert/%02d.example.com", i)
		v := []byte{byte(i), 0, byte(i)}
		want[k] = v
		revs[k] = mustPut(t, e, k, v)
	}
	mustDelete(t, e, "tls-cert/00.example.com")
	delete(want, "tls-cert/00.example.com")
	_, lastRev, err := e.List(testCtx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e2 := openEtcd(t, dir)
	entries, rev, err := e2.List(testCtx(t), "tls-cert/")
	if err != nil {
		t.Fatal(err)
	}
	if rev < lastRev || len(entries) != len(want) {
		t.Fatalf("after restart: %d entries at rev %d, want %d at >= %d", len(entries), rev, len(want), lastRev)
	}
	for _, en := range entries {
		if !bytes.Equal(en.Value, want[en.Key]) || en.Revision != revs[en.Key] {
			t.Fatalf("after restart %q = %x rev %d, want %x rev %d", en.Key, en.Value, en.Revision, want[en.Key], revs[en.Key])
		}
	}
	// The history survived too: a watch replays it.
	ch := e2.Watch(testCtx(t), "tls-cert/", revs["tls-cert/19.example.com"])
	got := recvN(t, ch, 2)
	if got[0].Entry.Key != "tls-cert/19.example.com" || got[1].Type != EventDelete {
		t.Fatalf("replay after restart: %+v", got)
	}
	// The membership records the new (port 0) peer address.
	ml, err := e2.Client().MemberList(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 1 || len(ml.Members[0].PeerURLs) != 1 || ml.Members[0].PeerURLs[0] != "http://"+e2.PeerAddress() {
		t.Fatalf("members after restart: %+v, peer %s", ml.Members, e2.PeerAddress())
	}
}

// TestWatchResume breaks the etcd watch under a Watch many times while
// writes go on: every event arrives once, in order.
func TestWatchResume(t *testing.T) {
	t.Parallel()
	e := openEtcd(t, "")
	ctx := testCtx(t)
	ch := e.Watch(ctx, "r/", 0)
	const n = 200
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := e.Put(ctx, fmt.Sprintf("r/%03d", i), []byte(strconv.Itoa(i))); err != nil {
				done <- err
				return
			}
			if i%10 == 5 {
				e.breakWatches()
			}
		}
		done <- nil
	}()
	var last int64
	for i := range n {
		var ev Event
		select {
		case ev = <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d did not arrive", i)
		}
		if want := fmt.Sprintf("r/%03d", i); ev.Type != EventPut || ev.Entry.Key != want || ev.Entry.Revision <= last {
			t.Fatalf("event %d = %+v, want put %s after revision %d", i, ev, want, last)
		}
		last = ev.Entry.Revision
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.breakWatches()
	expectNone(t, ch)
	mustPut(t, e, "r/last", nil)
	if ev := recvN(t, ch, 1)[0]; ev.Entry.Key != "r/last" {
		t.Fatalf("after the last break: %+v", ev)
	}
}

// TestWatchResumeAcrossRestart: a Conn's Watch survives its member's
// restart (same data dir, same address) and misses nothing written while
// the member was down... through another connection once it is back.
func TestWatchResumeAcrossRestart(t *testing.T) {
	t.Parallel()
	e := openEtcd(t, "")
	dir, addr := e.DataDir(), e.ClientAddress()
	c := connect(t, e, time.Second)
	ctx := testCtx(t)
	ch := c.Watch(ctx, "m/", 0)
	mustPut(t, e, "m/1", []byte("a"))
	if ev := recvN(t, ch, 1)[0]; ev.Entry.Key != "m/1" {
		t.Fatalf("%+v", ev)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openEtcdAt(t, dir, addr)
	mustPut(t, e2, "m/2", []byte("b"))
	mustDelete(t, e2, "m/1")
	got := recvN(t, ch, 2)
	if got[0].Entry.Key != "m/2" || got[1].Type != EventDelete || got[1].Entry.Key != "m/1" {
		t.Fatalf("after restart: %+v", got)
	}
	expectNone(t, ch)
}

func TestWatchCompaction(t *testing.T) {
	t.Parallel()
	e := openEtcd(t, "")
	ctx := testCtx(t)
	first := mustPut(t, e, "c/1", []byte("1"))
	for i := 2; i <= 5; i++ {
		mustPut(t, e, fmt.Sprintf("c/%d", i), []byte("x"))
	}
	last := mustPut(t, e, "other", []byte("x"))
	if _, err := e.Client().Compact(ctx, last, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	ch := e.Watch(ctx, "c/", first)
	if ev := recvN(t, ch, 1)[0]; ev.Type != EventReset || ev.Entry.Key != "" {
		t.Fatalf("first event after compaction = %+v, want EventReset", ev)
	}
	// The consumer lists again, then carries on.
	entries, rev, err := e.List(ctx, "c/")
	if err != nil || len(entries) != 5 {
		t.Fatalf("List after reset: %d entries, %v", len(entries), err)
	}
	r6 := mustPut(t, e, "c/6", []byte("6"))
	for {
		ev := recvN(t, ch, 1)[0]
		if ev.Type == EventReset {
			t.Fatalf("second reset")
		}
		if ev.Entry.Revision <= rev {
			continue // already in the listing
		}
		if ev.Entry.Key != "c/6" || ev.Entry.Revision != r6 {
			t.Fatalf("after reset: %+v", ev)
		}
		break
	}
	// A watch from a compacted revision while the store is compacted again
	// under a live watcher resumes normally (its position is after it).
	expectNone(t, ch)
}

// TestLockHolderDies: a holder that dies without releasing (its client
// stops, the lease is not revoked) loses the lock after its TTL.
func TestLockHolderDies(t *testing.T) {
	t.Parallel()
	e := openEtcd(t, "")
	ctx := testCtx(t)
	c := connect(t, e, 0)
	const ttl = time.Second
	l1, err := c.Lock(ctx, "renewer", ttl)
	if err != nil {
		t.Fatal(err)
	}
	c.kill()
	expectDone(t, l1.Lost(), time.Second) // its own client stopped: it knows
	start := time.Now()
	l2, err := e.Lock(ctx, "renewer", ttl)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("second holder acquired %v after the first died (ttl %v)", took.Round(time.Millisecond), ttl)
	if took > ttl+3*time.Second {
		t.Fatalf("acquired after %v, ttl %v", took, ttl)
	}
	if l2.Fence() <= l1.Fence() {
		t.Fatalf("fence %d after %d", l2.Fence(), l1.Fence())
	}
}

// TestLockReleasedOnClose: a clean Close revokes the lease, so the next
// holder does not wait for the TTL.
func TestLockReleasedOnClose(t *testing.T) {
	t.Parallel()
	e := openEtcd(t, "")
	ctx := testCtx(t)
	c := connect(t, e, 0)
	l1, err := c.Lock(ctx, "renewer", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan time.Time, 1)
	go func() {
		l2, err := e.Lock(ctx, "renewer", time.Minute)
		if err != nil {
			t.Error(err)
			got <- time.Time{}
			return
		}
		_ = l2
		got <- time.Now()
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	expectDone(t, l1.Lost(), time.Second)
	select {
	case at := <-got:
		t.Logf("next holder acquired %v after Close", at.Sub(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("lock not released by Close")
	}
}

// TestLockLostOnRevoke: Lost closes when the lease is taken away under the
// holder (here revoked by an operator).
func TestLockLostOnRevoke(t *testing.T) {
	t.Parallel()
	e := openEtcd(t, "")
	ctx := testCtx(t)
	l, err := e.Lock(ctx, "renewer", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.Client().Get(ctx, lockPrefix+"renewer/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("lock keys: %v %v", resp, err)
	}
	if resp.Kvs[0].CreateRevision != l.Fence() {
		t.Fatalf("fence %d, key created at %d", l.Fence(), resp.Kvs[0].CreateRevision)
	}
	if _, err := e.Client().Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	expectDone(t, l.Lost(), 5*time.Second)
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock of a lost lock: %v", err)
	}
}

// TestLockWaiterAbortedByClose: Close ends a Lock that waits.
func TestLockWaiterAbortedByClose(t *testing.T) {
	t.Parallel()
	e := openEtcd(t, "")
	ctx := testCtx(t)
	c := connect(t, e, 0)
	if _, err := e.Lock(ctx, "renewer", time.Minute); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Lock(ctx, "renewer", time.Minute)
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("waiting Lock after Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiting Lock not aborted by Close")
	}
}

// TestUnavailable: a Conn whose member is gone fails with ErrUnavailable
// once its request timeout passes (not ErrClosed: the Conn is open).
func TestUnavailable(t *testing.T) {
	t.Parallel()
	e := openEtcd(t, "")
	c := connect(t, e, 300*time.Millisecond)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	start := time.Now()
	_, err := c.Get(ctx, "k")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get without a member: %v, want ErrUnavailable", err)
	}
	_, err = c.Put(ctx, "k", []byte("v"))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Put without a member: %v, want ErrUnavailable", err)
	}
	if _, err := c.Lock(ctx, "l", time.Second); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Lock without a member: %v, want ErrUnavailable", err)
	}
	t.Logf("3 calls failed in %v: %v", time.Since(start).Round(time.Millisecond), err)
	// The caller's own deadline counts too.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Get(short, "k"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get with a short ctx: %v", err)
	}
	if _, err := Connect(ctx, ConnectOptions{Endpoints: []string{e.ClientAddress()}, RequestTimeout: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}); err == nil ||
		!strings.Contains(err.Error(), e.ClientAddress()) {
		t.Fatalf("Connect to nothing: %v", err)
	}
}

// TestRawValue: values are stored as given (the store adds no encoding).
func TestRawValue(t *testing.T) {
	t.Parallel()
	e := openEtcd(t, "")
	v := []byte{0, 0xc3, 0x28, 0, 0xff}
	rev := mustPut(t, e, "raw/k", v)
	resp, err := e.Client().Get(testCtx(t), "raw/k")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("%v %v", resp, err)
	}
	if !bytes.Equal(resp.Kvs[0].Value, v) || resp.Kvs[0].ModRevision != rev {
		t.Fatalf("raw value %x rev %d, want %x rev %d", resp.Kvs[0].Value, resp.Kvs[0].ModRevision, v, rev)
	}
}

// TestQuiet: a clean life (start, writes, watch, lock, close) logs nothing
// at warning level or above.
func TestQuiet(t *testing.T) {
	t.Parallel()
	log, rec := testLogger(t)
	dir := filepath.Join(t.TempDir(), "db")
	ctx := testCtx(t)
	e, err := Open(ctx, Options{DataDir: dir, PeerAddress: "127.0.0.1:0", ClientAddress: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ch := e.Watch(ctx, "q/", 0)
	mustPut(t, e, "q/1", []byte("v"))
	recvN(t, ch, 1)
	l, err := e.Lock(ctx, "q", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Lock(ctx, "held-at-close", time.Second); err != nil {
		t.Fatal(err)
	}
	e.Watch(ctx, "", 0)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// Restart and close again.
	e, err = Open(ctx, Options{DataDir: dir, PeerAddress: "127.0.0.1:0", ClientAddress: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := rec.loud(); len(n) > 0 {
		t.Fatalf("logged at warning level or above:\n%s", strings.Join(n, "\n"))
	}
}

// ---- helpers ----

// openEtcd opens a member on dir (a fresh one if "") with port-0 addresses;
// the test's cleanup closes it.
func openEtcd(t testing.TB, dir string) *Etcd {
	return openEtcdAt(t, dir, "127.0.0.1:0")
}

func openEtcdAt(t testing.TB, dir, clientAddr string) *Etcd {
	t.Helper()
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "db")
	}
	log, _ := testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := Open(ctx, Options{
		DataDir:       dir,
		PeerAddress:   "127.0.0.1:0",
		ClientAddress: clientAddr,
		Logger:        log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// connect returns a second, independent client Store on e's member.
func connect(t testing.TB, e *Etcd, timeout time.Duration) *Conn {
	t.Helper()
	log, _ := testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, ConnectOptions{Endpoints: []string{e.ClientAddress()}, Logger: log, RequestTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// recorder is a slog.Handler that writes records at Warn and above to the
// test log (until the test ends) and keeps them.
type recorder struct {
	mu    *sync.Mutex
	t     testing.TB
	done  *bool
	recs  *[]string
	attrs []slog.Attr
}

func testLogger(t testing.TB) (*slog.Logger, *recorder) {
	r := &recorder{mu: new(sync.Mutex), t: t, done: new(bool), recs: new([]string)}
	t.Cleanup(func() { r.mu.Lock(); *r.done = true; r.mu.Unlock() })
	return slog.New(r), r
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || testing.Verbose() && os.Getenv("PLATFORMDB_DEBUG") != ""
}

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	for _, a := range r.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	rec.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec.Level >= slog.LevelWarn {
		*r.recs = append(*r.recs, b.String())
	}
	if !*r.done {
		r.t.Log(b.String())
	}
	return nil
}

func (r *recorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *r
	c.attrs = append(append([]slog.Attr(nil), r.attrs...), attrs...)
	return &c
}

func (r *recorder) WithGroup(string) slog.Handler { return r }

func (r *recorder) loud() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), *r.recs...)
}

// TestZapBridge: warnings and errors reach slog with their fields; info
// does not; shutdown noise is demoted to debug once closing.
func TestZapBridge(t *testing.T) {
	t.Parallel()
	log, rec := testLogger(t)
	var closing atomic.Bool
	zl := newZapLogger(log, "etcd", &closing).With(zap.String("member", "m1"))
	zl.Info("started")
	zl.Warn("slow fdatasync", zap.Duration("took", time.Second))
	noise := func() {
		zl.Error("setting up serving from embedded etcd failed.", zap.Error(errors.New("accept tcp 127.0.0.1:1: use of closed network connection")))
	}
	noise()
	closing.Store(true)
	noise()
	zl.Error("real trouble", zap.Error(errors.New("disk full")))
	got := rec.loud()
	want := []string{
		"WARN slow fdatasync component=etcd member=m1 took=1s",
		"ERROR setting up serving from embedded etcd failed. component=etcd member=m1 error=accept tcp 127.0.0.1:1: use of closed network connection",
		"ERROR real trouble component=etcd member=m1 error=disk full",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A one-member cluster's member leads it.
func TestIsLeaderSingleMember(t *testing.T) {
	t.Parallel()
	e := openEtcd(t, "")
	if !e.IsLeader() {
		t.Fatal("the only member is not the leader")
	}
}

// TestListPages: a listing read in several requests is one snapshot: sorted,
// complete, at the first request's revision, blind to writes made between
// its requests; with or without a prefix.
func TestListPages(t *testing.T) {
	e := openEtcd(t, "")
	ctx := testCtx(t)
	for i := range 10 {
		mustPut(t, e, fmt.Sprintf("p/%02d", 9-i), []byte{byte(i)})
	}
	mustPut(t, e, "q", []byte("after p/"))
	defer func(n int64, b int) { listPage, listPageBytes, listPageHook = n, b, nil }(listPage, listPageBytes)
	listPage, listPageBytes = 3, 3*len("p/00\x00") // 3 keys a page
	pages := 0
	listPageHook = func() {
		pages++
		mustPut(t, e, fmt.Sprintf("p/%02d-late", pages), []byte("x"))
		mustPut(t, e, "p/00", []byte("changed"))
	}
	before := time.Now()
	entries, rev, err := e.List(ctx, "p/")
	if err != nil {
		t.Fatal(err)
	}
	if pages != 3 {
		t.Errorf("%d pages after the first, want 3 (10 keys, 3 a page)", pages)
	}
	var got []string
	for _, en := range entries {
		got = append(got, en.Key)
		if en.Revision > rev {
			t.Errorf("%s: revision %d after the listing's %d", en.Key, en.Revision, rev)
		}
	}
	want := []string{"p/00", "p/01", "p/02", "p/03", "p/04", "p/05", "p/06", "p/07", "p/08", "p/09"}
	if !slices.Equal(got, want) {
		t.Errorf("List(p/) = %q, want %q", got, want)
	}
	if string(entries[0].Value) != "\x09" {
		t.Errorf("p/00 = %q: a value written during the listing", entries[0].Value)
	}
	listPageHook = nil
	all, _, err := e.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(all); n != 10+3+1 || !slices.IsSortedFunc(all, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) }) || all[n-1].Key != "q" {
		t.Errorf("List(\"\") = %d entries, sorted %v, last %q", n, slices.IsSortedFunc(all, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) }), all[n-1].Key)
	}
	t.Logf("paged listings in %v", time.Since(before).Round(time.Millisecond))
}

// TestListPagesCompacted: when the listing's revision is compacted between
// two of its requests, it starts over at a new revision.
func TestListPagesCompacted(t *testing.T) {
	e := openEtcd(t, "")
	ctx := testCtx(t)
	for i := range 5 {
		mustPut(t, e, fmt.Sprintf("c/%d", i), []byte("v"))
	}
	defer func(n int64) { listPage, listPageHook = n, nil }(listPage)
	listPage = 2
	compactions := 0
	listPageHook = func() {
		if compactions > 0 {
			return
		}
		compactions++
		rev := mustPut(t, e, "c/9", []byte("during the first attempt"))
		if _, err := e.Client().Compact(ctx, rev); err != nil {
			t.Fatal(err)
		}
	}
	entries, rev, err := e.List(ctx, "c/")
	if err != nil {
		t.Fatalf("List after a compaction: %v", err)
	}
	if len(entries) != 6 || entries[5].Key != "c/9" || compactions != 1 {
		t.Errorf("List(c/) = %d entries (last %q) at rev %d, %d compactions; want the 6 keys of the second attempt", len(entries), entries[len(entries)-1].Key, rev, compactions)
	}
}

// TestLockFencedPut: a write through the lock commits while it is held and
// is refused (ErrConflict, nothing written) once its lease is gone — here
// revoked, as a holder cut off for longer than its TTL finds it — even after
// a successor took the lock and wrote.
func TestLockFencedPut(t *testing.T) {
	t.Parallel()
	e := openEtcd(t, "")
	ctx := testCtx(t)
	l1, err := e.Lock(ctx, "renewer", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l1.Put(ctx, "acme-state/a", []byte("first holder")); err != nil {
		t.Fatalf("fenced put while held: %v", err)
	}
	resp, err := e.Client().Get(ctx, lockPrefix+"renewer/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("lock keys: %v %v", resp, err)
	}
	if _, err := e.Client().Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	l2, err := e.Lock(ctx, "renewer", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Put(ctx, "acme-state/a", []byte("successor")); err != nil {
		t.Fatalf("the successor's fenced put: %v", err)
	}
	_, err = l1.Put(ctx, "acme-state/a", []byte("stale holder"))
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "no longer held") {
		t.Fatalf("fenced put by a holder whose lease is gone: %v, want ErrConflict", err)
	}
	got, err := e.Get(ctx, "acme-state/a")
	if err != nil || string(got.Value) != "successor" {
		t.Fatalf("value %q, %v: the stale holder's write landed", got.Value, err)
	}
	if err := l2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Put(ctx, "acme-state/a", []byte("after unlock")); !errors.Is(err, ErrConflict) {
		t.Fatalf("fenced put after Unlock: %v, want ErrConflict", err)
	}
}
