package dnsdata

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// ParentDS says how the DS the parent zone publishes for the domain stands
// against the zone's keys (issue 15: status warns when it does not match).
type ParentDS struct {
	State  ParentDSState `json:"state"`
	Detail string        `json:"detail"`
	At     time.Time     `json:"at"`
}

// ParentDSState is the outcome of a ParentDS check.
type ParentDSState string

const (
	// DSMatches: a DS of the parent matches a key of the zone.
	DSMatches ParentDSState = "matches"
	// DSMismatch: the parent has DS records, none matching a key of the
	// zone: validating resolvers (and the CA) reject the zone's answers.
	DSMismatch ParentDSState = "mismatch"
	// DSAbsent: the parent answers that it has no DS: the zone is signed
	// but nothing validates it.
	DSAbsent ParentDSState = "absent"
	// DSUnchecked: the parent's answer could not be had (no resolver, no
	// internet, the domain not delegated yet): nothing to warn about.
	DSUnchecked ParentDSState = "cannot be checked"
)

// Warning is what status says of d, or "" when there is nothing to say.
func (d ParentDS) Warning() string {
	switch d.State {
	case DSMismatch:
		return "DNSSEC: " + d.Detail + "; validating resolvers and the CA reject the zone's answers: give the registrar the DS of 'pryv-tls dns ds' and remove the others"
	case DSAbsent:
		return "DNSSEC: " + d.Detail + ": the zone is signed but nothing validates it; give the registrar the DS of 'pryv-tls dns ds'"
	}
	return ""
}

// ParentDSTimeout bounds one check: status waits no longer.
const ParentDSTimeout = 2 * time.Second

// parentDSKeep is how long a result is reused: status may be read every few
// seconds; the parent's DS changes at the registrar's pace.
const parentDSKeep = 5 * time.Minute

// ParentDSChecker asks the system resolver for the domain's DS (which a
// resolver reads from the parent zone's servers) and compares it with the
// zone's DNSKEYs. It keeps its last result for a few minutes and runs one
// check at a time.
type ParentDSChecker struct {
	Domain string // dns.domain
	// Keys lists the zone's keys (KeyStore.Infos).
	Keys func(ctx context.Context) ([]KeyInfo, error)
	// Resolver is the resolver's "host:port"; "" reads the first
	// nameserver of /etc/resolv.conf.
	Resolver string
	Now      func() time.Time

	mu   sync.Mutex
	last *ParentDS
}

func (c *ParentDSChecker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Check returns the last result if recent, else checks again, bounded by
// ParentDSTimeout (and ctx). It never fails: what cannot be had is
// DSUnchecked.
func (c *ParentDSChecker) Check(ctx context.Context) ParentDS {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != nil && c.now().Sub(c.last.At) < parentDSKeep {
		return *c.last
	}
	ctx, cancel := context.WithTimeout(ctx, ParentDSTimeout)
	defer cancel()
	d := c.check(ctx)
	d.At = c.now()
	if ctx.Err() == nil || d.State != DSUnchecked {
		c.last = &d // a check cut short by its caller is not kept
	}
	return d
}

func (c *ParentDSChecker) check(ctx context.Context) ParentDS {
	unchecked := func(format string, args ...any) ParentDS {
		return ParentDS{State: DSUnchecked, Detail: fmt.Sprintf(format, args...)}
	}
	infos, err := c.Keys(ctx)
	if err != nil {
		return unchecked("the zone's keys not read: %v", err)
	}
	var keys []*dns.DNSKEY
	for _, in := range infos {
		if rr, err := dns.NewRR(in.DNSKEY); err == nil {
			if k, ok := rr.(*dns.DNSKEY); ok {
				keys = append(keys, k)
			}
		}
	}
	if len(keys) == 0 {
		return unchecked("the zone has no key yet")
	}
	addr := c.Resolver
	if addr == "" {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(cc.Servers) == 0 {
			return unchecked("no system resolver (/etc/resolv.conf)")
		}
		addr = net.JoinHostPort(cc.Servers[0], cc.Port)
	}
	domain := dns.CanonicalName(c.Domain)
	q := new(dns.Msg)
	q.SetQuestion(domain, dns.TypeDS)
	q.CheckingDisabled = true // a DS that does not match is what we look for, not a SERVFAIL
	q.SetEdns0(1232, true)
	r, err := exchange(ctx, q, addr)
	if err != nil {
		return unchecked("the system resolver %s did not answer the DS query for %s: %v", addr, domain, err)
	}
	state, detail := judgeParentDS(r, domain, keys)
	if state == DSUnchecked {
		return unchecked("the system resolver %s: %s", addr, detail)
	}
	return ParentDS{State: state, Detail: detail}
}

// exchange asks addr over UDP, then over TCP when the answer is truncated.
func exchange(ctx context.Context, q *dns.Msg, addr string) (*dns.Msg, error) {
	r, _, err := (&dns.Client{Net: "udp"}).ExchangeContext(ctx, q, addr)
	if err == nil && r.Truncated {
		r, _, err = (&dns.Client{Net: "tcp"}).ExchangeContext(ctx, q, addr)
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return nil, fmt.Errorf("no answer within %s", ParentDSTimeout)
	}
	return r, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// judgeParentDS reads a resolver's answer to "domain DS" against the zone's
// keys. A NODATA counts as "no DS" only when it carries the SOA of a zone
// above the domain (the parent's own denial): a resolver that answers
// everything empty or NXDOMAIN (a network without internet, an
// intercepting one) tells nothing.
func judgeParentDS(r *dns.Msg, domain string, keys []*dns.DNSKEY) (ParentDSState, string) {
	if r.Rcode != dns.RcodeSuccess {
		return DSUnchecked, fmt.Sprintf("answered %s for %s DS", dns.RcodeToString[r.Rcode], domain)
	}
	var dss []*dns.DS
	for _, rr := range r.Answer {
		if ds, ok := rr.(*dns.DS); ok && dns.CanonicalName(ds.Hdr.Name) == domain {
			dss = append(dss, ds)
		}
	}
	if len(dss) == 0 {
		for _, rr := range r.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				owner := dns.CanonicalName(soa.Hdr.Name)
				if owner != domain && dns.IsSubDomain(owner, domain) {
					return DSAbsent, fmt.Sprintf("the parent zone %s publishes no DS for %s", owner, domain)
				}
			}
		}
		return DSUnchecked, fmt.Sprintf("no DS for %s and no parent zone's SOA in the answer", domain)
	}
	var tags []string
	for _, ds := range dss {
		for _, k := range keys {
			if k.KeyTag() != ds.KeyTag || k.Algorithm != ds.Algorithm {
				continue
			}
			if got := k.ToDS(ds.DigestType); got != nil && strings.EqualFold(got.Digest, ds.Digest) {
				return DSMatches, fmt.Sprintf("the parent's DS for %s matches key %d", domain, k.KeyTag())
			}
		}
		tags = append(tags, fmt.Sprintf("%d (algorithm %d, digest type %d)", ds.KeyTag, ds.Algorithm, ds.DigestType))
	}
	ours := make([]string, len(keys))
	for i, k := range keys {
		ours[i] = fmt.Sprint(k.KeyTag())
	}
	return DSMismatch, fmt.Sprintf("the parent's DS for %s (key tag %s) matches none of the zone's keys (%s)",
		domain, strings.Join(tags, ", "), strings.Join(ours, ", "))
}
