package acme

import (
	"math/rand/v2"
	"time"

	"github.com/pryv/pryv-tls/internal/certstore"
)

// Backoff bounds: about a minute after the first failure, doubling, never
// more than six hours apart — well inside Let's Encrypt's failed-validation
// limit (5 per hour per account and hostname).
const (
	backoffMin = time.Minute
	backoffMax = 6 * time.Hour
	// urgentBackoffMax caps the backoff once the certificate in service has
	// expired or is in its last tenth: hours between tries then mean hours
	// of an expired certificate after the CA is back. A CA's Retry-After
	// still wins.
	urgentBackoffMax = 5 * time.Minute
)

// urgent reports whether cur has expired or is in the last tenth of its
// lifetime. No certificate at all is not urgent: a first issuance that keeps
// failing is usually a configuration error, and retrying it every few
// minutes would spend the CA's failed-validation limit.
func urgent(cur *certstore.Record, now time.Time) bool {
	if cur == nil {
		return false
	}
	life := cur.ExpiresAt.Sub(cur.IssuedAt)
	return !now.Before(cur.ExpiresAt.Add(-life / 10))
}

// retryDelay is the wait after the n-th consecutive failure: the backoff,
// capped at urgentBackoffMax when the certificate is urgent.
func retryDelay(n int, retryAfter time.Duration, urgent bool) time.Duration {
	d := backoffDelay(n, retryAfter)
	if urgent && d > urgentBackoffMax {
		d = max(urgentBackoffMax, retryAfter)
	}
	return d
}

// wakeSlack is added to a wake-up aimed at a planned time, so the check
// that follows finds it passed rather than a few microseconds ahead.
const wakeSlack = 20 * time.Millisecond

// earliestAfter is the earliest of times that is after now (zero: none).
func earliestAfter(now time.Time, times ...time.Time) time.Time {
	var out time.Time
	for _, t := range times {
		if t.After(now) && (out.IsZero() || t.Before(out)) {
			out = t
		}
	}
	return out
}

// scheduledRenewal is when a certificate is due without ARI: the earlier of
// renewBefore ahead of expiry and the start of the last third of its
// lifetime — so a 90-day certificate renews at day 60, a 6-day one at day 4,
// and a 120-second one at 80 s. A renewBefore as long as the lifetime or
// longer (the default 30 days for a 6-day certificate) cannot be honoured:
// it would make the certificate due from the moment it is issued, and the
// renewer would order again at every check; the last third applies then.
// A shorter renewBefore that still fits is never honoured before half the
// lifetime (renewBeforeDays 5 on a 6-day certificate renews at day 3, not
// day 1): renewing sooner only spends the CA's limits.
func scheduledRenewal(notBefore, notAfter time.Time, renewBefore time.Duration) time.Time {
	byDays := notAfter.Add(-renewBefore)
	byThird := notBefore.Add(notAfter.Sub(notBefore) * 2 / 3)
	if byThird.Before(byDays) || !byDays.After(notBefore) {
		return byThird
	}
	return latest(byDays, notBefore.Add(notAfter.Sub(notBefore)/2))
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// backoffDelay is the wait after the n-th consecutive failure (n >= 1),
// at least what the CA asked for, with ±10% jitter so a fleet does not retry
// in step.
func backoffDelay(n int, retryAfter time.Duration) time.Duration {
	d := backoffMin
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	d = min(jitter(min(d, backoffMax), 0.1), backoffMax)
	return max(d, retryAfter)
}

// jitter spreads d by ±frac.
func jitter(d time.Duration, frac float64) time.Duration {
	if d <= 0 {
		return d
	}
	delta := float64(d) * frac
	return time.Duration(float64(d) - delta + rand.Float64()*2*delta) //nolint:gosec // G404: jitter that spreads renewals, not a secret
}
