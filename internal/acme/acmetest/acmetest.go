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
//   - HTTPClient (pebbledev's) adds "Retry-After: 1" to challenge answers
//     unless Options.NoRetryAfter: a test-only speed-up pryv-tls must not
//     rely on.
//   - Pebble's log goes to t.Log as it comes with Options.Verbose; otherwise
//     its last lines are logged only if the test failed.
package acmetest

import (
	"crypto/x509"
	"net"
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

// DefaultProfiles are the profiles Start configures when Options.Profiles is
// nil: a 90-day one, Let's Encrypt's 160-hour "shortlived", and a 120-second
// one for tests that need a real expiry or renewal while they run.
func DefaultProfiles() map[string]Profile { return pebbledev.DefaultProfiles() }

// Options configures Start. The zero value is a working Pebble. The
// embedded pebbledev.Options are Pebble's (see there), except its log and
// environment, which Start owns: Logger, LogWriter, Setenv and Dir must be
// left zero (Start fails the test otherwise).
type Options struct {
	pebbledev.Options
	// Verbose streams Pebble's log to t.Log. Otherwise the last lines are
	// logged only if the test failed.
	Verbose bool
}

// Pebble is a running in-process Pebble: the embedded pebbledev.Pebble
// (its fields, HTTPClient, the TXT records, and what no test here needed
// a wrapper for, such as RenewalInfo), with the methods the tests use that
// return an error there failing the test here instead. CAFile lives in a
// t.TempDir.
type Pebble struct {
	*pebbledev.Pebble
}

// Start runs Pebble and returns once its APIs answer. Everything is torn
// down in t.Cleanup. Start calls t.Setenv (see the package doc), so it
// cannot be used under t.Parallel. Failures are fatal to t.
func Start(t testing.TB, opts Options) *Pebble {
	t.Helper()
	o := opts.Options
	if o.Logger != nil || o.LogWriter != nil || o.Setenv != nil || o.Dir != "" {
		t.Fatalf("acmetest: Options.Logger, LogWriter, Setenv and Dir are set by Start; leave them zero (Verbose streams the log)")
	}
	logs := &logSink{t: t, live: opts.Verbose}
	var dev *pebbledev.Pebble
	t.Cleanup(func() {
		if dev != nil {
			_ = dev.Close()
		}
		logs.close(t.Failed())
	})
	o.LogWriter, o.Setenv, o.Dir = logs, t.Setenv, t.TempDir()
	dev, err := pebbledev.Start(o)
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	return &Pebble{dev}
}

// Stop shuts Pebble's listeners (ACME and management) and the built-in DNS
// responder down at once, so the directory becomes unreachable (connection
// refused). It is idempotent; Start's cleanup calls it too.
func (p *Pebble) Stop() { _ = p.Close() }

// IssuerRoots returns the root(s) Pebble issues under (management API
// /roots/0 … /roots/AlternateRoots), to verify a chain Pebble issued.
func (p *Pebble) IssuerRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	return must(t, p.Pebble.IssuerRoots)
}

// SetRenewalInfo moves the ARI suggested window of a certificate Pebble
// issued (certPEM: the leaf first, e.g. a full chain) via the management
// API's /set-renewal-info/. A window in the past makes an ARI client renew
// now. The override lasts for this Pebble's life.
func (p *Pebble) SetRenewalInfo(t testing.TB, certPEM []byte, start, end time.Time) {
	t.Helper()
	if err := p.Pebble.SetRenewalInfo(certPEM, start, end); err != nil {
		t.Fatalf("acmetest: %v", err)
	}
}

// ARICertID is the ARI (RFC 9773) identifier of a certificate:
// base64url(AuthorityKeyId) "." base64url(serial number DER content).
func ARICertID(cert *x509.Certificate) (string, error) { return pebbledev.ARICertID(cert) }

// SetA makes the built-in DNS responder answer ip for name instead of
// 127.0.0.1 (the VA then validates name on that address).
func (p *Pebble) SetA(t testing.TB, name, ip string) {
	t.Helper()
	addr := net.ParseIP(ip).To4()
	if addr == nil {
		t.Fatalf("acmetest: SetA(%s): %q is not an IPv4 address", name, ip)
	}
	p.Pebble.SetA(name, addr)
}

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
