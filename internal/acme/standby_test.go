package acme

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/testutil"
)

// standbyOptions are a standby renewer's options (core2) with a short grace.
func (e *testEnv) standbyOptions(p *acmetest.Pebble, host string, grace time.Duration) Options {
	o := e.options(p, "core2", host, "short120s")
	o.Core, o.Standby, o.StandbyMinGrace = "core2", true, grace
	return o
}

// holdPresenceFor runs a preferred renewer's presence (core1 alive) until
// the returned stop is called or the test ends.
func (e *testEnv) holdPresenceFor(t *testing.T, p *acmetest.Pebble, host string) (stop func()) {
	t.Helper()
	o := e.options(p, "core1", host, "short120s")
	o.Core = "core1"
	pref := mustNew(t, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pref.holdPresence(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	testutil.EventuallyTrue(t, 10*time.Second, "the preferred renewer's presence", func() bool {
		return !mustNew(t, e.standbyOptions(p, host, time.Hour)).preferredGone(context.Background())
	})
	return stop
}

// No preferred renewer running (none configured, or gone): a standby
// orders a due certificate at its first look, and says why in the state.
func TestStandbyOrdersWhenThePreferredIsGone(t *testing.T) {
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	r := mustNew(t, e.standbyOptions(p, host, time.Hour))
	if _, err := r.check(testCtx(t), r.opts.Plans[0], false); err != nil {
		t.Fatal(err)
	}
	if e.record(host) == nil {
		t.Fatal("the standby did not order with no preferred renewer running")
	}
	st := e.state(host)
	if st.RenewedBy != "core2" || !strings.Contains(st.RenewedWhy, "standby core2: the preferred renewer is gone") {
		t.Errorf("state says renewed by %q because %q", st.RenewedBy, st.RenewedWhy)
	}
}

// A live preferred renewer that does not renew: the standby leaves the
// certificate to it for the grace, then orders, once.
func TestStandbyWaitsOutTheGrace(t *testing.T) {
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	e.holdPresenceFor(t, p, host) // alive, and never orders
	const grace = 3 * time.Second
	r := mustNew(t, e.standbyOptions(p, host, grace))
	ctx := testCtx(t)
	begin := time.Now()
	if _, err := r.check(ctx, r.opts.Plans[0], false); err != nil {
		t.Fatal(err)
	}
	if n := e.calls.count("core2", "POST", pebbleNewOrder); n != 0 || e.record(host) != nil {
		t.Fatalf("the standby ordered (%d newOrder) while the preferred renewer is alive and within the grace", n)
	}
	if wait := r.untilNext(); wait > grace+wakeSlack+time.Second {
		t.Errorf("the standby looks again in %s, after the grace of %s", wait, grace)
	}
	time.Sleep(time.Until(begin.Add(grace)) + 100*time.Millisecond)
	if _, err := r.check(ctx, r.opts.Plans[0], false); err != nil {
		t.Fatal(err)
	}
	if e.record(host) == nil {
		t.Fatal("the standby did not order once the grace was over")
	}
	st := e.state(host)
	if st.RenewedBy != "core2" || !strings.Contains(st.RenewedWhy, "standby core2: the preferred renewer had not renewed it") {
		t.Errorf("state says renewed by %q because %q", st.RenewedBy, st.RenewedWhy)
	}
	if n := e.calls.count("core2", "POST", pebbleNewOrder); n != 1 {
		t.Errorf("%d newOrder from the standby, want 1", n)
	}
}

// Both running: the preferred renewer orders, the standby never does, and
// the state names the preferred one.
func TestPreferredRenewsStandbyStaysIdle(t *testing.T) {
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	po := e.runOptions(p, "core1", host, "short120s")
	po.Core = "core1"
	so := e.standbyOptions(p, host, time.Minute)
	so.CheckInterval = time.Second
	runRenewer(t, mustNew(t, po))
	testutil.EventuallyTrue(t, 10*time.Second, "the preferred renewer's presence", func() bool { return !mustNew(t, so).preferredGone(context.Background()) })
	runRenewer(t, mustNew(t, so))
	testutil.EventuallyTrue(t, 60*time.Second, "the preferred renewer's certificate", func() bool { return e.record(host) != nil })
	time.Sleep(3 * time.Second) // the standby's passes meanwhile
	if n := e.calls.count("core2", "POST", pebbleNewOrder); n != 0 {
		t.Errorf("the standby sent %d newOrder next to a live preferred renewer", n)
	}
	if n := e.calls.count("core1", "POST", pebbleNewOrder); n != 1 {
		t.Errorf("the preferred renewer sent %d newOrder, want 1", n)
	}
	if st := e.state(host); st.RenewedBy != "core1" || st.RenewedWhy != whyPreferred {
		t.Errorf("state says renewed by %q because %q", st.RenewedBy, st.RenewedWhy)
	}
}
