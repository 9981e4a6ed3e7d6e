// Package acmetest runs a real ACME server, Pebble (github.com/letsencrypt/pebble/v2),
// inside the test process, for pryv-tls's tests. It is imported by tests only.
//
// It is a thin wrapper over pebbledev, which does the work (and runs the
// same Pebble outside tests, for `pryv-tls demo --acme`): Start takes a
// testing.TB, sets Pebble's environment with t.Setenv, tears everything down
// in t.Cleanup, and turns errors into t.Fatalf. The package doc of pebbledev
// lists the Pebble behaviour a test must know about (profiles, validity,
// ARI windows, Retry-After, DNS, finalize without Location, ...).
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
// # What is particular to tests
//
//   - Pebble reads its PEBBLE_* environment variables when its constructors
//     run. Start sets them with t.Setenv (restored when the test ends), so a
//     test (or its parents) that calls Start must not call t.Parallel; Start
//     panics if it did. The variables and values are pebbledev's (see its
//     package doc).
//   - CAFile lives in a t.TempDir; it outlives Stop until the test ends.
//   - Pebble's log goes to t.Log as it comes with Options.Verbose; otherwise
//     its last lines are logged only if the test failed.
package acmetest

import (
	"crypto/x509"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme/pebbledev"
)

// Profile is a certificate profile Pebble offers (directory meta.profiles)
// and issues under when an order names it.
type Profile = pebbledev.Profile

// Window is an ARI suggested renewal window.
type Window = pebbledev.Window

// DefaultProfiles are the profiles Start configures when Options.Profiles is
// nil: a 90-day one, Let's Encrypt's 160-hour "shortlived", and a 120-second
// one for tests that need a real expiry or renewal while they run.
func DefaultProfiles() map[string]Profile { return pebbledev.DefaultProfiles() }

// Options configures Start. The zero value is a working Pebble. The fields
// are pebbledev.Options's (see there), plus Verbose.
type Options struct {
	// HTTPPort is the port Pebble's VA dials for HTTP-01; 0 picks a free
	// one. The harness serves nothing there: the code under test does.
	HTTPPort int
	// TLSALPNPort is the port Pebble's VA dials for TLS-ALPN-01; 0 picks a
	// free one.
	TLSALPNPort int
	// Profiles replaces DefaultProfiles when non-nil.
	Profiles map[string]Profile
	// EABKeys maps an External Account Binding key ID to its base64url
	// (unpadded) HMAC key; non-empty makes EAB required.
	EABKeys map[string]string
	// DNSServer is the host:port Pebble resolves names through (over TCP);
	// empty starts the built-in responder (see Pebble.DNSAddr, SetTXT).
	DNSServer string
	// BlockedDomains are names (and their subdomains) Pebble refuses at
	// newOrder with rejectedIdentifier; see pebbledev.Options for a quirk.
	BlockedDomains []string
	// NoRetryAfter makes HTTPClient pass challenge responses through
	// untouched; by default it adds "Retry-After: 1".
	NoRetryAfter bool
	// ARIRetryAfter, when positive, replaces the Retry-After of Pebble's
	// renewalInfo answers (6 h) in HTTPClient: see pebbledev.Options.
	ARIRetryAfter time.Duration
	// ReuseAuthz makes Pebble always reuse a still-valid authorization;
	// default: never.
	ReuseAuthz bool
	// AlwaysValid makes the VA accept every challenge without contacting
	// anything.
	AlwaysValid bool
	// KeyAlgorithm of Pebble's roots and intermediates: "ecdsa" (default)
	// or "rsa".
	KeyAlgorithm string
	// AlternateRoots adds chains under other roots; the order's default
	// chain is under root 0.
	AlternateRoots int
	// ChainLength is the number of intermediates per chain; 0 means 1.
	ChainLength int
	// Verbose streams Pebble's log to t.Log. Otherwise the last lines are
	// logged only if the test failed.
	Verbose bool
}

// Pebble is a running in-process Pebble (a pebbledev.Pebble whose methods
// fail the test instead of returning errors).
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

	dev *pebbledev.Pebble
}

// Start runs Pebble and returns once its APIs answer. Everything is torn
// down in t.Cleanup. Start calls t.Setenv (see the package doc), so it
// cannot be used under t.Parallel. Failures are fatal to t.
func Start(t testing.TB, opts Options) *Pebble {
	t.Helper()
	logs := &logSink{t: t, live: opts.Verbose}
	var dev *pebbledev.Pebble
	t.Cleanup(func() {
		if dev != nil {
			_ = dev.Close()
		}
		logs.close(t.Failed())
	})
	dev, err := pebbledev.Start(pebbledev.Options{
		HTTPPort:       opts.HTTPPort,
		TLSALPNPort:    opts.TLSALPNPort,
		Profiles:       opts.Profiles,
		EABKeys:        opts.EABKeys,
		DNSServer:      opts.DNSServer,
		BlockedDomains: opts.BlockedDomains,
		NoRetryAfter:   opts.NoRetryAfter,
		ARIRetryAfter:  opts.ARIRetryAfter,
		ReuseAuthz:     opts.ReuseAuthz,
		AlwaysValid:    opts.AlwaysValid,
		KeyAlgorithm:   opts.KeyAlgorithm,
		AlternateRoots: opts.AlternateRoots,
		ChainLength:    opts.ChainLength,
		LogWriter:      logs,
		Setenv:         t.Setenv,
		Dir:            t.TempDir(),
	})
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	return &Pebble{
		DirectoryURL:  dev.DirectoryURL,
		CAFile:        dev.CAFile,
		ListenerRoots: dev.ListenerRoots,
		ManagementURL: dev.ManagementURL,
		HTTPPort:      dev.HTTPPort,
		TLSALPNPort:   dev.TLSALPNPort,
		DNSAddr:       dev.DNSAddr,
		dev:           dev,
	}
}

// Stop shuts Pebble's listeners (ACME and management) and the built-in DNS
// responder down at once, so the directory becomes unreachable (connection
// refused). It is idempotent; Start's cleanup calls it too.
func (p *Pebble) Stop() { _ = p.dev.Close() }

// HTTPClient returns a client for the ACME API (give it to lego as
// lego.Config.HTTPClient): see pebbledev.Pebble.HTTPClient. Unless
// Options.NoRetryAfter, it adds "Retry-After: 1" to Pebble's answers to
// challenge POSTs, a test-only speed-up pryv-tls must not rely on.
func (p *Pebble) HTTPClient() *http.Client { return p.dev.HTTPClient() }

// IssuerRoots returns the root(s) Pebble issues under (management API
// /roots/0 … /roots/AlternateRoots), to verify a chain Pebble issued.
func (p *Pebble) IssuerRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	return must(t, p.dev.IssuerRoots)
}

// IssuerRootCerts is IssuerRoots as certificates, root 0 first.
func (p *Pebble) IssuerRootCerts(t testing.TB) []*x509.Certificate {
	t.Helper()
	return must(t, p.dev.IssuerRootCerts)
}

// Intermediate returns the certificate that signs leaves in chain i (0 is
// the default chain), from the management API.
func (p *Pebble) Intermediate(t testing.TB, i int) *x509.Certificate {
	t.Helper()
	return must(t, func() (*x509.Certificate, error) { return p.dev.Intermediate(i) })
}

// SetRenewalInfo moves the ARI suggested window of a certificate Pebble
// issued (certPEM: the leaf first, e.g. a full chain) via the management
// API's /set-renewal-info/. A window in the past makes an ARI client renew
// now. The override lasts for this Pebble's life.
func (p *Pebble) SetRenewalInfo(t testing.TB, certPEM []byte, start, end time.Time) {
	t.Helper()
	if err := p.dev.SetRenewalInfo(certPEM, start, end); err != nil {
		t.Fatalf("acmetest: %v", err)
	}
}

// SetRenewalInfoResponse makes Pebble answer ARI queries for the certificate
// with body verbatim (it may be malformed JSON on purpose).
func (p *Pebble) SetRenewalInfoResponse(t testing.TB, certPEM []byte, body string) {
	t.Helper()
	if err := p.dev.SetRenewalInfoResponse(certPEM, body); err != nil {
		t.Fatalf("acmetest: %v", err)
	}
}

// RenewalInfo returns the ARI window Pebble currently suggests for a
// certificate it issued (certPEM: the leaf first), as a client would fetch
// it from the directory's renewalInfo endpoint.
func (p *Pebble) RenewalInfo(t testing.TB, certPEM []byte) Window {
	t.Helper()
	return must(t, func() (Window, error) { return p.dev.RenewalInfo(certPEM) })
}

// ARICertID is the ARI (RFC 9773) identifier of a certificate:
// base64url(AuthorityKeyId) "." base64url(serial number DER content).
func ARICertID(cert *x509.Certificate) (string, error) { return pebbledev.ARICertID(cert) }

// SetTXT adds value to the TXT records of name (built-in DNS responder
// only; a trailing dot and letter case do not matter). Values accumulate:
// several may sit at one name, as DNS-01 for a name and its wildcard needs.
// It panics when Options.DNSServer was set.
func (p *Pebble) SetTXT(name, value string) { p.dev.SetTXT(name, value) }

// RemoveTXT removes one value from the TXT records of name.
func (p *Pebble) RemoveTXT(name, value string) { p.dev.RemoveTXT(name, value) }

// SetA makes the built-in DNS responder answer ip for name instead of
// 127.0.0.1 (the VA then validates name on that address).
func (p *Pebble) SetA(t testing.TB, name, ip string) {
	t.Helper()
	addr := net.ParseIP(ip).To4()
	if addr == nil {
		t.Fatalf("acmetest: SetA(%s): %q is not an IPv4 address", name, ip)
	}
	p.dev.SetA(name, addr)
}

// ClearTXT removes every TXT value of name.
func (p *Pebble) ClearTXT(name string) { p.dev.ClearTXT(name) }

// must returns f's value, or fails t with f's error.
func must[T any](t testing.TB, f func() (T, error)) T {
	t.Helper()
	v, err := f()
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	return v
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
