package platformdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// testStore is the Store contract, run against every implementation.
// open returns a fresh, empty store; it is closed by the test's cleanup.
func testStore(t *testing.T, open func(t *testing.T) Store) {
	sub := func(name string, f func(t *testing.T, s Store)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, open(t))
		})
	}

	sub("GetMissing", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		_, err := s.Get(ctx, "t/missing")
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get missing: %v, want ErrNotFound", err)
		}
	})

	sub("PutGetBinary", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		for i, v := range [][]byte{{0, 1, 0, 0xff, 0, '\n', 0x80}, {}, []byte("plain")} {
			key := fmt.Sprintf("bin/%d", i)
			rev, err := s.Put(ctx, key, v)
			if err != nil {
				t.Fatal(err)
			}
			if rev <= 0 {
				t.Fatalf("Put revision %d", rev)
			}
			e, err := s.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if e.Key != key || !bytes.Equal(e.Value, v) || e.Revision != rev {
				t.Fatalf("Get = %q %x %d, want %q %x %d", e.Key, e.Value, e.Revision, key, v, rev)
			}
		}
	})

	sub("RevisionsIncrease", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		var last int64
		for i := range 10 {
			key := fmt.Sprintf("rev/%d", i%3) // same and different keys
			rev, err := s.Put(ctx, key, []byte{byte(i)})
			if err != nil {
				t.Fatal(err)
			}
			if rev <= last {
				t.Fatalf("revision %d after %d", rev, last)
			}
			last = rev
		}
		rev, err := s.CompareAndSwap(ctx, "rev/new", []byte("x"), 0)
		if err != nil || rev <= last {
			t.Fatalf("CAS revision %d after %d: %v", rev, last, err)
		}
	})

	sub("CompareAndSwap", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		r1, err := s.Put(ctx, "cas/k", []byte("v1"))
		if err != nil {
			t.Fatal(err)
		}
		r2, err := s.CompareAndSwap(ctx, "cas/k", []byte("v2"), r1)
		if err != nil {
			t.Fatal(err)
		}
		if r2 <= r1 {
			t.Fatalf("CAS revision %d after %d", r2, r1)
		}
		// Stale revision: conflict, nothing written.
		if _, err := s.CompareAndSwap(ctx, "cas/k", []byte("v3"), r1); !errors.Is(err, ErrConflict) {
			t.Fatalf("stale CAS: %v, want ErrConflict", err)
		}
		// expect 0 on an existing key: conflict.
		if _, err := s.CompareAndSwap(ctx, "cas/k", []byte("v4"), 0); !errors.Is(err, ErrConflict) {
			t.Fatalf("CAS expect 0 on existing key: %v, want ErrConflict", err)
		}
		e, err := s.Get(ctx, "cas/k")
		if err != nil || string(e.Value) != "v2" || e.Revision != r2 {
			t.Fatalf("after conflicts: %q %d %v, want v2 %d", e.Value, e.Revision, err, r2)
		}
		// expect 0 on a missing key: creates it, once.
		r3, err := s.CompareAndSwap(ctx, "cas/new", []byte("n"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CompareAndSwap(ctx, "cas/new", []byte("n2"), 0); !errors.Is(err, ErrConflict) {
			t.Fatalf("second create: %v, want ErrConflict", err)
		}
		e, err = s.Get(ctx, "cas/new")
		if err != nil || string(e.Value) != "n" || e.Revision != r3 {
			t.Fatalf("created: %q %d %v", e.Value, e.Revision, err)
		}
		// A revision on a missing key: conflict.
		if _, err := s.CompareAndSwap(ctx, "cas/absent", []byte("x"), r3); !errors.Is(err, ErrConflict) {
			t.Fatalf("CAS with a revision on a missing key: %v, want ErrConflict", err)
		}
		if _, err := s.Get(ctx, "cas/absent"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("conflicting CAS wrote: %v", err)
		}
		// Recreate after delete with expect 0.
		if err := s.Delete(ctx, "cas/new"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CompareAndSwap(ctx, "cas/new", []byte("again"), 0); err != nil {
			t.Fatalf("create after delete: %v", err)
		}
	})

	sub("DeleteIf", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		if err := s.DeleteIf(ctx, "del/missing", 1); !errors.Is(err, ErrConflict) {
			t.Fatalf("DeleteIf missing: %v, want ErrConflict", err)
		}
		if err := s.DeleteIf(ctx, "del/missing", 0); !errors.Is(err, ErrConflict) {
			t.Fatalf("DeleteIf missing, expect 0: %v, want ErrConflict", err)
		}
		r1, err := s.Put(ctx, "del/k", []byte("a"))
		if err != nil {
			t.Fatal(err)
		}
		r2, err := s.Put(ctx, "del/k", []byte("b"))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteIf(ctx, "del/k", r1); !errors.Is(err, ErrConflict) {
			t.Fatalf("DeleteIf stale: %v, want ErrConflict", err)
		}
		if e, err := s.Get(ctx, "del/k"); err != nil || string(e.Value) != "b" {
			t.Fatalf("conflicting DeleteIf deleted: %v", err)
		}
		if err := s.DeleteIf(ctx, "del/k", r2); err != nil {
			t.Fatalf("DeleteIf: %v", err)
		}
		if _, err := s.Get(ctx, "del/k"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after DeleteIf: %v, want ErrNotFound", err)
		}
		if err := s.DeleteIf(ctx, "del/k", r2); !errors.Is(err, ErrConflict) {
			t.Fatalf("second DeleteIf: %v, want ErrConflict", err)
		}
	})

	sub("Delete", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		if err := s.Delete(ctx, "del/missing"); err != nil {
			t.Fatalf("Delete missing: %v", err)
		}
		if _, err := s.Put(ctx, "del/k", []byte("a")); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "del/k"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "del/k"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after Delete: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "del/k"); err != nil {
			t.Fatalf("second Delete: %v", err)
		}
	})

	sub("List", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		for _, k := range []string{"a/3", "a/1", "ab", "a", "a/2", "b/1", "a/*.example.com", "a0"} {
			mustPut(t, s, k, []byte("v-"+k))
		}
		entries, rev, err := s.List(ctx, "a/")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"a/*.example.com", "a/1", "a/2", "a/3"}
		if got := keys(entries); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("List(a/) = %q, want %q", got, want)
		}
		for _, e := range entries {
			if string(e.Value) != "v-"+e.Key || e.Revision <= 0 || e.Revision > rev {
				t.Fatalf("entry %q = %q rev %d (list rev %d)", e.Key, e.Value, e.Revision, rev)
			}
		}
		none, rev0, err := s.List(ctx, "nothing/")
		if err != nil || len(none) != 0 || rev0 < rev {
			t.Fatalf("List(nothing/) = %d entries, rev %d, %v", len(none), rev0, err)
		}
		all, _, err := s.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(all) < 8 {
			t.Fatalf("List(\"\") = %q", keys(all))
		}
		// A Watch from rev+1 sees exactly what came after the listing.
		mustPut(t, s, "a/4", []byte("v"))
		mustPut(t, s, "ab", []byte("not under a/"))
		mustDelete(t, s, "a/1")
		ch := s.Watch(ctx, "a/", rev+1)
		got := recvN(t, ch, 2)
		if got[0].Type != EventPut || got[0].Entry.Key != "a/4" || got[0].Entry.Revision <= rev ||
			got[1].Type != EventDelete || got[1].Entry.Key != "a/1" {
			t.Fatalf("Watch after List = %v", got)
		}
		expectNone(t, ch)
	})

	sub("WatchFromNow", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		mustPut(t, s, "w/before", []byte("old"))
		ch := s.Watch(ctx, "w/", 0)
		mustPut(t, s, "w/1", []byte("one"))
		mustPut(t, s, "x/1", []byte("other prefix"))
		mustPut(t, s, "w/2", []byte{0, 2})
		mustDelete(t, s, "w/1")
		mustDelete(t, s, "w/never")
		mustPut(t, s, "w/1", []byte("again"))
		got := recvN(t, ch, 4)
		want := []struct {
			typ EventType
			key string
			val string
		}{{EventPut, "w/1", "one"}, {EventPut, "w/2", "\x00\x02"}, {EventDelete, "w/1", ""}, {EventPut, "w/1", "again"}}
		var last int64
		for i, w := range want {
			e := got[i]
			if e.Type != w.typ || e.Entry.Key != w.key || string(e.Entry.Value) != w.val || e.Entry.Revision <= last {
				t.Fatalf("event %d = %+v, want %+v after revision %d", i, e, w, last)
			}
			last = e.Entry.Revision
		}
		expectNone(t, ch)
	})

	sub("WatchReplay", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		r1 := mustPut(t, s, "h/1", []byte("a"))
		mustPut(t, s, "h/2", []byte("b"))
		mustDelete(t, s, "h/1")
		ch := s.Watch(ctx, "h/", r1)
		got := recvN(t, ch, 3)
		if got[0].Entry.Key != "h/1" || got[0].Entry.Revision != r1 || got[1].Entry.Key != "h/2" || got[2].Type != EventDelete {
			t.Fatalf("replay = %+v", got)
		}
		mustPut(t, s, "h/3", []byte("c"))
		if e := recvN(t, ch, 1)[0]; e.Entry.Key != "h/3" {
			t.Fatalf("after replay: %+v", e)
		}
	})

	sub("WatchClosesOnCancel", func(t *testing.T, s Store) {
		ctx, cancel := context.WithCancel(testCtx(t))
		ch := s.Watch(ctx, "c/", 0)
		cancel()
		expectClosed(t, ch)
	})

	sub("WatchClosesOnClose", func(t *testing.T, s Store) {
		ch := s.Watch(testCtx(t), "c/", 0)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, ch)
		expectClosed(t, s.Watch(testCtx(t), "c/", 0))
	})

	sub("LockExclusion", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		l1, err := s.Lock(ctx, "renewer", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-l1.Lost():
			t.Fatal("Lost closed while held")
		default:
		}
		got := make(chan Lock, 1)
		go func() {
			l2, err := s.Lock(ctx, "renewer", 5*time.Second)
			if err != nil {
				t.Error(err)
			}
			got <- l2
		}()
		select {
		case <-got:
			t.Fatal("second Lock acquired while the first holds it")
		case <-time.After(300 * time.Millisecond):
		}
		// Another name is independent.
		other, err := s.Lock(ctx, "other", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l1.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l1.Unlock(ctx); err != nil {
			t.Fatalf("second Unlock: %v", err)
		}
		expectDone(t, l1.Lost(), 2*time.Second)
		var l2 Lock
		select {
		case l2 = <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("second Lock not acquired after Unlock")
		}
		if l2 == nil {
			t.FailNow()
		}
		if l2.Fence() == l1.Fence() || l2.Fence() <= 0 {
			t.Fatalf("fences %d then %d", l1.Fence(), l2.Fence())
		}
		// Waiting ends with ctx.
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		if l3, err := s.Lock(short, "renewer", time.Second); err == nil {
			t.Fatalf("third Lock acquired while held (fence %d)", l3.Fence())
		} else if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("third Lock: %v, want context.DeadlineExceeded", err)
		}
		if err := l2.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		// The abandoned waiter left nothing behind: the lock is free.
		l4, err := s.Lock(ctx, "renewer", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if l4.Fence() <= l2.Fence() {
			t.Fatalf("fence %d after %d", l4.Fence(), l2.Fence())
		}
	})

	sub("CloseTwiceAndAfterClose", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		r := mustPut(t, s, "k", []byte("v"))
		l, err := s.Lock(ctx, "held", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		expectDone(t, l.Lost(), time.Second)
		if err := l.Unlock(ctx); err != nil {
			t.Fatalf("Unlock after Close: %v", err)
		}
		checks := map[string]error{}
		_, checks["Get"] = s.Get(ctx, "k")
		_, checks["Put"] = s.Put(ctx, "k", []byte("v"))
		_, checks["CompareAndSwap"] = s.CompareAndSwap(ctx, "k", []byte("v"), r)
		checks["Delete"] = s.Delete(ctx, "k")
		checks["DeleteIf"] = s.DeleteIf(ctx, "k", r)
		_, _, checks["List"] = s.List(ctx, "")
		_, checks["Lock"] = s.Lock(ctx, "x", time.Second)
		for op, err := range checks {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close: %v, want ErrClosed", op, err)
			}
		}
	})

	sub("ErrorsHaveNoValues", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		secret := []byte("s3cr3t-VALUE-do-not-log")
		r := mustPut(t, s, "secret/k", secret)
		var errs []error
		_, err := s.CompareAndSwap(ctx, "secret/k", secret, r+100)
		errs = append(errs, err)
		_, err = s.CompareAndSwap(ctx, "secret/k", secret, 0)
		errs = append(errs, err)
		errs = append(errs, s.DeleteIf(ctx, "secret/k", r+100))
		big := bytes.Repeat(secret, (3<<20)/len(secret)) // over etcd's request limit
		_, err = s.Put(ctx, "secret/big", big)
		errs = append(errs, err)
		_, err = s.CompareAndSwap(ctx, "secret/big", big, 0)
		errs = append(errs, err)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		_, err = s.Put(ctx, "secret/k", secret)
		errs = append(errs, err)
		for i, err := range errs {
			if err == nil {
				t.Fatalf("error %d is nil", i)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("error %d carries the value: %v", i, err)
			}
			t.Logf("error %d: %v", i, err)
		}
	})
}

// ---- helpers ----

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustPut(t *testing.T, s Store, key string, value []byte) int64 {
	t.Helper()
	rev, err := s.Put(testCtx(t), key, value)
	if err != nil {
		t.Fatalf("Put %q: %v", key, err)
	}
	return rev
}

func mustDelete(t *testing.T, s Store, key string) {
	t.Helper()
	if err := s.Delete(testCtx(t), key); err != nil {
		t.Fatalf("Delete %q: %v", key, err)
	}
}

func keys(entries []Entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Key
	}
	return out
}

func recvN(t *testing.T, ch <-chan Event, n int) []Event {
	t.Helper()
	out := make([]Event, 0, n)
	timeout := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %d of %d events: %+v", len(out), n, out)
			}
			out = append(out, e)
		case <-timeout:
			t.Fatalf("got %d of %d events: %+v", len(out), n, out)
		}
	}
	return out
}

func expectNone(t *testing.T, ch <-chan Event) {
	t.Helper()
	select {
	case e, ok := <-ch:
		t.Fatalf("unexpected event %+v (open %v)", e, ok)
	case <-time.After(200 * time.Millisecond):
	}
}

func expectClosed(t *testing.T, ch <-chan Event) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("watch channel not closed")
		}
	}
}

func expectDone(t *testing.T, ch <-chan struct{}, d time.Duration) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("not closed within %v", d)
	}
}
