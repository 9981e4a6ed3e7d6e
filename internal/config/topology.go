package config

import (
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
)

// ACME challenge types of a Plan.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeDNS01     = "dns-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// Challenges are the accepted letsEncrypt.challenge values.
var Challenges = []string{ChallengeHTTP01, ChallengeTLSALPN01}

// Plan is one certificate the topology calls for. The hostnames come from
// the topology only: there is intentionally no letsEncrypt.hostnames key,
// so the two can never drift.
type Plan struct {
	Hostnames []string
	Challenge string // ChallengeHTTP01, ChallengeTLSALPN01 or ChallengeDNS01
	From      string // the config key it derives from, e.g. "dnsLess.publicUrl"
}

// Plans derives the certificates per the spec's table, in the order
// dnsLess.publicUrl, core.url, dns.domain. A hostname another plan already
// covers is dropped (the wildcard covers one label below the domain), and
// so is a plan left empty, so no name is ever ordered twice.
func (c *Config) Plans() []Plan {
	return c.planner().plans
}

// CorePlans are the certificates of the cluster's other cores, one per
// core.url (the spec's "Multi-core with DNSless overrides: one cert per
// core.url"): urls are the available cores' core.url from their core-info
// rows. Hosts Plans covers already (this core's own, those under the
// wildcard of dns.domain) and repeated ones are left out, so that, after
// Plans, every name is still planned once.
func (c *Config) CorePlans(urls []string) []Plan {
	pl := c.planner()
	pl.plans = nil
	for _, u := range urls {
		pl.http("core-info", u)
	}
	return pl.plans
}

// planner builds plans, remembering what they cover.
type planner struct {
	domain string
	single string // the challenge of a single-name plan (letsEncrypt.challenge)
	seen   map[string]bool
	plans  []Plan
}

func (c *Config) planner() *planner {
	pl := &planner{domain: normalizeDomain(c.DNS.Domain), single: ChallengeHTTP01, seen: map[string]bool{}}
	if c.LetsEncrypt.Challenge == ChallengeTLSALPN01 {
		pl.single = ChallengeTLSALPN01
	}
	if c.DNSLess.IsActive {
		pl.http("dnsLess.publicUrl", c.DNSLess.PublicURL)
	}
	pl.http("core.url", c.Core.URL)
	if pl.domain != "" {
		pl.plans = append(pl.plans, Plan{Hostnames: []string{"*." + pl.domain, pl.domain}, Challenge: ChallengeDNS01, From: "dns.domain"})
	}
	return pl
}

func (pl *planner) covered(h string) bool {
	if pl.seen[h] {
		return true
	}
	if pl.domain == "" {
		return false
	}
	if h == pl.domain || h == "*."+pl.domain {
		return true
	}
	label, ok := strings.CutSuffix(h, "."+pl.domain)
	return ok && label != "" && !strings.Contains(label, ".")
}

// http adds the plan of raw's host (proved by HTTP-01 or, when chosen,
// TLS-ALPN-01), unless it is covered.
func (pl *planner) http(from, raw string) {
	h := urlHost(raw)
	if h == "" || pl.covered(h) {
		return
	}
	pl.seen[h] = true
	pl.plans = append(pl.plans, Plan{Hostnames: []string{h}, Challenge: pl.single, From: from})
}

// urlHost is the lowercase host of an absolute URL without its port, or "".
func urlHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	return normalizeDomain(u.Hostname())
}

// Hostnames is every hostname of every plan, in plan order, without duplicates.
func (c *Config) Hostnames() []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range c.Plans() {
		for _, h := range p.Hostnames {
			if !seen[h] {
				seen[h] = true
				out = append(out, h)
			}
		}
	}
	return out
}

// PrimaryHostname is the row of the first plan: the certificate the front
// presents when SNI matches nothing, and the one also written to http.ssl.*
// ("*.{domain}" for the dns.domain plan). "" when the topology names no host.
func (c *Config) PrimaryHostname() string {
	plans := c.Plans()
	if len(plans) == 0 {
		return ""
	}
	return plans[0].Row()
}

// Row is the name a plan's certificate is stored and materialised under: its
// first hostname, so "*.{domain}" for the DNS-01 plan (tls-cert/*.{domain},
// tlsDir/wildcard.{domain}/).
func (p Plan) Row() string { return p.Hostnames[0] }

// TLSEnabled reports whether the front serves HTTPS (Strategy A or C);
// otherwise a proxy in front terminates TLS (Strategy B).
func (c *Config) TLSEnabled() bool {
	return c.HTTP.SSL.CertFile != "" || c.LetsEncrypt.Enabled
}

// CertDir is the directory under letsEncrypt.tlsDir for a hostname; "*"
// cannot be in a file name, so "*.x" lives in "wildcard.x".
func (c *Config) CertDir(hostname string) string {
	name := hostname
	if rest, ok := strings.CutPrefix(hostname, "*."); ok {
		name = "wildcard." + rest
	}
	return filepath.Join(c.LetsEncrypt.TLSDir, name)
}

// CertFiles are the files the front serves: http.ssl.* when set (Strategy C,
// or A materialising there), else the primary hostname's files under
// letsEncrypt.tlsDir when letsEncrypt is on, else none.
func (c *Config) CertFiles() (cert, key, ca string) {
	if s := c.HTTP.SSL; s.CertFile != "" {
		return s.CertFile, s.KeyFile, s.CAFile
	}
	if !c.LetsEncrypt.Enabled {
		return "", "", ""
	}
	h := c.PrimaryHostname()
	if h == "" {
		return "", "", ""
	}
	dir := c.CertDir(h)
	return filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem"), ""
}

// ListenAddr is the front's listen address, http.ip:http.port.
func (c *Config) ListenAddr() string {
	return net.JoinHostPort(c.HTTP.IP, strconv.Itoa(c.HTTP.Port))
}
