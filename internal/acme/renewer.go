// Package acme is the renewer of Strategy A: it obtains and renews the
// certificates the topology calls for with lego (RFC 8555, ARI per RFC 9773),
// answering HTTP-01 from PlatformDB (so any core can), holding a PlatformDB
// lock while it orders (so two renewers never order at once), and keeping its
// backoff in PlatformDB (so a restart loop cannot hammer the CA). New
// certificates go to the certificate store, from which every core serves them.
package acme

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/acme/api"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/lego"

	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// KV is what the renewer needs of PlatformDB.
type KV interface {
	Get(ctx context.Context, key string) (platformdb.Entry, error)
	Put(ctx context.Context, key string, value []byte) (int64, error)
	CompareAndSwap(ctx context.Context, key string, value []byte, expect int64) (int64, error)
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix string) ([]platformdb.Entry, int64, error)
	Lock(ctx context.Context, name string, ttl time.Duration) (platformdb.Lock, error)
}

// Certs is what the renewer reads of the certificate store. It writes the
// rows itself (certstore.NewRecord), through a write fenced by its lock.
type Certs interface {
	Get(ctx context.Context, hostname string) (*certstore.Record, error)
}

// Plan is one certificate to keep: its hostnames (the first is its row) and
// the challenge that proves them.
type Plan struct {
	Hostnames []string
	Challenge string // "http-01", "tls-alpn-01" or "dns-01"
}

// Row is the certificate's name in the store.
func (p Plan) Row() string { return p.Hostnames[0] }

// EAB is an External Account Binding (commercial CAs).
type EAB struct{ KID, HMACKey string }

// Options configure a Renewer.
type Options struct {
	DirectoryURL string
	HTTPClient   *http.Client // trusts the directory's TLS
	UserAgent    string
	Email        string
	KeyType      string // ec256 (default), ec384, rsa2048, rsa4096
	Profile      string
	EAB          *EAB
	Plans        []Plan
	RenewBefore  time.Duration // letsEncrypt.renewBeforeDays
	KV           KV
	Keys         *atrest.Keyring
	Certs        Certs
	// DNS01 publishes _acme-challenge TXT records; nil until the embedded
	// DNS server provides one (DNS-01 plans then fail with a clear error).
	DNS01 challenge.Provider
	// MorePlans, if set, adds plans found at run time, read at each pass
	// (the other cores' core.url in a DNS-less cluster); one whose row
	// Plans already has is skipped.
	MorePlans func(ctx context.Context) []Plan
	// CheckInterval between cheap checks (default 5 min, ±10% jitter).
	CheckInterval time.Duration
	// LockWait bounds the wait for the renewer lock (default 1 min): a
	// forced renewal behind another renewer's order fails after this long.
	LockWait time.Duration
	// LockTTL is the renewer lock's lease (default 30 s): a renewer that dies
	// mid-order frees the lock after this long.
	LockTTL time.Duration
	Logger  *slog.Logger
	Now     func() time.Time
	// OnOrder, if set, is called after every order this renewer ran (not
	// for a check that found nothing due, nor an order cut short by
	// shutdown) with its outcome: nil when the certificate was issued and
	// stored. ErrorKind classifies the error.
	OnOrder func(err error)
	// OnFailure, if set, hears of a failed order once per failure streak
	// (the first failure after a success, or ever) and once more when the
	// CA pauses the account; never at each retry. It runs on the renewer's
	// goroutine: hand anything slow (a script, a webhook) to another.
	OnFailure func(ctx context.Context, f Failure)
	// Core names this core in the state ("which core renewed").
	Core string
	// Standby makes this a standby renewer (a core without certRenewer):
	// it orders a due certificate only when the preferred renewer is gone
	// or has left it due for longer than a tenth of its lifetime, at
	// least StandbyMinGrace (default DefaultStandbyMinGrace). See standby.go.
	Standby         bool
	StandbyMinGrace time.Duration
	// Fallbacks are the CAs ordered from, in turn, when DirectoryURL has
	// failed for a while (fallback.go).
	Fallbacks []Fallback
}

// lockName is the PlatformDB lock every renewer takes before ordering.
const lockName = "acme-renewer"

// Renewer keeps the plans' certificates current.
type Renewer struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex // single flight: one check or order at a time, scheduled or forced
	client *lego.Client
	user   *user
	// held is r.opts.KV with every write fenced by the renewer lock, while
	// a check holds it (under mu); nil otherwise.
	held KV

	wmu     sync.Mutex
	wake    map[string]time.Time // row -> the next time its state asks for a look
	seenDue map[string]time.Time // standby: row -> when it first saw it due (no planned renewal to go by)

	fallbacks []*Renewer // one per Options.Fallbacks; they never Run

	fmu    sync.Mutex
	forced map[string]time.Time // row -> the last forced order
	life   context.Context      // forced orders run under it: Run's lifetime while it runs
}

// New checks the options; nothing is contacted until Run or ForceRenew.
func New(opts Options) (*Renewer, error) {
	if opts.DirectoryURL == "" || opts.KV == nil || opts.Keys == nil || opts.Certs == nil {
		return nil, errors.New("acme: DirectoryURL, KV, Keys and Certs are required")
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 2 * time.Minute}
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = 5 * time.Minute
	}
	if opts.LockTTL <= 0 {
		opts.LockTTL = 30 * time.Second
	}
	if opts.StandbyMinGrace <= 0 {
		opts.StandbyMinGrace = DefaultStandbyMinGrace
	}
	if opts.LockWait <= 0 {
		opts.LockWait = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DNS01 != nil {
		// We answer DNS for the domain ourselves: _acme-challenge is never
		// delegated by CNAME, and lego's CNAME lookup would query the host's
		// resolvers (the public DNS) on every validation.
		_ = os.Setenv("LEGO_DISABLE_CNAME_SUPPORT", "true")
	}
	if _, err := keyType(opts.KeyType); err != nil {
		return nil, err
	}
	r := &Renewer{opts: opts, log: opts.Logger, wake: map[string]time.Time{}, forced: map[string]time.Time{}, seenDue: map[string]time.Time{},
		life: context.Background()}
	if err := r.newFallbacks(); err != nil {
		return nil, err
	}
	return r, nil
}

// Run checks every plan now, then again at the earliest of CheckInterval
// (±10%), a plan's next attempt after a failure, its planned renewal and its
// next ARI question, until ctx ends. The certificates already served keep
// serving whatever happens here.
func (r *Renewer) Run(ctx context.Context) {
	// Forced orders stop with Run (shutdown), not with their caller.
	r.fmu.Lock()
	r.life = ctx
	r.fmu.Unlock()
	defer func() {
		r.fmu.Lock()
		r.life = context.Background()
		r.fmu.Unlock()
	}()
	if !r.opts.Standby {
		pctx, stopPresence := context.WithCancel(ctx)
		held := make(chan struct{})
		go func() { defer close(held); r.holdPresence(pctx) }()
		defer func() { stopPresence(); <-held }()
	}
	r.sweepAtStart(ctx)
	for {
		for _, p := range r.plans(ctx) {
			if _, err := r.check(ctx, p, false); err != nil && ctx.Err() == nil {
				r.log.Debug("renewal check", "hostname", p.Row(), "error", err.Error())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.untilNext()):
		}
	}
}

// untilNext is how long Run sleeps: CheckInterval (jittered), or less when a
// plan's state names an earlier time.
func (r *Renewer) untilNext() time.Duration {
	wait := jitter(r.opts.CheckInterval, 0.1)
	now := r.opts.Now()
	r.wmu.Lock()
	defer r.wmu.Unlock()
	for _, at := range r.wake {
		if d := at.Sub(now) + wakeSlack; d > 0 && d < wait {
			wait = d
		}
	}
	return wait
}

// note remembers when row's state next asks for a look (see untilNext).
func (r *Renewer) note(row string, st State) {
	at := earliestAfter(r.opts.Now(), st.NextAttempt, st.NextRenewal, st.ARICheckAfter)
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if at.IsZero() {
		delete(r.wake, row)
	} else {
		r.wake[row] = at
	}
}

// save writes row's state and notes its next time: fenced by the lock
// when one is held, else only if the row has not changed since it was read
// (a conflict then drops this save: the other renewer's state is newer).
func (r *Renewer) save(ctx context.Context, row string, st State) error {
	r.note(row, st)
	if r.held != nil {
		return saveState(ctx, r.held, row, st)
	}
	err := saveStateIf(ctx, r.opts.KV, row, st)
	if errors.Is(err, platformdb.ErrConflict) {
		r.log.Debug("renewal state changed by another renewer meanwhile; not overwriting it", "hostname", row)
		return nil
	}
	return err
}

// kv is what writes go through: fenced while the lock is held.
func (r *Renewer) kv() KV {
	if r.held != nil {
		return r.held
	}
	return r.opts.KV
}

// fencedKV sends Put through the lock (platformdb.Lock.Put), so nothing
// is written once the lock has been lost.
type fencedKV struct {
	KV
	lock platformdb.Lock
}

func (f fencedKV) Put(ctx context.Context, key string, value []byte) (int64, error) {
	return f.lock.Put(ctx, key, value)
}

// forceInterval is the least time between two forced renewals of a name:
// repeated clicks must not spend the CA's failed-validation limit (Let's
// Encrypt: 5 per hour per account and hostname).
const forceInterval = time.Minute

// forceTimeout bounds a forced order that outlives its caller.
const forceTimeout = 10 * time.Minute

// RetryError refuses a forced renewal for now: Retry-After material.
type RetryError struct {
	Hostname string
	At       time.Time // when a forced renewal will be accepted
	Reason   string
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("%s: %s; try again after %s", e.Hostname, e.Reason, e.At.UTC().Format(time.RFC3339))
}

// RetryAfter is how long from now until At (at least a second).
func (e *RetryError) RetryAfter(now time.Time) time.Duration {
	return max(e.At.Sub(now).Round(time.Second), time.Second)
}

// ForceRenew orders a new certificate for hostname's plan now ("" = the
// first plan), whatever the schedule says. It honours the backoff after
// failures unless ignoreBackoff (or the CA paused the account: forcing is
// how the operator resumes), and accepts one forced renewal per name per
// minute; a refusal is a *RetryError. The order runs detached from ctx: a
// caller that gives up (an HTTP client's timeout) does not cut it — it
// goes on, recorded in the state like any order, and ForceRenew returns
// ctx's error. Shutdown (Run's context ending) does cut it.
func (r *Renewer) ForceRenew(ctx context.Context, hostname string, ignoreBackoff bool) (*certstore.Record, error) {
	p, ok := planFor(r.plans(ctx), hostname)
	if !ok {
		return nil, fmt.Errorf("%s is not a hostname this deployment's topology covers", hostname)
	}
	mode := forced
	if ignoreBackoff {
		mode = forcedIgnoringBackoff
	}
	r.fmu.Lock()
	life := r.life
	r.fmu.Unlock()
	type result struct {
		rec *certstore.Record
		err error
	}
	done := make(chan result, 1)
	go func() {
		octx, cancel := context.WithTimeout(life, forceTimeout)
		defer cancel()
		rec, err := r.checkPlan(octx, p, mode)
		done <- result{rec, err}
	}()
	select {
	case res := <-done:
		return res.rec, res.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: stopped waiting (%w); the order goes on, its outcome will be in the renewal state", p.Row(), ctx.Err())
	}
}

// plans are Plans, then those of MorePlans not already there.
func (r *Renewer) plans(ctx context.Context) []Plan {
	if r.opts.MorePlans == nil {
		return r.opts.Plans
	}
	out := slices.Clone(r.opts.Plans)
	for _, p := range r.opts.MorePlans(ctx) {
		if len(p.Hostnames) > 0 && !slices.ContainsFunc(out, func(q Plan) bool { return q.Row() == p.Row() }) {
			out = append(out, p)
		}
	}
	return out
}

func planFor(plans []Plan, hostname string) (Plan, bool) {
	if len(plans) == 0 {
		return Plan{}, false
	}
	if hostname == "" {
		return plans[0], true
	}
	hostname = strings.ToLower(hostname)
	for _, p := range plans {
		if slices.Contains(p.Hostnames, hostname) {
			return p, true
		}
	}
	return Plan{}, false
}

// checkMode is why a check runs.
type checkMode int

const (
	scheduled             checkMode = iota // Run's pass: orders only when due
	forced                                 // force-renew: orders now, unless backing off or rate-limited
	forcedIgnoringBackoff                  // force-renew?ignoreBackoff: only the rate limit applies
)

// check is checkPlan for a scheduled pass, or (force) one that orders now
// whatever the backoff.
func (r *Renewer) check(ctx context.Context, p Plan, force bool) (*certstore.Record, error) {
	if force {
		return r.checkPlan(ctx, p, forcedIgnoringBackoff)
	}
	return r.checkPlan(ctx, p, scheduled)
}

// mayForce refuses a forced renewal (a *RetryError) while the backoff runs
// (unless mode ignores it, or the CA paused the account: forcing is how the
// operator resumes) or within forceInterval of the last forced order.
func (r *Renewer) mayForce(row string, st State, mode checkMode, now time.Time) error {
	if mode == forced && now.Before(st.NextAttempt) && st.UnpauseURL == "" {
		reason := fmt.Sprintf("backing off after %d failed orders (last: %s)", st.Failures, st.LastError)
		if st.Failures == 0 {
			reason = "an order began at " + st.LastAttempt.Format(time.RFC3339) + " (in progress, or interrupted)"
		}
		return &RetryError{Hostname: row, At: st.NextAttempt, Reason: reason + "; ignoreBackoff overrides this"}
	}
	r.fmu.Lock()
	defer r.fmu.Unlock()
	if last, ok := r.forced[row]; ok && now.Before(last.Add(forceInterval)) {
		return &RetryError{Hostname: row, At: last.Add(forceInterval), Reason: "a renewal was forced less than a minute ago"}
	}
	return nil
}

// checkPlan renews p if it is due (or forced), recording the outcome in its state.
func (r *Renewer) checkPlan(ctx context.Context, p Plan, mode checkMode) (*certstore.Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	row := p.Row()
	force := mode != scheduled
	standby := "" // why this standby orders, when it does
	if !force {
		// A cheap look first: most checks end here, without the lock.
		st, cur, err := r.load(ctx, p)
		if err != nil {
			return nil, err
		}
		now := r.opts.Now().UTC()
		if now.Before(st.NextAttempt) || st.UnpauseURL != "" {
			r.note(row, st)
			return nil, nil // backing off, or paused by the CA until the operator acts
		}
		due, _ := r.due(ctx, look{p, cur, &st, now})
		// Saved either way: the ARI answer just fetched must not be asked
		// again under the lock.
		if err := r.save(ctx, row, st); err != nil || !due {
			return nil, err
		}
		if r.opts.Standby {
			var may bool
			if may, standby = r.standbyMay(ctx, look{p, cur, &st, now}); !may {
				return nil, nil // the preferred renewer's to renew, for now
			}
		}
	}

	// Due (or forced): take the renewer lock, then decide again with what
	// the store says now — another renewer may have renewed while we
	// waited, and must not be followed by a second order.
	lctx, cancel := context.WithTimeout(ctx, r.opts.LockWait)
	lock, err := r.opts.KV.Lock(lctx, lockName, r.opts.LockTTL)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Not a CA failure: no backoff, nothing recorded.
		r.log.Info("another renewer core holds the ACME lock; trying again later", "hostname", row)
		return nil, fmt.Errorf("another renewer core holds the ACME lock (or PlatformDB is unavailable): %w", err)
	}
	defer func() { _ = lock.Unlock(context.WithoutCancel(ctx)) }()
	r.held = fencedKV{KV: r.opts.KV, lock: lock}
	defer func() { r.held = nil }()
	octx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go func() {
		select {
		case <-lock.Lost():
			stop(errLockLost) // never go on ordering under a lock that is gone
		case <-octx.Done():
		}
	}()

	st, cur, err := r.load(octx, p)
	if err != nil {
		return nil, err
	}
	now := r.opts.Now().UTC()
	if !force {
		due, reason := r.due(octx, look{p, cur, &st, now})
		if !due || now.Before(st.NextAttempt) || st.UnpauseURL != "" {
			return nil, r.save(octx, row, st)
		}
		r.log.Info("certificate due for renewal", "hostname", row, "reason", reason, "planned", st.NextRenewal,
			"renewer", r.renewedWhy(mode, standby))
	} else {
		if err := r.mayForce(row, st, mode, now); err != nil {
			return nil, err
		}
		r.fmu.Lock()
		r.forced[row] = now
		r.fmu.Unlock()
	}
	r.sweepChallenges(octx)

	// Recorded before the order goes out: a renewer killed mid-order finds
	// it on restart and waits as after a failure, instead of ordering again.
	ca, fallbackWhy := r.pickCA(cur, st, now)
	if ca != r {
		r.log.Warn("the ACME directory keeps failing; ordering from a fallback CA", "hostname", row,
			"directory", r.opts.DirectoryURL, "fallback", ca.opts.DirectoryURL, "reason", fallbackWhy)
	}
	replaces := ""
	if issuer := st.Directory; issuer == ca.opts.DirectoryURL || (issuer == "" && ca == r) {
		replaces = replacesID(cur, &st) // only the CA that issued it knows it
	}
	st.LastAttempt, st.AttemptDirectory = now, ca.opts.DirectoryURL
	st.NextAttempt = now.Add(retryDelay(st.Failures+1, 0, urgent(cur, now)))
	if err := r.save(octx, row, st); err != nil {
		return nil, fmt.Errorf("recording the attempt before ordering (nothing was ordered): %w", err)
	}

	if ca != r {
		ca.held = r.held // the fallback writes through this renewer's lock
	}
	rec, err := ca.order(octx, p, replaces)
	if ca != r {
		ca.held = nil
	}
	now = r.opts.Now().UTC()
	if err != nil {
		if cause := context.Cause(octx); errors.Is(cause, errLockLost) {
			err = cause
		} else if ctx.Err() != nil {
			return nil, err
		}
		if st.Failures == 0 {
			st.FailingSince = now
		}
		r.recordFailure(ctx, look{p, cur, &st, now}, err)
		if urgent(cur, now) {
			st.NextAttempt = now.Add(retryDelay(st.Failures, retryAfter(err), true))
		}
		if st.Unreadable != "" {
			st.LastError += " (replacing an unreadable row: " + st.Unreadable + ")"
		}
		r.log.Error("certificate order failed; the current certificate keeps serving",
			"hostname", row, "error", st.LastError, "failures", st.Failures, "nextAttempt", st.NextAttempt)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = r.save(sctx, row, st)
		if r.opts.OnOrder != nil {
			r.opts.OnOrder(err)
		}
		return nil, errors.New(st.LastError)
	}
	if r.opts.OnOrder != nil {
		r.opts.OnOrder(nil)
	}
	st.Failures, st.NextAttempt, st.LastError, st.LastErrorAt = 0, time.Time{}, "", time.Time{}
	st.Problem, st.UnpauseURL = nil, ""
	st.LastSuccess, st.Unreadable = now, ""
	st.RenewedBy, st.RenewedWhy = r.opts.Core, r.renewedWhy(mode, standby)
	st.Directory, st.FailingSince = ca.opts.DirectoryURL, time.Time{}
	// The new certificate's window is asked at the next wake, a second from
	// now, not at the schedule's point: a CA whose window opens before two
	// thirds of the lifetime (short-lived profiles) is heard in time.
	st.ARIStart, st.ARIEnd, st.ARISerial, st.ARICheckAfter = time.Time{}, time.Time{}, "", now.Add(time.Second)
	st.NextRenewal = scheduledRenewal(rec.IssuedAt, rec.ExpiresAt, r.opts.RenewBefore)
	r.log.Info("certificate issued", "hostname", row, "serial", rec.Serial, "notAfter", rec.ExpiresAt,
		"nextRenewal", st.NextRenewal)
	// Recorded even if ctx ended (shutdown) once the certificate was stored.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return rec, r.save(sctx, row, st)
}

// errLockLost ends an order whose renewer lock expired under it.
var errLockLost = errors.New("lost the renewer lock mid-order (PlatformDB unreachable for longer than its lease); the order was abandoned")

// load reads a plan's state and current certificate.
func (r *Renewer) load(ctx context.Context, p Plan) (State, *certstore.Record, error) {
	st, err := loadState(ctx, r.opts.KV, p.Row())
	if err != nil {
		return st, nil, err
	}
	st.Hostnames = p.Hostnames
	cur, err := r.current(ctx, p.Row())
	var de *certstore.DecodeError
	switch {
	case errors.As(err, &de):
		// Not a store failure: reading again will not help, a new
		// certificate will. Said at warn on every pass until replaced.
		r.log.Warn("the stored certificate row is unreadable; ordering a certificate to replace it",
			"hostname", p.Row(), "error", de.Error())
		if st.Unreadable == "" && st.LastError == "" {
			st.LastError, st.LastErrorAt = de.Error()+" (a new certificate will replace it)", r.opts.Now().UTC()
		}
		st.Unreadable = de.Error()
		return st, nil, nil
	case err == nil && st.Unreadable != "":
		st.Unreadable = "" // replaced (an import, another renewer)
	}
	return st, cur, err
}

// sweepAtStart removes the challenge values a renewer killed mid-order left
// published, without waiting for the next order (which may be months away).
// It takes the lock, so no order of another renewer is using them; if
// another renewer holds it, that one sweeps before its own order. The wait
// outlasts one lease: a renewer killed mid-order (SIGKILL, a crash) leaves
// its lease behind, and etcd gives every lease its whole TTL again when the
// member restarts, so the restarted renewer's lock is free only a lease
// later; a shorter wait gave up and left the values published until the
// next order.
func (r *Renewer) sweepAtStart(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, min(r.opts.LockWait, r.opts.LockTTL+5*time.Second))
	lock, err := r.opts.KV.Lock(lctx, lockName, r.opts.LockTTL)
	cancel()
	if err != nil {
		return
	}
	defer func() { _ = lock.Unlock(context.WithoutCancel(ctx)) }()
	if n := r.sweepChallenges(ctx); n > 0 {
		r.log.Info("removed challenge values an interrupted order left published", "count", n)
	}
}

// sweepChallenges removes challenge rows an earlier order left behind (a
// renewer killed mid-order), and says how many. Called with the lock held,
// so no order of another renewer is using them.
func (r *Renewer) sweepChallenges(ctx context.Context) int {
	n := 0
	for _, prefix := range []string{http01Prefix, tlsALPNPrefix} {
		if entries, _, err := r.opts.KV.List(ctx, prefix); err == nil {
			for _, e := range entries {
				if r.opts.KV.Delete(ctx, e.Key) == nil {
					n++
				}
			}
		}
	}
	if sw, ok := r.opts.DNS01.(interface{ Sweep(context.Context) int }); ok {
		n += sw.Sweep(ctx)
	}
	return n
}

func (r *Renewer) current(ctx context.Context, row string) (*certstore.Record, error) {
	rec, err := r.opts.Certs.Get(ctx, row)
	if errors.Is(err, certstore.ErrNoRecord) {
		return nil, nil
	}
	return rec, err
}

// look is one look at a plan: its certificate and state as loaded, at one
// instant. The decisions taken on it (due, standbyMay, recordFailure) read
// it and write into st.
type look struct {
	p   Plan
	cur *certstore.Record
	st  *State
	now time.Time
}

// due decides whether cur must be replaced now, and records when it will be.
func (r *Renewer) due(ctx context.Context, l look) (bool, string) {
	p, cur, st, now := l.p, l.cur, l.st, l.now
	switch {
	case cur == nil && st.Unreadable != "":
		return true, "the stored certificate row is unreadable"
	case cur == nil:
		return true, "no certificate yet"
	case !sameNames(cur.Names, p.Hostnames):
		return true, fmt.Sprintf("the topology asks for %s, the certificate covers %s",
			strings.Join(p.Hostnames, ", "), strings.Join(cur.Names, ", "))
	case !now.Before(cur.ExpiresAt):
		return true, "expired"
	case cur.Source == certstore.SourceACME && st.Directory != "" && st.Directory != r.opts.DirectoryURL && r.caFor(st.Directory) == r:
		// Staging -> production (or another CA): the certificate in
		// service is not from the CA now configured.
		return true, fmt.Sprintf("the ACME directory changed from %s to %s", st.Directory, r.opts.DirectoryURL)
	}
	next := scheduledRenewal(cur.IssuedAt, cur.ExpiresAt, r.opts.RenewBefore)
	reason := "the schedule (last third of the lifetime or renewBeforeDays)"
	if at, ok := r.ariTime(ctx, cur, st, now); ok {
		next, reason = at, "the CA's renewal window (ARI)"
	}
	st.NextRenewal = next
	return !now.Before(next), reason
}

// ariTime asks the CA's renewal information — no more often than its
// Retry-After allows — and picks a time in the window. The pick is derived
// from the serial, so every check (and every core) agrees on it instead of
// drawing a new random time each time.
func (r *Renewer) ariTime(ctx context.Context, cur *certstore.Record, st *State, now time.Time) (time.Time, bool) {
	if st.ARISerial != cur.Serial || !now.Before(st.ARICheckAfter) {
		leaf, err := cur.Leaf()
		if err != nil {
			return time.Time{}, false
		}
		client, err := r.caFor(st.Directory).ensureClient(ctx) // ARI from the certificate's own issuer
		if err != nil {
			r.log.Warn("ACME directory unreachable; renewal timing falls back to the schedule", "error", problem(err))
			return time.Time{}, false
		}
		info, err := client.Certificate.GetRenewalInfo(ctx, leaf)
		if errors.Is(err, api.ErrNoARI) {
			return time.Time{}, false
		}
		if err != nil {
			r.log.Warn("fetching renewal information (ARI)", "hostname", cur.Hostname, "error", problem(err))
			if st.ARISerial != cur.Serial {
				// Asked for this certificate, no window (e.g. another CA's
				// certificate): without this, the next check would ask
				// again at once instead of in an hour.
				st.ARISerial, st.ARIStart, st.ARIEnd = cur.Serial, time.Time{}, time.Time{}
			}
			st.ARICheckAfter = now.Add(time.Hour)
		} else {
			wait := info.RetryAfter
			if wait <= 0 {
				wait = 6 * time.Hour
			}
			st.ARIStart, st.ARIEnd = info.SuggestedWindow.Start.UTC(), info.SuggestedWindow.End.UTC()
			st.ARISerial = cur.Serial
			st.ARICheckAfter = now.Add(min(max(wait, time.Minute), 24*time.Hour))
		}
	}
	if st.ARISerial != cur.Serial || st.ARIStart.IsZero() {
		return time.Time{}, false
	}
	window := st.ARIEnd.Sub(st.ARIStart)
	if window <= 0 {
		return st.ARIStart, true
	}
	h := sha256.Sum256([]byte(cur.Serial))
	frac := float64(binary.BigEndian.Uint64(h[:8])>>11) / float64(1<<53)
	return st.ARIStart.Add(time.Duration(frac * float64(window))), true
}

// order runs one ACME order (the caller holds the renewer lock) and stores
// the result. replaces is the ARI CertID of the certificate being replaced,
// when this CA issued it: the CA then knows the renewal is not a new
// certificate.
func (r *Renewer) order(octx context.Context, p Plan, replaces string) (*certstore.Record, error) {
	ctx := octx
	client, err := r.ensureClient(octx)
	if err != nil {
		return nil, err
	}
	if r.user.reg == nil {
		// Another renewer may have registered while we waited for the lock.
		if u, ok, err := r.account().load(octx, r.opts.KV, r.opts.Email); err == nil && ok {
			r.user, r.client = u, nil
			if client, err = r.ensureClient(octx); err != nil {
				return nil, err
			}
		}
	}
	if r.user.reg == nil {
		if err := r.account().register(octx, client, r.kv(), r.user); err != nil {
			return nil, err
		}
		r.log.Info("ACME account registered", "directory", r.opts.DirectoryURL, "account", r.user.reg.Location)
	}
	if err := r.setSolver(client, p); err != nil {
		return nil, err
	}
	kt, _ := keyType(r.opts.KeyType)
	req := certificate.ObtainRequest{Domains: p.Hostnames, Bundle: true, KeyType: kt, Profile: r.opts.Profile,
		ReplacesCertID: replaces}
	start := time.Now()
	res, err := client.Certificate.Obtain(octx, req)
	if accountGone(err) {
		// A rebuilt CA (a private one reinstalled), an account deactivated:
		// retrying with the stored account would fail for ever.
		r.log.Warn("the CA no longer accepts the stored ACME account; registering a new one",
			"directory", r.opts.DirectoryURL, "account", r.user.reg.Location, "error", problem(err))
		if client, err = r.reregister(octx); err != nil {
			return nil, err
		}
		if err := r.setSolver(client, p); err != nil {
			return nil, err
		}
		req.ReplacesCertID = "" // the new account did not order the certificate in service
		res, err = client.Certificate.Obtain(octx, req)
	}
	if err != nil {
		return nil, err
	}
	// The CA has issued: store the certificate even if ctx ends now
	// (shutdown), or the issuance is lost and only counts against the limits.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer scancel()
	rec, err := r.store(sctx, p.Row(), res.Certificate, res.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("storing the new certificate: %w", err)
	}
	r.log.Info("ACME order complete", "hostname", p.Row(), "took", time.Since(start).Round(time.Millisecond).String())
	return rec, nil
}

// store checks the pair as the front would and writes its row, fenced by
// the lock: a renewer that lost the lock mid-order never replaces the
// certificate its successor stored.
func (r *Renewer) store(ctx context.Context, row string, chainPEM, keyPEM []byte) (*certstore.Record, error) {
	rec, _, err := certstore.NewRecord(r.opts.Keys, certstore.Input{Hostname: row, Source: certstore.SourceACME, Chain: chainPEM, Key: keyPEM}, time.Now())
	if err != nil {
		return nil, err
	}
	data, err := rec.Marshal()
	if err != nil {
		return nil, err
	}
	if _, err := r.kv().Put(ctx, certstore.RowKey(rec.Hostname), data); err != nil {
		return nil, fmt.Errorf("writing %s: %w", certstore.RowKey(rec.Hostname), err)
	}
	return rec, nil
}

// account is this renewer's account at its directory.
func (r *Renewer) account() account {
	return account{directory: r.opts.DirectoryURL, keys: r.opts.Keys, eab: r.opts.EAB}
}

// reregister replaces the stored account by a new one (a new key: a
// deactivated account's key cannot register again) and returns its client.
func (r *Renewer) reregister(ctx context.Context) (*lego.Client, error) {
	fresh, err := newUser(r.opts.Email)
	if err != nil {
		return nil, err
	}
	r.user, r.client = fresh, nil
	client, err := r.ensureClient(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.account().register(ctx, client, r.kv(), r.user); err != nil {
		return nil, err
	}
	r.log.Info("ACME account registered", "directory", r.opts.DirectoryURL, "account", r.user.reg.Location)
	return client, nil
}

// accountGone reports whether the CA refused the account itself: unknown
// to it (accountDoesNotExist: RFC 8555 section 6.7), or no longer valid
// (Boulder answers a deactivated or revoked account with unauthorized,
// "Account is not valid, has status ...").
func accountGone(err error) bool {
	var pd *legoacme.ProblemDetails
	if !errors.As(err, &pd) {
		return false
	}
	switch strings.TrimPrefix(pd.Type, "urn:ietf:params:acme:error:") {
	case "accountDoesNotExist":
		return true
	case "unauthorized":
		return strings.Contains(pd.Detail, "Account is not valid")
	}
	return false
}

// ensureClient builds the lego client for the stored account (or a fresh,
// not yet registered key). It fetches the directory, so it fails when the CA
// is unreachable.
func (r *Renewer) ensureClient(ctx context.Context) (*lego.Client, error) {
	if r.client != nil {
		return r.client, nil
	}
	if r.user == nil {
		u, _, err := r.account().load(ctx, r.opts.KV, r.opts.Email)
		if err != nil {
			return nil, err
		}
		r.user = u
	}
	cfg := lego.NewConfig(r.user)
	cfg.CADirURL = r.opts.DirectoryURL
	cfg.HTTPClient = r.opts.HTTPClient
	cfg.UserAgent = r.opts.UserAgent
	c, err := lego.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("ACME directory %s: %w", r.opts.DirectoryURL, err)
	}
	r.client = c
	return c, nil
}

func (r *Renewer) setSolver(c *lego.Client, p Plan) error {
	c.Challenge.ResetSolvers()
	switch p.Challenge {
	case "dns-01":
		if r.opts.DNS01 == nil {
			return fmt.Errorf("%s needs the DNS-01 challenge, which needs the embedded DNS server (dns.active: true)", p.Row())
		}
		var opts []dns01.ChallengeOption
		if pc, ok := r.opts.DNS01.(propagationChecker); ok {
			// Our provider knows which servers the CA will ask (ours): check
			// those instead of lego's recursive lookups, which would leave
			// this host for the public DNS.
			opts = append(opts, dns01.WrapPreCheck(func(ctx context.Context, _, fqdn, value string, _ dns01.PreCheckFunc) (bool, error) {
				return pc.Propagated(ctx, fqdn, value)
			}))
		}
		return c.Challenge.SetDNS01Provider(r.opts.DNS01, opts...)
	case "tls-alpn-01":
		if slices.ContainsFunc(p.Hostnames, func(h string) bool { return strings.HasPrefix(h, "*.") }) {
			return fmt.Errorf("%s is a wildcard: TLS-ALPN-01 cannot prove it (RFC 8737), only DNS-01 can", p.Row())
		}
		return c.Challenge.SetTLSALPN01Provider(&TLSALPN01Provider{KV: r.kv()})
	default:
		return c.Challenge.SetHTTP01Provider(&HTTP01Provider{KV: r.kv()})
	}
}

// replacesID is cur's ARI CertID if this CA answered renewal information for
// it (so it knows the certificate), else "".
func replacesID(cur *certstore.Record, st *State) string {
	if cur == nil || st.ARISerial != cur.Serial || st.ARIStart.IsZero() {
		return ""
	}
	leaf, err := cur.Leaf()
	if err != nil {
		return ""
	}
	id, err := api.MakeARICertID(leaf)
	if err != nil {
		return ""
	}
	return id
}

// propagationChecker is a DNS-01 provider that can tell when its record is
// visible where the CA will look.
type propagationChecker interface {
	Propagated(ctx context.Context, fqdn, value string) (bool, error)
}

func keyType(s string) (certcrypto.KeyType, error) {
	switch s {
	case "", "ec256":
		return certcrypto.EC256, nil
	case "ec384":
		return certcrypto.EC384, nil
	case "rsa2048":
		return certcrypto.RSA2048, nil
	case "rsa4096":
		return certcrypto.RSA4096, nil
	}
	return "", fmt.Errorf("acme: unknown key type %q", s)
}

func sameNames(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// problem is the ACME problem document's detail when there is one: what the
// operator needs, without lego's wrapping.
func problem(err error) string {
	var pd *legoacme.ProblemDetails
	if errors.As(err, &pd) && pd.Detail != "" {
		return fmt.Sprintf("%s (%s)", pd.Detail, strings.TrimPrefix(pd.Type, "urn:ietf:params:acme:error:"))
	}
	return err.Error()
}

// problemTypes are the registered ACME error types (RFC 8555 section 6.7,
// RFC 9773, the profiles draft): ErrorKind names no other, so a metric
// labelled with it stays bounded whatever a CA sends.
var problemTypes = []string{"accountDoesNotExist", "alreadyReplaced", "alreadyRevoked", "badCSR",
	"badNonce", "badPublicKey", "badRevocationReason", "badSignatureAlgorithm", "caa", "compound",
	"connection", "dns", "externalAccountRequired", "incorrectResponse", "invalidContact",
	"invalidProfile", "malformed", "orderNotReady", "rateLimited", "rejectedIdentifier",
	"serverInternal", "tls", "unauthorized", "unsupportedContact", "unsupportedIdentifier",
	"userActionRequired"}

// ErrorKinds are every value ErrorKind returns.
func ErrorKinds() []string {
	return append(slices.Clone(problemTypes), "lockLost", "network", "other", "paused")
}

// ErrorKind classifies an order failure: the ACME problem type the CA
// answered, without its URN prefix ("rateLimited", "rejectedIdentifier",
// "connection", ...; a compound problem's first subproblem), "lockLost"
// when the renewer lock went away mid-order, "network" when the CA could
// not be reached, "paused" when the CA paused the account (a rateLimited
// problem that no waiting lifts), else "other".
func ErrorKind(err error) string {
	var pd *legoacme.ProblemDetails
	if errors.As(err, &pd) {
		if unpauseURL(problemDoc(err)) != "" {
			return "paused"
		}
		t := pd.Type
		if len(pd.SubProblems) > 0 && strings.HasSuffix(t, ":compound") {
			t = pd.SubProblems[0].Type
		}
		if k, ok := strings.CutPrefix(t, "urn:ietf:params:acme:error:"); ok && slices.Contains(problemTypes, k) {
			return k
		}
		return "other"
	}
	var ne net.Error
	switch {
	case errors.Is(err, errLockLost):
		return "lockLost"
	case errors.As(err, &ne), errors.Is(err, context.DeadlineExceeded):
		return "network"
	}
	return "other"
}

func retryAfter(err error) time.Duration {
	var rl *legoacme.RateLimitedError
	if errors.As(err, &rl) {
		return rl.RetryAfter
	}
	return 0
}
