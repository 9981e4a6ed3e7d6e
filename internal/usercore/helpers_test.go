package usercore

import (
	"context"
	"sync"
	"testing"
	"time"
)

// clock is a fake clock tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fakeSource answers from a map, counting the requests per name; with gate
// set, each Find first waits for a value on it (or its context).
type fakeSource struct {
	mu      sync.Mutex
	answers map[string]fakeAnswer
	calls   map[string]int
	gate    chan struct{}
	started chan string // if set, receives each name as its Find starts
}

type fakeAnswer struct {
	w   Where
	err error
}

func newFake(answers map[string]fakeAnswer) *fakeSource {
	return &fakeSource{answers: answers, calls: map[string]int{}}
}

func (f *fakeSource) Find(ctx context.Context, username string) (Where, error) {
	f.mu.Lock()
	f.calls[username]++
	a, ok := f.answers[username]
	gate, started := f.gate, f.started
	f.mu.Unlock()
	if started != nil {
		started <- username
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return Where{}, ctx.Err()
		}
	}
	if !ok {
		return Where{}, ErrUnknown
	}
	return a.w, a.err
}

func (f *fakeSource) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

// newResolver is a Resolver on domain mc.example.com whose registry holds
// core1 (this one) and core2 (core.url https://api-2.example.org/).
func newResolver(t *testing.T, src Source, opts Options) *Resolver {
	t.Helper()
	opts.Domain, opts.Source = "mc.example.com", src
	if opts.SelfName == "" {
		opts.SelfName = "core1"
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	r.SetCores([]Core{{ID: "core1", URL: "https://core1.mc.example.com"}, {ID: "Core2", URL: "https://API-2.example.org/"}})
	return r
}
