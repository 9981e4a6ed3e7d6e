package health

import (
	"fmt"
	"time"
)

// A certificate is judged against its own lifetime, not a fixed number of
// days: a fresh 6-day certificate is fine, a 90-day one whose renewal is a
// week late is not (decision 0025).
const (
	// OverdueShare: a renewal not done this share of the lifetime after its
	// planned point is overdue (a tenth: 9 days for 90 days, 14.4 h for a
	// 6-day certificate, 12 s for a 120 s test one).
	OverdueShare = 10
	// UnrenewedWarning is how long before expiry a certificate that nothing
	// renews (imported, files) needs attention — or a third of its lifetime
	// when that is shorter.
	UnrenewedWarning = 7 * 24 * time.Hour
)

// Cert is what the judgement needs of a certificate and its renewal.
type Cert struct {
	NotBefore, NotAfter time.Time
	// Renewed: a renewer keeps this certificate (an ACME plan's row). False
	// for one nothing renews: imported outside the plans, or http.ssl files.
	Renewed bool
	// NextRenewal is the renewer's planned point; zero (or before
	// NotBefore: a plan for the previous certificate): two thirds of the
	// lifetime (the schedule without ARI or renewBeforeDays).
	NextRenewal time.Time
	// ARIEnd is the end of the CA's renewal window for this certificate,
	// zero when the CA gave none.
	ARIEnd time.Time
}

// The states of a Verdict.
const (
	StateOK       = "ok"       // nothing to do yet
	StateDue      = "due"      // in its renewal window: the renewer is on it
	StateOverdue  = "overdue"  // the renewal is late: needs attention
	StateExpiring = "expiring" // nothing renews it and it expires soon: needs attention
	StateExpired  = "expired"
)

// Verdict is a certificate judged at one instant.
type Verdict struct {
	State       string    `json:"state"`
	Attention   bool      `json:"needsAttention"`
	AttentionAt time.Time `json:"attentionAt"` // when it needs attention unless renewed (or replaced) before
}

// Judge says where c stands at now. A renewed certificate needs attention
// once its renewal is overdue: past the end of the CA's window when there is
// one, else a tenth of the lifetime past the planned point; never later than
// expiry. One nothing renews needs attention UnrenewedWarning before expiry,
// or a third of its lifetime before when that is shorter.
func Judge(c Cert, now time.Time) Verdict {
	life := c.NotAfter.Sub(c.NotBefore)
	var at, point time.Time
	if c.Renewed {
		point = c.NextRenewal
		if point.IsZero() || point.Before(c.NotBefore) {
			// None planned, or planned for the certificate before this one
			// (imported over it; the renewer has not looked since).
			point = c.NotBefore.Add(life * 2 / 3)
		}
		at = c.ARIEnd
		if at.IsZero() {
			at = point.Add(life / OverdueShare)
		}
		at = earliest(at, c.NotAfter)
	} else {
		at = c.NotAfter.Add(-min(UnrenewedWarning, life/3))
	}
	v := Verdict{State: StateOK, AttentionAt: at}
	switch {
	case !now.Before(c.NotAfter):
		v.State, v.Attention = StateExpired, true
	case !now.Before(at) && c.Renewed:
		v.State, v.Attention = StateOverdue, true
	case !now.Before(at):
		v.State, v.Attention = StateExpiring, true
	case c.Renewed && !now.Before(point):
		v.State = StateDue
	}
	return v
}

// Describe says in words what a verdict that needs attention means for the
// certificate of hostname, for status; "" when it needs none.
func (v Verdict) Describe(hostname string, notAfter, now time.Time) string {
	left := notAfter.Sub(now)
	switch v.State {
	case StateExpired:
		return fmt.Sprintf("certificate %s expired on %s (%s ago): clients refuse it", hostname,
			notAfter.UTC().Format(time.RFC3339), roughly(-left))
	case StateOverdue:
		return fmt.Sprintf("certificate %s: its renewal is overdue (since %s); it expires on %s, in %s", hostname,
			v.AttentionAt.UTC().Format(time.RFC3339), notAfter.UTC().Format(time.RFC3339), roughly(left))
	case StateExpiring:
		return fmt.Sprintf("certificate %s expires in %s, on %s, and nothing renews it (imported or files): replace it", hostname,
			roughly(left), notAfter.UTC().Format(time.RFC3339))
	}
	return ""
}

// roughly is d in its largest whole unit: "3 day(s)", "5 hour(s)", ...
func roughly(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%d day(s)", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%d hour(s)", int(d.Hours()))
	case d >= time.Minute:
		return fmt.Sprintf("%d minute(s)", int(d.Minutes()))
	}
	return fmt.Sprintf("%d second(s)", int(d.Seconds()))
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
