package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pryv/pryv-tls/internal/authdns"
)

// maxTTL is the largest TTL RFC 2181 allows (section 8).
const maxTTL = 1<<31 - 1

// NoHostnameError is the spec's "loud error": letsEncrypt is on but the
// topology names no host to certify.
const NoHostnameError = "letsEncrypt.enabled is true but no hostname can be derived from the topology: " +
	"set dnsLess.isActive: true with dnsLess.publicUrl (single core), " +
	"dns.domain (multi-core with embedded DNS: wildcard *.{domain} by DNS-01), " +
	"or core.url (multi-core with DNSless overrides); there is intentionally no letsEncrypt.hostnames key"

const keygenHint = "generate one with: pryv-tls keygen"

// KeyTypes are the accepted letsEncrypt.keyType values.
var KeyTypes = []string{"ec256", "ec384", "rsa2048", "rsa4096"}

type validator struct{ errs []error }

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// validate runs on the defaulted config; it reports every problem, in the
// order of the keys in the file, so one `config check` shows them all.
func validate(c *Config) []error {
	v := &validator{}
	v.http(c)
	v.dnsLess(c)
	v.core(c)
	v.dns(c)
	v.userLookup(c)
	v.letsEncrypt(c)
	v.upstreams(c)
	v.platform(c)
	v.hostPort("platformDB.peerAddress", c.PlatformDB.PeerAddress, false)
	v.hostPort("platformDB.clientAddress", c.PlatformDB.ClientAddress, false)
	v.hostPort("metrics.listen", c.Metrics.Listen, true)
	if c.Log.Level != "" && !slices.Contains(LogLevels, c.Log.Level) {
		v.add("log.level", "must be one of %s, got %q", strings.Join(LogLevels, ", "), c.Log.Level)
	}
	return v.errs
}

func (v *validator) http(c *Config) {
	v.ip("http.ip", c.HTTP.IP, 0, true)
	v.port("http.port", c.HTTP.Port)
	ssl := c.HTTP.SSL
	switch {
	case ssl.CertFile != "" && ssl.KeyFile == "":
		v.add("http.ssl", "certFile and keyFile must be set together (certFile is set, keyFile is empty)")
	case ssl.CertFile == "" && ssl.KeyFile != "":
		v.add("http.ssl", "certFile and keyFile must be set together (keyFile is set, certFile is empty)")
	case ssl.CertFile == "" && ssl.CAFile != "":
		v.add("http.ssl", "caFile is set but certFile and keyFile are empty; caFile only extends certFile's chain")
	}
	v.hsts("http.hsts", c.HTTP.HSTS)
}

// hstsPreloadAge is the shortest max-age the browsers' preload list takes.
const hstsPreloadAge = 31536000

// hsts checks http.hsts against RFC 6797 §6.1. A directive the RFC would
// have browsers ignore is refused here: a misspelt includeSubDomains would
// otherwise be ignored silently.
func (v *validator) hsts(key, s string) {
	if s == "" {
		return
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			v.add(key, "must be one line of printable ASCII (a header value such as max-age=31536000; includeSubDomains)")
			return
		}
	}
	seen := map[string]bool{}
	maxAge := int64(-1)
	for _, d := range strings.Split(s, ";") {
		d = strings.TrimSpace(d)
		if d == "" {
			continue
		}
		name, val, hasVal := strings.Cut(d, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if seen[name] {
			v.add(key, "directive %s is given twice in %q", name, s)
			return
		}
		seen[name] = true
		switch name {
		case "max-age":
			n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64)
			if !hasVal || err != nil || n < 0 {
				v.add(key, "max-age must be a number of seconds (max-age=31536000), got %q", d)
				return
			}
			maxAge = n
		case "includesubdomains", "preload":
			if hasVal {
				v.add(key, "directive %s takes no value, got %q", name, d)
				return
			}
		default:
			v.add(key, "unknown directive %q; the directives are max-age=SECONDS, includeSubDomains and preload", d)
			return
		}
	}
	switch {
	case maxAge < 0:
		v.add(key, "needs max-age=SECONDS (max-age=31536000 is one year), got %q", s)
	case seen["preload"] && (!seen["includesubdomains"] || maxAge < hstsPreloadAge):
		v.add(key, "preload needs includeSubDomains and a max-age of at least %d (the preload list's rules), got %q", hstsPreloadAge, s)
	}
}

func (v *validator) dnsLess(c *Config) {
	if c.DNSLess.IsActive && c.DNSLess.PublicURL == "" {
		v.add("dnsLess.publicUrl", "required when dnsLess.isActive is true")
	}
	v.httpsURL("dnsLess.publicUrl", c.DNSLess.PublicURL)
	if c.DNSLess.IsActive && c.DNS.Active {
		v.add("dns.active", "cannot be true together with dnsLess.isActive: a DNS-less core answers no DNS (set one of them to false)")
	}
}

func (v *validator) core(c *Config) {
	v.httpsURL("core.url", c.Core.URL)
	v.ip("core.ip", c.Core.IP, 4, false)
	v.ip("core.ipv6", c.Core.IPv6, 6, false)
	if n := c.Core.CName; n != "" && !validDomain(normalizeDomain(n)) {
		v.add("core.cname", "%q is not a valid host name", n)
	}
}

func (v *validator) dns(c *Config) {
	d := c.DNS
	switch {
	case d.Domain != "" && !validDomain(d.Domain):
		v.add("dns.domain", "%q is not a valid domain name", d.Domain)
	case d.Domain == "" && d.Active:
		v.add("dns.domain", "required when dns.active is true")
	}
	switch {
	case d.DNSSEC && !d.Active:
		v.add("dns.dnssec", "needs dns.active: true (the embedded DNS server signs the zone)")
	case d.DNSSEC && c.LetsEncrypt.AtRestKey == "":
		v.add("dns.dnssec", "needs letsEncrypt.atRestKey: the zone's signing key is sealed with it in PlatformDB, so every core signs with the same key; %s", keygenHint)
	}
	v.ip("dns.ip", d.IP, 4, true)
	v.ip("dns.ip6", d.IP6, 6, true)
	v.port("dns.port", d.Port)
	switch {
	case d.DefaultTTL < 1:
		v.add("dns.defaultTTL", "must be a positive number of seconds, got %d", d.DefaultTTL)
	case d.DefaultTTL > maxTTL:
		// A TTL is 32 bits on the wire and RFC 2181 (section 8) caps it at
		// 2^31-1: a larger one would wrap into a short one.
		v.add("dns.defaultTTL", "must be at most %d seconds (RFC 2181), got %d", maxTTL, d.DefaultTTL)
	}
	// It defaults to core.ip, which reports its own error.
	if d.PublicIP != c.Core.IP {
		v.ip("dns.publicIp", d.PublicIP, 4, false)
	}
	v.records("dns.records.root", d.Records.Root)

	first := map[string]int{}
	for i, e := range d.StaticEntries {
		p := fmt.Sprintf("dns.staticEntries[%d]", i)
		sub := normalizeDomain(e.Subdomain)
		switch j, dup := first[sub]; {
		case sub == "":
			v.add(p+".subdomain", "required")
		case dup:
			v.add(p+".subdomain", "%q is already used by dns.staticEntries[%d]; merge the two entries", e.Subdomain, j)
		default:
			first[sub] = i
			// The check dns-record rows get too (dns-records load).
			if _, err := authdns.CheckRelativeName(e.Subdomain); err != nil {
				v.add(p+".subdomain", "%v", err)
			}
		}
		v.records(p+".records", e.Records)
	}
}

func (v *validator) records(path string, r RecordSet) {
	for i, a := range r.A {
		v.ip(fmt.Sprintf("%s.a[%d]", path, i), a, 4, false)
	}
	for i, a := range r.AAAA {
		v.ip(fmt.Sprintf("%s.aaaa[%d]", path, i), a, 6, false)
	}
}

// MaxUserLookupTimeout bounds dns.userLookup.timeout: resolvers give up on
// an authoritative server after a few seconds and ask another one.
const MaxUserLookupTimeout = Duration(5 * time.Second)

// UserLookupSources are the accepted dns.userLookup.source values.
var UserLookupSources = []string{UserLookupAPI, UserLookupRQLite, UserLookupOff}

func (v *validator) userLookup(c *Config) {
	u := c.DNS.UserLookup
	if !slices.Contains(UserLookupSources, u.Source) {
		v.add("dns.userLookup.source", "must be one of %s, got %q", strings.Join(UserLookupSources, ", "), u.Source)
	}
	if u.Timeout <= 0 || u.Timeout > MaxUserLookupTimeout {
		v.add("dns.userLookup.timeout", "must be more than 0 and at most %s, got %s", MaxUserLookupTimeout, u.Timeout)
	}
	if u.MaxPerSecond < 1 {
		v.add("dns.userLookup.maxPerSecond", "must be at least 1, got %d", u.MaxPerSecond)
	}
}

// PIIModes are the accepted platform.piiMode values.
var PIIModes = []string{PIIModeHashed, PIIModeCleartext}

const piiKeyHint = "the same value as the core's platform.piiHmacKey (base64 of 32 random bytes, identical on every core)"

func (v *validator) platform(c *Config) {
	p := c.Platform
	if !slices.Contains(PIIModes, p.PIIMode) {
		v.add("platform.piiMode", "must be one of %s, got %q", strings.Join(PIIModes, ", "), p.PIIMode)
	}
	if p.PIIAlgorithm != DefaultPIIAlgorithm {
		v.add("platform.piiAlgorithm", "must be %s (the only algorithm the core has), got %q", DefaultPIIAlgorithm, p.PIIAlgorithm)
	}
	// The key matters only to read the core's hashed rows; in cleartext
	// mode the core never decodes it, so neither do we.
	hashed := p.PIIMode == PIIModeHashed
	switch key := p.PIIHmacKey.Reveal(); {
	case key == "" && hashed && c.DNS.Active && c.DNS.UserLookup.Source == UserLookupRQLite:
		v.add("platform.piiHmacKey", "required when dns.userLookup.source is rqlite and platform.piiMode is hashed; set it to %s", piiKeyHint)
	case key != "" && hashed:
		if _, err := p.PIIHmacKeyBytes(); err != nil {
			v.add("platform.piiHmacKey", "%s", err.Error())
		}
	}
	raw := c.Storages.Engines.RQLite.URL
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https"):
		v.add("storages.engines.rqlite.url", "must be an http:// or https:// URL, got %q", hideUserinfo(raw))
	case u.Host == "":
		v.add("storages.engines.rqlite.url", "must name a host, got %q", hideUserinfo(raw))
	}
}

// PIIHmacKeyBytes decodes platform.piiHmacKey. The error never contains the
// key.
func (p *Platform) PIIHmacKeyBytes() ([]byte, error) {
	b, err := decodeKey32(p.PIIHmacKey.Reveal())
	if err != nil {
		return nil, fmt.Errorf("%w; %s", err, piiKeyHint)
	}
	return b, nil
}

func (v *validator) letsEncrypt(c *Config) {
	le := c.LetsEncrypt
	switch {
	case le.Email != "" && !bareEmail(le.Email):
		v.add("letsEncrypt.email", "%q is not an email address", le.Email)
	case le.Email == "" && le.Enabled:
		v.add("letsEncrypt.email", "required when letsEncrypt.enabled is true (the ACME CA sends expiry notices there)")
	}
	// Never echo the key: a wrong key is still usually someone's real key.
	switch key := le.AtRestKey.Reveal(); {
	case key == "" && le.Enabled:
		v.add("letsEncrypt.atRestKey", "required when letsEncrypt.enabled is true; %s", keygenHint)
	case key != "":
		if _, err := le.AtRestKeyBytes(); err != nil {
			v.add("letsEncrypt.atRestKey", "%s", err.Error())
		}
	}
	if prev := le.AtRestKeyPrevious.Reveal(); prev != "" {
		cur, curErr := le.AtRestKeyBytes()
		old, err := decodeKey32(prev)
		switch {
		case err != nil:
			v.add("letsEncrypt.atRestKeyPrevious", "%s; it must be the atRestKey being replaced, as it was configured", err.Error())
		case le.AtRestKey.Reveal() == "":
			v.add("letsEncrypt.atRestKeyPrevious", "set without letsEncrypt.atRestKey: put the new key in atRestKey and the one being replaced here")
		case curErr == nil && bytes.Equal(cur, old):
			v.add("letsEncrypt.atRestKeyPrevious", "is the same key as letsEncrypt.atRestKey: remove atRestKeyPrevious, or put the new key in atRestKey")
		}
	}
	if le.OnRotateScript != "" && !filepath.IsAbs(le.OnRotateScript) {
		v.add("letsEncrypt.onRotateScript", "must be an absolute path, got %q", le.OnRotateScript)
	}
	if le.OnFailureScript != "" && !filepath.IsAbs(le.OnFailureScript) {
		v.add("letsEncrypt.onFailureScript", "must be an absolute path, got %q", le.OnFailureScript)
	}
	if w := le.OnFailureWebhook.Reveal(); w != "" {
		// Never echo it: a webhook URL usually carries its token.
		if u, err := url.Parse(w); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add("letsEncrypt.onFailureWebhook", "must be an http:// or https:// URL with a host (the value is not shown: webhook URLs hold tokens)")
		}
	}
	if le.RenewBeforeDays < 1 || le.RenewBeforeDays > 89 {
		v.add("letsEncrypt.renewBeforeDays", "must be between 1 and 89, got %d", le.RenewBeforeDays)
	}
	v.httpsURL("letsEncrypt.directoryUrl", le.DirectoryURL)
	v.port("letsEncrypt.http01Port", le.HTTP01Port)
	v.port("cluster.joinPort", c.Cluster.JoinPort)
	if !slices.Contains(KeyTypes, le.KeyType) {
		v.add("letsEncrypt.keyType", "must be one of %s, got %q", strings.Join(KeyTypes, ", "), le.KeyType)
	}
	switch {
	case !slices.Contains(Challenges, le.Challenge):
		v.add("letsEncrypt.challenge", "must be one of %s, got %q", strings.Join(Challenges, ", "), le.Challenge)
	case le.Challenge == ChallengeTLSALPN01 && c.DNS.Domain != "":
		v.add("letsEncrypt.challenge", "tls-alpn-01 cannot prove the wildcard *.%s that dns.domain calls for (RFC 8737 has no wildcards; it is proved by DNS-01 from the embedded DNS server): remove letsEncrypt.challenge, or set it to http-01", normalizeDomain(c.DNS.Domain))
	}
	for i, f := range le.Fallback {
		p := fmt.Sprintf("letsEncrypt.fallback[%d]", i)
		if f.DirectoryURL == "" {
			v.add(p+".directoryUrl", "required: the https:// ACME directory of the fallback CA")
		}
		v.httpsURL(p+".directoryUrl", f.DirectoryURL)
		if (f.EAB.KID == "") != (f.EAB.HMACKey == "") {
			v.add(p+".eab", "kid and hmacKey must be set together")
		}
	}
	if (le.EAB.KID == "") != (le.EAB.HMACKey == "") {
		v.add("letsEncrypt.eab", "kid and hmacKey must be set together")
	}
	if h := le.EAB.HMACKey.Reveal(); h != "" && !isBase64URL(h) {
		v.add("letsEncrypt.eab.hmacKey", "not valid base64url; paste it exactly as the CA gave it")
	}
	if id := le.CAAIdentity; id != "" && !validDomain(normalizeDomain(id)) {
		v.add("letsEncrypt.caaIdentity", "%q is not a domain name: the CA's issuer domain, as in its CAA instructions (e.g. letsencrypt.org)", id)
	}
	if le.DNS01.PropagationTimeout < 0 {
		v.add("letsEncrypt.dns01.propagationTimeout", "must be positive, got %s", le.DNS01.PropagationTimeout)
	}
	if le.Enabled && !hasTopology(c) {
		v.add("", "%s", NoHostnameError)
	}
}

// hasTopology looks at the keys as written, not at Plans: a malformed URL
// gets its own error and must not also trigger the "nothing set" one.
func hasTopology(c *Config) bool {
	return (c.DNSLess.IsActive && c.DNSLess.PublicURL != "") || c.Core.URL != "" || c.DNS.Domain != ""
}

func (v *validator) upstreams(c *Config) {
	for _, u := range []struct{ key, raw string }{
		{"upstreams.api", c.Upstreams.API},
		{"upstreams.hfs", c.Upstreams.HFS},
	} {
		parsed, err := url.Parse(u.raw)
		switch {
		case err != nil || parsed.Scheme != "http":
			v.add(u.key, "must be an http:// URL (TLS is terminated here), got %q", hideUserinfo(u.raw))
		case parsed.Host == "":
			v.add(u.key, "must name a host, got %q", hideUserinfo(u.raw))
		case pointsAtListener(c, parsed):
			v.add(u.key, "points at this front's own listen address %s; the front would proxy to itself", c.ListenAddr())
		}
	}
	if t := c.Upstreams.ResponseHeaderTimeout; t <= 0 {
		v.add("upstreams.responseHeaderTimeout", "must be more than 0, got %s (the default is %s)", t, DefaultUpstreamHeaderTimeout)
	}
}

func pointsAtListener(c *Config, u *url.URL) bool {
	port := u.Port()
	if port == "" {
		port = "80"
	}
	if port != strconv.Itoa(c.HTTP.Port) {
		return false
	}
	host := u.Hostname()
	if strings.EqualFold(host, c.HTTP.IP) {
		return true
	}
	listen, err := netip.ParseAddr(c.HTTP.IP)
	if err != nil {
		return false
	}
	var cands []netip.Addr
	if strings.EqualFold(host, "localhost") {
		cands = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
	} else if a, err := netip.ParseAddr(host); err == nil {
		cands = []netip.Addr{a}
	}
	core, _ := netip.ParseAddr(c.Core.IP)
	for _, a := range cands {
		a = a.Unmap()
		if listen.IsUnspecified() && (a.IsLoopback() || a.IsUnspecified() || a == core.Unmap()) {
			return true
		}
		if a == listen.Unmap() {
			return true
		}
	}
	return false
}

func (v *validator) port(path string, p int) {
	if p < 1 || p > 65535 {
		v.add(path, "must be between 1 and 65535, got %d", p)
	}
}

// ip checks an address of the given family (0 = either). Listen addresses
// may carry an IPv6 zone; addresses published in DNS may not.
func (v *validator) ip(path, s string, family int, listen bool) {
	if s == "" {
		return
	}
	a, err := netip.ParseAddr(s)
	if err != nil || (!listen && a.Zone() != "") {
		v.add(path, "%q is not an IP address", s)
		return
	}
	switch {
	case family == 4 && !a.Unmap().Is4():
		v.add(path, "%q is not an IPv4 address", s)
	case family == 6 && (!a.Is6() || a.Is4In6()):
		v.add(path, "%q is not an IPv6 address", s)
	}
}

func (v *validator) httpsURL(path, raw string) {
	if raw == "" {
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Scheme != "https":
		v.add(path, "must be an https:// URL, got %q", hideUserinfo(raw))
	case u.Host == "":
		v.add(path, "must name a host, got %q", hideUserinfo(raw))
	}
}

// hideUserinfo masks a URL's userinfo (what precedes the last '@' of the
// authority, after any "scheme://"): rqlite URLs carry user:password there,
// and a URL that fails to parse (so url.Redacted cannot help) is exactly the
// one echoed back.
func hideUserinfo(raw string) string {
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 {
		start = i + len("://")
	}
	authority := raw[start:]
	if end := strings.IndexAny(authority, "/?#"); end >= 0 {
		authority = authority[:end]
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return raw
	}
	return raw[:start] + "xxxxx" + raw[start+at:]
}

func (v *validator) hostPort(path, s string, emptyHostOK bool) {
	if s == "" {
		return
	}
	host, port, err := net.SplitHostPort(s)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < 1 || n > 65535 || (host == "" && !emptyHostOK) {
		v.add(path, "must be host:port such as 127.0.0.1:2379, got %q", s)
	}
}

// AtRestKeyBytes decodes letsEncrypt.atRestKey. The error never contains the
// key.
func (le *LetsEncrypt) AtRestKeyBytes() ([]byte, error) {
	b, err := decodeKey32(le.AtRestKey.Reveal())
	if err != nil {
		return nil, fmt.Errorf("%w; %s", err, keygenHint)
	}
	return b, nil
}

// AtRestKeyPreviousBytes decodes letsEncrypt.atRestKeyPrevious (nil when
// unset). The error never contains the key.
func (le *LetsEncrypt) AtRestKeyPreviousBytes() ([]byte, error) {
	if le.AtRestKeyPrevious.Reveal() == "" {
		return nil, nil
	}
	return decodeKey32(le.AtRestKeyPrevious.Reveal())
}

// decodeKey32 decodes the base64 of a 32-byte key. The error never contains
// the key.
func decodeKey32(key string) ([]byte, error) {
	s := strings.TrimSpace(key)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, errors.New("not valid base64")
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("must be the base64 of exactly 32 random bytes (got %d bytes)", len(b))
	}
	return b, nil
}

func bareEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s
}

func isBase64URL(s string) bool {
	if _, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return true
	}
	_, err := base64.URLEncoding.DecodeString(s)
	return err == nil
}

// validDomain expects a normalized (lowercase, no trailing dot) name.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if len(label) < 1 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
