package admin

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"
)

// ExpiryWarningDays: a certificate with fewer days left than this needs
// attention (status lists it as a problem).
const ExpiryWarningDays = 7

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
	// FileCerts are the certificates served from the http.ssl files
	// (Strategy C), which PlatformDB does not list.
	FileCerts []CertInfo `json:"-"`
}

// MemberState is a PlatformDB member's state.
type MemberState struct {
	Up     bool `json:"up"`     // answers a quorum read
	Leader bool `json:"leader"` // the raft leader
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
}

// RenewalEvent is one certificate's planned renewal or last failure.
type RenewalEvent struct {
	Hostname string    `json:"hostname"`
	At       time.Time `json:"at"`
	Error    string    `json:"error,omitempty"`
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.Status(r.Context()))
}

// Status gathers the state of this core, the cluster and the certificates.
// What cannot be read is a problem in the answer, not an error.
func (a *API) Status(ctx context.Context) Status {
	now := a.now().UTC()
	st := Status{Time: now, Cores: []CoreStatus{}, Certs: []CertInfo{}, Problems: []string{}}
	problem := func(format string, args ...any) { st.Problems = append(st.Problems, fmt.Sprintf(format, args...)) }
	if a.Self != nil {
		st.Core = a.Self(ctx)
	}
	self := st.Core
	if !self.PlatformDB.Up {
		problem("PlatformDB: this core's member does not answer (no quorum?); certificates are served from the last materialised state")
	}
	if self.TLS && self.Placeholder {
		problem("this core serves the self-signed placeholder: no real certificate yet")
	}
	if self.DNS.Active && !self.DNS.Serving {
		problem("the DNS server is not serving")
	}

	if a.DNS != nil {
		cores, health, err := a.coreStatuses(ctx)
		if err != nil {
			problem("%s: %v", err.what, err.err)
		}
		st.Cores = append(st.Cores, cores...)
		// Members without a core-info row (a core without dns.active).
		for _, name := range slices.Sorted(maps.Keys(health)) {
			if name != "" && !slices.ContainsFunc(st.Cores, func(c CoreStatus) bool { return c.ID == name }) {
				st.Cores = append(st.Cores, CoreStatus{ID: name, Available: true, Member: true, Healthy: health[name]})
			}
		}
	}
	for _, c := range st.Cores {
		if c.Member && !c.Healthy {
			problem("core %s is down: its PlatformDB member does not answer", c.ID)
		}
	}

	if a.Certs != nil {
		certs, err := a.certInfos(ctx)
		if err != nil {
			problem("listing certificates: %v", err)
		}
		st.Certs = append(st.Certs, certs...)
	}
	st.Certs = append(st.Certs, self.FileCerts...)
	for _, c := range st.Certs {
		if !c.ExpiresAt.IsZero() && c.DaysUntilExpiry < ExpiryWarningDays {
			if c.ExpiresAt.After(now) {
				problem("certificate %s expires in %d day(s), on %s", c.Hostname, c.DaysUntilExpiry, c.ExpiresAt.Format(time.DateOnly))
			} else {
				problem("certificate %s expired on %s", c.Hostname, c.ExpiresAt.Format(time.DateOnly))
			}
		}
		if c.LastError != "" {
			at := time.Time{}
			if c.LastErrorAt != nil {
				at = *c.LastErrorAt
			}
			problem("renewal of %s failed at %s: %s", c.Hostname, at.UTC().Format(time.RFC3339), c.LastError)
			if st.LastError == nil || at.After(st.LastError.At) {
				st.LastError = &RenewalEvent{Hostname: c.Hostname, At: at.UTC(), Error: c.LastError}
			}
		}
		if c.NextRenewal != nil && (st.NextRenewal == nil || c.NextRenewal.Before(st.NextRenewal.At)) {
			st.NextRenewal = &RenewalEvent{Hostname: c.Hostname, At: c.NextRenewal.UTC()}
		}
	}
	return st
}
