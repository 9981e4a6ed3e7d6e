package acme

import (
	"context"
	"fmt"
	"time"

	"github.com/pryv/pryv-tls/internal/certstore"
)

// No single renewer (issue 14 item 3, decision 0027). The certRenewer core
// is the preferred renewer: while its Run runs it holds the presence lock.
// Every other core holding the atRestKey runs a standby renewer, which
// orders a due certificate only when the preferred one is gone (a standby
// can take the presence lock: its lease ended, kill -9 or a lost core
// included) or has not renewed it for a grace after it was due (a tenth of
// the lifetime, at least StandbyMinGrace). The renewer lock still keeps
// every order alone, and the due check under it stops a standby that
// waited behind the preferred one's order.

// presenceName is the lock the preferred renewer holds for as long as it runs.
const presenceName = "acme-renewer-preferred"

// DefaultStandbyMinGrace is the least a standby waits behind a live
// preferred renewer that does not renew a due certificate.
const DefaultStandbyMinGrace = 10 * time.Minute

// presenceProbe bounds a standby's attempt at the presence lock.
const presenceProbe = 2 * time.Second

// Renewal reasons recorded in State.RenewedWhy.
const (
	whyPreferred = "the preferred renewer (certRenewer)"
	whyForced    = "a forced renewal"
)

// holdPresence holds the presence lock until ctx ends, taking it again
// whenever it is lost (PlatformDB unreachable longer than its lease).
func (r *Renewer) holdPresence(ctx context.Context) {
	for ctx.Err() == nil {
		lock, err := r.opts.KV.Lock(ctx, presenceName, r.opts.LockTTL)
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		select {
		case <-ctx.Done():
			_ = lock.Unlock(context.WithoutCancel(ctx))
			return
		case <-lock.Lost():
			r.log.Debug("the preferred renewer's presence lease ended; taking it again")
		}
	}
}

// preferredGone reports whether the preferred renewer is not running: its
// presence lock can be taken (and is let go at once). A store that does not
// answer says nothing: the preferred one is then taken to be there.
func (r *Renewer) preferredGone(ctx context.Context) bool {
	pctx, cancel := context.WithTimeout(ctx, presenceProbe)
	lock, err := r.opts.KV.Lock(pctx, presenceName, r.opts.LockTTL)
	cancel()
	if err != nil {
		return false
	}
	_ = lock.Unlock(context.WithoutCancel(ctx))
	return true
}

// standbyGrace is how long a standby leaves a due certificate to a live
// preferred renewer.
func (r *Renewer) standbyGrace(cur *certstore.Record) time.Duration {
	g := r.opts.StandbyMinGrace
	if cur != nil {
		g = max(g, cur.ExpiresAt.Sub(cur.IssuedAt)/10)
	}
	return g
}

// standbyMay decides whether this standby orders row's due certificate now,
// and why; when not, it notes when to look again.
func (r *Renewer) standbyMay(ctx context.Context, l look) (bool, string) {
	row, cur, now := l.p.Row(), l.cur, l.now
	since := r.dueSince(row, cur, *l.st, now)
	if r.preferredGone(ctx) {
		return true, "standby " + r.opts.Core + ": the preferred renewer is gone (its presence lease in PlatformDB ended)"
	}
	grace := r.standbyGrace(cur)
	if late := now.Sub(since); late >= grace {
		return true, fmt.Sprintf("standby %s: the preferred renewer had not renewed it %s after it was due", r.opts.Core, late.Round(time.Second))
	}
	// Look again when the grace ends, and meanwhile as often as the
	// preferred one's presence lease could end.
	at := since.Add(grace)
	if probe := now.Add(r.opts.LockTTL); probe.Before(at) {
		at = probe
	}
	r.wakeAt(row, at)
	return false, ""
}

// dueSince is when row became due: its planned renewal, or (no certificate,
// another reason) when this standby first saw it due.
func (r *Renewer) dueSince(row string, cur *certstore.Record, st State, now time.Time) time.Time {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if cur != nil && !st.NextRenewal.IsZero() && !st.NextRenewal.After(now) && now.Before(cur.ExpiresAt) && sameNames(cur.Names, st.Hostnames) {
		delete(r.seenDue, row)
		return st.NextRenewal
	}
	at, ok := r.seenDue[row]
	if !ok {
		at = now
		r.seenDue[row] = at
	}
	return at
}

// wakeAt makes Run look at row again by at, if nothing earlier is noted.
func (r *Renewer) wakeAt(row string, at time.Time) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if cur, ok := r.wake[row]; !ok || at.Before(cur) || !cur.After(r.opts.Now()) {
		r.wake[row] = at
	}
}

// renewedWhy is what the state says of the renewal this renewer just made.
func (r *Renewer) renewedWhy(mode checkMode, standby string) string {
	switch {
	case mode != scheduled:
		return whyForced
	case standby != "":
		return standby
	}
	return whyPreferred
}
