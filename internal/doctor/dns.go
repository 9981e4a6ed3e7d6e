package doctor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

const noDNS = "this core runs no DNS server (dns.active is off): the zone is someone else's"

// question is what query asks: name's qtype, with the DO bit when do (the
// DNSSEC records wanted too).
type question struct {
	name  string
	qtype uint16
	do    bool
}

// query asks server (host:port) q over UDP; a truncated answer is asked
// again over TCP. ctx bounds it.
func query(ctx context.Context, server string, q question) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(q.name), q.qtype)
	m.RecursionDesired = false
	m.SetEdns0(4096, q.do)
	c := &dns.Client{Net: "udp"}
	r, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, server)
	}
	return r, err
}

func (d *doctor) dnsAddr(c Core) string { return net.JoinHostPort(c.IP, strconv.Itoa(d.DNSPort)) }

// why says what a failed DNS query means, for a detail.
func why(err error) string { return netWhy(err) }

// soaOf asks core c for the apex SOA; the answer must be authoritative.
func (d *doctor) soaOf(ctx context.Context, c Core) (*dns.SOA, error) {
	r, err := query(ctx, d.dnsAddr(c), question{d.Domain, dns.TypeSOA, false})
	switch {
	case err != nil:
		return nil, errors.New(why(err))
	case r.Rcode != dns.RcodeSuccess:
		return nil, fmt.Errorf("answered %s for the apex SOA", dns.RcodeToString[r.Rcode])
	case !r.Authoritative:
		return nil, errors.New("answered without the AA flag: not authoritative for the zone")
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa, nil
		}
	}
	return nil, errors.New("answered no SOA for the apex")
}

// checkSOA: every core's DNS answers the zone, with the same SOA serial.
func checkSOA(ctx context.Context, d *doctor) []Result {
	if d.Domain == "" {
		return skip(noDNS)
	}
	type got struct {
		soa *dns.SOA
		err error
	}
	ask := func() []got {
		return eachCore(d.Cores, func(c Core) got {
			soa, err := d.soaOf(ctx, c)
			return got{soa, err}
		})
	}
	answers := ask()
	serials := func() map[uint32][]string {
		m := map[uint32][]string{}
		for i, a := range answers {
			if a.soa != nil {
				m[a.soa.Serial] = append(m[a.soa.Serial], d.Cores[i].ID)
			}
		}
		return m
	}
	// A serial just changed on one core reaches the others within a
	// second: ask once more before calling them out of step.
	if len(serials()) > 1 {
		select {
		case <-time.After(time.Second):
			answers = ask()
		case <-ctx.Done():
		}
	}
	var out []Result
	for i, a := range answers {
		c := d.Cores[i]
		if a.err != nil {
			out = append(out, fail(fmt.Sprintf("start pryv-tls on %s, or open UDP and TCP port %d to %s; check dns.ip and dns.port there", c.ID, d.DNSPort, c.IP),
				"core %s: its DNS at %s: %v", c, d.dnsAddr(c), a.err))
			continue
		}
		out = append(out, pass("core %s: answers %s authoritatively, SOA serial %d", c, d.Domain, a.soa.Serial))
	}
	if s := serials(); len(s) > 1 {
		var parts []string
		for serial, ids := range s {
			parts = append(parts, fmt.Sprintf("%d on %s", serial, strings.Join(ids, ", ")))
		}
		slices.Sort(parts)
		out = append(out, fail("the cores behind do not see PlatformDB's latest rows: check the platformdb result and their logs",
			"SOA serials differ across cores: %s", strings.Join(parts, "; ")))
	}
	return out
}

// checkNS: the apex NS names resolve, through our own DNS, to addresses of
// cores, and every core is named.
func checkNS(ctx context.Context, d *doctor) []Result {
	if d.Domain == "" {
		return skip(noDNS)
	}
	self := d.Cores[0]
	names, err := d.nsNames(ctx, self, false)
	if err != nil {
		return []Result{fail("see the dns result for this core", "the apex NS from core %s: %s", self, why(err))}
	}
	if len(names) == 0 {
		return []Result{fail("set dns.records.root.ns, or leave it unset for the default core."+d.Domain, "core %s publishes no NS at the apex of %s", self, d.Domain)}
	}
	coreIPs := map[string]string{}
	for _, c := range d.Cores {
		coreIPs[canonIP(c.IP)] = c.ID
	}
	// Each core answers the names for itself (core.{domain} is the
	// answering core's dns.publicIp): ask every core.
	named, silent := map[string]bool{}, map[string]bool{}
	var out []Result
	zone := dns.Fqdn(d.Domain)
	for _, name := range names {
		if !dns.IsSubDomain(zone, name) {
			out = append(out, warn("make sure the registrar's glue and that name's own zone point at the cores",
				"NS %s is outside %s: its address is not ours to check", name, d.Domain))
			continue
		}
		type got struct {
			addrs []string
			err   error
		}
		answers := eachCore(d.Cores, func(c Core) got {
			var addrs []string
			for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
				r, err := query(ctx, d.dnsAddr(c), question{name, t, false})
				if err != nil {
					return got{nil, errors.New(why(err))}
				}
				for _, rr := range r.Answer {
					switch rr := rr.(type) {
					case *dns.A:
						addrs = append(addrs, rr.A.String())
					case *dns.AAAA:
						addrs = append(addrs, rr.AAAA.String())
					}
				}
			}
			return got{addrs, nil}
		})
		for i, a := range answers {
			c := d.Cores[i]
			switch {
			case a.err != nil:
				silent[c.ID] = true // the dns result names that core
				continue
			case len(a.addrs) == 0:
				out = append(out, fail("give the name an address: dns.publicIp (for core."+d.Domain+") or a static entry",
					"NS %s has no A or AAAA on core %s", name, c))
				continue
			}
			for _, ip := range a.addrs {
				if id, ok := coreIPs[canonIP(ip)]; ok {
					named[id] = true
					continue
				}
				out = append(out, fail("point the NS name at a core's public address (dns.publicIp on each core, or the static entry of that name)",
					"NS %s resolves on core %s to %s, which is not a core's address", name, c, ip))
			}
		}
	}
	var missing []string
	for _, c := range d.Cores {
		if !named[c.ID] && !silent[c.ID] {
			missing = append(missing, c.String())
		}
	}
	if len(missing) > 0 && len(named) > 0 {
		out = append(out, warn("list every core's DNS in dns.records.root.ns (and at the registrar), or set each core's dns.publicIp",
			"no NS name leads to %s: resolvers never ask it", strings.Join(missing, ", ")))
	}
	if len(out) == 0 || !slices.ContainsFunc(out, func(r Result) bool { return r.Status == Fail }) {
		out = append([]Result{pass("NS %s resolve to the cores' addresses", strings.Join(names, ", "))}, out...)
	}
	return out
}

func canonIP(s string) string {
	if ip := net.ParseIP(s); ip != nil {
		return ip.String()
	}
	return s
}

// checkCAA: the apex CAA lets our CA issue for our account, by our methods.
func checkCAA(ctx context.Context, d *doctor) []Result {
	switch {
	case d.Domain == "":
		return skip(noDNS)
	case d.CAA == nil:
		return skip(d.CAASkip)
	}
	w := *d.CAA
	if len(w.Issuers) == 0 {
		info, err := d.directory(ctx)
		if err != nil {
			return []Result{warn("see the acme directory result", "the CA's issuer domain is not known: the directory cannot be read (%v)", err)}
		}
		w.Issuers = info.CAAIdentities
		if len(w.Issuers) == 0 && w.Identity != "" {
			w.Issuers = []string{w.Identity}
		}
	}
	if len(w.Issuers) == 0 {
		return []Result{warn("set letsEncrypt.caaIdentity to the CA's issuer domain (e.g. letsencrypt.org)",
			"the CA's directory names no issuer domain (meta.caaIdentities) and letsEncrypt.caaIdentity is unset: the zone publishes no CAA record for the account")}
	}
	self := d.Cores[0]
	r, err := query(ctx, d.dnsAddr(self), question{d.Domain, dns.TypeCAA, false})
	if err != nil {
		return []Result{fail("see the dns result for this core", "CAA at %s from core %s: %s", d.Domain, self, why(err))}
	}
	var recs []*dns.CAA
	for _, rr := range r.Answer {
		if c, ok := rr.(*dns.CAA); ok {
			recs = append(recs, c)
		}
	}
	if len(recs) == 0 {
		fix := "nothing to do for issuance; for the lock against other accounts leave letsEncrypt.caa on (the records appear once the account exists)"
		if w.AccountURI == "" {
			return []Result{warn(fix, "no CAA record at %s yet (no ACME account yet): any CA may issue for it", d.Domain)}
		}
		return []Result{warn(fix, "no CAA record at %s: any CA may issue for it", d.Domain)}
	}
	var out []Result
	for _, t := range []struct {
		tag     string
		methods []string
	}{{"issue", w.Methods}, {"issuewild", w.WildMethods}} {
		if len(t.methods) == 0 {
			continue
		}
		out = append(out, judgeCAA(recs, t.tag, t.methods, w))
	}
	return out
}

// judgeCAA says whether recs let the CA issue by tag (RFC 8659: issuewild,
// when present, governs the wildcard; else issue does) for our account.
func judgeCAA(recs []*dns.CAA, tag string, methods []string, w CAAWant) Result {
	var use []*dns.CAA
	for _, r := range recs {
		if strings.EqualFold(r.Tag, tag) {
			use = append(use, r)
		}
	}
	if len(use) == 0 && tag == "issuewild" {
		tag = "issue"
		for _, r := range recs {
			if strings.EqualFold(r.Tag, "issue") {
				use = append(use, r)
			}
		}
	}
	fix := "remove the records in dns.records.root.caa that shut us out, or add one for the CA (letsEncrypt.caa publishes ours when the operator's are unset)"
	if len(use) == 0 {
		return pass("CAA at the apex has no %s record: the CA may issue", tag)
	}
	var reasons []string
	for _, r := range use {
		issuer, params := parseCAA(r.Value)
		switch {
		case !slices.Contains(w.Issuers, issuer):
			reasons = append(reasons, fmt.Sprintf("%q names issuer %q, not %s", r.Value, issuer, strings.Join(w.Issuers, " or ")))
		case params["accounturi"] != "" && params["accounturi"] != w.AccountURI:
			reasons = append(reasons, fmt.Sprintf("%q is for another account (ours: %s)", r.Value, orNone(w.AccountURI)))
		case params["validationmethods"] != "" && !anyIn(methods, strings.Split(params["validationmethods"], ",")):
			reasons = append(reasons, fmt.Sprintf("%q does not allow %s", r.Value, strings.Join(methods, ",")))
		case params["accounturi"] == "":
			return warn("leave dns.records.root.caa unset so that the zone binds CAA to the account (letsEncrypt.caa)",
				"CAA %s %q allows the CA, but for any account", tag, r.Value)
		default:
			return pass("CAA %s %q allows %s for our account by %s", tag, r.Value, issuer, strings.Join(methods, ","))
		}
	}
	if !w.Operator {
		fix = "the zone's own records lag the account: restart the renewer core, or check the acme-account/ rows (letsEncrypt.caaIdentity names the issuer when the directory does not)"
	}
	return fail(fix, "CAA %s at the apex refuses the CA for our account: %s", tag, strings.Join(reasons, "; "))
}

// parseCAA splits an issue value "ca.example; key=value; ..." (RFC 8659
// section 4.2).
func parseCAA(v string) (string, map[string]string) {
	parts := strings.Split(v, ";")
	params := map[string]string{}
	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.TrimSpace(k) == "" {
			continue
		}
		params[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(val)
	}
	return strings.ToLower(strings.TrimSpace(parts[0])), params
}

func anyIn(want, have []string) bool {
	for _, h := range have {
		if slices.Contains(want, strings.TrimSpace(h)) {
			return true
		}
	}
	return false
}

func orNone(s string) string {
	if s == "" {
		return "none yet"
	}
	return s
}

// checkDNSSEC: every core publishes the apex DNSKEY, signed, the DS the
// registrar has matches it, and the signatures are valid now and not about
// to expire.
func checkDNSSEC(ctx context.Context, d *doctor) []Result {
	switch {
	case d.Domain == "":
		return skip(noDNS)
	case !d.DNSSEC:
		return skip("dns.dnssec is off: the zone is not signed")
	}
	var dss []*dns.DS
	for _, s := range d.DS {
		rr, err := dns.NewRR(s)
		if ds, ok := rr.(*dns.DS); err == nil && ok {
			dss = append(dss, ds)
		}
	}
	if len(dss) == 0 {
		return []Result{fail("wait for PlatformDB (the key is made when it answers), then run pryv-tls dns ds", "no DS record: the zone has no DNSSEC key yet")}
	}
	return eachCore(d.Cores, func(c Core) Result { return d.dnssecOf(ctx, c, dss) })
}

func (d *doctor) dnssecOf(ctx context.Context, c Core, dss []*dns.DS) Result {
	r, err := query(ctx, d.dnsAddr(c), question{d.Domain, dns.TypeDNSKEY, true})
	if err != nil {
		return warn("see the dns result for that core", "core %s: DNSKEY not read: %s", c, why(err))
	}
	var keys []*dns.DNSKEY
	var keyRRs []dns.RR
	var sigs []*dns.RRSIG
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.DNSKEY:
			keys, keyRRs = append(keys, rr), append(keyRRs, rr)
		case *dns.RRSIG:
			sigs = append(sigs, rr)
		}
	}
	if len(keys) == 0 {
		return fail("set dns.dnssec: true in this core's configuration (every core of a signed zone signs) and reload it",
			"core %s publishes no DNSKEY at %s: resolvers that have the DS see this core's answers as bogus", c, d.Domain)
	}
	matched := map[uint16]bool{}
	for _, ds := range dss {
		for _, k := range keys {
			if k.KeyTag() == ds.KeyTag {
				if got := k.ToDS(ds.DigestType); got != nil && strings.EqualFold(got.Digest, ds.Digest) {
					matched[ds.KeyTag] = true
				}
			}
		}
	}
	if len(matched) == 0 {
		return fail("every core must sign with the key in PlatformDB: restart this core; give the registrar the DS of pryv-tls dns ds",
			"core %s: no DNSKEY matches the DS %s", c, dsTags(dss))
	}
	now := d.Now()
	for _, s := range sigs {
		if s.TypeCovered != dns.TypeDNSKEY {
			continue
		}
		for _, k := range keys {
			if k.KeyTag() != s.KeyTag || !matched[k.KeyTag()] || s.Verify(k, keyRRs) != nil {
				continue
			}
			exp := time.Unix(int64(s.Expiration), 0)
			switch {
			case !s.ValidityPeriod(now):
				return fail("the signer's clock is wrong or the signature cache is stale: check the clock result, restart the core",
					"core %s: the DNSKEY signature is valid %s to %s, not now (%s)", c, time.Unix(int64(s.Inception), 0).UTC().Format(time.RFC3339), exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
			case exp.Sub(now) < time.Hour:
				return warn("check the core's clock and that it re-signs (its log)", "core %s: the DNSKEY signature expires in %s", c, exp.Sub(now).Round(time.Second))
			}
			return pass("core %s: DNSKEY %d matches the DS and its signature validates (expires %s)", c, k.KeyTag(), exp.UTC().Format(time.RFC3339))
		}
	}
	return fail("restart the core; if it persists, report it with the core's log",
		"core %s: no valid signature of the DNSKEY set by the key of the DS %s", c, dsTags(dss))
}

func dsTags(dss []*dns.DS) string {
	var tags []string
	for _, ds := range dss {
		tags = append(tags, strconv.Itoa(int(ds.KeyTag)))
	}
	return strings.Join(tags, ", ")
}

// checkPublic asks public resolvers for the domain's NS: what the CA will
// see must be the NS the zone publishes. No answer is a warning (this
// machine may have no internet).
func checkPublic(ctx context.Context, d *doctor) []Result {
	switch {
	case !d.Public:
		return skip("not asked (--public asks public resolvers)")
	case d.Domain == "":
		return skip(noDNS)
	}
	ours, err := d.nsNames(ctx, d.Cores[0], false)
	if err != nil {
		return []Result{fail("see the dns result for this core", "the apex NS from core %s: %s", d.Cores[0], why(err))}
	}
	fix := "delegate " + d.Domain + " to the cores at the registrar (NS and glue as in the zone), and wait for the parent's TTL"
	return eachCore(resolverCores(d.PublicResolvers), func(res Core) Result {
		// A resolver that cannot name the root's servers is no view of the
		// internet: no route (a timeout) or a network that intercepts DNS
		// and answers everything NXDOMAIN. Only then is the domain asked.
		roots, err := nsOf(ctx, res.IP, ".")
		switch {
		case err != nil && !errors.As(err, new(rcodeError)):
			return warn("run doctor --public from a machine with internet access",
				"public resolver %s unreachable from here (%s): what the CA sees is not checked", res.IP, why(err))
		case err != nil || len(roots) == 0:
			return warn("run doctor --public from a machine with internet access (this network answers DNS itself)",
				"public resolver %s unreachable from here (it does not resolve the root's NS: the DNS is intercepted): what the CA sees is not checked", res.IP)
		}
		theirs, err := d.nsNames(ctx, res, true)
		var rcode rcodeError
		switch {
		case errors.As(err, &rcode):
			return fail(fix, "public resolver %s answers %s for %s NS", res.IP, rcode, d.Domain)
		case err != nil:
			return warn("run doctor --public from a machine with internet access",
				"public resolver %s unreachable from here (%s): what the CA sees is not checked", res.IP, why(err))
		case !slices.Equal(ours, theirs):
			return fail(fix, "public resolver %s: NS %s; the zone publishes %s", res.IP, cmp.Or(strings.Join(theirs, ", "), "none"), strings.Join(ours, ", "))
		}
		if d.DNSSEC {
			if r, bad := d.parentDS(ctx, res.IP); bad {
				return r
			}
		}
		return pass("public resolver %s: NS %s, as the zone publishes", res.IP, strings.Join(theirs, ", "))
	})
}

// parentDS judges the DS the parent publishes for the domain, as resolver
// addr sees it, against the zone's keys: a DS matching none makes
// validating resolvers (and the CA) reject every answer. bad: r says what
// is wrong.
func (d *doctor) parentDS(ctx context.Context, addr string) (r Result, bad bool) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(d.Domain), dns.TypeDS)
	a, _, err := (&dns.Client{Net: "udp"}).ExchangeContext(ctx, m, addr)
	if err != nil {
		return warn("run doctor --public again", "public resolver %s: the parent's DS for %s not read: %s", addr, d.Domain, why(err)), true
	}
	ours := map[string]bool{}
	for _, s := range d.DS {
		if rr, err := dns.NewRR(s); err == nil {
			if ds, ok := rr.(*dns.DS); ok {
				ours[fmt.Sprintf("%d %d %s", ds.KeyTag, ds.DigestType, strings.ToUpper(ds.Digest))] = true
			}
		}
	}
	var theirs []string
	for _, rr := range a.Answer {
		if ds, ok := rr.(*dns.DS); ok {
			k := fmt.Sprintf("%d %d %s", ds.KeyTag, ds.DigestType, strings.ToUpper(ds.Digest))
			if ours[k] {
				return Result{}, false
			}
			theirs = append(theirs, k)
		}
	}
	if len(theirs) == 0 {
		return warn("give the registrar the DS of pryv-tls dns ds (the zone is signed but nothing validates it yet)",
			"public resolver %s: the parent publishes no DS for %s", addr, d.Domain), true
	}
	return fail("give the registrar the DS of pryv-tls dns ds and remove the others; until then validating resolvers and the CA reject the zone",
		"public resolver %s: the parent's DS for %s (%s) matches none of the zone's keys", addr, d.Domain, strings.Join(theirs, "; ")), true
}

// rcodeError is an answer whose rcode is not NOERROR.
type rcodeError int

func (e rcodeError) Error() string { return dns.RcodeToString[int(e)] }

// nsNames asks c (host:port in IP when recursive, else its DNS) for the
// apex NS names, sorted, lower case.
func (d *doctor) nsNames(ctx context.Context, c Core, recursive bool) ([]string, error) {
	if recursive {
		return nsOf(ctx, c.IP, d.Domain)
	}
	return nsAt(ctx, d.dnsAddr(c), d.Domain, false)
}

// nsOf asks the resolver at addr (recursion desired) for name's NS.
func nsOf(ctx context.Context, addr, name string) ([]string, error) {
	return nsAt(ctx, addr, name, true)
}

func nsAt(ctx context.Context, addr, name string, rd bool) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeNS)
	m.RecursionDesired = rd
	r, _, err := (&dns.Client{Net: "udp"}).ExchangeContext(ctx, m, addr)
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, rcodeError(r.Rcode)
	}
	var names []string
	for _, rr := range r.Answer {
		if ns, ok := rr.(*dns.NS); ok {
			names = append(names, strings.ToLower(ns.Ns))
		}
	}
	slices.Sort(names)
	return names, nil
}

func resolverCores(addrs []string) []Core {
	out := make([]Core, len(addrs))
	for i, a := range addrs {
		out[i] = Core{IP: a}
	}
	return out
}
