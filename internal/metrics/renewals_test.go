package metrics

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRenewals(t *testing.T) {
	m := New("test")
	next := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	start, end := next.Add(-time.Hour), next.Add(time.Hour)
	var fail atomic.Bool
	var gotDeadline atomic.Bool
	m.WatchRenewals(func(ctx context.Context) ([]Renewal, error) {
		_, ok := ctx.Deadline()
		gotDeadline.Store(ok)
		if fail.Load() {
			return nil, errors.New("no quorum")
		}
		return []Renewal{
			{Hostname: "*.mc.example.com", NextRenewal: next, ARIStart: start, ARIEnd: end},
			{Hostname: "late.example.com", NextRenewal: next.Add(-48 * time.Hour), Overdue: true, Failures: 3, Paused: true},
			{Hostname: "new.example.com"}, // not issued yet: no plan
		}, nil
	}, time.Second)
	fams, body := scrape(t, m.Handler())
	if !gotDeadline.Load() {
		t.Error("the renewal list was read without a deadline")
	}
	for _, c := range []struct {
		name, host string
		want       float64
	}{
		{"pryvtls_acme_next_renewal_timestamp_seconds", "*.mc.example.com", float64(next.Unix())},
		{"pryvtls_acme_ari_window_start_timestamp_seconds", "*.mc.example.com", float64(start.Unix())},
		{"pryvtls_acme_ari_window_end_timestamp_seconds", "*.mc.example.com", float64(end.Unix())},
		{"pryvtls_acme_renewal_overdue", "*.mc.example.com", 0},
		{"pryvtls_acme_renewal_overdue", "late.example.com", 1},
		{"pryvtls_acme_consecutive_failures", "late.example.com", 3},
		{"pryvtls_acme_paused", "late.example.com", 1},
		{"pryvtls_acme_paused", "new.example.com", 0},
	} {
		if v, ok := value(fams, c.name, map[string]string{"hostname": c.host}); !ok || v != c.want {
			t.Errorf("%s{hostname=%q} = %v (present %v), want %v", c.name, c.host, v, ok, c.want)
		}
	}
	for _, absent := range []struct{ name, host string }{
		{"pryvtls_acme_ari_window_start_timestamp_seconds", "late.example.com"},
		{"pryvtls_acme_next_renewal_timestamp_seconds", "new.example.com"},
	} {
		if _, ok := value(fams, absent.name, map[string]string{"hostname": absent.host}); ok {
			t.Errorf("%s{hostname=%q} exported without a value to give", absent.name, absent.host)
		}
	}
	t.Logf("renewal series:\n%s", grepLines(body, "pryvtls_acme_"))

	fail.Store(true)
	fams, _ = scrape(t, m.Handler())
	if _, ok := value(fams, "pryvtls_acme_renewal_overdue", map[string]string{"hostname": "late.example.com"}); ok {
		t.Error("renewal series exported from a failed read")
	}
}

func grepLines(body, prefix string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
