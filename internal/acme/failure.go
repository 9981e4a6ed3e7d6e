package acme

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"time"

	legoacme "github.com/go-acme/lego/v5/acme"
)

// Problem is the ACME problem document (RFC 8555 section 6.7) the CA
// answered for a failed order, kept in the renewal state so that status and
// the admin API show what the CA said, not only our one-line summary.
type Problem struct {
	Type        string       `json:"type"`             // the full URN, e.g. urn:ietf:params:acme:error:rateLimited
	Detail      string       `json:"detail,omitempty"` // the CA's words
	Status      int          `json:"status,omitempty"` // the HTTP status it came with
	Subproblems []Subproblem `json:"subproblems,omitempty"`
}

// Subproblem is one identifier's part of a compound problem.
type Subproblem struct {
	Type       string `json:"type"`
	Detail     string `json:"detail,omitempty"`
	Identifier string `json:"identifier,omitempty"` // the hostname
}

// Failure is one failed order as Options.OnFailure hears of it.
type Failure struct {
	Hostname  string   // the plan's row (its first hostname)
	Hostnames []string // every name of the certificate
	Error     string   // the one-line summary status shows
	Problem   *Problem // nil when the CA was not reached (network, lock lost, ...)
	At        time.Time
	Failures  int // consecutive failures so far (1: the streak starts)
	// UnpauseURL is set when the CA paused the account for these names
	// (Let's Encrypt's "paused" state): nothing is ordered until the
	// operator has visited it and forced a renewal.
	UnpauseURL string
}

// problemDoc is err's ACME problem document, or nil when there is none.
func problemDoc(err error) *Problem {
	var pd *legoacme.ProblemDetails
	if !errors.As(err, &pd) {
		return nil
	}
	p := &Problem{Type: pd.Type, Detail: pd.Detail, Status: pd.HTTPStatus}
	for _, s := range pd.SubProblems {
		p.Subproblems = append(p.Subproblems, Subproblem{Type: s.Type, Detail: s.Detail, Identifier: s.Identifier.Value})
	}
	return p
}

// unpauseLink finds the self-service link in Let's Encrypt's refusal for a
// paused account. Boulder answers it as a rateLimited problem (HTTP 429,
// no Retry-After) whose detail reads "Your account is temporarily prevented
// from requesting certificates for <names> and possibly others. Please
// visit: <portal>/sfe/v1/unpause?jwt=<token>". Waiting never lifts a pause,
// so the only useful thing to do is to stop ordering and show the link.
var unpauseLink = regexp.MustCompile(`https://[^\s"<>]+/sfe/v[0-9]+/unpause\?jwt=[A-Za-z0-9._~-]+`)

func unpauseURL(p *Problem) string {
	if p == nil || !strings.HasSuffix(p.Type, ":rateLimited") {
		return ""
	}
	return unpauseLink.FindString(p.Detail)
}

// recordFailure books a failed order into st (the backoff, the problem,
// a pause) and tells OnFailure when a failure streak starts — not at every
// retry, so a CA down for a day is one alert, not hundreds — or when the
// CA has just paused the account (the retries have stopped: the operator
// must act).
func (r *Renewer) recordFailure(ctx context.Context, l look, err error) {
	p, st, now := l.p, l.st, l.now
	st.Failures++
	st.LastError, st.LastErrorAt = problem(err), now
	st.Problem = problemDoc(err)
	st.NextAttempt = now.Add(backoffDelay(st.Failures, retryAfter(err)))
	wasPaused := st.UnpauseURL != ""
	st.UnpauseURL = unpauseURL(st.Problem)
	if st.UnpauseURL != "" {
		r.log.Error("the CA has paused this account for the certificate's names: nothing is ordered until you visit the unpause link, then force a renewal (POST /system/admin/certs/force-renew)",
			"hostname", p.Row(), "unpauseURL", st.UnpauseURL)
	}
	if r.opts.OnFailure == nil || (st.Failures > 1 && (wasPaused || st.UnpauseURL == "")) {
		return
	}
	r.opts.OnFailure(ctx, Failure{Hostname: p.Row(), Hostnames: p.Hostnames, Error: st.LastError,
		Problem: st.Problem, At: now, Failures: st.Failures, UnpauseURL: st.UnpauseURL})
}
