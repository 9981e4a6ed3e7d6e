package acme

// Regression tests for the renewer's defects found by fault injection
// (issue 18) and for revocation noticed through ARI (issue 14 item 6): real
// embedded etcd, real Pebble. No t.Parallel (acmetest).

import (
	"net/http"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
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
	p := e.pebble(acmetest.Options{Profiles: shortProfiles()})
	const host = "your-domain.com"
	opts := e.options(p, "core-a", host, "short30s")
	opts.CheckInterval = 5 * time.Minute // the daemon's default
	r := mustNew(t, opts)
	first, err := r.ForceRenew(ctx, "")
	if err != nil {
		t.Fatalf("ForceRenew: %v", err)
	}
	stop := runRenewer(t, r)
	// The first pass asks ARI and fixes the point in the CA's window.
	waitFor(t, 10*time.Second, "the first pass's ARI answer", func() bool { return e.state(host).ARISerial == first.Serial })
	point := e.state(host).NextRenewal
	if point.Before(first.IssuedAt) || point.After(first.ExpiresAt) {
		t.Fatalf("planned renewal %v outside the lifetime %v..%v", point, first.IssuedAt, first.ExpiresAt)
	}
	waitFor(t, 45*time.Second, "the renewed certificate", func() bool {
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
	if late < 0 {
		t.Errorf("renewed %v before its planned point", -late)
	}
	if late > 2*time.Second && point.After(starts[0].Add(time.Second)) {
		t.Errorf("renewed %v after its planned point, want within 2 s", late)
	}
}
