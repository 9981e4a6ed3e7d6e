package acme

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
)

// byHost sends each request to the transport of its host: one HTTP client
// for a renewer that speaks to two Pebbles (each with its own listener CA).
type byHost map[string]http.RoundTripper

func (b byHost) RoundTrip(req *http.Request) (*http.Response, error) {
	return b[req.URL.Host].RoundTrip(req)
}

func hostOf(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// The primary CA stops answering after issuing: the order after it has
// failed for a tenth of the lifetime goes to the fallback (its own
// account), ARI is then asked of the fallback, the fallback's certificate
// is not taken for "the directory changed", and the next order goes back to
// the primary.
func TestFallbackCAAfterThePrimaryFails(t *testing.T) {
	e := newEnv(t)
	primary, second := e.pebble(acmetest.Options{}), e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	clock := &fakeClock{}
	opts := e.options(primary, "primary", host, "short120s")
	opts.HTTPClient = &http.Client{Timeout: time.Minute, Transport: byHost{
		hostOf(t, primary.DirectoryURL): e.calls.client(primary, "primary").Transport,
		hostOf(t, second.DirectoryURL):  e.calls.client(second, "second").Transport,
	}}
	opts.Fallbacks = []Fallback{{DirectoryURL: second.DirectoryURL}}
	opts.Now = clock.Now
	r := mustNew(t, opts)
	ctx := testCtx(t)
	p := r.opts.Plans[0]

	first, err := r.check(ctx, p, true)
	if err != nil {
		t.Fatalf("first order at the primary: %v", err)
	}
	primary.Stop()
	delete(r.forced, host) // the one-forced-order-a-minute rule is not under test

	if _, err := r.check(ctx, p, true); err == nil {
		t.Fatal("an order succeeded with the primary stopped")
	}
	st := e.state(host)
	if st.AttemptDirectory != primary.DirectoryURL || st.FailingSince.IsZero() || st.Failures != 1 {
		t.Fatalf("after the failure: attempt at %q, failing since %v, %d failures", st.AttemptDirectory, st.FailingSince, st.Failures)
	}
	if n := e.calls.count("second", http.MethodPost, pebbleNewOrder); n != 0 {
		t.Fatalf("the fallback was asked at the first failure (%d newOrder)", n)
	}

	clock.Advance(fallbackAfter(first) + time.Second)
	delete(r.forced, host)
	rec, err := r.check(ctx, p, true)
	if err != nil {
		t.Fatalf("order at the fallback: %v", err)
	}
	verifyRecord(t, e.keys, e.record(host), host, second.IssuerRoots(t))
	st = e.state(host)
	if st.Directory != second.DirectoryURL || st.AttemptDirectory != second.DirectoryURL || st.Failures != 0 || !st.FailingSince.IsZero() {
		t.Errorf("after the fallback's certificate: directory %q, attempt %q, %d failures, failing since %v",
			st.Directory, st.AttemptDirectory, st.Failures, st.FailingSince)
	}
	if n := e.calls.count("second", http.MethodPost, pebbleNewAccount); n != 1 {
		t.Errorf("%d newAccount at the fallback, want 1 (its own account)", n)
	}
	if _, ok := e.storedAccount(second.DirectoryURL); !ok {
		t.Error("the fallback's account is not stored")
	}

	// Not "another directory's certificate" (renewed at once), and its
	// renewal window asked of the fallback. (Whether it is due by its ARI
	// window depends on Pebble's window and the fake clock: not asserted.)
	st = e.state(host)
	if _, reason := r.due(ctx, look{p, e.record(host), &st, clock.Now()}); strings.Contains(reason, "directory changed") {
		t.Errorf("the fallback's certificate is due because %s", reason)
	}
	if n := e.calls.count("second", http.MethodGet, pebbleRenewalInfo); n == 0 {
		t.Error("ARI of the fallback's certificate was not asked of the fallback")
	}
	if n := e.calls.count("primary", http.MethodGet, pebbleRenewalInfo); n != 0 {
		t.Errorf("ARI of the fallback's certificate asked of the primary (%d)", n)
	}
	if e.record(host).Serial != rec.Serial {
		t.Error("the fallback's certificate was replaced")
	}
	// The next renewal: the primary again.
	if ca, why := r.pickCA(e.record(host), e.state(host), clock.Now()); ca != r {
		t.Errorf("the next order would go to %s (%s), not the primary", ca.opts.DirectoryURL, why)
	}
}

// Failures another CA would share (the names refused) never fall back.
func TestFallbackNotForRefusals(t *testing.T) {
	for _, tc := range []struct {
		st   State
		want bool
	}{
		{State{Problem: nil}, true},
		{State{Problem: &Problem{Type: "urn:ietf:params:acme:error:serverInternal", Status: 500}}, true},
		{State{Problem: &Problem{Type: "urn:ietf:params:acme:error:malformed", Status: 503}}, true},
		{State{Problem: &Problem{Type: "urn:ietf:params:acme:error:rateLimited", Status: 429}}, true},
		{State{Problem: &Problem{Type: "urn:ietf:params:acme:error:rateLimited", Status: 429}, UnpauseURL: "https://x/unpause"}, false},
		{State{Problem: &Problem{Type: "urn:ietf:params:acme:error:rejectedIdentifier", Status: 400}}, false},
		{State{Problem: &Problem{Type: "urn:ietf:params:acme:error:caa", Status: 403}}, false},
	} {
		if got := fallbackWorthy(tc.st); got != tc.want {
			t.Errorf("fallbackWorthy(%+v, unpause %q) = %v, want %v", tc.st.Problem, tc.st.UnpauseURL, got, tc.want)
		}
	}
}
