package pebbledev

// These tests use golang.org/x/crypto/acme (already in the module graph) as a
// minimal ACME client, to prove Pebble end to end. Start mutates the process
// environment (through t.Setenv in start, through os.Setenv in the tests of
// Start itself): no t.Parallel here.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/acme"
)

// start runs Pebble for a test: PEBBLE_* set with t.Setenv, Close (checked)
// in t.Cleanup.
func start(t *testing.T, opts Options) *Pebble {
	t.Helper()
	if opts.Setenv == nil {
		opts.Setenv = t.Setenv
	}
	p, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func mustIssuerRoots(t *testing.T, p *Pebble) *x509.CertPool {
	t.Helper()
	pool, err := p.IssuerRoots()
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// pebbleEnv are the variables Start sets.
var pebbleEnv = []string{"PEBBLE_VA_NOSLEEP", "PEBBLE_VA_SLEEPTIME", "PEBBLE_VA_ALWAYS_VALID",
	"PEBBLE_WFE_NONCEREJECT", "PEBBLE_AUTHZREUSE", "PEBBLE_WFE_ORDERS_PER_PAGE"}

// restoreEnvAfter makes the PEBBLE_* variables be restored when t ends,
// whoever sets them in between (t.Setenv restores what it saw first).
func restoreEnvAfter(t *testing.T) {
	t.Helper()
	for _, k := range pebbleEnv {
		t.Setenv(k, os.Getenv(k))
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

type directory struct {
	NewNonce    string `json:"newNonce"`
	NewAccount  string `json:"newAccount"`
	NewOrder    string `json:"newOrder"`
	RenewalInfo string `json:"renewalInfo"`
	Meta        struct {
		Profiles                map[string]string `json:"profiles"`
		ExternalAccountRequired bool              `json:"externalAccountRequired"`
	} `json:"meta"`
}

func getDirectory(t *testing.T, c *http.Client, url string) directory {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("User-Agent", "pebbledev-test")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	var d directory
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatalf("directory: %v", err)
	}
	return d
}

// TestStartDirectoryClose uses Start and Close as the demo does, without a
// *testing.T anywhere near Pebble: environment set with os.Setenv, CAFile in
// a temporary directory Close removes, errors returned.
func TestStartDirectoryClose(t *testing.T) {
	restoreEnvAfter(t)
	for _, k := range pebbleEnv {
		if err := os.Unsetenv(k); err != nil {
			t.Fatal(err)
		}
	}
	begin := time.Now()
	p, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close() // a third Close, if the test stops early
	t.Logf("Start took %v", time.Since(begin))
	for k, want := range map[string]string{"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0", "PEBBLE_VA_ALWAYS_VALID": "0"} {
		if got := os.Getenv(k); got != want {
			t.Errorf("after Start: %s=%q, want %q", k, got, want)
		}
	}

	if !strings.HasPrefix(p.DirectoryURL, "https://127.0.0.1:") || !strings.HasSuffix(p.DirectoryURL, "/dir") {
		t.Errorf("DirectoryURL = %q", p.DirectoryURL)
	}
	if !strings.HasPrefix(p.ManagementURL, "https://127.0.0.1:") {
		t.Errorf("ManagementURL = %q", p.ManagementURL)
	}
	if p.HTTPPort == 0 || p.TLSALPNPort == 0 || !strings.HasPrefix(p.DNSAddr, "127.0.0.1:") {
		t.Errorf("HTTPPort %d, TLSALPNPort %d, DNSAddr %q", p.HTTPPort, p.TLSALPNPort, p.DNSAddr)
	}

	d := getDirectory(t, p.HTTPClient(), p.DirectoryURL)
	for name, u := range map[string]string{"newNonce": d.NewNonce, "newAccount": d.NewAccount, "newOrder": d.NewOrder, "renewalInfo": d.RenewalInfo} {
		if !strings.HasPrefix(u, "https://127.0.0.1:") {
			t.Errorf("directory %s = %q", name, u)
		}
	}
	for _, prof := range []string{"default", "shortlived", "short120s"} {
		if _, ok := d.Meta.Profiles[prof]; !ok {
			t.Errorf("meta.profiles lacks %q: %v", prof, d.Meta.Profiles)
		}
	}
	if d.Meta.ExternalAccountRequired {
		t.Error("externalAccountRequired without EABKeys")
	}

	// CAFile holds the same CA as ListenerRoots: a client built from the
	// file alone (as pryv-tls's directoryCaFile) trusts the listener.
	if filepath.Base(p.CAFile) != CAFileName {
		t.Errorf("CAFile = %q", p.CAFile)
	}
	pemBytes, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("CAFile %s holds no certificate", p.CAFile)
	}
	fromFile := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	getDirectory(t, fromFile, p.DirectoryURL)
	// localhost is on the listener certificate too.
	getDirectory(t, fromFile, strings.Replace(p.DirectoryURL, "127.0.0.1", "localhost", 1))

	// An untrusting client fails the handshake.
	if _, err := (&http.Client{Timeout: 10 * time.Second}).Get(p.DirectoryURL); err == nil {
		t.Error("the system roots trust Pebble's listener")
	}

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil { // idempotent
		t.Fatalf("second Close: %v", err)
	}
	_, err = fromFile.Get(p.DirectoryURL)
	var opErr *net.OpError
	if err == nil || !errors.As(err, &opErr) {
		t.Fatalf("after Close: GET directory: err = %v, want a dial error", err)
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(p.ManagementURL, "https://"), 2*time.Second); err == nil {
		t.Error("management API still listening after Close")
	}
	if _, err := os.Stat(filepath.Dir(p.CAFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CAFile's temporary directory after Close: %v, want it removed", err)
	}
	if _, err := p.IssuerRoots(); err == nil {
		t.Error("IssuerRoots after Close returned no error")
	}
}

// TestStartErrors: bad options fail before the environment is touched.
func TestStartErrors(t *testing.T) {
	restoreEnvAfter(t)
	if err := os.Setenv("PEBBLE_VA_NOSLEEP", "untouched"); err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string]Options{
		"sub-second profile": {Profiles: map[string]Profile{"tiny": {ValidityPeriod: time.Millisecond}}},
		"key algorithm":      {KeyAlgorithm: "dsa"},
		"alternate roots":    {AlternateRoots: -1},
		"two loggers":        {Logger: slog.New(slog.DiscardHandler), LogWriter: io.Discard},
	} {
		p, err := Start(opts)
		if err == nil || p != nil {
			t.Errorf("%s: Start = %v, %v; want an error", name, p, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "pebbledev: ") {
			t.Errorf("%s: error %q lacks the package prefix", name, err)
		}
	}
	if got := os.Getenv("PEBBLE_VA_NOSLEEP"); got != "untouched" {
		t.Errorf("a failed Start set PEBBLE_VA_NOSLEEP=%q", got)
	}

	// A failure after the environment: Dir does not exist.
	var set []string
	p, err := Start(Options{Dir: filepath.Join(t.TempDir(), "missing"), Setenv: func(k, _ string) { set = append(set, k) }})
	if err == nil || p != nil {
		t.Fatalf("Start with a missing Dir = %v, %v; want an error", p, err)
	}
	if !slices.Equal(set, pebbleEnv) {
		t.Errorf("Options.Setenv got %q, want %q", set, pebbleEnv)
	}
}

// TestDir: with Options.Dir, CAFile is there and survives Close.
func TestDir(t *testing.T) {
	dir := t.TempDir()
	p := start(t, Options{Dir: dir})
	if want := filepath.Join(dir, CAFileName); p.CAFile != want {
		t.Errorf("CAFile = %q, want %q", p.CAFile, want)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.CAFile); err != nil {
		t.Errorf("CAFile after Close: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for Pebble's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestLogging(t *testing.T) {
	t.Run("Logger", func(t *testing.T) {
		var buf syncBuffer
		log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		p := start(t, Options{Logger: log, LogLevel: slog.LevelDebug})
		getDirectory(t, p.HTTPClient(), p.DirectoryURL)
		var n int
		for line := range strings.Lines(buf.String()) {
			var rec struct{ Level, Component, Msg string }
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("%v in %q", err, line)
			}
			if rec.Level != "DEBUG" || rec.Component != "pebble" && rec.Component != "pebble-http" || rec.Msg == "" {
				t.Errorf("record %q", line)
			}
			n++
		}
		if n == 0 {
			t.Error("no record from Pebble")
		}
	})
	t.Run("LogWriter", func(t *testing.T) {
		var buf syncBuffer
		p := start(t, Options{LogWriter: &buf})
		getDirectory(t, p.HTTPClient(), p.DirectoryURL)
		if out := buf.String(); !strings.HasPrefix(out, "pebble ") || strings.Count(out, "\n") < 2 {
			t.Errorf("LogWriter got %q", out)
		}
	})
}

func TestManagementRoots(t *testing.T) {
	p := start(t, Options{AlternateRoots: 1, ChainLength: 2})
	roots, err := p.IssuerRootCerts()
	if err != nil {
		t.Fatal(err)
	}
	if len(roots) != 2 {
		t.Fatalf("%d roots, want 2", len(roots))
	}
	for i, r := range roots {
		if !r.IsCA || r.CheckSignatureFrom(r) != nil {
			t.Errorf("root %d (%s) is not a self-signed CA", i, r.Subject)
		}
	}
	if roots[0].Equal(roots[1]) {
		t.Error("alternate root equals root 0")
	}
	// With ChainLength 2 the leaf-signing intermediate chains to root 0
	// through a second one, which the pool alone cannot supply.
	inter, err := p.Intermediate(0)
	if err != nil {
		t.Fatal(err)
	}
	if !inter.IsCA {
		t.Errorf("intermediate %s is not a CA", inter.Subject)
	}
	if _, err := inter.Verify(x509.VerifyOptions{Roots: mustIssuerRoots(t, p)}); err == nil {
		t.Error("a 2-intermediate chain verified without its middle certificate")
	}
}

func dnsQuery(t *testing.T, network, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	in, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	if in.Rcode != dns.RcodeSuccess {
		t.Fatalf("%s %s %s: rcode %s", network, name, dns.TypeToString[qtype], dns.RcodeToString[in.Rcode])
	}
	return in
}

func txts(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	slices.Sort(out)
	return out
}

func TestDNSResponder(t *testing.T) {
	p := start(t, Options{})
	long := strings.Repeat("x", 300) // more than one 255-byte character-string
	p.SetTXT("_acme-challenge.www.pryv.test", "one")
	p.SetTXT("_ACME-challenge.www.pryv.test.", "two") // case and trailing dot do not matter
	p.SetTXT("_acme-challenge.www.pryv.test", "two")  // no duplicates
	p.SetTXT("long.pryv.test", long)

	for _, network := range []string{"udp", "tcp"} {
		in := dnsQuery(t, network, p.DNSAddr, "anything.example.org", dns.TypeA)
		if len(in.Answer) != 1 {
			t.Fatalf("%s A: %v", network, in.Answer)
		}
		if a, ok := in.Answer[0].(*dns.A); !ok || !a.A.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("%s A: %v", network, in.Answer[0])
		}
		if in := dnsQuery(t, network, p.DNSAddr, "anything.example.org", dns.TypeAAAA); len(in.Answer) != 0 {
			t.Errorf("%s AAAA: %v", network, in.Answer)
		}
		got := txts(dnsQuery(t, network, p.DNSAddr, "_acme-challenge.www.pryv.test", dns.TypeTXT))
		if !slices.Equal(got, []string{"one", "two"}) {
			t.Errorf("%s TXT = %q", network, got)
		}
		if got := txts(dnsQuery(t, network, p.DNSAddr, "long.pryv.test", dns.TypeTXT)); !slices.Equal(got, []string{long}) {
			t.Errorf("%s long TXT = %q", network, got)
		}
		if in := dnsQuery(t, network, p.DNSAddr, "pryv.test", dns.TypeSOA); len(in.Answer) != 1 {
			t.Errorf("%s SOA pryv.test: %v", network, in.Answer)
		}
		if in := dnsQuery(t, network, p.DNSAddr, "www.pryv.test", dns.TypeSOA); len(in.Answer) != 0 {
			t.Errorf("%s SOA www.pryv.test: %v", network, in.Answer)
		}
	}

	p.SetA("Core2.Pryv.Test.", net.IPv4(127, 0, 0, 2))
	if in := dnsQuery(t, "tcp", p.DNSAddr, "core2.pryv.test", dns.TypeA); len(in.Answer) != 1 || !in.Answer[0].(*dns.A).A.Equal(net.IPv4(127, 0, 0, 2)) {
		t.Errorf("A after SetA: %v", in.Answer)
	}
	if in := dnsQuery(t, "udp", p.DNSAddr, "core1.pryv.test", dns.TypeA); len(in.Answer) != 1 || !in.Answer[0].(*dns.A).A.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("A of another name after SetA: %v", in.Answer)
	}

	p.RemoveTXT("_acme-challenge.www.pryv.test", "one")
	if got := txts(dnsQuery(t, "udp", p.DNSAddr, "_acme-challenge.www.pryv.test", dns.TypeTXT)); !slices.Equal(got, []string{"two"}) {
		t.Errorf("after RemoveTXT: %q", got)
	}
	p.ClearTXT("_acme-challenge.www.pryv.test")
	if got := txts(dnsQuery(t, "tcp", p.DNSAddr, "_acme-challenge.www.pryv.test", dns.TypeTXT)); len(got) != 0 {
		t.Errorf("after ClearTXT: %q", got)
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	c := &dns.Client{Net: "tcp", Timeout: time.Second}
	m := new(dns.Msg)
	m.SetQuestion("x.pryv.test.", dns.TypeA)
	if _, _, err := c.Exchange(m, p.DNSAddr); err == nil {
		t.Error("DNS responder still answers after Close")
	}
}

func TestDNSServerOptionSkipsResponder(t *testing.T) {
	p := start(t, Options{DNSServer: "127.0.0.1:1"})
	if p.DNSAddr != "" {
		t.Errorf("DNSAddr = %q with an external DNS server", p.DNSAddr)
	}
	defer func() {
		if recover() == nil {
			t.Error("SetTXT without the built-in responder did not panic")
		}
	}()
	p.SetTXT("x.pryv.test", "v")
}

func TestOptionsValidation(t *testing.T) {
	if _, err := pebbleProfiles(map[string]Profile{"tiny": {ValidityPeriod: time.Millisecond}}); err == nil {
		t.Error("a sub-second profile was accepted")
	}
	if _, err := pebbleProfiles(map[string]Profile{}); err == nil {
		t.Error("an empty profile map was accepted")
	}
	got, err := pebbleProfiles(nil)
	if err != nil || got["short120s"].ValidityPeriod != 120 || got["default"].ValidityPeriod != 90*24*3600 {
		t.Errorf("default profiles: %v, %v", got, err)
	}
}

// newClient registers an ACME account (with eab if non-nil).
func newClient(t *testing.T, ctx context.Context, p *Pebble, hc *http.Client, eab *acme.ExternalAccountBinding) *acme.Client {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &acme.Client{Key: key, DirectoryURL: p.DirectoryURL, HTTPClient: hc, UserAgent: "pebbledev-test"}
	if _, err := c.Register(ctx, &acme.Account{ExternalAccountBinding: eab}, acme.AcceptTOS); err != nil {
		t.Fatalf("register: %v", err)
	}
	return c
}

func TestEABRequired(t *testing.T) {
	hmac := make([]byte, 32)
	_, _ = rand.Read(hmac)
	p := start(t, Options{EABKeys: map[string]string{"kid-1": base64.RawURLEncoding.EncodeToString(hmac)}})
	ctx := ctxFor(t, 30*time.Second)

	if d := getDirectory(t, p.HTTPClient(), p.DirectoryURL); !d.Meta.ExternalAccountRequired {
		t.Fatal("meta.externalAccountRequired is false with EABKeys set")
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := &acme.Client{Key: key, DirectoryURL: p.DirectoryURL, HTTPClient: p.HTTPClient(), UserAgent: "pebbledev-test"}
	_, err := c.Register(ctx, &acme.Account{}, acme.AcceptTOS)
	var ae *acme.Error
	if !errors.As(err, &ae) || ae.ProblemType != "urn:ietf:params:acme:error:externalAccountRequired" {
		t.Fatalf("register without EAB: err = %v, want externalAccountRequired", err)
	}
	wrong := make([]byte, 32)
	if _, err := c.Register(ctx, &acme.Account{ExternalAccountBinding: &acme.ExternalAccountBinding{KID: "kid-1", Key: wrong}}, acme.AcceptTOS); err == nil {
		t.Fatal("register with a wrong EAB MAC key succeeded")
	}
	newClient(t, ctx, p, p.HTTPClient(), &acme.ExternalAccountBinding{KID: "kid-1", Key: hmac})
}

func TestBlockedDomain(t *testing.T) {
	p := start(t, Options{BlockedDomains: []string{"Blocked.pryv.test"}})
	ctx := ctxFor(t, 30*time.Second)
	c := newClient(t, ctx, p, p.HTTPClient(), nil)
	for _, name := range []string{"blocked.pryv.test", "www.blocked.pryv.test"} {
		_, err := c.AuthorizeOrder(ctx, acme.DomainIDs(name), acme.WithOrderIssuanceProfile("default"))
		var ae *acme.Error
		if !errors.As(err, &ae) || ae.ProblemType != "urn:ietf:params:acme:error:rejectedIdentifier" {
			t.Errorf("order for %s: err = %v, want rejectedIdentifier", name, err)
		}
	}
	if _, err := c.AuthorizeOrder(ctx, acme.DomainIDs("ok.pryv.test"), acme.WithOrderIssuanceProfile("default")); err != nil {
		t.Errorf("order for an allowed name: %v", err)
	}
}

// http01Responder serves key authorizations on 127.0.0.1:port.
type http01Responder struct {
	mu   sync.Mutex
	keys map[string]string // token -> key authorization
	hits int
}

func serveHTTP01(t *testing.T, port int) *http01Responder {
	t.Helper()
	r := &http01Responder{keys: map[string]string{}}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		token := strings.TrimPrefix(req.URL.Path, "/.well-known/acme-challenge/")
		r.mu.Lock()
		ka, ok := r.keys[token]
		r.hits++
		r.mu.Unlock()
		if !ok {
			http.NotFound(w, req)
			return
		}
		_, _ = w.Write([]byte(ka))
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

func (r *http01Responder) set(token, ka string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys[token] = ka
}

// retryAfterRecorder records the Retry-After of responses to challenge POSTs.
type retryAfterRecorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen []string
}

func (r *retryAfterRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err == nil && req.Method == http.MethodPost && strings.Contains(req.URL.Path, challengePath) {
		r.mu.Lock()
		r.seen = append(r.seen, resp.Header.Get("Retry-After"))
		r.mu.Unlock()
	}
	return resp, err
}

// issue runs one order to a certificate, answering challenges of chalType
// with solve, and returns the chain (leaf first) PEM and parsed.
func issue(t *testing.T, ctx context.Context, c *acme.Client, names []string, profile, chalType string,
	solve func(name string, ch *acme.Challenge)) ([]byte, []*x509.Certificate) {
	t.Helper()
	order, err := c.AuthorizeOrder(ctx, acme.DomainIDs(names...), acme.WithOrderIssuanceProfile(acme.ProfileName(profile)))
	if err != nil {
		t.Fatalf("new order: %v", err)
	}
	if order.Profile != acme.ProfileName(profile) {
		t.Errorf("order profile = %q, want %q", order.Profile, profile)
	}
	for _, u := range order.AuthzURLs {
		z, err := c.GetAuthorization(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if z.Status == acme.StatusValid {
			continue
		}
		var ch *acme.Challenge
		for _, cand := range z.Challenges {
			if cand.Type == chalType {
				ch = cand
			}
		}
		if ch == nil {
			t.Fatalf("no %s challenge for %s", chalType, z.Identifier.Value)
		}
		name := z.Identifier.Value
		if z.Wildcard {
			name = "*." + name
		}
		solve(name, ch)
		if _, err := c.Accept(ctx, ch); err != nil {
			t.Fatalf("accept %s: %v", name, err)
		}
		if _, err := c.WaitAuthorization(ctx, z.URI); err != nil {
			t.Fatalf("authorization of %s: %v", name, err)
		}
	}
	order, err = c.WaitOrder(ctx, order.URI)
	if err != nil {
		t.Fatalf("order: %v", err)
	}
	certKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, certKey)
	if err != nil {
		t.Fatal(err)
	}
	// CreateCertFromOrder, not CreateOrderCert: Pebble's finalize answer
	// has no Location header, which CreateOrderCert needs.
	ders, _, err := c.CreateCertFromOrder(ctx, order, csr, true)
	if err != nil {
		t.Fatalf("finalize: %v", err)
	}
	var chainPEM []byte
	var chain []*x509.Certificate
	for _, der := range ders {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, cert)
		chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return chainPEM, chain
}

func verifyChain(t *testing.T, p *Pebble, chain []*x509.Certificate, name string) {
	t.Helper()
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: name, Roots: mustIssuerRoots(t, p), Intermediates: inter}); err != nil {
		t.Errorf("chain does not verify against IssuerRoots for %s: %v", name, err)
	}
}

// TestIssuanceHTTP01 proves the harness end to end: a real HTTP-01
// validation by Pebble's VA (name resolved by the built-in responder,
// dialled on HTTPPort), a short-lived certificate that verifies against
// IssuerRoots, and ARI read and moved through the management API.
func TestIssuanceHTTP01(t *testing.T) {
	p := start(t, Options{})
	ctx := ctxFor(t, 60*time.Second)
	responder := serveHTTP01(t, p.HTTPPort)

	hc := p.HTTPClient()
	rec := &retryAfterRecorder{base: hc.Transport}
	hc.Transport = rec
	c := newClient(t, ctx, p, hc, nil)

	begin := time.Now()
	chainPEM, chain := issue(t, ctx, c, []string{"www.pryv.test"}, "short120s", "http-01", func(_ string, ch *acme.Challenge) {
		ka, err := c.HTTP01ChallengeResponse(ch.Token)
		if err != nil {
			t.Fatal(err)
		}
		responder.set(ch.Token, ka)
	})
	t.Logf("HTTP-01 issuance took %v", time.Since(begin))

	responder.mu.Lock()
	hits := responder.hits
	responder.mu.Unlock()
	if hits == 0 {
		t.Error("Pebble's VA never reached the HTTP-01 responder")
	}
	rec.mu.Lock()
	seen := slices.Clone(rec.seen)
	rec.mu.Unlock()
	if len(seen) == 0 || slices.ContainsFunc(seen, func(v string) bool { return v != "1" }) {
		t.Errorf("Retry-After on challenge POSTs = %q, want all \"1\"", seen)
	}

	if len(chain) < 2 {
		t.Fatalf("chain has %d certificates, want leaf + intermediate", len(chain))
	}
	leaf := chain[0]
	verifyChain(t, p, chain, "www.pryv.test")
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got != 119*time.Second {
		t.Errorf("short120s lifetime = %v, want 119 s (Pebble: NotAfter = NotBefore + validity - 1 s)", got)
	}
	if leaf.Subject.CommonName != "" {
		t.Errorf("short120s promoted the CN: %q", leaf.Subject.CommonName)
	}

	// ARI: for a 120 s certificate the window is its whole life.
	w, err := p.RenewalInfo(chainPEM)
	if err != nil {
		t.Fatal(err)
	}
	if w.Start.After(leaf.NotBefore.Add(time.Second)) || w.End.Before(leaf.NotAfter.Add(-time.Second)) {
		t.Errorf("ARI window %v..%v, lifetime %v..%v", w.Start, w.End, leaf.NotBefore, leaf.NotAfter)
	}
	start, end := time.Now().Add(-time.Hour).Truncate(time.Second), time.Now().Add(-time.Minute).Truncate(time.Second)
	if err := p.SetRenewalInfo(chainPEM, start, end); err != nil {
		t.Fatal(err)
	}
	if w, err := p.RenewalInfo(chainPEM); err != nil || !w.Start.Equal(start) || !w.End.Equal(end) {
		t.Errorf("after SetRenewalInfo: window %v..%v (%v), want %v..%v", w.Start, w.End, err, start, end)
	}
}

// TestIssuanceDNS01 issues for a name and its wildcard with DNS-01: Pebble
// reads the TXT records set with SetTXT from the built-in responder (over
// TCP). The "default" profile promotes the CN and lasts 90 days.
func TestIssuanceDNS01(t *testing.T) {
	p := start(t, Options{})
	ctx := ctxFor(t, 60*time.Second)
	c := newClient(t, ctx, p, p.HTTPClient(), nil)
	begin := time.Now()
	_, chain := issue(t, ctx, c, []string{"pryv.test", "*.pryv.test"}, "default", "dns-01", func(name string, ch *acme.Challenge) {
		v, err := c.DNS01ChallengeRecord(ch.Token)
		if err != nil {
			t.Fatal(err)
		}
		p.SetTXT("_acme-challenge."+strings.TrimPrefix(name, "*."), v)
	})
	t.Logf("DNS-01 issuance (2 names) took %v", time.Since(begin))
	verifyChain(t, p, chain, "pryv.test")
	verifyChain(t, p, chain, "anything.pryv.test")
	if got := chain[0].NotAfter.Sub(chain[0].NotBefore); got != 90*24*time.Hour-time.Second {
		t.Errorf("default lifetime = %v", got)
	}
	if chain[0].Subject.CommonName != "pryv.test" {
		t.Errorf("default profile CN = %q, want pryv.test", chain[0].Subject.CommonName)
	}
}

// TestFailedValidation: with nothing serving HTTP-01, the authorization
// turns invalid (the way to provoke a validation failure for a name).
func TestFailedValidation(t *testing.T) {
	p := start(t, Options{})
	ctx := ctxFor(t, 60*time.Second)
	c := newClient(t, ctx, p, p.HTTPClient(), nil)
	order, err := c.AuthorizeOrder(ctx, acme.DomainIDs("nobody.pryv.test"), acme.WithOrderIssuanceProfile("default"))
	if err != nil {
		t.Fatal(err)
	}
	z, err := c.GetAuthorization(ctx, order.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range z.Challenges {
		if ch.Type == "http-01" {
			if _, err := c.Accept(ctx, ch); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, err = c.WaitAuthorization(ctx, z.URI)
	var ae *acme.AuthorizationError
	if !errors.As(err, &ae) {
		t.Fatalf("authorization with no responder: err = %v, want an AuthorizationError", err)
	}
	t.Logf("validation failure as a client sees it: %v", err)
}

func postStatusRetryAfter(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader("{}"))
	req.Header.Set("User-Agent", "pebbledev-test")
	req.Header.Set("Content-Type", "application/jose+json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	resp.Body.Close()
	return resp.Header.Get("Retry-After")
}

// TestRetryAfter: HTTPClient adds Retry-After: 1 to challenge POSTs only
// (Pebble answers these garbage POSTs with an error, which is enough to
// see the header), on 127.0.0.1 and localhost, and not with NoRetryAfter.
func TestRetryAfter(t *testing.T) {
	p := start(t, Options{})
	base := strings.TrimSuffix(p.DirectoryURL, "/dir")
	c := p.HTTPClient()
	if got := postStatusRetryAfter(t, c, base+"/chalZ/nope"); got != "1" {
		t.Errorf("challenge POST: Retry-After %q, want 1", got)
	}
	if got := postStatusRetryAfter(t, c, strings.Replace(base, "127.0.0.1", "localhost", 1)+"/chalZ/nope"); got != "1" {
		t.Errorf("challenge POST via localhost: Retry-After %q, want 1", got)
	}
	if got := postStatusRetryAfter(t, c, base+"/order-plz"); got != "" {
		t.Errorf("newOrder POST: Retry-After %q, want none", got)
	}

	begin := time.Now()
	q := start(t, Options{NoRetryAfter: true, KeyAlgorithm: "rsa"})
	t.Logf("Start with RSA roots took %v", time.Since(begin))
	if got := postStatusRetryAfter(t, q.HTTPClient(), strings.TrimSuffix(q.DirectoryURL, "/dir")+"/chalZ/nope"); got != "" {
		t.Errorf("NoRetryAfter: challenge POST: Retry-After %q, want none", got)
	}
}
