package acmetest

// These tests cover what acmetest adds to pebbledev: the testing.TB API
// (t.Setenv, t.Cleanup, t.Fatalf, the log kept for failed tests) and the
// methods it wraps. The options and everything else are pebbledev's, and
// tested there.
// Start calls t.Setenv: no t.Parallel here.

import (
	"crypto/tls"
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

	"github.com/pryv/pryv-tls/internal/acme/pebbledev"
)

// get fails t unless url answers 200 through c.
func get(t *testing.T, c *http.Client, url string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
}

// TestStartStop: what Start adds to pebbledev.Start. CAFile is in a
// t.TempDir, so it outlives Stop; Stop is idempotent and closes the
// listeners.
func TestStartStop(t *testing.T) {
	p := Start(t, Options{})
	get(t, p.HTTPClient(), p.DirectoryURL)
	fromFile := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.ListenerRoots}}}
	get(t, fromFile, p.DirectoryURL)

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
			get(t, p.HTTPClient(), p.DirectoryURL)
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
