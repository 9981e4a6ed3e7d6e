package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pryv/pryv-tls/internal/health"
)

// placeholderCN is the subject of the self-signed placeholder
// (internal/certs) a core serves until it has a real certificate.
const placeholderCN = "pryv-tls placeholder (no certificate yet)"

// checkHTTP01: the CA's HTTP-01 connection reaches every core's port.
func checkHTTP01(ctx context.Context, d *doctor) []Result {
	if d.HTTP01Port == 0 {
		return skip("no planned name is validated by HTTP-01 (dns.domain's names use DNS-01, letsEncrypt.challenge may be tls-alpn-01)")
	}
	return eachCore(d.Cores, func(c Core) Result {
		addr := net.JoinHostPort(c.IP, strconv.Itoa(d.HTTP01Port))
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/.well-known/acme-challenge/pryv-tls-doctor", nil)
		req.Host = d.HTTP01Name
		resp, err := plainClient().Do(req)
		if err != nil {
			return fail(fmt.Sprintf("open TCP port %d to %s from the internet (firewall, security group) and check letsEncrypt.http01Port there", d.HTTP01Port, c.IP),
				"core %s: HTTP-01 port %s: %s", c, addr, netWhy(err))
		}
		resp.Body.Close()
		return pass("core %s: HTTP-01 port %s answers (HTTP %d)", c, addr, resp.StatusCode)
	})
}

// checkTLSALPN: every core's front answers RFC 8737's acme-tls/1 for a
// planned name. Without a pending challenge the responder refuses the
// handshake (RFC 8737 section 3), which tells it apart from a front that
// does not offer acme-tls/1 at all (no_application_protocol).
func checkTLSALPN(ctx context.Context, d *doctor) []Result {
	switch {
	case d.TLSALPNName == "":
		return skip("no planned name is validated by TLS-ALPN-01 (letsEncrypt.challenge)")
	case !d.FrontTLS:
		return skip("the front does not terminate TLS here")
	}
	return eachCore(d.Cores, func(c Core) Result {
		addr := net.JoinHostPort(c.IP, strconv.Itoa(d.FrontPort))
		dialer := &tls.Dialer{Config: &tls.Config{ServerName: d.TLSALPNName, NextProtos: []string{acmeTLS1}, InsecureSkipVerify: true}} //nolint:gosec // G402: a validation certificate is self-signed
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		// A received alert is a net.OpError "remote error" wrapping
		// crypto/tls's (unexported) alert.
		var opErr *net.OpError
		remote := errors.As(err, &opErr) && opErr.Op == "remote error"
		switch {
		case err == nil:
			proto := conn.(*tls.Conn).ConnectionState().NegotiatedProtocol
			conn.Close()
			if proto != acmeTLS1 {
				return fail("set letsEncrypt.challenge: tls-alpn-01 on that core too, and reload it",
					"core %s: %s answers an acme-tls/1 hello with %q", c, addr, proto)
			}
			return pass("core %s: %s answers acme-tls/1 for %s (a challenge is pending)", c, addr, d.TLSALPNName)
		case remote && opErr.Err.Error() == "tls: no application protocol":
			return fail("set letsEncrypt.challenge: tls-alpn-01 on that core too (every core answers the CA), and reload it",
				"core %s: %s does not offer acme-tls/1: TLS-ALPN-01 validations reaching it fail", c, addr)
		case remote:
			return pass("core %s: %s offers acme-tls/1 (no challenge pending for %s: refused, as RFC 8737 wants)", c, addr, d.TLSALPNName)
		}
		return fail(fmt.Sprintf("open TCP port %d to %s from the internet: TLS-ALPN-01 validates on it", d.FrontPort, c.IP),
			"core %s: TLS-ALPN-01 on %s: %s", c, addr, netWhy(err))
	})
}

// acmeTLS1 is RFC 8737's ALPN protocol.
const acmeTLS1 = "acme-tls/1"

// checkTLS: every core's front completes a handshake for a planned name
// with a certificate that is real (not the placeholder), valid now and for
// the name.
func checkTLS(ctx context.Context, d *doctor) []Result {
	switch {
	case !d.FrontTLS:
		return skip("the front does not terminate TLS here (Strategy B: the proxy in front does)")
	case len(d.Names) == 0:
		return skip("the topology plans no hostname (core.url, dns.domain, dnsLess.publicUrl)")
	}
	var out []Result
	for _, rs := range eachCore(d.Cores, func(c Core) []Result {
		var rs []Result
		for _, name := range d.Names {
			rs = append(rs, d.tlsOf(ctx, c, name))
		}
		return rs
	}) {
		out = append(out, rs...)
	}
	return out
}

func (d *doctor) tlsOf(ctx context.Context, c Core, name string) Result {
	addr := net.JoinHostPort(c.IP, strconv.Itoa(d.FrontPort))
	dialer := &tls.Dialer{Config: &tls.Config{ServerName: name, InsecureSkipVerify: true}} //nolint:gosec // G402: judged below, to say what is wrong
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail(fmt.Sprintf("start pryv-tls on %s, or open TCP port %d to %s (http.ip, http.port there)", c.ID, d.FrontPort, c.IP),
			"core %s: TLS port %s for %s: %s", c, addr, name, netWhy(err))
	}
	defer conn.Close()
	state := conn.(*tls.Conn).ConnectionState()
	leaf := state.PeerCertificates[0]
	now := d.Now()
	switch {
	case leaf.Subject.CommonName == placeholderCN:
		return fail("see pryv-tls status on that core: its certificate is not issued or not replicated yet",
			"core %s: serves the self-signed placeholder for %s", c, name)
	case now.After(leaf.NotAfter):
		return fail("see pryv-tls status: the renewal failed or nothing renews it (imported, http.ssl files)",
			"core %s: the certificate for %s expired at %s", c, name, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return fail("check the clock result: that core's clock or the issuer's is wrong",
			"core %s: the certificate for %s is valid only from %s", c, name, leaf.NotBefore.UTC().Format(time.RFC3339))
	case leaf.VerifyHostname(name) != nil:
		return fail("check the topology (core.url, dns.domain): that core serves a certificate of other names",
			"core %s: the certificate for %s names %s", c, name, strings.Join(leaf.DNSNames, ", "))
	}
	inter := x509.NewCertPool()
	for _, ic := range state.PeerCertificates[1:] {
		inter.AddCert(ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: d.Roots, Intermediates: inter, CurrentTime: now}); err != nil {
		return warn("fine for a private or test CA; for a public one, check that the chain includes the intermediates",
			"core %s: the certificate for %s (issuer %q, expires %s) is not trusted by this machine's roots: %v", c, name, leaf.Issuer.CommonName, leaf.NotAfter.UTC().Format(time.DateOnly), err)
	}
	return pass("core %s: serves a valid certificate for %s (issuer %q, expires %s)", c, name, leaf.Issuer.CommonName, leaf.NotAfter.UTC().Format(time.DateOnly))
}

// netWhy says what a failed query or connection means, for a detail.
func netWhy(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "no answer in time"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (nothing listens there)"
	}
	return err.Error()
}

// checkClock: every core's clock, read from its front's Date header, is
// within MaxSkew of this machine's: a skewed core serves certificates
// "not yet valid" and signs DNSSEC out of its validity window.
func checkClock(ctx context.Context, d *doctor) []Result {
	if d.FrontPort == 0 {
		return skip("the front's port is not known")
	}
	scheme := "http"
	if d.FrontTLS {
		scheme = "https"
	}
	host := ""
	if len(d.Names) > 0 {
		host = d.Names[0]
	}
	type got struct {
		skew time.Duration
		err  error
	}
	answers := eachCore(d.Cores, func(c Core) got {
		addr := net.JoinHostPort(c.IP, strconv.Itoa(d.FrontPort))
		// The front answers its liveness path itself: nothing reaches the
		// core's API.
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+health.FrontLive, nil)
		req.Host = host
		before := d.Now()
		resp, err := insecureClient(host).Do(req)
		if err != nil {
			return got{err: errors.New(netWhy(err))}
		}
		resp.Body.Close()
		after := d.Now()
		date, err := http.ParseTime(resp.Header.Get("Date"))
		if err != nil {
			return got{err: fmt.Errorf("no Date header in its answer (%w)", err)}
		}
		// Date has whole seconds: compare with the middle of the exchange,
		// truncated the same way.
		mid := before.Add(after.Sub(before) / 2).Truncate(time.Second)
		return got{skew: date.Sub(mid)}
	})
	var out []Result
	lo, hi := time.Duration(0), time.Duration(0)
	for i, a := range answers {
		c := d.Cores[i]
		switch {
		case a.err != nil:
			out = append(out, warn("see the tls result for that core", "core %s: its clock cannot be read from its front: %v", c, a.err))
			continue
		case a.skew > d.MaxSkew || -a.skew > d.MaxSkew:
			out = append(out, fail("run an NTP client on every core (systemd-timesyncd, chrony) and check timedatectl",
				"core %s: its clock is %s off this machine's (more than %s)", c, a.skew, d.MaxSkew))
		default:
			out = append(out, pass("core %s: clock within %s of this machine's", c, max(a.skew, -a.skew)+time.Second))
		}
		lo, hi = min(lo, a.skew), max(hi, a.skew)
	}
	if hi-lo > d.MaxSkew {
		out = append(out, fail("run an NTP client on every core", "the cores' clocks are %s apart", hi-lo))
	}
	return out
}

// checkPlatformDB: this core's member answers, and every member is
// healthy (from the running core's status).
func checkPlatformDB(ctx context.Context, d *doctor) []Result {
	switch {
	case d.PlatformDBErr != "":
		return []Result{fail("start pryv-tls serve with this configuration (systemctl status pryv-tls) and run doctor again", "%s", d.PlatformDBErr)}
	case d.PlatformDB == nil:
		return skip(d.PlatformDBSkip)
	}
	p := d.PlatformDB
	var out []Result
	if !p.Up {
		out = append(out, fail("see pryv-tls status and the cluster guide: a quorum of members must reach each other (platformDB.peerAddress)",
			"this core's PlatformDB member does not answer a quorum read: no certificate, DNS record or account change reaches it"))
	}
	var down, up []string
	for _, m := range p.Members {
		if m.Healthy {
			up = append(up, m.ID)
		} else {
			down = append(down, m.ID)
		}
	}
	if len(down) > 0 {
		out = append(out, fail("start pryv-tls on those cores, or remove a core for good with pryv-tls bootstrap remove-core",
			"PlatformDB members down: %s (%d of %d answer)", strings.Join(down, ", "), len(up), len(p.Members)))
	}
	for _, u := range p.Unreachable {
		out = append(out, fail("see pryv-tls status", "%s did not answer in time", u))
	}
	if len(out) == 0 {
		leader := "another member leads"
		if p.Leader {
			leader = "this core leads"
		}
		out = append(out, pass("PlatformDB: %d of %d members healthy, %s", len(up), len(p.Members), leader))
	}
	return out
}

// directoryInfo is what doctor reads of an ACME directory (RFC 8555 7.1.1).
type directoryInfo struct {
	NewNonce, NewAccount, NewOrder string
	CAAIdentities                  []string
	err                            error
}

// directory fetches the ACME directory once for the checks that need it.
func (d *doctor) directory(ctx context.Context) (directoryInfo, error) {
	d.dirOnce.Do(func() { d.dir = fetchDirectory(ctx, d.Directory, d.DirectoryRoots) })
	return d.dir, d.dir.err
}

func fetchDirectory(ctx context.Context, url string, roots *x509.CertPool) directoryInfo {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return directoryInfo{err: err}
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, Proxy: http.ProxyFromEnvironment}}
	resp, err := cl.Do(req)
	if err != nil {
		return directoryInfo{err: errors.New(netWhy(err))}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return directoryInfo{err: fmt.Errorf("HTTP %d", resp.StatusCode)}
	}
	var dir struct {
		NewNonce   string `json:"newNonce"`
		NewAccount string `json:"newAccount"`
		NewOrder   string `json:"newOrder"`
		Meta       struct {
			CAAIdentities []string `json:"caaIdentities"`
		} `json:"meta"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&dir); err != nil {
		return directoryInfo{err: fmt.Errorf("not an ACME directory: %w", err)}
	}
	if dir.NewNonce == "" || dir.NewAccount == "" || dir.NewOrder == "" {
		return directoryInfo{err: errors.New("not an ACME directory: newNonce, newAccount or newOrder is missing")}
	}
	return directoryInfo{NewNonce: dir.NewNonce, NewAccount: dir.NewAccount, NewOrder: dir.NewOrder, CAAIdentities: dir.Meta.CAAIdentities}
}

// checkDirectory: the ACME directory answers, through its TLS.
func checkDirectory(ctx context.Context, d *doctor) []Result {
	if d.Directory == "" {
		return skip("letsEncrypt.enabled is off: no ACME here")
	}
	info, err := d.directory(ctx)
	if err != nil {
		var ca x509.UnknownAuthorityError
		fix := "check letsEncrypt.directoryUrl, this core's outbound HTTPS (firewall, proxy: HTTPS_PROXY) and DNS resolution"
		if errors.As(err, &ca) || strings.Contains(err.Error(), "certificate signed by unknown authority") {
			fix = "a private CA's directory: set letsEncrypt.directoryCaFile to its CA certificate"
		}
		return []Result{fail(fix, "ACME directory %s: %v", d.Directory, err)}
	}
	ids := "none"
	if len(info.CAAIdentities) > 0 {
		ids = strings.Join(info.CAAIdentities, ", ")
	}
	return []Result{pass("ACME directory %s answers (CAA identities: %s)", d.Directory, ids)}
}

func plainClient() *http.Client {
	return &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// insecureClient reads a front's answer whatever certificate it serves
// (the tls check judges that): only its Date header is used.
func insecureClient(serverName string) *http.Client {
	return &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil,
			TLSClientConfig: &tls.Config{ServerName: serverName, InsecureSkipVerify: true}}, //nolint:gosec // G402: the tls check judges the certificate (above)
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
