package acme

// End-to-end tests of the renewer: real embedded etcd, real Pebble, HTTP-01
// answered by HTTP01Responder from PlatformDB. No t.Parallel (acmetest).

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/acme/pebbledev"
	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/platformdb"
	"github.com/pryv/pryv-tls/internal/testutil"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkFreshState checks the state row after a successful issuance of rec.
func checkFreshState(t *testing.T, st State, rec *certstore.Record, before, after time.Time) {
	t.Helper()
	if st.LastSuccess.IsZero() || st.LastSuccess.Before(before.Add(-time.Second)) || st.LastSuccess.After(after.Add(time.Second)) {
		t.Errorf("State.LastSuccess = %v, want between %v and %v", st.LastSuccess, before, after)
	}
	if st.Failures != 0 || st.LastError != "" || !st.NextAttempt.IsZero() {
		t.Errorf("State after a success: Failures %d, LastError %q, NextAttempt %v; want none", st.Failures, st.LastError, st.NextAttempt)
	}
	if st.NextRenewal.Before(rec.IssuedAt) || !st.NextRenewal.Before(rec.ExpiresAt) {
		t.Errorf("State.NextRenewal = %v, outside the certificate's lifetime %v..%v", st.NextRenewal, rec.IssuedAt, rec.ExpiresAt)
	}
	// Fresh from an order, it is the schedule (two thirds of the lifetime:
	// 80 s for short120s); once a check has asked ARI for this certificate,
	// it is the pick in the CA's window.
	if st.ARISerial == rec.Serial && !st.ARIStart.IsZero() {
		if st.NextRenewal.Before(st.ARIStart) || st.NextRenewal.After(st.ARIEnd) {
			t.Errorf("State.NextRenewal = %v, outside the ARI window %v..%v", st.NextRenewal, st.ARIStart, st.ARIEnd)
		}
	} else {
		if want := rec.IssuedAt.Add(rec.ExpiresAt.Sub(rec.IssuedAt) * 2 / 3); !within(st.NextRenewal, want, time.Second) {
			t.Errorf("State.NextRenewal = issue + %v, want two thirds of the lifetime (issue + %v)",
				st.NextRenewal.Sub(rec.IssuedAt), want.Sub(rec.IssuedAt))
		}
		// Its ARI window is asked at the next wake, not at that point.
		if d := st.ARICheckAfter.Sub(st.LastSuccess); d <= 0 || d > 2*time.Second {
			t.Errorf("State.ARICheckAfter = LastSuccess + %v, want about a second", d)
		}
	}
	if len(st.Hostnames) == 0 || st.Hostnames[0] != rec.Hostname {
		t.Errorf("State.Hostnames = %v, want the plan's (%s first)", st.Hostnames, rec.Hostname)
	}
}

// 1. First issuance.

func TestFirstIssuanceForceRenew(t *testing.T) {
	ctx := testCtx(t)
	begin := time.Now()
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	setup := time.Since(begin)
	const host = "your-domain.com"
	opts := e.options(p, "core-a", host, "short120s")
	var orders []error
	opts.OnOrder = func(err error) { orders = append(orders, err) }
	r := mustNew(t, opts)

	if _, err := r.ForceRenew(ctx, "not-covered.example", false); err == nil || !strings.Contains(err.Error(), "not a hostname") {
		t.Errorf("ForceRenew of a hostname no plan covers: %v", err)
	}

	start := time.Now()
	rec, err := r.ForceRenew(ctx, "YOUR-DOMAIN.COM", false) // hostnames match case-insensitively
	took := time.Since(start)
	if err != nil {
		t.Fatalf("ForceRenew: %v", err)
	}
	stored := e.record(host)
	leaf := verifyRecord(t, e.keys, stored, host, p.IssuerRoots(t))
	if stored.Serial != rec.Serial || stored.Hash != rec.Hash {
		t.Errorf("the catalog holds serial %s, ForceRenew returned %s", stored.Serial, rec.Serial)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 118*time.Second || life > 120*time.Second {
		t.Errorf("lifetime %v: the order did not get the short120s profile", life)
	}
	if !slices.Equal(stored.Names, []string{host}) {
		t.Errorf("names %v, want [%s]", stored.Names, host)
	}
	checkFreshState(t, e.state(host), stored, start, time.Now())
	if len(orders) != 1 || orders[0] != nil {
		t.Errorf("OnOrder saw %v, want one success", orders)
	}
	if got := e.keysUnder(http01Prefix); len(got) != 0 {
		t.Errorf("HTTP-01 tokens left in PlatformDB after the order: %v", got)
	}
	acct, ok := e.storedAccount(p.DirectoryURL)
	if !ok || acct.URI == "" || acct.Directory != p.DirectoryURL || acct.Email != "ops@your-domain.com" {
		t.Errorf("account row = %+v (present %v)", acct, ok)
	}
	if n := e.calls.count("", http.MethodPost, pebbleNewAccount); n != 1 {
		t.Errorf("%d newAccount requests, want 1", n)
	}
	t.Logf("start to certificate stored: %v via ForceRenew (account registration + order + store); "+
		"setup before it: %v (PlatformDB open %v)", took.Round(time.Millisecond), setup.Round(time.Millisecond), e.opened.Round(time.Millisecond))
}

func TestFirstIssuanceRun(t *testing.T) {
	begin := time.Now()
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	setup := time.Since(begin)
	const host = "your-domain.com"
	r := mustNew(t, e.runOptions(p, "core-a", host, "short120s"))

	start := time.Now()
	stop := runRenewer(t, r)
	var took time.Duration
	testutil.EventuallyTrue(t, 30*time.Second, "the first certificate in the catalog", func() bool {
		took = time.Since(start)
		return e.record(host) != nil
	})
	stop()

	rec := e.record(host)
	verifyRecord(t, e.keys, rec, host, p.IssuerRoots(t))
	checkFreshState(t, e.state(host), rec, start, time.Now())
	if n := len(e.calls.newOrders("")); n < 1 {
		t.Errorf("%d orders", n)
	}
	t.Logf("start to certificate stored: %v via Run (first check: account registration + order + store); "+
		"setup before it: %v (PlatformDB open %v)", took.Round(time.Millisecond), setup.Round(time.Millisecond), e.opened.Round(time.Millisecond))
}

// 2. A real renewal, on the scheduled path, driven by ARI.

func TestRenewalScheduledByARI(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	r := mustNew(t, e.runOptions(p, "core-a", host, "short120s"))

	first, err := r.ForceRenew(ctx, "", false)
	if err != nil {
		t.Fatalf("ForceRenew: %v", err)
	}
	firstLeaf := verifyRecord(t, e.keys, e.record(host), host, p.IssuerRoots(t))

	// The CA says: renew now.
	now := time.Now()
	p.SetRenewalInfo(t, []byte(first.Chain), now.Add(-time.Minute), now.Add(-30*time.Second))

	start := time.Now()
	stop := runRenewer(t, r)
	var took time.Duration
	testutil.EventuallyTrue(t, 30*time.Second, "a renewed certificate in the catalog", func() bool {
		took = time.Since(start)
		rec := e.record(host)
		return rec != nil && rec.Serial != first.Serial
	})
	stop()

	renewed := e.record(host)
	verifyRecord(t, e.keys, renewed, host, p.IssuerRoots(t))
	if !renewed.IssuedAt.After(first.IssuedAt) && renewed.IssuedAt != first.IssuedAt {
		t.Errorf("renewed certificate issued %v, before the first (%v)", renewed.IssuedAt, first.IssuedAt)
	}
	checkFreshState(t, e.state(host), renewed, start, time.Now())

	orders := e.calls.newOrders("")
	if len(orders) < 2 {
		t.Fatalf("%d newOrder requests, want 2", len(orders))
	}
	if rep, ok := orders[0]["replaces"]; ok {
		t.Errorf("the first issuance named a certificate it replaces: %v", rep)
	}
	wantID, err := acmetest.ARICertID(firstLeaf)
	if err != nil {
		t.Fatal(err)
	}
	if got := orders[1]["replaces"]; got != wantID {
		t.Errorf("the renewal's newOrder has replaces = %v, want the ARI CertID of the first certificate %q", got, wantID)
	}
	if prof := orders[1]["profile"]; prof != "short120s" {
		t.Errorf("the renewal's newOrder has profile = %v, want short120s", prof)
	}
	if n := e.calls.count("", http.MethodGet, pebbleRenewalInfo); n < 1 {
		t.Errorf("the scheduled check never asked ARI")
	}
	orderTime := orderSpan(e.calls.all(), "core-a", 1)
	t.Logf("renewal: %v from the first scheduled check to the new certificate stored (the order itself: %v)",
		took.Round(time.Millisecond), orderTime.Round(time.Millisecond))
}

// orderSpan is the time from the i-th newOrder of who to the end of the
// certificate download that followed it.
func orderSpan(calls []caCall, who string, i int) time.Duration {
	var start time.Time
	n := -1
	for _, c := range calls {
		if c.Who != who {
			continue
		}
		if c.Method == http.MethodPost && c.Path == pebbleNewOrder {
			n++
			if n == i {
				start = c.Start
			}
		}
		if n == i && strings.HasPrefix(c.Path, pebbleCert) {
			return c.End.Sub(start)
		}
	}
	return 0
}

// 3. ARI timing.

func TestARITiming(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	clock := &fakeClock{}
	opts := e.options(p, "core-a", host, "default") // 90 days: the schedule never interferes
	opts.Now = clock.Now
	r := mustNew(t, opts)
	plan := opts.Plans[0]

	first, err := r.ForceRenew(ctx, "", false)
	if err != nil {
		t.Fatalf("ForceRenew: %v", err)
	}
	ariGets := func() int { return e.calls.count("", http.MethodGet, pebbleRenewalInfo) }

	// A window in the future: no renewal, the next renewal inside it.
	now := time.Now()
	ws, we := now.Add(time.Hour), now.Add(2*time.Hour)
	p.SetRenewalInfo(t, []byte(first.Chain), ws, we)
	var picks []time.Time
	for i := range 2 {
		rec, err := r.check(ctx, plan, false)
		if err != nil || rec != nil {
			t.Fatalf("check %d with the ARI window in the future: renewed %v, err %v", i, rec != nil, err)
		}
		st := e.state(host)
		if st.NextRenewal.Before(ws) || st.NextRenewal.After(we) {
			t.Errorf("State.NextRenewal = %v, want inside the ARI window %v..%v", st.NextRenewal, ws, we)
		}
		if st.ARISerial != first.Serial || !within(st.ARIStart, ws, time.Second) || !within(st.ARIEnd, we, time.Second) {
			t.Errorf("State ARI bookkeeping: serial %q window %v..%v", st.ARISerial, st.ARIStart, st.ARIEnd)
		}
		if st.ARICheckAfter.Sub(clock.Now()) < 5*time.Hour {
			t.Errorf("State.ARICheckAfter = now + %v, want Pebble's Retry-After (6 h)", st.ARICheckAfter.Sub(clock.Now()))
		}
		picks = append(picks, st.NextRenewal)
	}
	if !picks[0].Equal(picks[1]) {
		t.Errorf("the pick in the window moved between checks: %v then %v (it must be stable)", picks[0], picks[1])
	}
	if n := ariGets(); n != 1 {
		t.Errorf("ARI asked %d times in two checks, want once (Retry-After: 6 h)", n)
	}
	if got := e.record(host); got.Serial != first.Serial {
		t.Fatalf("the certificate changed while the ARI window was in the future")
	}

	// The CA moves the window into the past. The renewer honours the
	// Retry-After of its last answer: not asked again, not renewed yet.
	p.SetRenewalInfo(t, []byte(first.Chain), now.Add(-2*time.Hour), now.Add(-time.Hour))
	if rec, err := r.check(ctx, plan, false); err != nil || rec != nil {
		t.Fatalf("check before the ARI Retry-After: renewed %v, err %v", rec != nil, err)
	}
	if n := ariGets(); n != 1 {
		t.Errorf("ARI asked again before its Retry-After (%d requests)", n)
	}

	// Once the Retry-After has passed, it asks again, sees the window in
	// the past, and renews, naming the certificate it replaces.
	clock.Advance(6*time.Hour + time.Minute)
	rec, err := r.check(ctx, plan, false)
	if err != nil || rec == nil {
		t.Fatalf("check with the ARI window in the past: renewed %v, err %v", rec != nil, err)
	}
	if n := ariGets(); n != 2 {
		t.Errorf("ARI requests: %d, want 2", n)
	}
	if rec.Serial == first.Serial {
		t.Fatal("renewed to the same serial")
	}
	verifyRecord(t, e.keys, e.record(host), host, p.IssuerRoots(t))
	wantID, _ := acmetest.ARICertID(leafOf(t, first))
	if orders := e.calls.newOrders(""); len(orders) != 2 || orders[1]["replaces"] != wantID {
		t.Errorf("orders: %d, the renewal's replaces = %v, want %q", len(orders), orders[len(orders)-1]["replaces"], wantID)
	}
	st := e.state(host)
	if st.Failures != 0 || st.LastError != "" || !within(st.LastSuccess, clock.Now(), 30*time.Second) {
		t.Errorf("state after the ARI renewal: %+v", st)
	}
	// The new certificate's schedule (no ARI asked yet for it): day 60.
	if want := rec.IssuedAt.Add(rec.ExpiresAt.Sub(rec.IssuedAt) * 2 / 3); !within(st.NextRenewal, want, time.Second) {
		t.Errorf("NextRenewal = issue + %v, want day 60", st.NextRenewal.Sub(rec.IssuedAt))
	}
}

// An imported certificate (another CA): ARI cannot answer for it. The
// renewer falls back to the schedule, asks ARI no more than hourly, and
// never names it in "replaces".
func TestImportedCertificateARI(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	ca, err := devpki.NewCA("operator's own CA")
	if err != nil {
		t.Fatal(err)
	}
	imp, err := ca.Issue(devpki.Leaf{Names: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	imported, err := e.certs.Store(ctx, certstore.Input{Hostname: host, Source: certstore.SourceFile, Chain: imp.FullChain, Key: imp.KeyPEM})
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{}
	opts := e.options(p, "core-a", host, "default")
	opts.Now = clock.Now
	r := mustNew(t, opts)
	for i := range 3 {
		if rec, err := r.check(ctx, opts.Plans[0], false); err != nil || rec != nil {
			t.Fatalf("check %d of an imported certificate at day 0: renewed %v, err %v", i, rec != nil, err)
		}
	}
	if n := e.calls.count("", http.MethodGet, pebbleRenewalInfo); n != 1 {
		t.Errorf("ARI asked %d times in 3 checks for a certificate the CA does not know, want once (then hourly)", n)
	}
	st := e.state(host)
	if want := scheduledRenewal(imported.IssuedAt, imported.ExpiresAt, opts.RenewBefore); !st.NextRenewal.Equal(want) {
		t.Errorf("NextRenewal = %v, want the schedule %v", st.NextRenewal, want)
	}
	// Day 61: due by the schedule; the order must not claim to replace it.
	clock.Advance(61 * 24 * time.Hour)
	rec, err := r.check(ctx, opts.Plans[0], false)
	if err != nil || rec == nil {
		t.Fatalf("check at day 61: renewed %v, err %v", rec != nil, err)
	}
	verifyRecord(t, e.keys, e.record(host), host, p.IssuerRoots(t))
	for _, o := range e.calls.newOrders("") {
		if rep, ok := o["replaces"]; ok {
			t.Errorf("the order replacing an imported certificate names replaces = %v", rep)
		}
	}
}

// 4. Backoff after the CA refuses.

func TestBackoffAfterRejection(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	const host = "blocked.your-domain.com"
	p := e.pebble(acmetest.Options{Options: pebbledev.Options{BlockedDomains: []string{host}}})
	row := statePrefix + host

	kv := &countingKV{KV: e.db}
	opts := e.runOptions(p, "core-a", host, "default")
	opts.KV = kv
	kinds := make(chan string, 4)
	opts.OnOrder = func(err error) { kinds <- ErrorKind(err) }
	r := mustNew(t, opts)
	stop := runRenewer(t, r)
	testutil.EventuallyTrue(t, 30*time.Second, "the first failure in the state row", func() bool { return e.state(host).Failures > 0 })
	select {
	case k := <-kinds:
		if k != "rejectedIdentifier" {
			t.Errorf("OnOrder: ErrorKind %q, want rejectedIdentifier", k)
		}
	case <-time.After(5 * time.Second):
		t.Error("OnOrder not called for the failed order")
	}
	st := e.state(host)
	callsAtFailure := len(e.calls.all())
	readsAtFailure := kv.readsOf(row)

	if st.Failures != 1 {
		t.Errorf("Failures = %d, want 1", st.Failures)
	}
	if !strings.Contains(st.LastError, "rejectedIdentifier") {
		t.Errorf("LastError = %q, want the CA's problem (rejectedIdentifier)", st.LastError)
	}
	t.Logf("LastError after the CA refused: %q", st.LastError)
	if d := st.NextAttempt.Sub(st.LastErrorAt); d < 54*time.Second || d > 66*time.Second {
		t.Errorf("NextAttempt = LastErrorAt + %v, want about a minute", d)
	}
	if n := len(e.calls.newOrders("")); n != 1 {
		t.Errorf("%d newOrder requests, want 1", n)
	}

	// Further passes before NextAttempt: nothing sent to the CA.
	testutil.EventuallyTrue(t, 20*time.Second, "three more Run passes", func() bool { return kv.readsOf(row) >= readsAtFailure+3 })
	stop()
	if n := len(e.calls.all()); n != callsAtFailure {
		t.Errorf("Run passes during the backoff sent %d requests to the CA", n-callsAtFailure)
	}
	if got := e.state(host); got.Failures != 1 || !got.NextAttempt.Equal(st.NextAttempt) {
		t.Errorf("state changed during the backoff: Failures %d, NextAttempt %v", got.Failures, got.NextAttempt)
	}

	// A restart: a new Renewer on the same store honours the stored backoff.
	kv2 := &countingKV{KV: e.db}
	opts2 := e.runOptions(p, "core-a-restarted", host, "default")
	opts2.KV = kv2
	r2 := mustNew(t, opts2)
	stop2 := runRenewer(t, r2)
	testutil.EventuallyTrue(t, 20*time.Second, "three Run passes of the restarted renewer", func() bool { return kv2.readsOf(row) >= 3 })
	stop2()
	if n := e.calls.count("core-a-restarted", "", ""); n != 0 {
		t.Errorf("the restarted renewer sent %d requests to the CA during the stored backoff", n)
	}
	if got := e.state(host); got.Failures != 1 {
		t.Errorf("Failures = %d after the restart, want still 1", got.Failures)
	}

	// ForceRenew honours the backoff unless told to ignore it; a second
	// failure doubles it.
	if _, err := r2.ForceRenew(ctx, "", false); !isRetry(err) {
		t.Errorf("ForceRenew during the backoff: %v, want a RetryError", err)
	}
	if _, err := r2.ForceRenew(ctx, "", true); err == nil || !strings.Contains(err.Error(), "rejectedIdentifier") {
		t.Errorf("ForceRenew of a blocked name: %v, want the CA's rejectedIdentifier", err)
	}
	if n := len(e.calls.newOrders("core-a-restarted")); n != 1 {
		t.Errorf("ForceRenew sent %d newOrder requests, want 1", n)
	}
	st = e.state(host)
	if d := st.NextAttempt.Sub(st.LastErrorAt); st.Failures != 2 || d < 108*time.Second || d > 132*time.Second {
		t.Errorf("after a second failure: Failures %d, NextAttempt = LastErrorAt + %v; want 2 and about 2 min", st.Failures, d)
	}
	if e.record(host) != nil {
		t.Error("a certificate was stored for a refused name")
	}
}

// 5. The CA unreachable.

func TestDirectoryUnreachable(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	clock := &fakeClock{}
	opts := e.options(p, "core-a", host, "default")
	opts.Now = clock.Now
	r := mustNew(t, opts)
	first, err := r.ForceRenew(ctx, "", false)
	if err != nil {
		t.Fatalf("ForceRenew: %v", err)
	}

	p.Stop()
	clock.Advance(61 * 24 * time.Hour) // due by the schedule (day 60)

	// The running renewer (its client built): the check fails, backoff.
	if _, err := r.check(ctx, opts.Plans[0], false); err == nil {
		t.Fatal("check with the CA down: no error")
	} else {
		t.Logf("running renewer, CA down: %v", err)
	}
	st := e.state(host)
	if st.Failures != 1 || st.LastError == "" || !within(st.NextAttempt, clock.Now().Add(time.Minute), 10*time.Second) {
		t.Errorf("state: Failures %d, LastError %q, NextAttempt now + %v", st.Failures, st.LastError, st.NextAttempt.Sub(clock.Now()))
	}

	// A restarted renewer (it must fetch the directory): backing off first,
	// then, after NextAttempt, a failure that names the directory.
	r2 := mustNew(t, opts)
	if rec, err := r2.check(ctx, opts.Plans[0], false); rec != nil || err != nil {
		t.Errorf("check during the backoff: %v, %v; want nothing", rec, err)
	}
	clock.Advance(2 * time.Minute)
	_, err = r2.check(ctx, opts.Plans[0], false)
	if err == nil || !strings.Contains(err.Error(), p.DirectoryURL) {
		t.Errorf("check with the directory down: %v; want an error naming %s", err, p.DirectoryURL)
	} else {
		t.Logf("restarted renewer, CA down: %v", err)
	}
	st = e.state(host)
	if st.Failures != 2 || !strings.Contains(st.LastError, p.DirectoryURL) {
		t.Errorf("state: Failures %d, LastError %q", st.Failures, st.LastError)
	}
	if got := e.record(host); got == nil || got.Hash != first.Hash || got.Serial != first.Serial {
		t.Error("the stored certificate changed while the CA was down")
	}

	// A directory on a closed port: same, from the first attempt.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "https://" + l.Addr().String() + "/dir"
	_ = l.Close()
	const other = "other.your-domain.com"
	opts3 := e.options(p, "closed-port", other, "default")
	opts3.DirectoryURL = closed
	r3 := mustNew(t, opts3)
	if _, err := r3.ForceRenew(ctx, "", false); err == nil || !strings.Contains(err.Error(), closed) {
		t.Errorf("ForceRenew against %s: %v", closed, err)
	}
	if st := e.state(other); st.Failures != 1 || st.NextAttempt.IsZero() {
		t.Errorf("state after a closed-port directory: %+v", st)
	}
	if e.record(other) != nil {
		t.Error("a certificate appeared for an unreachable directory")
	}
}

// 6. One renewer at a time.

func TestRenewerLockHeldElsewhere(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	const host = "your-domain.com"

	lock, err := e.db.Lock(ctx, "acme-renewer", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	opts := e.options(p, "core-a", host, "default")
	opts.LockWait = time.Second
	r := mustNew(t, opts)
	start := time.Now()
	_, err = r.ForceRenew(ctx, "", false)
	waited := time.Since(start)
	t.Logf("ForceRenew gave up after %v (LockWait %v)", waited.Round(time.Millisecond), opts.LockWait)
	if err == nil || !strings.Contains(err.Error(), "another renewer") {
		t.Fatalf("ForceRenew while the lock is held: %v; want it to say another renewer holds the lock", err)
	}
	// It waited for the lock and gave up when LockWait ran out (not on a
	// refusal, not on a PlatformDB error): the cause says so. The one
	// duration checked is a floor, which load cannot break (it only
	// lengthens a wait): a wait shorter than LockWait did not wait.
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not acquired") {
		t.Errorf("ForceRenew while the lock is held: %v; want the lock wait's deadline as its cause", err)
	}
	if waited < opts.LockWait {
		t.Errorf("ForceRenew gave up after %v, before its LockWait (%v) ran out", waited, opts.LockWait)
	}
	if e.record(host) != nil {
		t.Error("a certificate was stored without the lock")
	}
	if n := e.calls.count("", "", ""); n != 0 {
		t.Errorf("%d requests reached the CA without the lock", n)
	}
	if _, ok := e.storedAccount(p.DirectoryURL); ok {
		t.Error("an account was registered without the lock")
	}

	if err := lock.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	rec, err := r.ForceRenew(ctx, "", false)
	if err != nil {
		t.Fatalf("ForceRenew after Unlock: %v", err)
	}
	verifyRecord(t, e.keys, e.record(host), host, p.IssuerRoots(t))
	checkFreshState(t, e.state(host), rec, start, time.Now())
}

func TestTwoRenewersRace(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	var rs []*Renewer
	for _, who := range []string{"core-a", "core-b"} {
		opts := e.options(p, who, host, "default")
		opts.CheckInterval = 30 * time.Second // long enough to wait out the other's order
		rs = append(rs, mustNew(t, opts))
	}
	var (
		wg    sync.WaitGroup
		recs  = make([]*certstore.Record, 2)
		errs  = make([]error, 2)
		start = make(chan struct{})
	)
	for i, r := range rs {
		wg.Go(func() {
			<-start
			recs[i], errs[i] = r.ForceRenew(ctx, "", false)
		})
	}
	close(start)
	wg.Wait()

	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case strings.Contains(err.Error(), "another renewer"):
			t.Logf("renewer %d: %v", i, err)
		default:
			t.Errorf("renewer %d: %v", i, err)
		}
	}
	if ok == 0 {
		t.Fatal("neither renewer got a certificate")
	}

	// One account, registered once, used by both.
	if rows := e.keysUnder(accountPrefix); len(rows) != 1 {
		t.Errorf("account rows: %v, want one", rows)
	}
	if n := e.calls.count("", http.MethodPost, pebbleNewAccount); n != 1 {
		t.Errorf("%d newAccount requests, want 1", n)
	}
	acct, _ := e.storedAccount(p.DirectoryURL)
	for i, r := range rs {
		if errs[i] == nil && (r.user == nil || r.user.reg == nil || r.user.reg.Location != acct.URI) {
			t.Errorf("renewer %d does not use the stored account %q", i, acct.URI)
		}
	}

	// Never two orders at once: each renewer's order traffic (newOrder to
	// the certificate download) lies outside the other's.
	spans := map[string][2]time.Time{}
	for _, c := range e.calls.all() {
		if !isOrderTraffic(c.Path) {
			continue
		}
		s, seen := spans[c.Who]
		if !seen || c.Start.Before(s[0]) {
			s[0] = c.Start
		}
		if c.End.After(s[1]) {
			s[1] = c.End
		}
		spans[c.Who] = s
	}
	a, b := spans["core-a"], spans["core-b"]
	if len(spans) == 2 && a[0].Before(b[1]) && b[0].Before(a[1]) {
		t.Errorf("the two renewers' orders overlapped: core-a %v..%v, core-b %v..%v",
			a[0].Format(time.StampMicro), a[1].Format(time.StampMicro), b[0].Format(time.StampMicro), b[1].Format(time.StampMicro))
	}
	t.Logf("orders: core-a %v, core-b %v (ForceRenew orders even when the other just did)",
		a[1].Sub(a[0]).Round(time.Millisecond), b[1].Sub(b[0]).Round(time.Millisecond))

	// What is stored is one of the two, and it verifies.
	stored := e.record(host)
	verifyRecord(t, e.keys, stored, host, p.IssuerRoots(t))
	if !slices.ContainsFunc(recs, func(r *certstore.Record) bool { return r != nil && r.Serial == stored.Serial }) {
		t.Errorf("the stored serial %s is neither renewer's", stored.Serial)
	}
	if st := e.state(host); st.Failures != 0 || st.LastError != "" {
		t.Errorf("state after the race: Failures %d, LastError %q", st.Failures, st.LastError)
	}
}

// TestTwoScheduledRenewersOrderOnce: two cores configured as renewers find
// the certificate due at the same moment; the one that gets the lock second
// decides again under it, sees the fresh certificate and does not order.
func TestTwoScheduledRenewersOrderOnce(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	var rs []*Renewer
	for _, who := range []string{"core-a", "core-b"} {
		opts := e.options(p, who, host, "default")
		opts.LockWait = 30 * time.Second // long enough to wait out the other's order
		rs = append(rs, mustNew(t, opts))
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, 2)
	for i, r := range rs {
		wg.Go(func() {
			<-start
			_, errs[i] = r.check(ctx, r.opts.Plans[0], false)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("renewer %d: %v", i, err)
		}
	}
	if n := e.calls.count("", http.MethodPost, pebbleNewOrder); n != 1 {
		t.Fatalf("%d orders for one due certificate, want exactly 1", n)
	}
	verifyRecord(t, e.keys, e.record(host), host, p.IssuerRoots(t))
}

func isOrderTraffic(path string) bool {
	for _, pre := range []string{pebbleNewOrder, pebbleOrder, pebbleAuthz, pebbleChallenge, pebbleFinalize, pebbleCert} {
		if strings.HasPrefix(path, pre) {
			return true
		}
	}
	return false
}

// 7. One account per directory.

func TestAccountPerDirectory(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p1 := e.pebble(acmetest.Options{})
	p2 := e.pebble(acmetest.Options{})
	const h1, h2 = "one.your-domain.com", "two.your-domain.com"

	r1 := mustNew(t, e.options(p1, "dir1", h1, "default"))
	r2 := mustNew(t, e.options(p2, "dir2", h2, "default"))
	for _, c := range []struct {
		r    *Renewer
		p    *acmetest.Pebble
		host string
	}{{r1, p1, h1}, {r2, p2, h2}} {
		if _, err := c.r.ForceRenew(ctx, "", false); err != nil {
			t.Fatalf("ForceRenew %s: %v", c.host, err)
		}
		verifyRecord(t, e.keys, e.record(c.host), c.host, c.p.IssuerRoots(t))
	}

	rows := e.keysUnder(accountPrefix)
	want := []string{AccountRow(p1.DirectoryURL), AccountRow(p2.DirectoryURL)}
	slices.Sort(want)
	if !slices.Equal(rows, want) {
		t.Errorf("account rows %v, want %v", rows, want)
	}
	a1, _ := e.storedAccount(p1.DirectoryURL)
	a2, _ := e.storedAccount(p2.DirectoryURL)
	if a1.Directory != p1.DirectoryURL || a2.Directory != p2.DirectoryURL || a1.URI == "" || a1.URI == a2.URI {
		t.Errorf("accounts: %s -> %s, %s -> %s", a1.Directory, a1.URI, a2.Directory, a2.URI)
	}

	// The key is sealed: not a plain key, and only this keyring opens it.
	if _, err := x509.ParsePKCS8PrivateKey(a1.Key); err == nil {
		t.Error("the account key is stored in the clear")
	}
	if _, err := e.keys.Open(atrest.PurposeACMEAccount, AccountRow(p1.DirectoryURL), a1.Key); err != nil {
		t.Errorf("the account key does not open with the deployment's keyring: %v", err)
	}
	other := make([]byte, 32)
	_, _ = rand.Read(other)
	otherKeys, _ := atrest.New(other)
	if _, err := otherKeys.Open(atrest.PurposeACMEAccount, AccountRow(p1.DirectoryURL), a1.Key); err == nil {
		t.Error("the account key opens with another keyring")
	}

	// A second renewer on the first directory (another core, or a restart)
	// reuses the stored account.
	r1b := mustNew(t, e.options(p1, "dir1-second", h1, "default"))
	if _, err := r1b.ForceRenew(ctx, "", false); err != nil {
		t.Fatalf("ForceRenew with the stored account: %v", err)
	}
	verifyRecord(t, e.keys, e.record(h1), h1, p1.IssuerRoots(t))
	if n := e.calls.count("dir1-second", http.MethodPost, pebbleNewAccount); n != 0 {
		t.Errorf("the second renewer registered %d new account(s)", n)
	}
	if r1b.user == nil || r1b.user.reg == nil || r1b.user.reg.Location != a1.URI {
		t.Errorf("the second renewer does not use the stored account %s", a1.URI)
	}
	if rows := e.keysUnder(accountPrefix); len(rows) != 2 {
		t.Errorf("account rows after reuse: %v", rows)
	}
}

// 8. External Account Binding.

func TestEAB(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	hmacKey := make([]byte, 32)
	_, _ = rand.Read(hmacKey)
	enc := base64.RawURLEncoding.EncodeToString(hmacKey)
	p := e.pebble(acmetest.Options{Options: pebbledev.Options{EABKeys: map[string]string{"kid-1": enc}}})
	const host = "your-domain.com"

	rNo := mustNew(t, e.options(p, "no-eab", host, "default"))
	if _, err := rNo.ForceRenew(ctx, "", false); err == nil {
		t.Fatal("ForceRenew without EAB against a CA that requires it: no error")
	}
	st := e.state(host)
	if !strings.Contains(st.LastError, "externalAccountRequired") || st.Failures != 1 {
		t.Errorf("state without EAB: Failures %d, LastError %q; want the CA's externalAccountRequired", st.Failures, st.LastError)
	}
	if _, ok := e.storedAccount(p.DirectoryURL); ok {
		t.Error("an account row was stored although registration failed")
	}
	t.Logf("LastError without EAB: %q", st.LastError)

	wrong := make([]byte, 32)
	_, _ = rand.Read(wrong)
	optsWrong := e.options(p, "wrong-eab", host, "default")
	optsWrong.EAB = &EAB{KID: "kid-1", HMACKey: base64.RawURLEncoding.EncodeToString(wrong)}
	if _, err := mustNew(t, optsWrong).ForceRenew(ctx, "", false); err == nil {
		t.Error("ForceRenew with a wrong EAB MAC key: no error")
	}

	opts := e.options(p, "with-eab", host, "default")
	opts.EAB = &EAB{KID: "kid-1", HMACKey: enc}
	start := time.Now()
	rec, err := mustNew(t, opts).ForceRenew(ctx, "", true) // the operator fixed the configuration: past the backoff
	if err != nil {
		t.Fatalf("ForceRenew with EAB: %v", err)
	}
	verifyRecord(t, e.keys, e.record(host), host, p.IssuerRoots(t))
	checkFreshState(t, e.state(host), rec, start, time.Now())
	if _, ok := e.storedAccount(p.DirectoryURL); !ok {
		t.Error("no account row after registering with EAB")
	}
}

// A DNS-01 plan without a DNS-01 provider fails clearly, before any order.
func TestDNS01WithoutProvider(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	opts := e.options(p, "core-a", "mc.your-domain.com", "default")
	opts.Plans = []Plan{{Hostnames: []string{"*.mc.your-domain.com", "mc.your-domain.com"}, Challenge: "dns-01"}}
	r := mustNew(t, opts)
	_, err := r.ForceRenew(ctx, "mc.your-domain.com", false)
	if err == nil || !strings.Contains(err.Error(), "DNS-01") {
		t.Fatalf("ForceRenew of a DNS-01 plan without a provider: %v", err)
	}
	if n := len(e.calls.newOrders("")); n != 0 {
		t.Errorf("%d orders sent for a plan that cannot be validated", n)
	}
	if st := e.state("*.mc.your-domain.com"); st.Failures != 1 || !strings.Contains(st.LastError, "DNS-01") {
		t.Errorf("state: %+v", st)
	}
}

// 9. A renewer stopped or killed mid-order.

func TestRestartMidOrder(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})

	t.Run("cancelled", func(t *testing.T) {
		const host = "your-domain.com"
		arrived := e.gate.hold()
		// Run's first pass orders (no certificate yet); ending Run's
		// context is the daemon shutting down.
		r1 := mustNew(t, e.options(p, "core-a", host, "default"))
		stop := runRenewer(t, r1)
		select {
		case <-arrived:
		case <-time.After(30 * time.Second):
			t.Fatal("the CA never came for the HTTP-01 token")
		}
		if toks := e.keysUnder(http01Prefix); len(toks) != 1 {
			t.Errorf("tokens published during the validation: %v, want one", toks)
		}
		stop() // shutdown mid-order: returns once Run has
		e.gate.open()
		if e.record(host) != nil {
			t.Fatal("a certificate was stored by the cancelled order")
		}
		if st := e.state(host); st.Failures != 0 || st.LastError != "" {
			t.Errorf("a shutdown was recorded as a CA failure: %+v", st)
		}
		if toks := e.keysUnder(http01Prefix); len(toks) != 0 {
			t.Errorf("the cancelled order left its HTTP-01 token in PlatformDB: %v", toks)
		}

		start := time.Now()
		r2 := mustNew(t, e.options(p, "core-a-restarted", host, "default"))
		if _, err := r2.ForceRenew(ctx, "", false); !isRetry(err) {
			t.Errorf("ForceRenew right after the interrupted attempt: %v, want refused until its NextAttempt", err)
		}
		rec, err := r2.ForceRenew(ctx, "", true) // the operator insists
		if err != nil {
			t.Fatalf("ForceRenew after the restart: %v", err)
		}
		took := time.Since(start)
		verifyRecord(t, e.keys, e.record(host), host, p.IssuerRoots(t))
		checkFreshState(t, e.state(host), rec, start, time.Now())
		t.Logf("after a cancelled order, the restarted renewer got its certificate in %v", took.Round(time.Millisecond))
	})

	t.Run("killed", func(t *testing.T) {
		// Core B's renewer runs over its own PlatformDB connection; closing
		// that connection's client without releasing anything is the
		// process dying: its lock lease is left to expire (LockTTL 2 s).
		const host = "killed.your-domain.com"
		conn, err := platformdb.Connect(ctx, platformdb.ConnectOptions{
			Endpoints: []string{e.db.ClientAddress()},
			Logger:    slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		opts := e.options(p, "core-b", host, "default")
		opts.KV = conn
		opts.LockTTL = 2 * time.Second // a dead renewer's lock frees itself this fast
		opts.Certs = &certstore.Catalog{KV: conn, Keys: e.keys}
		r3 := mustNew(t, opts)

		arrived := e.gate.hold()
		ctx3, cancel3 := context.WithCancel(ctx)
		defer cancel3()
		errc := make(chan error, 1)
		go func() {
			_, err := r3.ForceRenew(ctx3, "", false)
			errc <- err
		}()
		select {
		case <-arrived:
		case err := <-errc:
			t.Fatalf("the order ended before the CA came for the HTTP-01 token: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("the CA never came for the HTTP-01 token")
		}
		killedAt := time.Now()
		_ = conn.Client().Close() // dies: no unlock, no cleanup
		e.gate.open()

		opts4 := e.options(p, "core-b-restarted", host, "default")
		opts4.CheckInterval = 30 * time.Second // wait for the dead renewer's lease
		r4 := mustNew(t, opts4)
		rec, err := r4.ForceRenew(ctx, "", true) // the attempt the dead one recorded is not waited for
		if err != nil {
			t.Fatalf("ForceRenew after the renewer died: %v", err)
		}
		total := time.Since(killedAt)
		verifyRecord(t, e.keys, e.record(host), host, p.IssuerRoots(t))
		checkFreshState(t, e.state(host), rec, killedAt, time.Now())

		// When did the new renewer get the lock? Its first CA request
		// follows the lock.
		var firstReq time.Time
		for _, c := range e.calls.all() {
			if c.Who == "core-b-restarted" {
				firstReq = c.Start
				break
			}
		}
		lockWait := firstReq.Sub(killedAt)
		t.Logf("the dead renewer's lock held the next one %v (LockTTL %v); certificate %v after the kill",
			lockWait.Round(time.Millisecond), opts.LockTTL, total.Round(time.Millisecond))
		if lockWait > opts.LockTTL+5*time.Second {
			t.Errorf("the dead renewer's lock blocked the next one for %v, LockTTL is %v", lockWait, opts.LockTTL)
		}
		if lockWait < 300*time.Millisecond {
			t.Errorf("the lock was free %v after the kill: the test did not leave a stale lock", lockWait)
		}

		// The dead renewer stopped ordering when its lock went (it never
		// stored anything: its connection is gone).
		select {
		case err := <-errc:
			if err == nil {
				t.Error("the killed renewer's ForceRenew reported success")
			}
		case <-time.After(30 * time.Second):
			t.Error("the killed renewer's order did not stop after its lock was lost")
		}
		if got := e.record(host); got.Serial != rec.Serial {
			t.Errorf("stored serial %s, want the restarted renewer's %s", got.Serial, rec.Serial)
		}
	})
}

// The state row is JSON a human (and the admin API) can read.
func TestLoadStates(t *testing.T) {
	ctx := context.Background()
	kv := newMemKV()
	want := State{Hostnames: []string{"your-domain.com"}, Failures: 2, LastError: "boom",
		NextAttempt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := saveState(ctx, kv, "your-domain.com", want); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, statePrefix+"damaged.com", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	states, err := LoadStates(ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := states["your-domain.com"]
	if !ok || got.Failures != 2 || got.LastError != "boom" || !got.NextAttempt.Equal(want.NextAttempt) {
		t.Errorf("LoadStates = %+v", states)
	}
	if _, ok := states["damaged.com"]; ok {
		t.Error("a damaged row was returned")
	}
	// A damaged row loses only bookkeeping.
	if st, err := loadState(ctx, kv, "damaged.com"); err != nil || st.Failures != 0 {
		t.Errorf("loadState of a damaged row: %+v, %v", st, err)
	}
	e, _ := kv.Get(ctx, statePrefix+"your-domain.com")
	var raw map[string]any
	if err := json.Unmarshal(e.Value, &raw); err != nil || raw["lastError"] != "boom" {
		t.Errorf("state row %s", e.Value)
	}
	if _, ok := raw["lastSuccess"]; ok {
		t.Errorf("zero times are written: %s", e.Value)
	}
}

// TestDirectoryChangeRenews: switching directories (staging -> production)
// replaces the certificate from the old CA at the next check, with a new
// account on the new directory.
func TestDirectoryChangeRenews(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	staging := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	if _, err := mustNew(t, e.options(staging, "core-a", host, "default")).ForceRenew(ctx, "", false); err != nil {
		t.Fatal(err)
	}
	before := e.record(host)
	production := e.pebble(acmetest.Options{})
	r := mustNew(t, e.options(production, "core-a", host, "default"))
	if _, err := r.check(ctx, r.opts.Plans[0], false); err != nil {
		t.Fatal(err)
	}
	after := e.record(host)
	if after.Serial == before.Serial {
		t.Fatal("the certificate from the old directory was kept after the directory changed")
	}
	verifyRecord(t, e.keys, after, host, production.IssuerRoots(t))
	if rows := e.keysUnder(accountPrefix); len(rows) != 2 {
		t.Errorf("account rows %v, want one per directory", rows)
	}
	if st := e.state(host); st.Directory != production.DirectoryURL {
		t.Errorf("state directory %q, want %q", st.Directory, production.DirectoryURL)
	}
}
