// Package acmetest runs a real ACME server, Pebble (github.com/letsencrypt/pebble/v2),
// inside the test process, for pryv-tls's tests. It is imported by tests only.
//
// Start wires Pebble's own ca, va, wfe and db packages the way its
// cmd/pebble does, serves the ACME API and the management API over TLS on
// 127.0.0.1 (with a throwaway listener certificate from devpki, not Pebble's
// bundled one, which expires on 2027-10-03), optionally starts a small DNS
// responder for Pebble's validation authority, and tears everything down in
// t.Cleanup. Nothing listens on anything but 127.0.0.1.
//
// Typical use with lego (once pryv-tls depends on it):
//
//	p := acmetest.Start(t, acmetest.Options{})
//	cfg := lego.NewConfig(user)
//	cfg.CADirURL = p.DirectoryURL
//	cfg.HTTPClient = p.HTTPClient()
//	// serve HTTP-01 on 127.0.0.1:p.HTTPPort, order with a Profile named
//	// ("default", "shortlived" or "short120s"), verify against p.IssuerRoots(t).
//
// Checked with lego v5.6.0 (HTTP-01 Obtain, GetRenewalInfo, SetRenewalInfo):
// an HTTP-01 Obtain takes ~0.7 s with HTTPClient's Retry-After patch, ~3.8 s
// without it.
//
// # Pebble behaviour a test must know about
//
//   - Pebble reads its PEBBLE_* environment variables when its constructors
//     run. Start sets them with t.Setenv, so a test (or its parents) that
//     calls Start must not call t.Parallel; Start panics if it did.
//     Start fixes: PEBBLE_VA_NOSLEEP=1 (no random 0–5 s sleep before each
//     validation), PEBBLE_WFE_NONCEREJECT=0 (Pebble otherwise rejects 5 % of
//     good nonces as badNonce), PEBBLE_AUTHZREUSE=0 or 100 (default 50 %:
//     random reuse of valid authorizations; see Options.ReuseAuthz),
//     PEBBLE_VA_ALWAYS_VALID (Options.AlwaysValid).
//   - An order that names no profile gets a RANDOM configured profile. Always
//     name one, or configure a single profile.
//   - A profile's validity is whole seconds; Pebble makes NotAfter =
//     NotBefore + validity − 1 s, and NotBefore is the issuance instant (no
//     backdating). ARI's suggested window is the two-thirds point ±24 h,
//     clipped to [NotBefore, NotAfter]: for a short profile (short120s) the
//     window is the whole lifetime, and an ARI client picks a random instant
//     in it (lego's ShouldRenewAt(now, 0) is then usually nil at first).
//     ARI answers always carry Retry-After: 6 h. To force a renewal now, move
//     the window into the past with SetRenewalInfo.
//   - Pebble sends no Retry-After on challenge POSTs; lego then waits 5 s
//     (±50 %) before its first authorization poll. HTTPClient adds
//     "Retry-After: 1" there unless Options.NoRetryAfter is set.
//   - Pebble's VA resolves names through Options.DNSServer or the built-in
//     responder (over TCP), queries AAAA before A and dials the first address
//     it gets on HTTPPort (HTTP-01) or TLSALPNPort (TLS-ALPN-01). It follows
//     no CNAME for DNS-01. It performs no CAA check.
//   - Pebble's answer to finalize carries no Location header: a client must
//     poll the order URL it already has (lego does; x/crypto/acme's
//     CreateOrderCert fails, its CreateCertFromOrder works).
//   - The management API's POST /set-renewal-info/ refuses requests without
//     a User-Agent (SetRenewalInfo sends one).
//   - Pebble checks no rate limits and keeps everything in memory: a new
//     Start is a new CA with new roots, accounts and certificates.
//   - Each Start leaks one idle goroutine (the VA's task loop, which Pebble
//     never stops); validations in flight at Stop end within 15 s.
package acmetest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"

	"github.com/pryv/pryv-tls/internal/devpki"
)

// Paths Pebble v2.10.3 serves; its constants for them are unexported.
const (
	challengePath   = "/chalZ/"            // challenge objects (POST to start, POST-as-GET to poll)
	managementRoots = "/roots/"            // + index: PEM of an issuing root
	managementInter = "/intermediates/"    // + index: PEM of the issuing intermediate of a chain
	setRenewalInfo  = "/set-renewal-info/" // POST {"Certificate": PEM, "ARIResponse": "..."}
)

// Profile is a certificate profile Pebble offers (directory meta.profiles)
// and issues under when an order names it.
type Profile struct {
	Description string
	// ValidityPeriod is the certificate lifetime, at least one second;
	// Pebble counts whole seconds.
	ValidityPeriod time.Duration
	// PromoteCommonName copies the first name into the subject CN (Let's
	// Encrypt's "classic" profile does this; its short-lived ones do not).
	PromoteCommonName bool
}

// DefaultProfiles are the profiles Start configures when Options.Profiles is
// nil: a 90-day one, Let's Encrypt's 160-hour "shortlived", and a 120-second
// one for tests that need a real expiry or renewal while they run.
func DefaultProfiles() map[string]Profile {
	return map[string]Profile{
		"default":    {Description: "90 days, like Let's Encrypt's classic profile", ValidityPeriod: 90 * 24 * time.Hour, PromoteCommonName: true},
		"shortlived": {Description: "160 hours, like Let's Encrypt's shortlived profile", ValidityPeriod: 160 * time.Hour},
		"short120s":  {Description: "120 seconds, for renewal tests", ValidityPeriod: 120 * time.Second},
	}
}

// Options configures Start. The zero value is a working Pebble.
type Options struct {
	// HTTPPort is the port Pebble's VA dials for HTTP-01 (pryv-tls's
	// http01Port); 0 picks a free one (see Pebble.HTTPPort). The harness
	// serves nothing there: the code under test does.
	HTTPPort int
	// TLSALPNPort is the port Pebble's VA dials for TLS-ALPN-01; 0 picks a
	// free one.
	TLSALPNPort int
	// Profiles replaces DefaultProfiles when non-nil.
	Profiles map[string]Profile
	// EABKeys maps an External Account Binding key ID to its base64url
	// (unpadded) HMAC key. Non-empty makes EAB required for newAccount
	// (directory meta.externalAccountRequired = true).
	EABKeys map[string]string
	// DNSServer is the host:port Pebble resolves names through (over TCP).
	// Empty starts the built-in responder on 127.0.0.1 (see Pebble.DNSAddr,
	// SetTXT): A 127.0.0.1 for every name, empty AAAA, TXT as set.
	DNSServer string
	// BlockedDomains are names Pebble refuses at newOrder with
	// urn:ietf:params:acme:error:rejectedIdentifier ("forbidden by
	// policy"). A blocked name blocks its subdomains too. Pebble compares
	// labels case-sensitively: entries are lower-cased here, so order names
	// in lower case. Quirk: an order for a name with fewer labels than a
	// blocked entry (e.g. "example" when "a.example" is blocked) panics in
	// Pebble's handler; net/http recovers and the client sees a dropped
	// connection.
	BlockedDomains []string
	// NoRetryAfter makes HTTPClient pass challenge responses through
	// untouched (Pebble's own timing: lego waits ~5 s per validation).
	// By default HTTPClient adds "Retry-After: 1".
	NoRetryAfter bool
	// ReuseAuthz makes Pebble always reuse a still-valid authorization for a
	// name (PEBBLE_AUTHZREUSE=100), as Let's Encrypt does; a second order for
	// the same name then skips validation. Default: never reuse, so every
	// order exercises the challenge path.
	ReuseAuthz bool
	// AlwaysValid makes the VA accept every challenge without contacting
	// anything (PEBBLE_VA_ALWAYS_VALID=1).
	AlwaysValid bool
	// KeyAlgorithm of Pebble's roots and intermediates: "ecdsa" (default;
	// fast) or "rsa" (2048 bits, Pebble's own default, slower under -race).
	KeyAlgorithm string
	// AlternateRoots adds chains under other roots (Pebble's
	// PEBBLE_ALTERNATE_ROOTS); the order's default chain is under root 0.
	AlternateRoots int
	// ChainLength is the number of intermediates per chain (Pebble's
	// PEBBLE_CHAIN_LENGTH); 0 means 1.
	ChainLength int
	// Verbose streams Pebble's log to t.Log. Otherwise the last lines are
	// logged only if the test failed.
	Verbose bool
}

// Pebble is a running in-process Pebble.
type Pebble struct {
	// DirectoryURL is the ACME directory, https://127.0.0.1:<port>/dir.
	DirectoryURL string
	// CAFile is a PEM file holding the CA that signed the listener
	// certificate of the ACME and management APIs (what
	// letsEncrypt.directoryCaFile gets). It lives in a t.TempDir.
	CAFile string
	// ListenerRoots is that CA as a pool.
	ListenerRoots *x509.CertPool
	// ManagementURL is Pebble's management API, https://127.0.0.1:<port>,
	// served with the same listener certificate.
	ManagementURL string
	// HTTPPort is where the VA dials HTTP-01 (on whatever the name
	// resolves to: 127.0.0.1 with the built-in responder).
	HTTPPort int
	// TLSALPNPort is where the VA dials TLS-ALPN-01.
	TLSALPNPort int
	// DNSAddr is the built-in responder's 127.0.0.1:<port> (UDP and TCP),
	// or "" when Options.DNSServer was given.
	DNSAddr string

	roots     int // number of issuing roots (1 + AlternateRoots)
	acmeHost  string
	transport *http.Transport
	retry     bool
	dns       *dnsResponder
	servers   []*http.Server
	logs      *logSink
	stopOnce  sync.Once
}

// Start runs Pebble and returns once its APIs answer. Everything is torn
// down in t.Cleanup. Start calls t.Setenv (see the package doc), so it
// cannot be used under t.Parallel. Failures are fatal to t.
func Start(t testing.TB, opts Options) *Pebble {
	t.Helper()

	profiles, err := pebbleProfiles(opts.Profiles)
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	keyAlg := opts.KeyAlgorithm
	if keyAlg == "" {
		keyAlg = "ecdsa"
	}
	if keyAlg != "ecdsa" && keyAlg != "rsa" {
		t.Fatalf("acmetest: KeyAlgorithm %q: want ecdsa or rsa", keyAlg)
	}
	chainLength := max(opts.ChainLength, 1)
	if opts.AlternateRoots < 0 {
		t.Fatalf("acmetest: AlternateRoots %d < 0", opts.AlternateRoots)
	}

	// Pebble reads these in va.New and wfe.New.
	reuse := "0"
	if opts.ReuseAuthz {
		reuse = "100"
	}
	alwaysValid := "0"
	if opts.AlwaysValid {
		alwaysValid = "1"
	}
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_VA_SLEEPTIME", "")
	t.Setenv("PEBBLE_VA_ALWAYS_VALID", alwaysValid)
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", reuse)
	t.Setenv("PEBBLE_WFE_ORDERS_PER_PAGE", "")

	p := &Pebble{
		roots: 1 + opts.AlternateRoots,
		retry: !opts.NoRetryAfter,
		logs:  &logSink{t: t, live: opts.Verbose},
	}
	t.Cleanup(func() {
		p.Stop()
		p.logs.close(t.Failed())
	})
	logger := log.New(p.logs, "pebble ", log.Lmicroseconds)

	// The listener certificate.
	lca, err := devpki.NewCA("acmetest Pebble listener CA")
	if err != nil {
		t.Fatalf("acmetest: listener CA: %v", err)
	}
	leaf, err := lca.Issue(devpki.Leaf{Names: []string{"127.0.0.1", "localhost"}})
	if err != nil {
		t.Fatalf("acmetest: listener certificate: %v", err)
	}
	pair, err := tls.X509KeyPair(leaf.FullChain, leaf.KeyPEM)
	if err != nil {
		t.Fatalf("acmetest: listener key pair: %v", err)
	}
	p.CAFile = filepath.Join(t.TempDir(), "pebble-listener-ca.pem")
	if err := os.WriteFile(p.CAFile, lca.CertPEM(), 0o600); err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	p.ListenerRoots = x509.NewCertPool()
	p.ListenerRoots.AddCert(lca.Cert)

	// Name resolution for the VA.
	resolver := opts.DNSServer
	if resolver == "" {
		p.dns, err = startDNSResponder()
		if err != nil {
			t.Fatalf("acmetest: %v", err)
		}
		p.DNSAddr = p.dns.addr
		resolver = p.dns.addr
	}

	p.HTTPPort = opts.HTTPPort
	if p.HTTPPort == 0 {
		p.HTTPPort = freePort(t)
	}
	p.TLSALPNPort = opts.TLSALPNPort
	if p.TLSALPNPort == 0 {
		p.TLSALPNPort = freePort(t)
	}

	// Pebble itself, as cmd/pebble wires it.
	store := db.NewMemoryStore()
	caImpl := ca.New(logger, store, "", keyAlg, opts.AlternateRoots, chainLength, profiles)
	vaImpl := va.New(logger, p.HTTPPort, p.TLSALPNPort, false, resolver, store)
	for _, kid := range slices.Sorted(maps.Keys(opts.EABKeys)) {
		if err := store.AddExternalAccountKeyByID(kid, opts.EABKeys[kid]); err != nil {
			t.Fatalf("acmetest: EAB key %q: %v", kid, err)
		}
	}
	for _, name := range opts.BlockedDomains {
		if err := store.AddBlockedDomain(strings.ToLower(strings.TrimSuffix(name, "."))); err != nil {
			t.Fatalf("acmetest: blocked domain %q: %v", name, err)
		}
	}
	wfeImpl := wfe.New(logger, store, vaImpl, caImpl, []string{"pebble.letsencrypt.org"},
		false, len(opts.EABKeys) > 0, 0, 0)

	tlsConf := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	acmeAddr := p.serve(t, wfeImpl.Handler(), tlsConf)
	mgmtAddr := p.serve(t, wfeImpl.ManagementHandler(), tlsConf)
	p.acmeHost = acmeAddr
	p.DirectoryURL = "https://" + acmeAddr + wfe.DirectoryPath
	p.ManagementURL = "https://" + mgmtAddr

	p.transport = &http.Transport{
		Proxy:               nil, // never via a proxy: everything is on 127.0.0.1
		TLSClientConfig:     &tls.Config{RootCAs: p.ListenerRoots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}

	// Up when the directory answers.
	if _, err := p.get(p.DirectoryURL); err != nil {
		t.Fatalf("acmetest: Pebble directory: %v", err)
	}
	return p
}

// serve runs h over TLS on a fresh 127.0.0.1 port and returns host:port.
func (p *Pebble) serve(t testing.TB, h http.Handler, tlsConf *tls.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tlsConf.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(p.logs, "pebble-http ", log.Lmicroseconds),
	}
	p.servers = append(p.servers, srv)
	go func() { _ = srv.ServeTLS(l, "", "") }()
	return l.Addr().String()
}

// Stop shuts Pebble's listeners (ACME and management) and the built-in DNS
// responder down at once, so the directory becomes unreachable (connection
// refused). It is idempotent; Start's cleanup calls it too.
func (p *Pebble) Stop() {
	p.stopOnce.Do(func() {
		for _, s := range p.servers {
			_ = s.Close()
		}
		if p.dns != nil {
			p.dns.stop()
		}
		if p.transport != nil {
			p.transport.CloseIdleConnections()
		}
	})
}

// HTTPClient returns a client for the ACME API (give it to lego as
// lego.Config.HTTPClient): it trusts ListenerRoots, uses no proxy, times out
// after 30 s, and — unless Options.NoRetryAfter — adds "Retry-After: 1" to
// Pebble's answers to POSTs on challenge URLs that carry none, so lego polls
// the authorization after ~1 s instead of ~5 s. That is a test-only
// speed-up: production CAs send Retry-After themselves (or lego's 5 s default
// applies) and pryv-tls must not rely on it.
func (p *Pebble) HTTPClient() *http.Client {
	var rt http.RoundTripper = p.transport
	if p.retry {
		rt = &retryAfterTransport{base: p.transport, host: p.acmeHost}
	}
	return &http.Client{Transport: rt, Timeout: 30 * time.Second}
}

type retryAfterTransport struct {
	base http.RoundTripper
	host string // Pebble's 127.0.0.1:port
}

// isPebble tells whether u is on Pebble's ACME listener (as 127.0.0.1 or
// localhost).
func (rt *retryAfterTransport) isPebble(u *url.URL) bool {
	_, port, _ := net.SplitHostPort(rt.host)
	return u.Port() == port && (u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost")
}

func (rt *retryAfterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if req.Method == http.MethodPost && rt.isPebble(req.URL) &&
		strings.HasPrefix(req.URL.Path, challengePath) && resp.Header.Get("Retry-After") == "" {
		resp.Header.Set("Retry-After", "1")
	}
	return resp, nil
}

// IssuerRoots returns the root(s) Pebble issues under (management API
// /roots/0 … /roots/AlternateRoots), to verify a chain Pebble issued.
func (p *Pebble) IssuerRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	for _, c := range p.IssuerRootCerts(t) {
		pool.AddCert(c)
	}
	return pool
}

// IssuerRootCerts is IssuerRoots as certificates, root 0 first.
func (p *Pebble) IssuerRootCerts(t testing.TB) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for i := range p.roots {
		certs = append(certs, p.managementCert(t, managementRoots, i))
	}
	return certs
}

// Intermediate returns the certificate that signs leaves in chain i (0 is
// the default chain), from the management API.
func (p *Pebble) Intermediate(t testing.TB, i int) *x509.Certificate {
	t.Helper()
	return p.managementCert(t, managementInter, i)
}

func (p *Pebble) managementCert(t testing.TB, path string, i int) *x509.Certificate {
	t.Helper()
	u := p.ManagementURL + path + strconv.Itoa(i)
	body, err := p.get(u)
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	block, _ := pem.Decode(body)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("acmetest: %s: no PEM certificate in %q", u, body)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("acmetest: %s: %v", u, err)
	}
	return c
}

// Window is an ARI suggested renewal window.
type Window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// SetRenewalInfo moves the ARI suggested window of a certificate Pebble
// issued (certPEM: the leaf first, e.g. a full chain) via the management
// API's /set-renewal-info/. A window in the past makes an ARI client renew
// now. The override lasts for this Pebble's life.
func (p *Pebble) SetRenewalInfo(t testing.TB, certPEM []byte, start, end time.Time) {
	t.Helper()
	ari, err := json.Marshal(struct {
		SuggestedWindow Window `json:"suggestedWindow"`
	}{Window{Start: start.UTC(), End: end.UTC()}})
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	p.SetRenewalInfoResponse(t, certPEM, string(ari))
}

// SetRenewalInfoResponse makes Pebble answer ARI queries for the certificate
// with body verbatim (it may be malformed JSON on purpose).
func (p *Pebble) SetRenewalInfoResponse(t testing.TB, certPEM []byte, body string) {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("acmetest: SetRenewalInfo: certPEM does not start with a PEM certificate")
	}
	req, err := json.Marshal(struct {
		Certificate string
		ARIResponse string
	}{string(pem.EncodeToMemory(block)), body})
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	if _, err := p.post(p.ManagementURL+setRenewalInfo, req); err != nil {
		t.Fatalf("acmetest: SetRenewalInfo: %v", err)
	}
}

// RenewalInfo returns the ARI window Pebble currently suggests for a
// certificate it issued (certPEM: the leaf first), as a client would fetch
// it from the directory's renewalInfo endpoint.
func (p *Pebble) RenewalInfo(t testing.TB, certPEM []byte) Window {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("acmetest: RenewalInfo: certPEM does not start with a PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("acmetest: RenewalInfo: %v", err)
	}
	id, err := ARICertID(cert)
	if err != nil {
		t.Fatalf("acmetest: RenewalInfo: %v", err)
	}
	base := strings.TrimSuffix(p.DirectoryURL, wfe.DirectoryPath)
	dir, err := p.get(p.DirectoryURL)
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	var d struct {
		RenewalInfo string `json:"renewalInfo"`
	}
	if err := json.Unmarshal(dir, &d); err != nil || d.RenewalInfo == "" {
		t.Fatalf("acmetest: directory at %s lists no renewalInfo (%v)", base, err)
	}
	body, err := p.get(d.RenewalInfo + "/" + id)
	if err != nil {
		t.Fatalf("acmetest: RenewalInfo: %v", err)
	}
	var ri struct {
		SuggestedWindow Window `json:"suggestedWindow"`
	}
	if err := json.Unmarshal(body, &ri); err != nil {
		t.Fatalf("acmetest: RenewalInfo: %v in %q", err, body)
	}
	return ri.SuggestedWindow
}

// ARICertID is the ARI (RFC 9773) identifier of a certificate:
// base64url(AuthorityKeyId) "." base64url(serial number DER content).
func ARICertID(cert *x509.Certificate) (string, error) {
	if len(cert.AuthorityKeyId) == 0 {
		return "", errors.New("certificate has no Authority Key Identifier")
	}
	serial := cert.SerialNumber.Bytes()
	if len(serial) == 0 || serial[0]&0x80 != 0 {
		serial = append([]byte{0}, serial...) // DER INTEGER content is two's complement
	}
	return b64(cert.AuthorityKeyId) + "." + b64(serial), nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// SetTXT adds value to the TXT records of name (built-in DNS responder
// only; a trailing dot and letter case do not matter). Values accumulate:
// several may sit at one name, as DNS-01 for a name and its wildcard needs.
func (p *Pebble) SetTXT(name, value string) { p.mustDNS("SetTXT").setTXT(name, value) }

// RemoveTXT removes one value from the TXT records of name.
func (p *Pebble) RemoveTXT(name, value string) { p.mustDNS("RemoveTXT").removeTXT(name, value) }

// ClearTXT removes every TXT value of name.
func (p *Pebble) ClearTXT(name string) { p.mustDNS("ClearTXT").clearTXT(name) }

func (p *Pebble) mustDNS(op string) *dnsResponder {
	if p.dns == nil {
		panic("acmetest: " + op + " needs the built-in DNS responder (Options.DNSServer was set)")
	}
	return p.dns
}

// get fetches u (status 200 required) with a client trusting ListenerRoots.
func (p *Pebble) get(u string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return p.do(req)
}

func (p *Pebble) post(u string, body []byte) ([]byte, error) {
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return p.do(req)
}

func (p *Pebble) do(req *http.Request) ([]byte, error) {
	// Pebble refuses requests without a User-Agent on the ACME API and on
	// the management API's /set-renewal-info/.
	req.Header.Set("User-Agent", "pryv-tls-acmetest")
	c := &http.Client{Transport: p.transport, Timeout: 15 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

func pebbleProfiles(in map[string]Profile) (map[string]ca.Profile, error) {
	if in == nil {
		in = DefaultProfiles()
	}
	if len(in) == 0 {
		return nil, errors.New("Profiles is empty (nil means the defaults)")
	}
	out := make(map[string]ca.Profile, len(in))
	for name, pr := range in {
		if name == "" {
			return nil, errors.New("a profile has an empty name")
		}
		if pr.ValidityPeriod < time.Second {
			return nil, fmt.Errorf("profile %q: ValidityPeriod %v < 1 s (Pebble would silently use 90 days)", name, pr.ValidityPeriod)
		}
		out[name] = ca.Profile{
			Description:       pr.Description,
			PromoteCommonName: pr.PromoteCommonName,
			ValidityPeriod:    uint64(pr.ValidityPeriod / time.Second),
		}
	}
	return out, nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// logSink collects Pebble's log: streamed to t.Log when live, and the last
// lines kept to be logged if the test fails. After close it only drops
// lines (Pebble's goroutines may outlive the test).
type logSink struct {
	t    testing.TB
	live bool

	mu     sync.Mutex
	closed bool
	lines  []string
}

const keptLogLines = 200

func (s *logSink) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return len(b), nil
	}
	line := strings.TrimRight(string(b), "\n")
	if s.live {
		s.t.Log(line)
	}
	s.lines = append(s.lines, line)
	if len(s.lines) > 2*keptLogLines {
		s.lines = slices.Clone(s.lines[len(s.lines)-keptLogLines:])
	}
	return len(b), nil
}

func (s *logSink) close(failed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if failed && !s.live && len(s.lines) > 0 {
		lines := s.lines[max(0, len(s.lines)-keptLogLines):]
		s.t.Logf("acmetest: last %d lines of Pebble's log:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	s.closed = true
	s.lines = nil
}
