package acme

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/testutil"
)

// TestMorePlans: plans found at run time (the other cores' core.url in a
// DNS-less cluster) are ordered by Run beside the configured ones, and
// force-renew knows them; a row the configuration already plans is not
// ordered twice, and a core gone from the list is no longer ordered.
func TestMorePlans(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	opts := e.runOptions(p, "core1", "core1.your-domain.com", "")
	var more atomic.Pointer[[]Plan]
	more.Store(&[]Plan{
		{Hostnames: []string{"core2.your-domain.com"}, Challenge: "http-01"},
		{Hostnames: []string{"core1.your-domain.com"}, Challenge: "http-01"}, // planned already
	})
	opts.MorePlans = func(context.Context) []Plan { return *more.Load() }
	var orders atomic.Int64
	opts.OnOrder = func(err error) {
		if err == nil {
			orders.Add(1)
		}
	}
	r := mustNew(t, opts)
	if got := r.plans(ctx); len(got) != 2 || got[0].Row() != "core1.your-domain.com" || got[1].Row() != "core2.your-domain.com" {
		t.Fatalf("plans %v, want core1 then core2 once each", got)
	}
	stop := runRenewer(t, r)
	testutil.EventuallyTrue(t, 60*time.Second, "both cores' certificates", func() bool {
		_, err1 := e.certs.Get(ctx, "core1.your-domain.com")
		_, err2 := e.certs.Get(ctx, "core2.your-domain.com")
		return err1 == nil && err2 == nil
	})
	stop()
	verifyRecord(t, e.keys, e.record("core2.your-domain.com"), "core2.your-domain.com", p.IssuerRoots(t))
	if n := orders.Load(); n != 2 {
		t.Errorf("%d orders, want 2 (core1 planned twice is ordered once)", n)
	}

	if _, err := r.ForceRenew(ctx, "core2.your-domain.com", false); err != nil {
		t.Errorf("force-renew of a plan found at run time: %v", err)
	}
	more.Store(&[]Plan{})
	if _, err := r.ForceRenew(ctx, "core2.your-domain.com", false); err == nil || !strings.Contains(err.Error(), "not a hostname") {
		t.Errorf("force-renew of a core no longer listed: %v", err)
	}
}
