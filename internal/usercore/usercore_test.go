package usercore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/authdns"
)

func TestIsUsername(t *testing.T) {
	for _, c := range []struct {
		label string
		want  bool
	}{
		{"alice", true},
		{"a1b2c", true},
		{"user-one", true},
		{strings.Repeat("a", 60), true},
		{"abcd", false}, // under the core's 5
		{strings.Repeat("a", 61), false},
		{"-alice", false},
		{"alice-", false},
		{"_dmarc", false},
		{"al_ce", false},
		{"Alice", false}, // the core's usernames are lower case; queries are lowered before
		{"", false},
	} {
		if got := IsUsername(c.label); got != c.want {
			t.Errorf("IsUsername(%q) = %v, want %v", c.label, got, c.want)
		}
	}
}

// A label that cannot be a username is absent at once: no request.
func TestCachedNeverAsksForWhatIsNoUsername(t *testing.T) {
	src := newFake(nil)
	r := newResolver(t, src, Options{})
	for _, l := range []string{"www", "mail", "_acme-challenge", "-bad-", strings.Repeat("x", 61)} {
		if _, lk := r.Cached(l); lk != authdns.LookupAbsent {
			t.Errorf("Cached(%q) = %v, want absent", l, lk)
		}
		if _, lk, err := r.Resolve(context.Background(), l); lk != authdns.LookupAbsent || err != nil {
			t.Errorf("Resolve(%q) = %v, %v", l, lk, err)
		}
	}
	if len(src.calls) != 0 {
		t.Fatalf("the source was asked: %v", src.calls)
	}
	if _, lk := r.Cached("alice"); lk != authdns.LookupMiss {
		t.Fatalf("a username nobody looked up: %v, want a miss", lk)
	}
}

func TestResolveMapsTheSourcesAnswer(t *testing.T) {
	other := errors.New("upstream broke")
	for _, c := range []struct {
		name   string
		answer fakeAnswer
		want   string // UserHost.String(), or "error: <substring>"
		lookup authdns.Lookup
	}{
		{"multi-core URL", fakeAnswer{w: Where{URL: "https://core2.mc.example.com/"}}, "as core2.mc.example.com.", authdns.LookupFound},
		{"URL in another case, with a port", fakeAnswer{w: Where{URL: "https://CORE2.Mc.Example.com:443/"}}, "as core2.mc.example.com.", authdns.LookupFound},
		{"core.url of a core", fakeAnswer{w: Where{URL: "https://api-2.example.org/"}}, "as core2.mc.example.com.", authdns.LookupFound},
		{"single-core: the user's own endpoint", fakeAnswer{w: Where{URL: "https://alice.mc.example.com/"}}, "as core1.mc.example.com.", authdns.LookupFound},
		{"this core", fakeAnswer{w: Where{URL: "https://core1.mc.example.com/"}}, "as core1.mc.example.com.", authdns.LookupFound},
		{"a core id from rqlite", fakeAnswer{w: Where{CoreID: "core2"}}, "as core2.mc.example.com.", authdns.LookupFound},
		{"a core id in upper case", fakeAnswer{w: Where{CoreID: "CORE2"}}, "as core2.mc.example.com.", authdns.LookupFound},
		{"unknown user", fakeAnswer{err: fmt.Errorf("api: %w", ErrUnknown)}, "absent (negative TTL 30)", authdns.LookupAbsent},
		{"a host under the domain that is no core", fakeAnswer{w: Where{URL: "https://core9.mc.example.com/"}}, "error: no core of the platform", authdns.LookupMiss},
		{"a host elsewhere", fakeAnswer{w: Where{URL: "https://elsewhere.example.net/"}}, `error: "elsewhere.example.net"`, authdns.LookupMiss},
		{"no host", fakeAnswer{w: Where{URL: "/relative"}}, "error: without a host", authdns.LookupMiss},
		{"a core id nobody knows", fakeAnswer{w: Where{CoreID: "core9"}}, `error: core "core9" is no core`, authdns.LookupMiss},
		{"nothing", fakeAnswer{w: Where{}}, "error: neither a URL nor a core id", authdns.LookupMiss},
		{"upstream error", fakeAnswer{err: other}, "error: upstream broke", authdns.LookupMiss},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newResolver(t, newFake(map[string]fakeAnswer{"alice": c.answer}), Options{})
			h, lk, err := r.Resolve(context.Background(), "alice")
			got := h.String()
			if err != nil {
				got = "error: " + err.Error()
			}
			if want, ok := strings.CutPrefix(c.want, "error: "); ok {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("got %s, want an error with %q", got, want)
				}
			} else if got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
			if lk != c.lookup {
				t.Fatalf("lookup %v, want %v", lk, c.lookup)
			}
			if err != nil && strings.Contains(err.Error(), "alice") {
				t.Fatalf("the username is in the error: %v", err)
			}
		})
	}
}

// One request per name at a time: queries for a name in flight wait for it.
func TestResolveCoalesces(t *testing.T) {
	src := newFake(map[string]fakeAnswer{"alice": {w: Where{CoreID: "core2"}}})
	src.gate, src.started = make(chan struct{}), make(chan string, 1)
	r := newResolver(t, src, Options{Timeout: 10 * time.Second})
	const n = 20
	var wg sync.WaitGroup
	results := make(chan string, n)
	wg.Add(1)
	go func() {
		defer wg.Done()
		h, _, err := r.Resolve(context.Background(), "alice")
		results <- fmt.Sprint(h, err)
	}()
	<-src.started // the first request is in flight and held
	for range n - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, _, err := r.Resolve(context.Background(), "alice")
			results <- fmt.Sprint(h, err)
		}()
	}
	close(src.gate)
	wg.Wait()
	close(results)
	for got := range results {
		if got != "as core2.mc.example.com. <nil>" {
			t.Fatalf("a waiter got %s", got)
		}
	}
	if c := src.count("alice"); c != 1 {
		t.Fatalf("%d requests for one name, want 1", c)
	}
	// Then the cache answers.
	if h, lk := r.Cached("alice"); lk != authdns.LookupFound || h.String() != "as core2.mc.example.com." {
		t.Fatalf("not cached: %v %v", h, lk)
	}
}

// A query waits at most Timeout; the request goes on and fills the cache.
func TestResolveTimesOutAndFillsTheCacheLater(t *testing.T) {
	src := newFake(map[string]fakeAnswer{"alice": {w: Where{CoreID: "core2"}}})
	src.gate, src.started = make(chan struct{}), make(chan string, 1)
	r := newResolver(t, src, Options{Timeout: 20 * time.Millisecond})
	begin := time.Now()
	_, _, err := r.Resolve(context.Background(), "alice")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want a deadline", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Fatalf("waited %s for a 20ms bound", took)
	}
	<-src.started
	r.mu.Lock()
	f := r.flights["alice"]
	r.mu.Unlock()
	if f == nil {
		t.Fatal("the request did not go on after the timeout")
	}
	close(src.gate)
	<-f.done
	if _, lk := r.Cached("alice"); lk != authdns.LookupFound {
		t.Fatalf("the late answer was not cached: %v", lk)
	}
}

func TestResolveEndsWithItsContext(t *testing.T) {
	src := newFake(nil)
	src.gate = make(chan struct{})
	r := newResolver(t, src, Options{Timeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := r.Resolve(ctx, "alice"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want canceled", err)
	}
}

func TestResolveRateLimit(t *testing.T) {
	clk := newClock()
	src := newFake(nil) // everyone unknown
	r := newResolver(t, src, Options{MaxPerSecond: 3, Now: clk.Now})
	ask := func(name string) error {
		_, _, err := r.Resolve(context.Background(), name)
		return err
	}
	for i := range 3 {
		if err := ask(fmt.Sprintf("user%d", i)); err != nil {
			t.Fatalf("request %d of a burst of 3: %v", i, err)
		}
	}
	if err := ask("user3"); !errors.Is(err, authdns.ErrLookupLimited) {
		t.Fatalf("4th request in the same instant: %v, want ErrLookupLimited", err)
	}
	// A cache answer costs no token.
	if err := ask("user0"); err != nil {
		t.Fatalf("a cached name: %v", err)
	}
	clk.Add(time.Second/3 + time.Millisecond)
	if err := ask("user3"); err != nil {
		t.Fatalf("a third of a second later: %v", err)
	}
	if err := ask("user4"); !errors.Is(err, authdns.ErrLookupLimited) {
		t.Fatalf("the token was spent: %v", err)
	}
	if src.count("user4") != 0 {
		t.Fatal("a refused lookup reached the source")
	}
}

func TestLimiter(t *testing.T) {
	const s = int64(time.Second)
	for _, c := range []struct {
		name  string
		rate  float64
		at    []int64 // nanoseconds
		allow string  // one of y/n per request
	}{
		{"burst then refuse", 2, []int64{0, 0, 0}, "yyn"},
		{"refills at the rate", 2, []int64{0, 0, 0, s / 2, s / 2}, "yynyn"},
		{"never above the burst", 2, []int64{0, 0, 10 * s, 10 * s, 10 * s}, "yyyyn"},
		{"a clock going back refills nothing", 1, []int64{s, s / 2}, "yn"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := limiter{rate: c.rate, burst: c.rate, tokens: c.rate}
			var got strings.Builder
			for _, at := range c.at {
				if l.allow(1_700_000_000*s + at) {
					got.WriteByte('y')
				} else {
					got.WriteByte('n')
				}
			}
			if got.String() != c.allow {
				t.Fatalf("got %s, want %s", got.String(), c.allow)
			}
		})
	}
}

func TestCacheLifetimes(t *testing.T) {
	clk := newClock()
	src := newFake(map[string]fakeAnswer{"alice": {w: Where{CoreID: "core2"}}})
	r := newResolver(t, src, Options{TTL: 300 * time.Second, NegativeTTL: 30 * time.Second, Now: clk.Now, MaxPerSecond: 1000})
	for _, name := range []string{"alice", "nobody"} {
		if _, _, err := r.Resolve(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		after        time.Duration // since the lookups
		alice, nobdy authdns.Lookup
	}{
		{29 * time.Second, authdns.LookupFound, authdns.LookupAbsent},
		{31 * time.Second, authdns.LookupFound, authdns.LookupMiss},
		{299 * time.Second, authdns.LookupFound, authdns.LookupMiss},
		{301 * time.Second, authdns.LookupMiss, authdns.LookupMiss},
	} {
		clk.mu.Lock()
		clk.now = time.Unix(1_700_000_000, 0).Add(c.after)
		clk.mu.Unlock()
		if _, lk := r.Cached("alice"); lk != c.alice {
			t.Errorf("after %s: alice %v, want %v", c.after, lk, c.alice)
		}
		if _, lk := r.Cached("nobody"); lk != c.nobdy {
			t.Errorf("after %s: nobody %v, want %v", c.after, lk, c.nobdy)
		}
	}
	if _, _, err := r.Resolve(context.Background(), "alice"); err != nil || src.count("alice") != 2 {
		t.Fatalf("an expired entry is asked again: %v, %d requests", err, src.count("alice"))
	}
}

func TestNegativeTTLIsAtMostTTL(t *testing.T) {
	r := newResolver(t, newFake(nil), Options{TTL: 10 * time.Second, NegativeTTL: time.Minute})
	h, _ := r.Cached("www")
	if h.String() != "absent (negative TTL 10)" {
		t.Fatalf("%s", h)
	}
}

func TestErrorsAreNotCached(t *testing.T) {
	src := newFake(map[string]fakeAnswer{"alice": {err: errors.New("503")}})
	r := newResolver(t, src, Options{})
	for range 2 {
		if _, _, err := r.Resolve(context.Background(), "alice"); err == nil {
			t.Fatal("no error")
		}
	}
	if src.count("alice") != 2 {
		t.Fatalf("%d requests, want 2 (a failure is not remembered)", src.count("alice"))
	}
}

// Random labels evict entries, they never grow the cache.
func TestCacheIsBounded(t *testing.T) {
	src := newFake(nil)
	r := newResolver(t, src, Options{CacheSize: 64, MaxPerSecond: 1 << 20})
	for i := range 2000 {
		if _, _, err := r.Resolve(context.Background(), fmt.Sprintf("random%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.cache.len(time.Now().UnixNano()); n > 64 || n < 32 {
		t.Fatalf("%d entries in a cache of 64 slots", n)
	}
	if _, lk := r.Cached("random1999"); lk != authdns.LookupAbsent {
		t.Fatalf("the last entry was not kept: %v", lk)
	}
}

func TestCacheReplacement(t *testing.T) {
	c := newCache(2) // one set of two: every label shares it
	e := func(label string, expires int64) *entry {
		return &entry{label: label, lookup: authdns.LookupFound, expires: expires}
	}
	live := func(now int64) string {
		var out []string
		for _, l := range []string{"a", "b", "c", "d"} {
			if c.get(l, now) != nil {
				out = append(out, l)
			}
		}
		return strings.Join(out, ",")
	}
	c.put(e("a", 10), 0)
	c.put(e("b", 20), 0)
	if got := live(5); got != "a,b" {
		t.Fatalf("two labels, two slots: %s", got)
	}
	c.put(e("a", 30), 5) // the same label replaces its own entry
	if got := live(25); got != "a" {
		t.Fatalf("a renewed: %s", got)
	}
	c.put(e("c", 40), 25) // b expired: its slot is taken
	if got := live(26); got != "a,c" {
		t.Fatalf("after c: %s", got)
	}
	c.put(e("d", 50), 26) // both alive: the one expiring first (a) goes
	if got := live(27); got != "c,d" {
		t.Fatalf("after d: %s", got)
	}
}

// Failures are logged at most once per failureLogEvery, without the name.
func TestFailuresAreLoggedRateLimitedWithoutTheName(t *testing.T) {
	clk := newClock()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	src := newFake(map[string]fakeAnswer{})
	for i := range 6 {
		src.answers[fmt.Sprintf("secretuser%d", i)] = fakeAnswer{err: errors.New("answered 502")}
	}
	r := newResolver(t, src, Options{Logger: log, Now: clk.Now})
	for i := range 5 {
		_, _, _ = r.Resolve(context.Background(), fmt.Sprintf("secretuser%d", i))
	}
	if n := strings.Count(buf.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d warnings for 5 failures in a burst, want 1:\n%s", n, buf.String())
	}
	clk.Add(failureLogEvery + time.Second)
	_, _, _ = r.Resolve(context.Background(), "secretuser5")
	if n := strings.Count(buf.String(), "level=WARN"); n != 2 || !strings.Contains(buf.String(), "failures_not_logged=4") {
		t.Fatalf("after the pause:\n%s", buf.String())
	}
	if strings.Contains(buf.String(), "secretuser") {
		t.Fatalf("a username was logged:\n%s", buf.String())
	}
}

func TestNewChecksOptions(t *testing.T) {
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{Source: newFake(nil), SelfName: "core1"}, "no domain"},
		{Options{Domain: "mc.example.com", SelfName: "core1"}, "no source"},
		{Options{Domain: "mc.example.com", Source: newFake(nil)}, "no name for this core"},
	} {
		if _, err := New(c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v): %v, want %q", c.opts, err, c.want)
		}
	}
}
