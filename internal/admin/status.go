package admin

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/pryv/pryv-tls/internal/apijson"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/health"
)

// Lifetime is a certificate judged against its own lifetime (decision
// 0025) and what its renewer last heard from the CA.
type Lifetime struct {
	// Renewed: a renewer keeps this certificate (it has renewal state);
	// false for one nothing renews (imported outside the plans, files).
	Renewed bool `json:"renewed"`
	// State is health.StateOK, StateDue (in its renewal window), StateOverdue,
	// StateExpiring (nothing renews it, expiry near) or StateExpired; "" for
	// a certificate not issued yet.
	State          string `json:"state,omitempty"`
	NeedsAttention bool   `json:"needsAttention"`
	// AttentionAt is when it needs attention unless renewed or replaced
	// before: the renewal's deadline, or the warning before expiry.
	AttentionAt *time.Time `json:"attentionAt,omitempty"`
	// ARIWindow is the CA's suggested renewal window for this certificate.
	ARIWindow *Window `json:"ariWindow,omitempty"`
	// Failures counts the consecutive failed orders; Problem is the CA's
	// problem document of the last one; UnpauseURL is set while the CA has
	// paused the account for it (nothing is retried until a forced renewal).
	Failures   int      `json:"failures,omitempty"`
	Problem    *Problem `json:"problem,omitempty"`
	UnpauseURL string   `json:"unpauseURL,omitempty"`
	// RenewedBy is the core that made the last renewal, RenewedWhy why
	// that one: the preferred renewer, a standby (the preferred one gone,
	// or late), a forced renewal.
	RenewedBy  string `json:"renewedBy,omitempty"`
	RenewedWhy string `json:"renewedWhy,omitempty"`
}

// Window is a time span.
type Window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Problem is an ACME problem document (RFC 8555 section 6.7).
type Problem struct {
	Type        string       `json:"type"`
	Detail      string       `json:"detail,omitempty"`
	Status      int          `json:"status,omitempty"`
	Subproblems []Subproblem `json:"subproblems,omitempty"`
}

// Subproblem is one identifier's part of a compound problem.
type Subproblem struct {
	Type       string `json:"type"`
	Detail     string `json:"detail,omitempty"`
	Identifier string `json:"identifier,omitempty"`
}

// RenewalDetail is the rest of a certificate's renewal bookkeeping.
type RenewalDetail struct {
	ARIStart, ARIEnd time.Time
	ARISerial        string // the certificate the window is for
	Failures         int
	Problem          *Problem
	UnpauseURL       string
	RenewedBy        string
	RenewedWhy       string
}

// judge fills ci's Lifetime from its renewal state (renewed: it has one).
func (ci *CertInfo) judge(st RenewalState, renewed bool, now time.Time) {
	l := Lifetime{Renewed: renewed, Failures: st.Failures, Problem: st.Problem, UnpauseURL: st.UnpauseURL,
		RenewedBy: st.RenewedBy, RenewedWhy: st.RenewedWhy}
	if !st.ARIStart.IsZero() && st.ARISerial == ci.Serial {
		l.ARIWindow = &Window{Start: st.ARIStart.UTC(), End: st.ARIEnd.UTC()}
	}
	if !ci.ExpiresAt.IsZero() {
		c := health.Cert{NotBefore: ci.IssuedAt, NotAfter: ci.ExpiresAt, Renewed: renewed, NextRenewal: st.NextRenewal}
		if l.ARIWindow != nil {
			c.ARIEnd = l.ARIWindow.End
		}
		v := health.Judge(c, now)
		at := v.AttentionAt.UTC()
		l.State, l.NeedsAttention, l.AttentionAt = v.State, v.Attention, &at
	}
	ci.Lifetime = l
}

// Self is this core as the daemon sees it, for GET /status.
type Self struct {
	ID       string `json:"id"`
	Renewer  bool   `json:"renewer"`  // the certRenewer: orders and renews certificates
	CAHolder bool   `json:"caHolder"` // holds the cluster CA's key: answers joining cores
	// PlatformDB is this core's member, from the cached health (a few
	// seconds old at most).
	PlatformDB MemberState `json:"platformDB"`
	// TLS is on (Strategy A or C); Placeholder: the self-signed placeholder
	// is what the front serves (no real certificate yet).
	TLS         bool `json:"tls"`
	Placeholder bool `json:"placeholder"`
	DNS         struct {
		Active  bool `json:"active"`
		Serving bool `json:"serving"`
	} `json:"dns"`
	// LastReload is the last SIGHUP reload of the configuration; nil
	// before the first.
	LastReload *ReloadState `json:"lastReload,omitempty"`
	// Readiness is what /readyz answers now: status lists a failed check
	// that nothing else in it says (an expired certificate served), so the
	// two never disagree.
	Readiness []health.Check `json:"readiness,omitempty"`
	// FileCerts are the certificates served from the http.ssl files
	// (Strategy C), which PlatformDB does not list.
	FileCerts []CertInfo `json:"-"`
}

// ReloadState is the outcome of a configuration reload (SIGHUP): on an
// error the configuration before it keeps running, and Error says which
// file and key and why.
type ReloadState struct {
	At    time.Time `json:"at"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

// MemberState is a PlatformDB member's state.
type MemberState struct {
	Up     bool `json:"up"`     // answers a quorum read
	Leader bool `json:"leader"` // the raft leader
	// Alarms are etcd's alarms on the member: NOSPACE (the store is full
	// and refuses writes), CORRUPT.
	Alarms []string `json:"alarms,omitempty"`
}

// Status is the body of GET /status: everything "pryv-tls status" shows.
type Status struct {
	Time  time.Time    `json:"time"`
	Core  Self         `json:"core"`
	Cores []CoreStatus `json:"cores"`
	Certs []CertInfo   `json:"certs"`
	// NextRenewal is the earliest planned renewal, LastError the most
	// recent failed one still recorded (cleared by the next success).
	NextRenewal *RenewalEvent `json:"nextRenewal,omitempty"`
	LastError   *RenewalEvent `json:"lastError,omitempty"`
	// Problems says what needs attention; empty when all is fine.
	Problems []string `json:"problems"`
	// Warnings are worth a look but need nothing yet (a failed renewal
	// that is retried well before the certificate's deadline).
	Warnings []string `json:"warnings"`
	// ParentDS is how the parent's DS stands against the zone's keys (a
	// signed zone): a mismatch or none is also a warning; "cannot be
	// checked" (no resolver, no internet) is not.
	ParentDS *dnsdata.ParentDS `json:"parentDS,omitempty"`
	// Unreachable names the parts that did not answer within PartTimeout
	// (each also a problem).
	Unreachable []string `json:"unreachable,omitempty"`
}

// PartTimeout bounds each part of a status: this core's own state, the
// cluster's cores, the certificates (each a PlatformDB read). A part that
// does not answer in time is reported unreachable, never waited for.
const PartTimeout = 2 * time.Second

var errNoAnswer = errors.New("no answer")

type partResult[T any] struct {
	v   T
	err error
}

// startPart runs f (when on) bounded by PartTimeout; awaitPart gets its
// result, or errNoAnswer once the time is up — even if f does not watch its
// context (it then finishes on its own, its result dropped).
func startPart[T any](ctx context.Context, on bool, f func(context.Context) (T, error)) <-chan partResult[T] {
	ch := make(chan partResult[T], 1)
	if !on {
		return ch
	}
	ctx, cancel := context.WithTimeout(ctx, PartTimeout)
	go func() {
		defer cancel()
		v, err := f(ctx)
		ch <- partResult[T]{v, err}
	}()
	return ch
}

// awaitPart waits until deadline at most: the parts run at once, so one
// deadline, set when they started, bounds them all.
func awaitPart[T any](ch <-chan partResult[T], deadline time.Time) (T, error) {
	select {
	case r := <-ch: // answered while an earlier part was awaited
		return r.v, r.err
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-t.C:
		var zero T
		return zero, errNoAnswer
	}
}

// RenewalEvent is one certificate's planned renewal or last failure.
type RenewalEvent struct {
	Hostname string    `json:"hostname"`
	At       time.Time `json:"at"`
	Error    string    `json:"error,omitempty"`
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	apijson.Write(w, http.StatusOK, a.Status(r.Context()))
}

// Status gathers the state of this core, the cluster and the certificates.
// What cannot be read is a problem in the answer, not an error.
func (a *API) Status(ctx context.Context) Status {
	now := a.now().UTC()
	st := Status{Time: now, Cores: []CoreStatus{}, Certs: []CertInfo{}, Problems: []string{}, Warnings: []string{}}
	problem := func(format string, args ...any) { st.Problems = append(st.Problems, fmt.Sprintf(format, args...)) }
	unreachable := func(part, what string) {
		st.Unreachable = append(st.Unreachable, part)
		problem("%s did not answer within %s: %s", part, PartTimeout, what)
	}

	// The three parts are read at once, each bounded: a core whose
	// PlatformDB lost quorum answers in PartTimeout, not when etcd gives up.
	type coresPart struct {
		cores   []CoreStatus
		members map[string]bool
		err     *whatError
	}
	type certsPart struct {
		certs []CertInfo
		err   error
	}
	// f's own context ends at PartTimeout; the margin is for one that ignores it.
	deadline := time.Now().Add(PartTimeout + 100*time.Millisecond)
	selfCh := startPart(ctx, a.Self != nil, func(ctx context.Context) (Self, error) { return a.Self(ctx), nil })
	coresCh := startPart(ctx, a.DNS != nil, func(ctx context.Context) (coresPart, error) {
		cores, members, err := a.coreStatuses(ctx)
		return coresPart{cores, members, err}, nil
	})
	certsCh := startPart(ctx, a.Certs != nil, func(ctx context.Context) (certsPart, error) {
		certs, err := a.certInfos(ctx)
		return certsPart{certs, err}, nil
	})

	parentCh := startPart(ctx, a.ParentDS != nil, func(ctx context.Context) (dnsdata.ParentDS, error) { return a.ParentDS.Check(ctx), nil })

	selfKnown := true
	if a.Self != nil {
		var err error
		if st.Core, err = awaitPart(selfCh, deadline); err != nil {
			selfKnown = false
			unreachable("this core's own state", "the daemon is busy or stuck; what follows is what PlatformDB says")
		}
	}
	self := st.Core
	if selfKnown && !self.PlatformDB.Up {
		problem("PlatformDB: this core's member does not answer (no quorum?); certificates are served from the last materialised state")
	}
	for _, a := range self.PlatformDB.Alarms {
		if a == "NOSPACE" {
			problem("PlatformDB: etcd's NOSPACE alarm is raised: the store is full and refuses every write (certificates keep serving); compact, defragment, then disarm the alarm (see troubleshooting)")
		} else {
			problem("PlatformDB: etcd's %s alarm is raised on this core's member", a)
		}
	}
	if self.TLS && self.Placeholder {
		problem("this core serves the self-signed placeholder: no real certificate yet")
	}
	if self.DNS.Active && !self.DNS.Serving {
		problem("the DNS server is not serving")
	}
	if r := self.LastReload; r != nil && !r.OK {
		problem("the configuration reload of %s was refused; the configuration from before keeps running: %s", r.At.Format(time.RFC3339), r.Error)
	}

	if a.DNS != nil {
		cp, err := awaitPart(coresCh, deadline)
		switch {
		case err != nil || (cp.err != nil && errors.Is(cp.err.err, context.DeadlineExceeded)):
			unreachable("the cluster's cores", "PlatformDB is unreachable from this core (no quorum, or partitioned); it keeps serving what it has")
		case cp.err != nil:
			problem("%s: %v", cp.err.what, cp.err.err)
		}
		st.Cores = append(st.Cores, cp.cores...)
		// Members without a core-info row (a core without dns.active).
		for _, name := range slices.Sorted(maps.Keys(cp.members)) {
			if name != "" && !slices.ContainsFunc(st.Cores, func(c CoreStatus) bool { return c.ID == name }) {
				st.Cores = append(st.Cores, CoreStatus{ID: name, Available: true, Member: true, Healthy: cp.members[name]})
			}
		}
	}
	for _, c := range st.Cores {
		if c.Member && !c.Healthy {
			problem("core %s is down: its PlatformDB member does not answer", c.ID)
		}
	}

	if a.Certs != nil {
		cp, err := awaitPart(certsCh, deadline)
		switch {
		case err != nil || errors.Is(cp.err, context.DeadlineExceeded):
			unreachable("the certificates", "PlatformDB is unreachable from this core (no quorum, or partitioned); it keeps serving the certificates it has")
		case cp.err != nil:
			problem("listing certificates: %v", cp.err)
		}
		st.Certs = append(st.Certs, cp.certs...)
	}
	for _, c := range self.FileCerts {
		c.judge(RenewalState{}, false, now) // nothing renews the http.ssl files
		st.Certs = append(st.Certs, c)
	}
	expired := false
	for _, c := range st.Certs {
		expired = expired || c.State == health.StateExpired
		st.judgeCert(c, now)
		if c.NextRenewal != nil && (st.NextRenewal == nil || c.NextRenewal.Before(st.NextRenewal.At)) {
			st.NextRenewal = &RenewalEvent{Hostname: c.Hostname, At: c.NextRenewal.UTC()}
		}
	}
	if a.ParentDS != nil {
		d, err := awaitPart(parentCh, deadline)
		if err != nil {
			d = dnsdata.ParentDS{State: dnsdata.DSUnchecked, Detail: fmt.Sprintf("no answer within %s", PartTimeout), At: now}
		}
		st.ParentDS = &d
		if w := d.Warning(); w != "" {
			st.Warnings = append(st.Warnings, w)
		}
	}
	for _, c := range self.Readiness {
		if !c.OK && c.Name == "expiry" && !expired {
			problem("this core is not ready: %s", c.Detail)
		}
	}
	return st
}

// judgeCert adds what c needs to the problems or the warnings: a renewal
// failure alone is a warning while the renewer keeps trying and the
// certificate is not past its deadline; it is a problem once the deadline
// has passed, when nothing is served for the name yet, or when the CA has
// paused the account (nothing retries then).
func (st *Status) judgeCert(c CertInfo, now time.Time) {
	failed := ""
	if c.LastError != "" {
		at := time.Time{}
		if c.LastErrorAt != nil {
			at = c.LastErrorAt.UTC()
		}
		failed = fmt.Sprintf("renewal of %s failed at %s", c.Hostname, at.Format(time.RFC3339))
		if c.Failures > 1 {
			failed += fmt.Sprintf(" (%d times in a row)", c.Failures)
		}
		failed += ": " + c.LastError
		if st.LastError == nil || at.After(st.LastError.At) {
			st.LastError = &RenewalEvent{Hostname: c.Hostname, At: at, Error: c.LastError}
		}
	}
	switch {
	case c.UnpauseURL != "":
		st.Problems = append(st.Problems, fmt.Sprintf("renewal of %s is paused by the CA (too many failed validations) and is not retried: "+
			"visit %s to unpause, then force a renewal (POST %s/certs/force-renew {\"hostname\": %q})", c.Hostname, c.UnpauseURL, CorePrefix, c.Hostname))
	case c.ExpiresAt.IsZero() && failed != "":
		st.Problems = append(st.Problems, failed+" (no certificate issued yet)")
	case c.NeedsAttention:
		p := health.Verdict{State: c.State, AttentionAt: derefTime(c.AttentionAt)}.Describe(c.Hostname, c.ExpiresAt, now)
		if failed != "" {
			p += "; " + failed
		}
		st.Problems = append(st.Problems, p)
	case failed != "":
		st.Warnings = append(st.Warnings, fmt.Sprintf("%s; retried by the renewer, it needs attention if still failing at %s",
			failed, derefTime(c.AttentionAt).Format(time.RFC3339)))
	}
}

func derefTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
