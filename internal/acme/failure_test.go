package acme

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	legoacme "github.com/go-acme/lego/v5/acme"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/acme/pebbledev"
)

// switchTransport fails every request while down is set: the CA "down"
// without stopping Pebble, so it can come back.
type switchTransport struct {
	base http.RoundTripper
	down atomic.Bool
}

func (s *switchTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if s.down.Load() {
		return nil, errors.New("dial tcp: connection refused (test: CA down)")
	}
	return s.base.RoundTrip(req)
}

type failureLog struct {
	mu sync.Mutex
	fs []Failure
}

func (l *failureLog) add(_ context.Context, f Failure) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fs = append(l.fs, f)
}

func (l *failureLog) all() []Failure {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Failure(nil), l.fs...)
}

// OnFailure is heard once per failure streak: not at each retry, not again
// after a restart mid-streak, and again once a success has ended the streak.
func TestOnFailureOncePerStreak(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	clock := &fakeClock{}
	heard := &failureLog{}
	sw := &switchTransport{}
	opts := e.options(p, "core-a", host, "default")
	sw.base = opts.HTTPClient.Transport
	opts.HTTPClient = &http.Client{Transport: sw, Timeout: opts.HTTPClient.Timeout}
	opts.Now, opts.OnFailure = clock.Now, heard.add
	r := mustNew(t, opts)
	if _, err := r.ForceRenew(ctx, "", false); err != nil {
		t.Fatalf("first issuance: %v", err)
	}

	sw.down.Store(true)
	clock.Advance(61 * 24 * time.Hour) // due by the schedule
	for i := range 3 {
		if _, err := r.check(ctx, opts.Plans[0], false); err == nil {
			t.Fatalf("check %d with the CA down: no error", i+1)
		}
		clock.Advance(time.Hour) // past any backoff so far
	}
	// A restart mid-streak: the streak lives in PlatformDB, not in memory.
	r2 := mustNew(t, opts)
	if _, err := r2.check(ctx, opts.Plans[0], false); err == nil {
		t.Fatal("check after the restart with the CA down: no error")
	}
	if st := e.state(host); st.Failures != 4 {
		t.Fatalf("Failures = %d after four failed checks, want 4", st.Failures)
	}
	fs := heard.all()
	if len(fs) != 1 {
		t.Fatalf("OnFailure heard %d times over a streak of 4 failures (one restart), want 1: %+v", len(fs), fs)
	}
	f := fs[0]
	if f.Hostname != host || f.Failures != 1 || f.Error == "" || f.Problem != nil || f.At.IsZero() || f.UnpauseURL != "" {
		t.Errorf("the first failure as heard: %+v (want the row, Failures 1, an error, no problem document: the CA was not reached)", f)
	}

	// The CA is back: a success ends the streak; the next failure starts a
	// new one and is heard.
	sw.down.Store(false)
	clock.Advance(7 * time.Hour) // past the backoff (at most 6 h)
	if _, err := r2.ForceRenew(ctx, "", false); err != nil {
		t.Fatalf("renewal once the CA is back: %v", err)
	}
	if st := e.state(host); st.Failures != 0 || st.Problem != nil || st.LastError != "" {
		t.Errorf("state after the success: %+v", st)
	}
	sw.down.Store(true)
	clock.Advance(forceInterval) // one forced renewal per name per minute
	if _, err := r2.ForceRenew(ctx, "", false); err == nil {
		t.Fatal("forced renewal with the CA down: no error")
	}
	if n := len(heard.all()); n != 2 {
		t.Errorf("OnFailure heard %d times after a success and a new failure, want 2", n)
	}
}

// A problem document is kept as the CA sent it, subproblems included.
func TestProblemKept(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	const host = "blocked.your-domain.com"
	p := e.pebble(acmetest.Options{Options: pebbledev.Options{BlockedDomains: []string{host}}})
	heard := &failureLog{}
	opts := e.options(p, "core-a", host, "default")
	opts.OnFailure = heard.add
	r := mustNew(t, opts)
	if _, err := r.ForceRenew(ctx, "", false); err == nil {
		t.Fatal("ForceRenew of a blocked name: no error")
	}
	st := e.state(host)
	if st.Problem == nil || st.Problem.Type != legoacme.RejectedIdentifierErrorType || st.Problem.Detail == "" || st.Problem.Status != http.StatusBadRequest {
		t.Fatalf("state.Problem = %+v, want Pebble's rejectedIdentifier document", st.Problem)
	}
	if fs := heard.all(); len(fs) != 1 || fs[0].Problem == nil || fs[0].Problem.Type != st.Problem.Type {
		t.Errorf("OnFailure: %+v", fs)
	}
	t.Logf("kept: %+v", *st.Problem)

	compound := &legoacme.ProblemDetails{Type: legoacme.CompoundErrorType, Detail: "two names failed", HTTPStatus: 403,
		SubProblems: []legoacme.SubProblem{
			{Type: legoacme.CaaErrorType, Detail: "CAA forbids", Identifier: legoacme.Identifier{Type: "dns", Value: "a.example"}},
			{Type: legoacme.DNSErrorType, Detail: "NXDOMAIN", Identifier: legoacme.Identifier{Type: "dns", Value: "b.example"}},
		}}
	got := problemDoc(errors.Join(errors.New("obtain"), compound))
	if got == nil || len(got.Subproblems) != 2 || got.Subproblems[1].Identifier != "b.example" || got.Subproblems[0].Type != legoacme.CaaErrorType {
		t.Errorf("compound problem kept as %+v", got)
	}
	if problemDoc(errors.New("dial tcp: refused")) != nil {
		t.Error("a network error got a problem document")
	}
}

// Boulder's refusal for a paused account, in its exact wording (wfe2/wfe.go:
// probs.Paused, type rateLimited, HTTP 429, no Retry-After).
const pausedDetail = "Your account is temporarily prevented from requesting certificates for your-domain.com, *.your-domain.com and possibly others. Please visit: https://portal.letsencrypt.org/sfe/v1/unpause?jwt=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"

func TestUnpauseURL(t *testing.T) {
	const want = "https://portal.letsencrypt.org/sfe/v1/unpause?jwt=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"
	for _, c := range []struct {
		name string
		p    *Problem
		want string
	}{
		{"paused", &Problem{Type: legoacme.RateLimitedErrorType, Detail: pausedDetail, Status: 429}, want},
		{"paused, link last in a sentence", &Problem{Type: legoacme.RateLimitedErrorType, Detail: "Please visit: " + want + " to unpause"}, want},
		{"an ordinary rate limit", &Problem{Type: legoacme.RateLimitedErrorType, Detail: "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2026-12-04 09:13:16 UTC: see https://letsencrypt.org/docs/rate-limits/"}, ""},
		{"a link under another type", &Problem{Type: legoacme.UnauthorizedErrorType, Detail: pausedDetail}, ""},
		{"no problem", nil, ""},
	} {
		if got := unpauseURL(c.p); got != c.want {
			t.Errorf("%s: unpauseURL = %q, want %q", c.name, got, c.want)
		}
	}
	err := &legoacme.RateLimitedError{ProblemDetails: &legoacme.ProblemDetails{Type: legoacme.RateLimitedErrorType, Detail: pausedDetail, HTTPStatus: 429}}
	if k := ErrorKind(err); k != "paused" {
		t.Errorf("ErrorKind(paused) = %q, want paused", k)
	}
}

// A paused account is not retried by the schedule, however long it waits;
// it is heard of when the pause arrives, even in the middle of a streak;
// a forced renewal (the operator has unpaused) orders again.
func TestPausedNotRetried(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	clock := &fakeClock{}
	heard := &failureLog{}
	opts := e.options(p, "core-a", host, "default")
	opts.Now, opts.OnFailure = clock.Now, heard.add
	r := mustNew(t, opts)

	// Two failures: one streak, heard once; then the CA pauses the account.
	st := State{Hostnames: opts.Plans[0].Hostnames}
	r.recordFailure(ctx, look{p: opts.Plans[0], st: &st, now: clock.Now()}, errors.New("dial tcp: refused"))
	r.recordFailure(ctx, look{p: opts.Plans[0], st: &st, now: clock.Now()}, errors.New("dial tcp: refused"))
	paused := &legoacme.RateLimitedError{ProblemDetails: &legoacme.ProblemDetails{Type: legoacme.RateLimitedErrorType, Detail: pausedDetail, HTTPStatus: 429}}
	r.recordFailure(ctx, look{p: opts.Plans[0], st: &st, now: clock.Now()}, paused)
	r.recordFailure(ctx, look{p: opts.Plans[0], st: &st, now: clock.Now()}, paused) // a forced retry, still paused
	fs := heard.all()
	if len(fs) != 2 || fs[0].UnpauseURL != "" || !strings.Contains(fs[1].UnpauseURL, "/sfe/v1/unpause?jwt=") || fs[1].Failures != 3 {
		t.Fatalf("heard %+v; want the streak's start, then the pause with its link (once)", fs)
	}
	if st.UnpauseURL == "" || st.Problem == nil || st.Problem.Status != 429 {
		t.Fatalf("state after the pause: %+v", st)
	}
	if err := saveState(ctx, e.db, host, st); err != nil {
		t.Fatal(err)
	}

	// Days later, with nothing issued yet (due at once): no request to the CA.
	clock.Advance(3 * 24 * time.Hour)
	for range 3 {
		if rec, err := r.check(ctx, opts.Plans[0], false); rec != nil || err != nil {
			t.Fatalf("check while paused: %v, %v; want nothing done", rec, err)
		}
	}
	if n := e.calls.count("core-a", "", ""); n != 0 {
		t.Errorf("%d requests to the CA while paused, want 0", n)
	}
	// The operator unpaused and forces: an order, and the pause is gone.
	if _, err := r.ForceRenew(ctx, "", false); err != nil {
		t.Fatalf("ForceRenew after unpausing: %v", err)
	}
	if got := e.state(host); got.UnpauseURL != "" || got.Problem != nil || got.Failures != 0 {
		t.Errorf("state after the forced renewal: %+v", got)
	}
}

// pausingTransport answers newOrder as Let's Encrypt answers a paused
// account (Boulder's wfe2: probs.Paused — type rateLimited, HTTP 429, no
// Retry-After, application/problem+json) while paused is set; everything
// else goes to Pebble.
type pausingTransport struct {
	base   http.RoundTripper
	paused atomic.Bool
	orders atomic.Int32 // newOrder requests seen
}

func (p *pausingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && req.URL.Path == pebbleNewOrder {
		p.orders.Add(1)
		if p.paused.Load() {
			body, _ := json.Marshal(map[string]any{"type": "urn:ietf:params:acme:error:rateLimited", "detail": pausedDetail, "status": 429})
			return &http.Response{StatusCode: http.StatusTooManyRequests, Status: "429 Too Many Requests", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header:  http.Header{"Content-Type": {"application/problem+json"}},
				Body:    io.NopCloser(bytes.NewReader(body)),
				Request: req}, nil
		}
	}
	return p.base.RoundTrip(req)
}

// The whole path of a pause: the CA's answer recognised, heard once with
// its link, never ordered again by the schedule, resumed by a forced
// renewal once the operator has unpaused.
func TestPausedByTheCA(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	const host = "your-domain.com"
	clock := &fakeClock{}
	heard := &failureLog{}
	pt := &pausingTransport{}
	opts := e.options(p, "core-a", host, "default")
	pt.base = opts.HTTPClient.Transport
	opts.HTTPClient = &http.Client{Transport: pt, Timeout: opts.HTTPClient.Timeout}
	opts.Now, opts.OnFailure = clock.Now, heard.add
	kinds := make(chan string, 8)
	opts.OnOrder = func(err error) { kinds <- ErrorKind(err) }
	r := mustNew(t, opts)

	pt.paused.Store(true)
	if _, err := r.check(ctx, opts.Plans[0], false); err == nil || !strings.Contains(err.Error(), "temporarily prevented") {
		t.Fatalf("first order against a paused account: %v", err)
	}
	if k := <-kinds; k != "paused" {
		t.Errorf("ErrorKind %q, want paused", k)
	}
	st := e.state(host)
	if !strings.HasPrefix(st.UnpauseURL, "https://portal.letsencrypt.org/sfe/v1/unpause?jwt=") || st.Problem == nil ||
		st.Problem.Type != legoacme.RateLimitedErrorType || st.Problem.Status != 429 {
		t.Fatalf("state after the pause: unpause %q problem %+v", st.UnpauseURL, st.Problem)
	}
	if fs := heard.all(); len(fs) != 1 || fs[0].UnpauseURL != st.UnpauseURL {
		t.Fatalf("heard %+v, want the pause once with its link", fs)
	}

	// Days of scheduled checks: not one newOrder.
	for range 5 {
		clock.Advance(24 * time.Hour)
		if rec, err := r.check(ctx, opts.Plans[0], false); rec != nil || err != nil {
			t.Fatalf("a check while paused: %v %v", rec, err)
		}
	}
	if n := pt.orders.Load(); n != 1 {
		t.Errorf("%d newOrder requests over 5 days paused, want 1 (the one that was refused)", n)
	}

	// The operator unpaused and forces a renewal: issued, the pause gone.
	pt.paused.Store(false)
	if _, err := r.ForceRenew(ctx, "", false); err != nil {
		t.Fatalf("ForceRenew after unpausing: %v", err)
	}
	if st := e.state(host); st.UnpauseURL != "" || st.Problem != nil || st.Failures != 0 || e.record(host) == nil {
		t.Errorf("after the forced renewal: %+v", st)
	}
	if n := len(heard.all()); n != 1 {
		t.Errorf("heard %d times, want 1", n)
	}
}
