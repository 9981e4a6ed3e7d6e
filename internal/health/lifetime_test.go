package health

import (
	"strings"
	"testing"
	"time"
)

func TestJudge(t *testing.T) {
	const day = 24 * time.Hour
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	renewed := func(life time.Duration, next time.Duration) Cert {
		c := Cert{NotBefore: t0, NotAfter: at(life), Renewed: true}
		if next > 0 {
			c.NextRenewal = at(next)
		}
		return c
	}
	withARI := func(c Cert, end time.Duration) Cert { c.ARIEnd = at(end); return c }
	unrenewed := func(life time.Duration) Cert { return Cert{NotBefore: t0, NotAfter: at(life)} }
	tests := []struct {
		name      string
		c         Cert
		now       time.Duration // after notBefore
		state     string
		attention time.Duration // AttentionAt after notBefore
	}{
		// The case fixed days got wrong: a fresh short-lived certificate.
		{"6-day certificate, just issued", renewed(6*day, 4*day), time.Minute, StateOK, 4*day + 6*day/10},
		{"6-day certificate, 5 days left, not due", renewed(6*day, 4*day), day, StateOK, 4*day + 6*day/10},
		{"6-day certificate, in its window", renewed(6*day, 4*day), 4*day + time.Hour, StateDue, 4*day + 6*day/10},
		{"6-day certificate, a tenth late", renewed(6*day, 4*day), 4*day + 6*day/10, StateOverdue, 4*day + 6*day/10},
		{"90-day, day 61, renewing at 60", renewed(90*day, 60*day), 61 * day, StateDue, 69 * day},
		{"90-day, day 70, renewal at 60 not done", renewed(90*day, 60*day), 70 * day, StateOverdue, 69 * day},
		{"90-day, day 68, renewing since day 60: due, not overdue yet", renewed(90*day, 60*day), 68 * day, StateDue, 69 * day},
		{"no planned point known: due at two thirds, overdue a tenth later", renewed(90*day, 0), 68 * day, StateDue, 69 * day},
		{"a point planned for the previous certificate: two thirds of this one", Cert{NotBefore: t0, NotAfter: at(90 * day), Renewed: true, NextRenewal: at(-30 * day)}, time.Hour, StateOK, 69 * day},
		{"ARI window end is the deadline", withARI(renewed(90*day, 61*day), 62*day), 62*day + time.Second, StateOverdue, 62 * day},
		{"ARI window, inside", withARI(renewed(90*day, 61*day), 62*day), 61*day + time.Hour, StateDue, 62 * day},
		{"ARI window moved into the past (revocation)", withARI(renewed(90*day, 0), -day), time.Hour, StateOverdue, -day},
		{"120 s test certificate, at 85 s", renewed(120*time.Second, 80*time.Second), 85 * time.Second, StateDue, 92 * time.Second},
		{"120 s test certificate, at 93 s", renewed(120*time.Second, 80*time.Second), 93 * time.Second, StateOverdue, 92 * time.Second},
		{"a planned point past expiry: attention at expiry at the latest", renewed(10*day, 12*day), 9 * day, StateOK, 10 * day},
		{"expired, renewed or not", renewed(6*day, 4*day), 6 * day, StateExpired, 4*day + 6*day/10},
		{"expired, nothing renews it", unrenewed(90 * day), 91 * day, StateExpired, 83 * day},
		{"imported 90-day, 8 days left", unrenewed(90 * day), 82 * day, StateOK, 83 * day},
		{"imported 90-day, 6 days left", unrenewed(90 * day), 84 * day, StateExpiring, 83 * day},
		{"imported 6-day, a third before expiry", unrenewed(6 * day), 4*day + time.Minute, StateExpiring, 4 * day},
		{"imported 6-day, fresh", unrenewed(6 * day), day, StateOK, 4 * day},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Judge(tt.c, at(tt.now))
			if v.State != tt.state {
				t.Errorf("state %q, want %q", v.State, tt.state)
			}
			if want := tt.state == StateOverdue || tt.state == StateExpiring || tt.state == StateExpired; v.Attention != want {
				t.Errorf("attention %v, want %v", v.Attention, want)
			}
			if !v.AttentionAt.Equal(at(tt.attention)) {
				t.Errorf("attentionAt notBefore + %v, want + %v", v.AttentionAt.Sub(t0), tt.attention)
			}
			d := v.Describe("h.example.com", tt.c.NotAfter, at(tt.now))
			if (d != "") != v.Attention || (d != "" && !strings.Contains(d, "h.example.com")) {
				t.Errorf("Describe = %q for %+v", d, v)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	notAfter := now.Add(3*24*time.Hour + time.Hour)
	got := Verdict{State: StateExpiring, Attention: true}.Describe("legacy.example.org", notAfter, now)
	if want := "certificate legacy.example.org expires in 3 day(s), on 2026-12-06T13:00:00Z, and nothing renews it (imported or files): replace it"; got != want {
		t.Errorf("expiring: %q\nwant       %q", got, want)
	}
	got = Verdict{State: StateOverdue, Attention: true, AttentionAt: now.Add(-time.Hour)}.Describe("a.example", now.Add(5*time.Hour), now)
	if want := "certificate a.example: its renewal is overdue (since 2026-12-03T11:00:00Z); it expires on 2026-12-03T17:00:00Z, in 5 hour(s)"; got != want {
		t.Errorf("overdue: %q\nwant     %q", got, want)
	}
	got = Verdict{State: StateExpired, Attention: true}.Describe("b.example", now.Add(-90*time.Second), now)
	if want := "certificate b.example expired on 2026-12-03T11:58:30Z (1 minute(s) ago): clients refuse it"; got != want {
		t.Errorf("expired: %q\nwant     %q", got, want)
	}
}
