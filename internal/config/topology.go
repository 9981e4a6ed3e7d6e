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
	ChallengeHTTP01 = "http-01"
	ChallengeDNS01  = "dns-01"
)

// Plan is one certificate the topology calls for. The hostnames come from
// the topology only: there is intentionally no letsEncrypt.hostnames key,
// so the two can never drift.
type Plan struct {
	Hostnames []string
	Challenge string // ChallengeHTTP01 or ChallengeDNS01
	From      string // the config key it derives from, e.g. "dnsLess.publicUrl"
}

// Plans derives the certificates per the spec's table, in the order
// dnsLess.publicUrl, core.url, dns.domain. A hostname another plan already
// covers is dropped (the wildcard covers one label below the domain), and
// so is a plan left empty, so no name is ever ordered twice.
func (c *Config) Plans() []Plan {
	domain := normalizeDomain(c.DNS.Domain)
	seen := map[string]bool{}
	covered := func(h string) bool {
		if seen[h] {
			return true
		}
		if domain == "" {
			return false
		}
		if h == domain || h == "*."+domain {
			return true
		}
		label, ok := strings.CutSuffix(h, "."+domain)
		return ok && label != "" && !strings.Contains(label, ".")
	}

	var plans []Plan
	httpPlan := func(from, raw string) {
		h := urlHost(raw)
		if h == "" || covered(h) {
			return
		}
		seen[h] = true
		plans = append(plans, Plan{Hostnames: []string{h}, Challenge: ChallengeHTTP01, From: from})
	}
	if c.DNSLess.IsActive {
		httpPlan("dnsLess.publicUrl", c.DNSLess.PublicURL)
	}
	httpPlan("core.url", c.Core.URL)
	if domain != "" {
		plans = append(plans, Plan{Hostnames: []string{"*." + domain, domain}, Challenge: ChallengeDNS01, From: "dns.domain"})
	}
	return plans
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
