package acme

import (
	"net/http"
	"strings"
	"time"

	"github.com/pryv/pryv-tls/internal/certstore"
)

// Fallback CAs (issue 14 item 5, decision 0027): when the directory has
// failed for a bounded time while a certificate is due — the CA not
// reached, a 5xx, a rate limit: failures another CA may not share — the
// next order goes to the next CA, with its own account; the renewal after
// a success goes back to the directory. Orders stay one at a time across
// CAs (the renewer lock is the same). ARI is asked of the CA that issued
// the certificate in service.

// Fallback is one more ACME directory.
type Fallback struct {
	DirectoryURL string
	EAB          *EAB
}

// fallbackAfter is how long the directory must have been failing before a
// fallback CA is tried: a tenth of the certificate's lifetime, at most an
// hour (an hour when there is no certificate yet).
func fallbackAfter(cur *certstore.Record) time.Duration {
	if cur == nil {
		return time.Hour
	}
	return min(cur.ExpiresAt.Sub(cur.IssuedAt)/10, time.Hour)
}

// fallbackWorthy reports whether the last failure is one another CA may
// not share: no answer, a server error, a rate limit. A refusal about the
// names or the account (rejectedIdentifier, caa, unauthorized...) would be
// the same elsewhere, or must not be worked around.
func fallbackWorthy(st State) bool {
	p := st.Problem
	switch {
	case p == nil:
		return true // the CA was not reached (or answered no problem document)
	case p.Status >= http.StatusInternalServerError:
		return true
	case strings.HasSuffix(p.Type, ":rateLimited") && st.UnpauseURL == "":
		return true
	case strings.HasSuffix(p.Type, ":serverInternal"):
		return true
	}
	return false
}

// caFor is the renewer that speaks to directory: r itself, or a fallback's.
func (r *Renewer) caFor(directory string) *Renewer {
	for _, fb := range r.fallbacks {
		if fb.opts.DirectoryURL == directory {
			return fb
		}
	}
	return r
}

// pickCA is the renewer the next order of a due certificate goes through,
// and why when it is not the directory. Called under the renewer lock.
func (r *Renewer) pickCA(cur *certstore.Record, st State, now time.Time) (*Renewer, string) {
	if len(r.fallbacks) == 0 || st.Failures == 0 || st.FailingSince.IsZero() || !fallbackWorthy(st) {
		return r, ""
	}
	if failing := now.Sub(st.FailingSince); failing >= fallbackAfter(cur) {
		// The CA after the one that failed last, the directory after the last.
		next := 0
		for i, fb := range r.fallbacks {
			if fb.opts.DirectoryURL == st.AttemptDirectory {
				next = i + 1
			}
		}
		if next == len(r.fallbacks) {
			return r, "" // every fallback tried: the directory again
		}
		return r.fallbacks[next], "the directory has failed for " + failing.Round(time.Second).String() +
			" (last: " + st.LastError + ")"
	}
	return r, ""
}

// newFallbacks builds a renewer per fallback CA, sharing r's store, keys and
// hooks; only r runs (they never Run).
func (r *Renewer) newFallbacks() error {
	for _, f := range r.opts.Fallbacks {
		o := r.opts
		o.DirectoryURL, o.EAB, o.Fallbacks = f.DirectoryURL, f.EAB, nil
		o.Logger = r.opts.Logger.With("ca", f.DirectoryURL)
		fb, err := New(o)
		if err != nil {
			return err
		}
		r.fallbacks = append(r.fallbacks, fb)
	}
	return nil
}
