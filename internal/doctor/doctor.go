// Package doctor is "pryv-tls doctor": checks, made from one core, of what
// makes ACME's DNS-01 and HTTP-01 fail in practice (a core's DNS silent or
// behind, NS names pointing elsewhere, a CAA record refusing our account,
// a broken DNSSEC chain, a closed port, PlatformDB without quorum, a skewed
// clock, an unreachable CA), each with how to fix it. Every check is
// bounded: doctor never hangs on a core that does not answer.
package doctor

import (
	"context"
	"crypto/x509"
	"fmt"
	"sync"
	"time"
)

// Status is a check's outcome.
type Status string

const (
	Pass Status = "pass"
	Warn Status = "warn" // worth a look; doctor still exits 0
	Fail Status = "fail" // DNS-01 or HTTP-01 (or the cluster) fails because of it
	Skip Status = "skip" // moot in this topology; Detail says why
)

// Result is one check's finding; a check may give several (one per core).
type Result struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Core is one core of the cluster as the checks reach it.
type Core struct {
	ID string
	IP string // its public address (core.ip, from its core-info row)
}

// Options is what the checks know of the platform; the caller gathers it
// from the configuration and the running core's status.
type Options struct {
	Domain  string // dns.domain, lower case, no trailing dot; "" when this core runs no DNS
	DNSPort int    // every core's DNS port (dns.port)
	Cores   []Core // every core; the first is the one doctor runs on

	// DNSSEC is on (dns.dnssec); DS are the zone's DS records in
	// presentation format, as "pryv-tls dns ds" prints them.
	DNSSEC bool
	DS     []string

	// CAA is what the apex's CAA records must allow; nil skips the check
	// with CAASkip as the reason.
	CAA     *CAAWant
	CAASkip string

	// FrontPort is the front's port on every core (http.port); FrontTLS:
	// it terminates TLS (Strategy A or C; else a proxy does, Strategy B).
	// Names are planned hostnames to ask for by SNI; Roots verify the
	// served chain (nil: the system's).
	FrontPort int
	FrontTLS  bool
	Names     []string
	Roots     *x509.CertPool
	// HTTP01Port is where the CA connects for HTTP-01 (0: no plan uses
	// HTTP-01); HTTP01Name is a planned HTTP-01 hostname, sent as Host.
	HTTP01Port int
	HTTP01Name string
	// TLSALPNName is a planned name validated by TLS-ALPN-01 on the
	// front's port ("": none is).
	TLSALPNName string

	// PlatformDB is the running core's view of the members; nil skips the
	// check with PlatformDBSkip as the reason (or fails, with PlatformDBErr).
	PlatformDB     *PlatformDBState
	PlatformDBSkip string
	PlatformDBErr  string

	// Directory is the ACME directory URL ("" skips the ACME check);
	// DirectoryRoots verify its TLS (letsEncrypt.directoryCaFile; nil: the
	// system's).
	Directory      string
	DirectoryRoots *x509.CertPool

	// Public asks PublicResolvers (default 8.8.8.8:53 and 1.1.1.1:53) for
	// the domain's NS and A.
	Public          bool
	PublicResolvers []string

	// Timeout bounds each check (default 3 s); MaxSkew is the clock skew
	// past which a core fails (default 30 s).
	Timeout time.Duration
	MaxSkew time.Duration
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
}

// CAAWant is what the zone's CAA must allow for issuance to work: one of
// the CA's issuer domains, with our account and our validation methods.
type CAAWant struct {
	// Issuers are the CA's issuer domains (the directory's
	// meta.caaIdentities, else letsEncrypt.caaIdentity); when empty the
	// directory's are read, then Identity is used.
	Issuers  []string
	Identity string
	// AccountURI is our ACME account ("" before the first order).
	AccountURI string
	// Methods are the challenges of the names that are not the wildcard
	// (issue), WildMethods the wildcard's (issuewild).
	Methods, WildMethods []string
	// Operator: dns.records.root.caa is set, so the zone serves the
	// operator's records, not ours.
	Operator bool
}

// PlatformDBState is the running core's view of PlatformDB.
type PlatformDBState struct {
	SelfID      string
	Up, Leader  bool     // this core's member answers a quorum read; is the leader
	Members     []Member // every voting member
	Unreachable []string // parts of the status that did not answer in time
}

// Member is one PlatformDB member.
type Member struct {
	ID      string
	Healthy bool
}

// check is one of doctor's checks.
type check struct {
	name string
	run  func(ctx context.Context, d *doctor) []Result
}

// checks are run at once, reported in this order.
var checks = []check{
	{"dns", checkSOA},
	{"ns", checkNS},
	{"caa", checkCAA},
	{"dnssec", checkDNSSEC},
	{"http-01 port", checkHTTP01},
	{"tls-alpn-01", checkTLSALPN},
	{"tls", checkTLS},
	{"clock", checkClock},
	{"platformdb", checkPlatformDB},
	{"acme directory", checkDirectory},
	{"public dns", checkPublic},
}

// doctor is one run: the options and what several checks share.
type doctor struct {
	Options
	dirOnce sync.Once
	dir     directoryInfo
}

// Run runs every check at once, each bounded by o.Timeout, and returns
// their results in the checks' order.
func Run(ctx context.Context, o Options) []Result {
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.MaxSkew <= 0 {
		o.MaxSkew = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if len(o.PublicResolvers) == 0 {
		o.PublicResolvers = []string{"8.8.8.8:53", "1.1.1.1:53"}
	}
	d := &doctor{Options: o}
	out := make([][]Result, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = bounded(ctx, c, d)
		}()
	}
	wg.Wait()
	var all []Result
	for _, rs := range out {
		all = append(all, rs...)
	}
	return all
}

// bounded runs c within d.Timeout; a check still running past it (one
// that does not watch its context) is reported as such and left to end on
// its own.
func bounded(ctx context.Context, c check, d *doctor) []Result {
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	ch := make(chan []Result, 1)
	go func() {
		rs := c.run(ctx, d)
		for i := range rs {
			rs[i].Check = c.name
		}
		ch <- rs
	}()
	t := time.NewTimer(d.Timeout + 500*time.Millisecond)
	defer t.Stop()
	select {
	case rs := <-ch:
		return rs
	case <-t.C:
		return []Result{{Check: c.name, Status: Fail, Detail: fmt.Sprintf("no result within %s", d.Timeout),
			Fix: "something on the path does not answer; run the check's own tool (dig, curl) to see where"}}
	}
}

// Failed reports whether any result is a failure (doctor's exit 1).
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

func pass(format string, args ...any) Result {
	return Result{Status: Pass, Detail: fmt.Sprintf(format, args...)}
}

func skip(reason string) []Result { return []Result{{Status: Skip, Detail: reason}} }

func warn(fix, format string, args ...any) Result {
	return Result{Status: Warn, Detail: fmt.Sprintf(format, args...), Fix: fix}
}

func fail(fix, format string, args ...any) Result {
	return Result{Status: Fail, Detail: fmt.Sprintf(format, args...), Fix: fix}
}

// eachCore runs f for every core at once and returns the results in the
// cores' order.
func eachCore[T any](cores []Core, f func(Core) T) []T {
	out := make([]T, len(cores))
	var wg sync.WaitGroup
	for i, c := range cores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = f(c)
		}()
	}
	wg.Wait()
	return out
}

func (c Core) String() string {
	if c.ID == "" {
		return c.IP
	}
	return c.ID + " (" + c.IP + ")"
}
