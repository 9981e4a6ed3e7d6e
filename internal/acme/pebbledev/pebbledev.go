package pebbledev

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
	"log/slog"
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
	renewalInfoPath = "/renewalInfo/"      // in the directory's renewalInfo URL (a draft-versioned prefix before it)
)

// CAFileName is the name of Pebble.CAFile in its directory.
const CAFileName = "pebble-listener-ca.pem"

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
// one to see a real expiry or renewal within minutes.
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
	// http01Port); 0 picks a free one (see Pebble.HTTPPort). Pebbledev
	// serves nothing there: the ACME client does.
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
	// ARIRetryAfter, when positive, makes HTTPClient replace the
	// Retry-After of Pebble's renewalInfo answers (a fixed 6 h) with this
	// (whole seconds, at least 1): a CA asking to be checked again soon, as
	// during an incident, so a test sees a moved window within its run.
	ARIRetryAfter time.Duration
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

	// Logger receives Pebble's log (its CA, VA and WFE, and the errors of
	// its HTTP servers, such as refused TLS handshakes): one record per
	// line, at LogLevel, with the attribute component=pebble (or
	// pebble-http). Pebble logs a few lines per ACME request.
	Logger *slog.Logger
	// LogLevel is the level of Logger's records; the zero value is Info.
	LogLevel slog.Level
	// LogWriter receives Pebble's log as text lines ("pebble " and a
	// microsecond timestamp first), one Write per line, instead of Logger.
	// With neither set, Pebble's log is discarded; setting both is an error.
	LogWriter io.Writer

	// Setenv sets the PEBBLE_* environment variables Pebble reads (see the
	// package doc). nil means os.Setenv; a test passes t.Setenv to have them
	// restored when it ends.
	Setenv func(key, value string)
	// Dir is the directory Start writes CAFile to (it must exist); CAFile
	// stays there after Close. Empty means a new temporary directory, which
	// Close removes.
	Dir string
}

// Pebble is a running in-process Pebble. Its methods are safe for
// concurrent use.
type Pebble struct {
	// DirectoryURL is the ACME directory, https://127.0.0.1:<port>/dir.
	DirectoryURL string
	// CAFile is a PEM file holding the CA that signed the listener
	// certificate of the ACME and management APIs (what
	// letsEncrypt.directoryCaFile gets), in Options.Dir or a temporary
	// directory (see Options.Dir).
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
	ariRetry  time.Duration
	dns       *dnsResponder
	servers   []*http.Server
	tempDir   string // removed by Close; "" when Options.Dir was given

	closeOnce sync.Once
	closeErr  error
}

// Start runs Pebble and returns once its APIs answer; Close stops it. On
// error, whatever Start had started is stopped again. Start sets PEBBLE_*
// environment variables through Options.Setenv (os.Setenv by default): it
// mutates the process environment and is not for concurrent use (see the
// package doc).
func Start(opts Options) (*Pebble, error) {
	profiles, err := pebbleProfiles(opts.Profiles)
	if err != nil {
		return nil, fmt.Errorf("pebbledev: %w", err)
	}
	if opts.KeyAlgorithm == "" {
		opts.KeyAlgorithm = "ecdsa"
	}
	if opts.KeyAlgorithm != "ecdsa" && opts.KeyAlgorithm != "rsa" {
		return nil, fmt.Errorf("pebbledev: KeyAlgorithm %q: want ecdsa or rsa", opts.KeyAlgorithm)
	}
	opts.ChainLength = max(opts.ChainLength, 1)
	if opts.AlternateRoots < 0 {
		return nil, fmt.Errorf("pebbledev: AlternateRoots %d < 0", opts.AlternateRoots)
	}
	if opts.Logger != nil && opts.LogWriter != nil {
		return nil, errors.New("pebbledev: set Options.Logger or Options.LogWriter, not both")
	}

	// Pebble reads these in va.New and wfe.New.
	setenv := opts.Setenv
	if setenv == nil {
		setenv = func(k, v string) { _ = os.Setenv(k, v) }
	}
	reuse := "0"
	if opts.ReuseAuthz {
		reuse = "100"
	}
	alwaysValid := "0"
	if opts.AlwaysValid {
		alwaysValid = "1"
	}
	setenv("PEBBLE_VA_NOSLEEP", "1")
	setenv("PEBBLE_VA_SLEEPTIME", "")
	setenv("PEBBLE_VA_ALWAYS_VALID", alwaysValid)
	setenv("PEBBLE_WFE_NONCEREJECT", "0")
	setenv("PEBBLE_AUTHZREUSE", reuse)
	setenv("PEBBLE_WFE_ORDERS_PER_PAGE", "")

	p := &Pebble{
		roots:    1 + opts.AlternateRoots,
		retry:    !opts.NoRetryAfter,
		ariRetry: opts.ARIRetryAfter,
	}
	if err := p.start(opts, profiles); err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("pebbledev: %w", err)
	}
	return p, nil
}

// pebbleLoggers makes the loggers Pebble and its HTTP servers write to.
func pebbleLoggers(opts Options) (pebble, httpServer *log.Logger) {
	switch {
	case opts.Logger != nil:
		return slog.NewLogLogger(opts.Logger.With("component", "pebble").Handler(), opts.LogLevel),
			slog.NewLogLogger(opts.Logger.With("component", "pebble-http").Handler(), opts.LogLevel)
	case opts.LogWriter != nil:
		return log.New(opts.LogWriter, "pebble ", log.Lmicroseconds),
			log.New(opts.LogWriter, "pebble-http ", log.Lmicroseconds)
	default:
		return log.New(io.Discard, "", 0), log.New(io.Discard, "", 0)
	}
}

// start starts Pebble's parts for opts, whose defaults Start has filled in.
func (p *Pebble) start(opts Options, profiles map[string]ca.Profile) error {
	logger, httpLogger := pebbleLoggers(opts)
	// The listener certificate.
	lca, err := devpki.NewCA("pebbledev Pebble listener CA")
	if err != nil {
		return fmt.Errorf("listener CA: %w", err)
	}
	leaf, err := lca.Issue(devpki.Leaf{Names: []string{"127.0.0.1", "localhost"}})
	if err != nil {
		return fmt.Errorf("listener certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(leaf.FullChain, leaf.KeyPEM)
	if err != nil {
		return fmt.Errorf("listener key pair: %w", err)
	}
	dir := opts.Dir
	if dir == "" {
		if p.tempDir, err = os.MkdirTemp("", "pebbledev-"); err != nil {
			return err
		}
		dir = p.tempDir
	}
	p.CAFile = filepath.Join(dir, CAFileName)
	if err := os.WriteFile(p.CAFile, lca.CertPEM(), 0o600); err != nil {
		return err
	}
	p.ListenerRoots = x509.NewCertPool()
	p.ListenerRoots.AddCert(lca.Cert)

	// Name resolution for the VA.
	resolver := opts.DNSServer
	if resolver == "" {
		p.dns, err = startDNSResponder()
		if err != nil {
			return err
		}
		p.DNSAddr = p.dns.addr
		resolver = p.dns.addr
	}

	p.HTTPPort = opts.HTTPPort
	if p.HTTPPort == 0 {
		if p.HTTPPort, err = freePort(); err != nil {
			return err
		}
	}
	p.TLSALPNPort = opts.TLSALPNPort
	if p.TLSALPNPort == 0 {
		if p.TLSALPNPort, err = freePort(); err != nil {
			return err
		}
	}

	// Pebble itself, as cmd/pebble wires it.
	store := db.NewMemoryStore()
	caImpl := ca.New(logger, store, "", opts.KeyAlgorithm, opts.AlternateRoots, opts.ChainLength, profiles)
	vaImpl := va.New(logger, p.HTTPPort, p.TLSALPNPort, false, resolver, store)
	for _, kid := range slices.Sorted(maps.Keys(opts.EABKeys)) {
		if err := store.AddExternalAccountKeyByID(kid, opts.EABKeys[kid]); err != nil {
			return fmt.Errorf("EAB key %q: %w", kid, err)
		}
	}
	for _, name := range opts.BlockedDomains {
		if err := store.AddBlockedDomain(strings.ToLower(strings.TrimSuffix(name, "."))); err != nil {
			return fmt.Errorf("blocked domain %q: %w", name, err)
		}
	}
	wfeImpl := wfe.New(logger, store, vaImpl, caImpl, []string{"pebble.letsencrypt.org"},
		false, len(opts.EABKeys) > 0, 0, 0)

	tlsConf := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	acmeAddr, err := p.serve(wfeImpl.Handler(), tlsConf, httpLogger)
	if err != nil {
		return err
	}
	mgmtAddr, err := p.serve(wfeImpl.ManagementHandler(), tlsConf, httpLogger)
	if err != nil {
		return err
	}
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
		return fmt.Errorf("Pebble directory: %w", err)
	}
	return nil
}

// serve runs h over TLS on a fresh 127.0.0.1 port and returns host:port.
func (p *Pebble) serve(h http.Handler, tlsConf *tls.Config, errorLog *log.Logger) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tlsConf.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          errorLog,
	}
	p.servers = append(p.servers, srv)
	go func() { _ = srv.ServeTLS(l, "", "") }()
	return l.Addr().String(), nil
}

// Close shuts Pebble's listeners (ACME and management) and the built-in DNS
// responder down at once, so the directory becomes unreachable (connection
// refused), and removes the temporary directory holding CAFile, if Start
// made one. It is idempotent: later calls do nothing and return the first
// call's result.
func (p *Pebble) Close() error {
	p.closeOnce.Do(func() {
		var errs []error
		for _, s := range p.servers {
			if err := s.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if p.dns != nil {
			p.dns.stop()
		}
		if p.transport != nil {
			p.transport.CloseIdleConnections()
		}
		if p.tempDir != "" {
			if err := os.RemoveAll(p.tempDir); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			p.closeErr = fmt.Errorf("pebbledev: close: %w", err)
		}
	})
	return p.closeErr
}

// HTTPClient returns a client for the ACME API (give it to lego as
// lego.Config.HTTPClient): it trusts ListenerRoots, uses no proxy, times out
// after 30 s, and — unless Options.NoRetryAfter — adds "Retry-After: 1" to
// Pebble's answers to POSTs on challenge URLs that carry none, so lego polls
// the authorization after ~1 s instead of ~5 s. That is a speed-up for
// Pebble only: production CAs send Retry-After themselves (or lego's 5 s
// default applies) and pryv-tls must not rely on it.
func (p *Pebble) HTTPClient() *http.Client {
	var rt http.RoundTripper = p.transport
	if p.retry || p.ariRetry > 0 {
		rt = &retryAfterTransport{base: p.transport, host: p.acmeHost, challenges: p.retry, ari: p.ariRetry}
	}
	return &http.Client{Transport: rt, Timeout: 30 * time.Second}
}

type retryAfterTransport struct {
	base       http.RoundTripper
	host       string // Pebble's 127.0.0.1:port
	challenges bool   // add "Retry-After: 1" to challenge POSTs
	ari        time.Duration
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
	if rt.challenges && req.Method == http.MethodPost && rt.isPebble(req.URL) &&
		strings.HasPrefix(req.URL.Path, challengePath) && resp.Header.Get("Retry-After") == "" {
		resp.Header.Set("Retry-After", "1")
	}
	if rt.ari > 0 && req.Method == http.MethodGet && rt.isPebble(req.URL) && strings.Contains(req.URL.Path, renewalInfoPath) {
		resp.Header.Set("Retry-After", strconv.Itoa(max(int(rt.ari/time.Second), 1)))
	}
	return resp, nil
}

// IssuerRoots returns the root(s) Pebble issues under (management API
// /roots/0 … /roots/AlternateRoots), to verify a chain Pebble issued.
func (p *Pebble) IssuerRoots() (*x509.CertPool, error) {
	certs, err := p.IssuerRootCerts()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// IssuerRootCerts is IssuerRoots as certificates, root 0 first.
func (p *Pebble) IssuerRootCerts() ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for i := range p.roots {
		c, err := p.managementCert(managementRoots, i)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// Intermediate returns the certificate that signs leaves in chain i (0 is
// the default chain), from the management API.
func (p *Pebble) Intermediate(i int) (*x509.Certificate, error) {
	return p.managementCert(managementInter, i)
}

func (p *Pebble) managementCert(path string, i int) (*x509.Certificate, error) {
	u := p.ManagementURL + path + strconv.Itoa(i)
	body, err := p.get(u)
	if err != nil {
		return nil, fmt.Errorf("pebbledev: %w", err)
	}
	block, _ := pem.Decode(body)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("pebbledev: %s: no PEM certificate in %q", u, body)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pebbledev: %s: %w", u, err)
	}
	return c, nil
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
func (p *Pebble) SetRenewalInfo(certPEM []byte, start, end time.Time) error {
	ari, err := json.Marshal(struct {
		SuggestedWindow Window `json:"suggestedWindow"`
	}{Window{Start: start.UTC(), End: end.UTC()}})
	if err != nil {
		return fmt.Errorf("pebbledev: %w", err)
	}
	return p.SetRenewalInfoResponse(certPEM, string(ari))
}

// SetRenewalInfoResponse makes Pebble answer ARI queries for the certificate
// with body verbatim (it may be malformed JSON on purpose).
func (p *Pebble) SetRenewalInfoResponse(certPEM []byte, body string) error {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return errors.New("pebbledev: SetRenewalInfo: certPEM does not start with a PEM certificate")
	}
	req, err := json.Marshal(struct {
		Certificate string
		ARIResponse string
	}{string(pem.EncodeToMemory(block)), body})
	if err != nil {
		return fmt.Errorf("pebbledev: %w", err)
	}
	if _, err := p.post(p.ManagementURL+setRenewalInfo, req); err != nil {
		return fmt.Errorf("pebbledev: SetRenewalInfo: %w", err)
	}
	return nil
}

// RenewalInfo returns the ARI window Pebble currently suggests for a
// certificate it issued (certPEM: the leaf first), as a client would fetch
// it from the directory's renewalInfo endpoint.
func (p *Pebble) RenewalInfo(certPEM []byte) (Window, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return Window{}, errors.New("pebbledev: RenewalInfo: certPEM does not start with a PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return Window{}, fmt.Errorf("pebbledev: RenewalInfo: %w", err)
	}
	id, err := ARICertID(cert)
	if err != nil {
		return Window{}, fmt.Errorf("pebbledev: RenewalInfo: %w", err)
	}
	dir, err := p.get(p.DirectoryURL)
	if err != nil {
		return Window{}, fmt.Errorf("pebbledev: %w", err)
	}
	var d struct {
		RenewalInfo string `json:"renewalInfo"`
	}
	if err := json.Unmarshal(dir, &d); err != nil {
		return Window{}, fmt.Errorf("pebbledev: directory %s is not JSON: %w", p.DirectoryURL, err)
	}
	if d.RenewalInfo == "" {
		return Window{}, fmt.Errorf("pebbledev: directory %s lists no renewalInfo", p.DirectoryURL)
	}
	body, err := p.get(d.RenewalInfo + "/" + id)
	if err != nil {
		return Window{}, fmt.Errorf("pebbledev: RenewalInfo: %w", err)
	}
	var ri struct {
		SuggestedWindow Window `json:"suggestedWindow"`
	}
	if err := json.Unmarshal(body, &ri); err != nil {
		return Window{}, fmt.Errorf("pebbledev: RenewalInfo: %w in %q", err, body)
	}
	return ri.SuggestedWindow, nil
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
// SetTXT, RemoveTXT and ClearTXT panic when Options.DNSServer was set (a
// programming error: check DNSAddr != "").
func (p *Pebble) SetTXT(name, value string) { p.mustDNS("SetTXT").setTXT(name, value) }

// RemoveTXT removes one value from the TXT records of name.
func (p *Pebble) RemoveTXT(name, value string) { p.mustDNS("RemoveTXT").removeTXT(name, value) }

// ClearTXT removes every TXT value of name.
func (p *Pebble) ClearTXT(name string) { p.mustDNS("ClearTXT").clearTXT(name) }

// SetA makes the built-in DNS responder answer ip (IPv4) for name instead
// of 127.0.0.1, so the VA validates name on another loopback address (a
// second core on 127.0.0.2). It panics as SetTXT does.
func (p *Pebble) SetA(name string, ip net.IP) { p.mustDNS("SetA").setA(name, ip) }

func (p *Pebble) mustDNS(op string) *dnsResponder {
	if p.dns == nil {
		panic("pebbledev: " + op + " needs the built-in DNS responder (Options.DNSServer was set)")
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
	req.Header.Set("User-Agent", "pryv-tls-pebbledev")
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
		return nil, errors.New("pebbledev: Options.Profiles is empty (nil means the defaults)")
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
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
