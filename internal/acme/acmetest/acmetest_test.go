package acmetest

// These tests cover what acmetest adds to pebbledev: the testing.TB API
// (t.Setenv, t.Cleanup, t.Fatalf, the log kept for failed tests) and the
// methods it wraps. The options and everything else are pebbledev's, and
// tested there. They use golang.org/x/crypto/acme as a minimal ACME client.
// Start calls t.Setenv: no t.Parallel here.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/acme"

	"github.com/pryv/pryv-tls/internal/acme/pebbledev"
)

type directory struct {
	Meta struct {
		Profiles                map[string]string `json:"profiles"`
		ExternalAccountRequired bool              `json:"externalAccountRequired"`
	} `json:"meta"`
}

func getDirectory(t *testing.T, c *http.Client, url string) directory {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("User-Agent", "acmetest-test")
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

// TestStartStop: what Start adds to pebbledev.Start. CAFile is in a
// t.TempDir, so it outlives Stop; Stop is idempotent and closes the
// listeners.
func TestStartStop(t *testing.T) {
	p := Start(t, Options{})
	d := getDirectory(t, p.HTTPClient(), p.DirectoryURL)
	if _, ok := d.Meta.Profiles["short120s"]; !ok {
		t.Errorf("meta.profiles lacks short120s: %v", d.Meta.Profiles)
	}
	fromFile := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.ListenerRoots}}}
	getDirectory(t, fromFile, p.DirectoryURL)

	p.Stop()
	p.Stop() // idempotent
	_, err := fromFile.Get(p.DirectoryURL)
	var opErr *net.OpError
	if err == nil || !errors.As(err, &opErr) {
		t.Fatalf("after Stop: GET directory: err = %v, want a dial error", err)
	}
	if _, err := os.Stat(p.CAFile); err != nil {
		t.Errorf("CAFile after Stop: %v", err)
	}
}

// TestSetA: the address, given as a string, reaches the built-in responder.
func TestSetA(t *testing.T) {
	p := Start(t, Options{})
	p.SetA(t, "core2.pryv.test", "127.0.0.2")
	m := new(dns.Msg)
	m.SetQuestion("core2.pryv.test.", dns.TypeA)
	in, _, err := (&dns.Client{Net: "tcp", Timeout: 5 * time.Second}).Exchange(m, p.DNSAddr)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Answer) != 1 || !in.Answer[0].(*dns.A).A.Equal(net.IPv4(127, 0, 0, 2)) {
		t.Errorf("A after SetA: %v", in.Answer)
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t *testing.T, ctx context.Context, p *Pebble) *acme.Client {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &acme.Client{Key: key, DirectoryURL: p.DirectoryURL, HTTPClient: p.HTTPClient(), UserAgent: "acmetest-test"}
	if _, err := c.Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil {
		t.Fatalf("register: %v", err)
	}
	return c
}

// issueAlwaysValid gets a certificate for name from a Pebble started with
// AlwaysValid (no challenge is served) and returns its chain, leaf first.
func issueAlwaysValid(t *testing.T, p *Pebble, name, profile string) ([]byte, []*x509.Certificate) {
	t.Helper()
	ctx := ctxFor(t, 60*time.Second)
	c := newClient(t, ctx, p)
	order, err := c.AuthorizeOrder(ctx, acme.DomainIDs(name), acme.WithOrderIssuanceProfile(acme.ProfileName(profile)))
	if err != nil {
		t.Fatalf("new order: %v", err)
	}
	for _, u := range order.AuthzURLs {
		z, err := c.GetAuthorization(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Accept(ctx, z.Challenges[0]); err != nil {
			t.Fatalf("accept: %v", err)
		}
		if _, err := c.WaitAuthorization(ctx, z.URI); err != nil {
			t.Fatalf("authorization: %v", err)
		}
	}
	if order, err = c.WaitOrder(ctx, order.URI); err != nil {
		t.Fatalf("order: %v", err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{name}}, key)
	if err != nil {
		t.Fatal(err)
	}
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

// TestRenewalInfo: IssuerRoots, RenewalInfo, SetRenewalInfo and
// SetRenewalInfoResponse on a certificate Pebble issued.
func TestRenewalInfo(t *testing.T) {
	p := Start(t, Options{Options: pebbledev.Options{AlwaysValid: true}})
	chainPEM, chain := issueAlwaysValid(t, p, "www.pryv.test", "short120s")
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "www.pryv.test", Roots: p.IssuerRoots(t), Intermediates: inter}); err != nil {
		t.Errorf("chain does not verify against IssuerRoots: %v", err)
	}
	if inter := p.Intermediate(t, 0); !inter.Equal(chain[1]) {
		t.Errorf("Intermediate(0) is %s, the chain's is %s", inter.Subject, chain[1].Subject)
	}
	if roots := p.IssuerRootCerts(t); len(roots) != 1 || chain[1].CheckSignatureFrom(roots[0]) != nil {
		t.Errorf("IssuerRootCerts: %d roots, the intermediate not signed by the first", len(roots))
	}
	if id, err := ARICertID(leaf); err != nil || !strings.Contains(id, ".") {
		t.Errorf("ARICertID = %q, %v", id, err)
	}

	// For a 120 s certificate the window is its whole life.
	w := p.RenewalInfo(t, chainPEM)
	if w.Start.After(leaf.NotBefore.Add(time.Second)) || w.End.Before(leaf.NotAfter.Add(-time.Second)) {
		t.Errorf("ARI window %v..%v, lifetime %v..%v", w.Start, w.End, leaf.NotBefore, leaf.NotAfter)
	}
	start, end := time.Now().Add(-time.Hour).Truncate(time.Second), time.Now().Add(-time.Minute).Truncate(time.Second)
	p.SetRenewalInfo(t, chainPEM, start, end)
	if w := p.RenewalInfo(t, chainPEM); !w.Start.Equal(start) || !w.End.Equal(end) {
		t.Errorf("after SetRenewalInfo: window %v..%v, want %v..%v", w.Start, w.End, start, end)
	}

	p.SetRenewalInfoResponse(t, chainPEM, "not json")
	msg := fatalOf(t, func(tb testing.TB) { p.RenewalInfo(tb, chainPEM) })
	if !strings.HasPrefix(msg, "acmetest: ") || !strings.Contains(msg, "RenewalInfo") {
		t.Errorf("RenewalInfo of a malformed ARI answer: Fatalf(%q)", msg)
	}
}

// fakeTB is a real testing.TB whose Fatalf, Log, Logf and Failed are
// recorded or faked.
type fakeTB struct {
	testing.TB
	failed bool

	mu    sync.Mutex
	fatal string
	logs  []string
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Log(args ...any) { f.Logf("%s", fmt.Sprint(args...)) }

func (f *fakeTB) Logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Failed() bool { return f.failed }

func (f *fakeTB) logged() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.logs)
}

// fatalOf runs fn on a goroutine with a fakeTB and returns what it passed
// to Fatalf ("" if nothing).
func fatalOf(t *testing.T, fn func(tb testing.TB)) string {
	t.Helper()
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fatal
}

// TestFatal: a failing Start or method calls t.Fatalf.
func TestFatal(t *testing.T) {
	for name, fn := range map[string]func(testing.TB){
		"Start":          func(tb testing.TB) { Start(tb, Options{Options: pebbledev.Options{KeyAlgorithm: "dsa"}}) },
		"empty Profiles": func(tb testing.TB) { Start(tb, Options{Options: pebbledev.Options{Profiles: map[string]Profile{}}}) },
		"Dir given":      func(tb testing.TB) { Start(tb, Options{Options: pebbledev.Options{Dir: tb.TempDir()}}) },
	} {
		if msg := fatalOf(t, fn); !strings.HasPrefix(msg, "acmetest: ") {
			t.Errorf("%s: Fatalf(%q)", name, msg)
		}
	}
	p := Start(t, Options{})
	if msg := fatalOf(t, func(tb testing.TB) { p.SetRenewalInfo(tb, []byte("no PEM"), time.Now(), time.Now()) }); !strings.Contains(msg, "PEM") {
		t.Errorf("SetRenewalInfo without a certificate: Fatalf(%q)", msg)
	}
	if msg := fatalOf(t, func(tb testing.TB) { p.SetA(tb, "x.pryv.test", "::1") }); !strings.Contains(msg, "IPv4") {
		t.Errorf("SetA with an IPv6 address: Fatalf(%q)", msg)
	}
	p.Stop()
	if msg := fatalOf(t, func(tb testing.TB) { p.IssuerRoots(tb) }); msg == "" {
		t.Error("IssuerRoots after Stop did not fail the test")
	}
}

// TestSetenv: the PEBBLE_* variables are restored when the test that
// called Start ends.
func TestSetenv(t *testing.T) {
	t.Setenv("PEBBLE_VA_NOSLEEP", "before")
	t.Run("start", func(t *testing.T) {
		Start(t, Options{})
		if got := os.Getenv("PEBBLE_VA_NOSLEEP"); got != "1" {
			t.Errorf("during the test: PEBBLE_VA_NOSLEEP=%q, want 1", got)
		}
	})
	if got := os.Getenv("PEBBLE_VA_NOSLEEP"); got != "before" {
		t.Errorf("after the test: PEBBLE_VA_NOSLEEP=%q, want it restored", got)
	}
}

// TestLog: Verbose streams Pebble's log to t.Log; otherwise its last lines
// are logged only if the test failed.
func TestLog(t *testing.T) {
	run := func(opts Options, failed bool) []string {
		var f *fakeTB
		t.Run("", func(t *testing.T) {
			f = &fakeTB{TB: t, failed: failed}
			p := Start(f, opts)
			getDirectory(t, p.HTTPClient(), p.DirectoryURL)
		})
		return f.logged()
	}
	if logs := run(Options{Verbose: true}, false); len(logs) == 0 || !strings.HasPrefix(logs[0], "pebble ") {
		t.Errorf("Verbose: t.Log got %q", logs)
	}
	if logs := run(Options{}, false); len(logs) != 0 {
		t.Errorf("a passing test logged %q", logs)
	}
	logs := run(Options{}, true)
	if len(logs) != 1 || !strings.HasPrefix(logs[0], "acmetest: last ") || !strings.Contains(logs[0], "\npebble ") {
		t.Errorf("a failed test logged %q", logs)
	}
}
