package acme

// Regression tests for the renewer's defects found by fault injection
// (issue 18) and for revocation noticed through ARI (issue 14 item 6): real
// embedded etcd, real Pebble. No t.Parallel (acmetest).

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/acme/pebbledev"
	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/platformdb"
	"github.com/pryv/pryv-tls/internal/testutil"
)

// shortProfiles are the default profiles plus a 30-second one, so a renewal
// point comes within the test.
func shortProfiles() map[string]acmetest.Profile {
	p := acmetest.DefaultProfiles()
	p["short30s"] = acmetest.Profile{Description: "30 seconds", ValidityPeriod: 30 * time.Second}
	return p
}

// newOrderStarts are the start times of the newOrder requests, in order.
func (l *caLog) newOrderStarts(who string) []time.Time {
	var out []time.Time
	for _, c := range l.all() {
		if (who == "" || c.Who == who) && c.Method == http.MethodPost && c.Path == pebbleNewOrder {
			out = append(out, c.Start)
		}
	}
	return out
}

// TestRenewalWakesAtItsPoint: with the daemon's 5-minute check interval, a
// 30-second certificate is renewed at its planned point, not at the next
// 5-minute pass (a 300 s certificate used to renew 82 s late).
func TestRenewalWakesAtItsPoint(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{Options: pebbledev.Options{Profiles: shortProfiles()}})
	const host = "your-domain.com"
	opts := e.options(p, "core-a", host, "short30s")
	opts.CheckInterval = 5 * time.Minute // the daemon's default
	r := mustNew(t, opts)
	first, err := r.ForceRenew(ctx, "", false)
	if err != nil {
		t.Fatalf("ForceRenew: %v", err)
	}
	running := time.Now()
	stop := runRenewer(t, r)
	// The first pass asks ARI and fixes the point in the CA's window.
	testutil.EventuallyTrue(t, 10*time.Second, "the first pass's ARI answer", func() bool { return e.state(host).ARISerial == first.Serial })
	point := e.state(host).NextRenewal
	if point.Before(first.IssuedAt) || point.After(first.ExpiresAt) {
		t.Fatalf("planned renewal %v outside the lifetime %v..%v", point, first.IssuedAt, first.ExpiresAt)
	}
	testutil.EventuallyTrue(t, 45*time.Second, "the renewed certificate", func() bool {
		rec := e.record(host)
		return rec != nil && rec.Serial != first.Serial
	})
	stop()
	starts := e.calls.newOrderStarts("core-a")
	if len(starts) < 2 {
		t.Fatalf("%d newOrder requests, want 2", len(starts))
	}
	late := starts[1].Sub(point)
	t.Logf("renewal point issue + %v (of a %v lifetime); the renewal's newOrder came %v after it",
		point.Sub(first.IssuedAt).Round(time.Millisecond), first.ExpiresAt.Sub(first.IssuedAt), late.Round(time.Millisecond))
	// The order of events, not a duration: not before the planned point,
	// and before the next scheduled pass (the bug: it waited for that pass).
	if late < 0 {
		t.Errorf("renewed %v before its planned point", -late)
	}
	if nextPass := running.Add(opts.CheckInterval); !starts[1].Before(nextPass) {
		t.Errorf("renewed at the next %v pass (%v after the planned point), not at its point", opts.CheckInterval, late)
	}
}

// TestKilledMidOrderDoesNotReorderAtOnce: a renewer killed while the CA
// validates (its PlatformDB client closed, nothing released) left its
// attempt in the state row; the restarted renewer's scheduled passes wait
// for the recorded NextAttempt instead of ordering again the moment the
// dead one's lease is gone.
func TestKilledMidOrderDoesNotReorderAtOnce(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	conn, err := platformdb.Connect(ctx, platformdb.ConnectOptions{
		Endpoints: []string{e.db.ClientAddress()},
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	opts := e.runOptions(p, "core-b", host, "default")
	opts.KV = conn
	opts.LockTTL = 4 * time.Second // short, but not so short that a loaded machine loses it mid-order
	opts.Certs = &certstore.Catalog{KV: conn, Keys: e.keys}
	dead := mustNew(t, opts)

	arrived := e.gate.hold()
	stopDead := runRenewer(t, dead)
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the CA never came for the HTTP-01 token")
	}
	killedAt := time.Now()
	_ = conn.Client().Close() // dies mid-order: no unlock, no state written after
	st := e.state(host)
	if st.LastAttempt.IsZero() || !st.NextAttempt.After(killedAt) {
		t.Fatalf("state during the order: LastAttempt %v, NextAttempt %v; want the attempt recorded before ordering",
			st.LastAttempt, st.NextAttempt)
	}
	left := len(e.keysUnder(http01Prefix)) // one, unless the lease ran out under load first

	// The restart: passes every second, the dead lease gone after 2 s.
	kv := &countingKV{KV: e.db}
	ropts := e.runOptions(p, "core-b-restarted", host, "default")
	ropts.KV = kv
	restarted := mustNew(t, ropts)
	stop := runRenewer(t, restarted)
	row := statePrefix + host
	testutil.EventuallyTrue(t, 20*time.Second, "passes of the restarted renewer past the dead lease", func() bool {
		return kv.readsOf(row) >= 4 && time.Since(killedAt) > opts.LockTTL+time.Second
	})
	if n := len(e.calls.newOrders("core-b-restarted")); n != 0 {
		t.Errorf("the restarted renewer ordered %d times within %v of the kill, before the recorded NextAttempt (%v after it)",
			n, time.Since(killedAt).Round(time.Millisecond), st.NextAttempt.Sub(killedAt).Round(time.Second))
	}
	// Its start swept the killed order's token (once the dead lease went).
	if left == 0 {
		t.Log("the killed order's token was gone before the kill (its lease ran out first): the sweep is not seen here")
	}
	testutil.EventuallyTrue(t, 10*time.Second, "the killed order's token swept", func() bool { return len(e.keysUnder(http01Prefix)) == 0 })
	stop()
	e.gate.open()
	stopDead()
}

// TestSweepAtStart: challenge values an interrupted order left (HTTP-01
// tokens and the _acme-challenge TXT rows the embedded DNS serves) are
// removed when the renewer starts, though no order is due.
func TestSweepAtStart(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	if _, err := mustNew(t, e.options(p, "core-a", host, "default")).ForceRenew(ctx, "", false); err != nil {
		t.Fatal(err)
	}
	orders := len(e.calls.newOrders(""))
	dns01 := &dnsdata.DNS01{KV: e.db, SkipPropagationCheck: true}
	if err := dns01.Present(ctx, "*.your-domain.com", "token", "left-by-a-dead-renewer"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Put(ctx, http01Prefix+"leftover-token", []byte("keyauth")); err != nil {
		t.Fatal(err)
	}
	if got := e.keysUnder(dnsdata.ChallengePrefix); len(got) != 1 {
		t.Fatalf("DNS-01 rows before the start: %v", got)
	}
	opts := e.runOptions(p, "core-a-restarted", host, "default")
	opts.CheckInterval = 5 * time.Minute
	opts.DNS01 = dns01
	stop := runRenewer(t, mustNew(t, opts))
	testutil.EventuallyTrue(t, 10*time.Second, "the leftovers swept", func() bool {
		return len(e.keysUnder(dnsdata.ChallengePrefix)) == 0 && len(e.keysUnder(http01Prefix)) == 0
	})
	stop()
	if n := len(e.calls.newOrders("")); n != orders {
		t.Errorf("%d orders at the start, want none (the certificate is fresh)", n-orders)
	}
}

// TestUnreadableCertificateRow: a tls-cert/ row that does not decode is not a
// silent stop: it is said in lastError, a new certificate replaces it, and
// when the order fails the backoff applies.
func TestUnreadableCertificateRow(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	const blocked = "blocked.your-domain.com"
	p := e.pebble(acmetest.Options{Options: pebbledev.Options{BlockedDomains: []string{blocked}}})

	t.Run("replaced", func(t *testing.T) {
		const host = "core1.your-domain.com" // as many labels as the blocked name (a Pebble quirk)
		if _, err := e.db.Put(ctx, certstore.RowKey(host), []byte("{written by hand")); err != nil {
			t.Fatal(err)
		}
		opts := e.options(p, "core-a", host, "default")
		r := mustNew(t, opts)
		rec, err := r.check(ctx, opts.Plans[0], false)
		if err != nil || rec == nil {
			t.Fatalf("check of an unreadable row: renewed %v, err %v; want a new certificate", rec != nil, err)
		}
		verifyRecord(t, e.keys, e.record(host), host, p.IssuerRoots(t))
		if st := e.state(host); st.Unreadable != "" || st.LastError != "" || st.Failures != 0 {
			t.Errorf("state after the replacement: %+v", st)
		}
	})

	t.Run("order fails", func(t *testing.T) {
		if _, err := e.db.Put(ctx, certstore.RowKey(blocked), []byte("{written by hand")); err != nil {
			t.Fatal(err)
		}
		opts := e.options(p, "core-a", blocked, "default")
		r := mustNew(t, opts)
		if _, err := r.check(ctx, opts.Plans[0], false); err == nil {
			t.Fatal("check: no error though the CA refuses the name")
		}
		st := e.state(blocked)
		t.Logf("lastError: %s", st.LastError)
		if !strings.Contains(st.LastError, "rejectedIdentifier") || !strings.Contains(st.LastError, certstore.RowKey(blocked)) {
			t.Errorf("LastError = %q, want the CA's refusal and the unreadable row", st.LastError)
		}
		if st.Failures != 1 || st.NextAttempt.Sub(st.LastErrorAt) < 50*time.Second {
			t.Errorf("backoff: Failures %d, NextAttempt = LastErrorAt + %v", st.Failures, st.NextAttempt.Sub(st.LastErrorAt))
		}
		calls := len(e.calls.all())
		if _, err := r.check(ctx, opts.Plans[0], false); err != nil {
			t.Errorf("check during the backoff: %v", err)
		}
		if n := len(e.calls.all()) - calls; n != 0 {
			t.Errorf("a check during the backoff sent %d requests to the CA", n)
		}
	})
}

// TestAccountGoneRegistersAgain: the CA was rebuilt at the same URL (a new
// Pebble: it knows neither the account nor its key) while the stored account
// row still names the old account. The order's accountDoesNotExist makes the
// renewer register a new account, store it, and order with it — once.
func TestAccountGoneRegistersAgain(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	old := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	if _, err := mustNew(t, e.options(old, "core-a", host, "default")).ForceRenew(ctx, "", false); err != nil {
		t.Fatal(err)
	}
	rebuilt := e.pebble(acmetest.Options{})
	oldAcct, _ := e.storedAccount(old.DirectoryURL)
	e.moveAccount(old.DirectoryURL, rebuilt.DirectoryURL)
	moved, _ := e.storedAccount(rebuilt.DirectoryURL)

	clock := &fakeClock{}
	opts := e.options(rebuilt, "core-a-rebuilt", host, "default")
	opts.Now = clock.Now
	r := mustNew(t, opts)
	clock.Advance(61 * 24 * time.Hour) // due
	rec, err := r.check(ctx, opts.Plans[0], false)
	if err != nil || rec == nil {
		t.Fatalf("check against the rebuilt CA: renewed %v, err %v", rec != nil, err)
	}
	verifyRecord(t, e.keys, e.record(host), host, rebuilt.IssuerRoots(t))
	acct, _ := e.storedAccount(rebuilt.DirectoryURL)
	if acct.URI == moved.URI || acct.URI == "" {
		t.Errorf("the account row still names %q, want the newly registered account", acct.URI)
	}
	if string(acct.Key) == string(oldAcct.Key) {
		t.Error("the account key was not replaced")
	}
	if n := e.calls.count("core-a-rebuilt", http.MethodPost, pebbleNewAccount); n != 1 {
		t.Errorf("%d newAccount requests to the rebuilt CA, want 1", n)
	}
	if n := len(e.calls.newOrders("core-a-rebuilt")); n != 2 {
		t.Errorf("%d newOrder requests, want 2 (refused for the old account, then the new one's)", n)
	}
	if st := e.state(host); st.Failures != 0 || st.LastError != "" {
		t.Errorf("state: %+v", st)
	}
}

// moveAccount copies the account row of directory from to directory to, as
// a CA rebuilt at the same URL would find it: same account URL path, same
// key, re-sealed for its new row.
func (e *testEnv) moveAccount(from, to string) {
	e.t.Helper()
	rec, ok := e.storedAccount(from)
	if !ok {
		e.t.Fatal("no account row to move")
	}
	der, err := e.keys.Open(atrest.PurposeACMEAccount, AccountRow(from), rec.Key)
	if err != nil {
		e.t.Fatal(err)
	}
	if rec.Key, err = e.keys.Seal(atrest.PurposeACMEAccount, AccountRow(to), der); err != nil {
		e.t.Fatal(err)
	}
	fromURL, toURL := strings.TrimSuffix(from, "/dir"), strings.TrimSuffix(to, "/dir")
	rec.Directory, rec.URI = to, strings.Replace(rec.URI, fromURL, toURL, 1)
	data, err := json.Marshal(rec)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.db.Put(context.Background(), AccountRow(to), data); err != nil {
		e.t.Fatal(err)
	}
}

// TestFencedWrites: under the renewer lock, the certificate row and the
// state row are written through the lock (a transaction comparing its key),
// so a renewer whose lease ended — cut off longer than its TTL, paused —
// cannot overwrite what the renewer that took the lock after it stored.
// Without the lock, a state save only lands if the row is unchanged since
// it was read, so it cannot reset another renewer's backoff.
func TestFencedWrites(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	stale := mustNew(t, e.options(p, "core-a", host, "default"))
	lock, err := e.db.Lock(ctx, lockName, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	stale.held = fencedKV{KV: e.db, lock: lock}

	// Its lease goes (revoked here; expired in life).
	resp, err := e.db.Client().Get(ctx, "_lock/"+lockName+"/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("lock keys: %v, %v", resp, err)
	}
	if _, err := e.db.Client().Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	successor := mustNew(t, e.options(p, "core-b", host, "default"))
	good, err := successor.ForceRenew(ctx, "", false)
	if err != nil {
		t.Fatalf("the successor's ForceRenew: %v", err)
	}
	goodState := e.state(host)

	// A pair to store, as the stale renewer's order would have returned.
	ca, err := devpki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.Issue(devpki.Leaf{Names: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stale.store(ctx, host, other.FullChain, other.KeyPEM); !errors.Is(err, platformdb.ErrConflict) {
		t.Errorf("the stale renewer's certificate write: %v, want ErrConflict", err)
	}
	if got := e.record(host); got.Serial != good.Serial {
		t.Errorf("the stale renewer replaced the successor's certificate (serial %s, want %s)", got.Serial, good.Serial)
	}
	if err := stale.save(ctx, host, State{Hostnames: []string{host}, Failures: 7}); !errors.Is(err, platformdb.ErrConflict) {
		t.Errorf("the stale renewer's state write: %v, want ErrConflict", err)
	}
	if got := e.state(host); got.Failures != goodState.Failures || !got.LastSuccess.Equal(goodState.LastSuccess) {
		t.Errorf("the stale renewer's state write landed: %+v", got)
	}
	stale.held = nil

	// Without the lock: read, another renewer records a failure, save.
	st, _, err := stale.load(ctx, stale.opts.Plans[0])
	if err != nil {
		t.Fatal(err)
	}
	backoff := goodState
	backoff.Failures, backoff.NextAttempt = 3, time.Now().Add(time.Hour).UTC()
	if err := saveState(ctx, e.db, host, backoff); err != nil {
		t.Fatal(err)
	}
	st.ARIStart = time.Now() // what the unlocked check would save
	if err := stale.save(ctx, host, st); err != nil {
		t.Errorf("unlocked save over a changed row: %v (a conflict is dropped, not an error)", err)
	}
	if got := e.state(host); got.Failures != 3 || !got.NextAttempt.Equal(backoff.NextAttempt) {
		t.Errorf("the unlocked save reset the other renewer's backoff: Failures %d, NextAttempt %v", got.Failures, got.NextAttempt)
	}
	// Unchanged since read: it lands.
	st, _, _ = stale.load(ctx, stale.opts.Plans[0])
	st.ARISerial = "abc"
	if err := stale.save(ctx, host, st); err != nil || e.state(host).ARISerial != "abc" {
		t.Errorf("unlocked save over an unchanged row: %v, ARISerial %q", err, e.state(host).ARISerial)
	}
}

// isRetry reports whether err is a force-renew refusal saying when to come back.
func isRetry(err error) bool {
	var re *RetryError
	return errors.As(err, &re)
}

// TestForceRenewDetachedRecordedLimited: a forced renewal whose caller
// gives up (an HTTP client's timeout mid-validation) goes on and is
// recorded; a second one within a minute is refused with when to come back;
// during a backoff it is refused unless ignoreBackoff; Run ending (shutdown)
// cuts one in flight.
func TestForceRenewDetachedRecordedLimited(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	const blocked = "blocked.your-domain.com"
	p := e.pebble(acmetest.Options{Options: pebbledev.Options{BlockedDomains: []string{blocked}}})
	const host = "core1.your-domain.com"
	clock := &fakeClock{}
	opts := e.options(p, "core-a", host, "default")
	opts.Now = clock.Now
	opts.Plans = append(opts.Plans, Plan{Hostnames: []string{blocked}, Challenge: "http-01"})
	r := mustNew(t, opts)

	// The caller gives up while the CA validates.
	arrived := e.gate.hold()
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := r.ForceRenew(cctx, host, false)
		errc <- err
	}()
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the CA never came for the HTTP-01 token")
	}
	cancel()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "the order goes on") {
			t.Errorf("ForceRenew whose caller gave up: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ForceRenew did not return when its caller gave up")
	}
	e.gate.open()
	testutil.EventuallyTrue(t, 30*time.Second, "the detached order's certificate", func() bool { return e.record(host) != nil })
	testutil.EventuallyTrue(t, 5*time.Second, "the detached order's outcome in the state", func() bool { return !e.state(host).LastSuccess.IsZero() })
	verifyRecord(t, e.keys, e.record(host), host, p.IssuerRoots(t))

	// Again at once: refused, with when.
	_, err := r.ForceRenew(ctx, host, true)
	var re *RetryError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "less than a minute ago") {
		t.Fatalf("a second forced renewal within a minute: %v, want a RetryError", err)
	}
	if d := re.RetryAfter(clock.Now()); d < 30*time.Second || d > time.Minute {
		t.Errorf("RetryAfter = %v, want what is left of the minute", d)
	}
	orders := len(e.calls.newOrders(""))
	clock.Advance(forceInterval)
	if _, err := r.ForceRenew(ctx, host, false); err != nil {
		t.Errorf("a forced renewal a minute later: %v", err)
	}
	if n := len(e.calls.newOrders("")) - orders; n != 1 {
		t.Errorf("%d orders for the second forced renewal, want 1", n)
	}

	// A failure: the backoff applies to a forced renewal too.
	if _, err := r.ForceRenew(ctx, blocked, false); err == nil || isRetry(err) {
		t.Fatalf("forced renewal of a refused name: %v, want the CA's refusal", err)
	}
	st := e.state(blocked)
	orders = len(e.calls.newOrders(""))
	if _, err := r.ForceRenew(ctx, blocked, false); !errors.As(err, &re) || !strings.Contains(err.Error(), "backing off after 1 failed") {
		t.Errorf("forced renewal during the backoff: %v, want refused", err)
	} else if !re.At.Equal(st.NextAttempt) {
		t.Errorf("RetryError.At = %v, want NextAttempt %v", re.At, st.NextAttempt)
	}
	clock.Advance(forceInterval) // past the rate limit
	if _, err := r.ForceRenew(ctx, blocked, true); err == nil || isRetry(err) {
		t.Errorf("forced renewal ignoring the backoff: %v, want an order (refused by the CA)", err)
	}
	if n := len(e.calls.newOrders("")) - orders; n != 1 {
		t.Errorf("%d orders during the backoff, want 1 (ignoreBackoff only)", n)
	}
	if got := e.state(blocked); got.Failures != 2 {
		t.Errorf("Failures = %d after the forced retry, want 2 (recorded like any order)", got.Failures)
	}

	// Shutdown cuts a forced order in flight.
	clock.Advance(forceInterval)
	stop := runRenewer(t, r)
	before := e.record(host)
	arrived = e.gate.hold()
	go func() {
		_, err := r.ForceRenew(ctx, host, true)
		errc <- err
	}()
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the CA never came for the HTTP-01 token")
	}
	stop()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("a forced order survived the shutdown")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the forced order did not stop with Run")
	}
	e.gate.open()
	if got := e.record(host); got.Serial != before.Serial {
		t.Error("the order cut by the shutdown stored a certificate")
	}
}

// TestRevocationNoticedByARI (issue 14 item 6): the CA moves the window of
// the certificate in service into the past (its signal of a revocation or an
// incident). The renewer, checking every 5 minutes, asks ARI again when the
// CA's Retry-After (here 2 s, clamped to the 1-minute floor) has passed —
// not at its next 5-minute pass, not in 6 hours — and renews at once.
func TestRevocationNoticedByARI(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{Options: pebbledev.Options{ARIRetryAfter: 2 * time.Second}})
	const host = "your-domain.com"
	opts := e.options(p, "core-a", host, "default") // 90 days: the schedule never interferes
	opts.CheckInterval = 5 * time.Minute
	r := mustNew(t, opts)
	first, err := r.ForceRenew(ctx, "", false)
	if err != nil {
		t.Fatal(err)
	}
	running := time.Now()
	stop := runRenewer(t, r)
	testutil.EventuallyTrue(t, 10*time.Second, "the first ARI answer", func() bool { return e.state(host).ARISerial == first.Serial })
	st := e.state(host)
	if d := time.Until(st.ARICheckAfter); d < 50*time.Second || d > 61*time.Second {
		t.Fatalf("ARICheckAfter = now + %v, want the CA's 2 s raised to the 1-minute floor", d)
	}
	if st.NextRenewal.Before(time.Now().Add(24 * time.Hour)) {
		t.Fatalf("NextRenewal %v: the 90-day certificate is due already", st.NextRenewal)
	}

	moved := time.Now()
	p.SetRenewalInfo(t, []byte(first.Chain), moved.Add(-2*time.Hour), moved.Add(-time.Hour))
	testutil.EventuallyTrue(t, 90*time.Second, "the certificate renewed after the window moved", func() bool {
		rec := e.record(host)
		return rec != nil && rec.Serial != first.Serial
	})
	served := time.Since(moved)
	stop()
	starts := e.calls.newOrderStarts("core-a")
	if len(starts) != 2 {
		t.Fatalf("%d newOrder requests, want 2", len(starts))
	}
	late := starts[1].Sub(st.ARICheckAfter)
	t.Logf("window moved into the past -> new certificate stored: %v (the renewer asked again at its Retry-After, "+
		"the renewal's newOrder %v after it)", served.Round(time.Millisecond), late.Round(time.Millisecond))
	// The order of events, not a duration: after the Retry-After, before
	// the next scheduled pass (and so long before the 6 h default).
	if late < 0 {
		t.Errorf("renewal %v before the ARI Retry-After", -late)
	}
	if nextPass := running.Add(opts.CheckInterval); !starts[1].Before(nextPass) {
		t.Errorf("renewal at the next %v pass (%v after the Retry-After), not at the Retry-After", opts.CheckInterval, late)
	}
	wantID, _ := acmetest.ARICertID(leafOf(t, first))
	if got := e.calls.newOrders("core-a")[1]["replaces"]; got != wantID {
		t.Errorf("the renewal's replaces = %v, want %q", got, wantID)
	}
}
