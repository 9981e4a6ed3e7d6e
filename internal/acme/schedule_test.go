package acme

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certstore"
)

func TestScheduledRenewal(t *testing.T) {
	const day = 24 * time.Hour
	issued := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		lifetime    time.Duration
		renewBefore time.Duration
		want        time.Duration // after issuance
	}{
		{"90-day certificate, renewBeforeDays 30: day 60", 90 * day, 30 * day, 60 * day},
		{"90-day certificate, no renewBefore: two thirds", 90 * day, 0, 60 * day},
		{"90-day certificate, renewBeforeDays 45: renewBefore is earlier", 90 * day, 45 * day, 45 * day},
		{"90-day certificate, renewBeforeDays 10: two thirds is earlier", 90 * day, 10 * day, 60 * day},
		{"6-day certificate, renewBeforeDays 30: day 4", 6 * day, 30 * day, 4 * day},
		{"160-hour (shortlived) certificate, renewBeforeDays 30: two thirds", 160 * time.Hour, 30 * day, 160 * time.Hour * 2 / 3},
		{"6-day certificate, renewBeforeDays 5: never before half the lifetime", 6 * day, 5 * day, 3 * day},
		{"6-day certificate, renewBeforeDays 3: half, exactly", 6 * day, 3 * day, 3 * day},
		{"90-day certificate, renewBeforeDays 60: never before day 45", 90 * day, 60 * day, 45 * day},
		{"45-day (tlsserver) certificate, renewBeforeDays 20: day 25", 45 * day, 20 * day, 25 * day},
		{"6-day certificate, renewBeforeDays 6: cannot be honoured, two thirds", 6 * day, 6 * day, 4 * day},
		{"120 s certificate, renewBeforeDays 30: 80 s", 120 * time.Second, 30 * day, 80 * time.Second},
		{"120 s certificate, renewBeforeDays 1: 80 s", 120 * time.Second, day, 80 * time.Second},
		{"120 s certificate, no renewBefore: 80 s", 120 * time.Second, 0, 80 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scheduledRenewal(issued, issued.Add(tt.lifetime), tt.renewBefore)
			if want := issued.Add(tt.want); !got.Equal(want) {
				t.Errorf("scheduledRenewal = issue + %v, want issue + %v", got.Sub(issued), tt.want)
			}
			if got.Before(issued) || got.After(issued.Add(tt.lifetime)) {
				t.Errorf("scheduledRenewal = issue + %v: outside the certificate's lifetime", got.Sub(issued))
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	tests := []struct {
		name       string
		n          int
		retryAfter time.Duration
		base       time.Duration // ±10 % jitter around it ...
		atLeast    time.Duration // ... but never below this
	}{
		{"first failure: about a minute", 1, 0, time.Minute, 0},
		{"second: doubles", 2, 0, 2 * time.Minute, 0},
		{"third: doubles again", 3, 0, 4 * time.Minute, 0},
		{"fifth", 5, 0, 16 * time.Minute, 0},
		{"ninth: 256 min", 9, 0, 256 * time.Minute, 0},
		{"tenth: capped at 6 h", 10, 0, 6 * time.Hour, 0},
		{"hundredth: still 6 h (no overflow)", 100, 0, 6 * time.Hour, 0},
		{"n=0 is treated as the first", 0, 0, time.Minute, 0},
		{"retryAfter longer than the backoff wins", 1, 2 * time.Hour, 2 * time.Hour, 2 * time.Hour},
		{"retryAfter longer than the cap wins", 20, 10 * time.Hour, 10 * time.Hour, 10 * time.Hour},
		{"retryAfter shorter than the backoff is not a ceiling", 3, 30 * time.Second, 4 * time.Minute, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi := tt.base-tt.base/10, tt.base+tt.base/10
			if tt.atLeast > 0 && tt.atLeast == tt.base {
				lo, hi = tt.atLeast, tt.atLeast+tt.atLeast/10 // exactly retryAfter (jitter below it is raised)
			}
			seen := map[time.Duration]bool{}
			for range 500 {
				d := backoffDelay(tt.n, tt.retryAfter)
				if d < lo || d > hi {
					t.Fatalf("backoffDelay(%d, %v) = %v, want in [%v, %v]", tt.n, tt.retryAfter, d, lo, hi)
				}
				if d < tt.atLeast {
					t.Fatalf("backoffDelay(%d, %v) = %v, below the CA's Retry-After", tt.n, tt.retryAfter, d)
				}
				seen[d] = true
			}
			if tt.atLeast != tt.base && len(seen) < 10 {
				t.Errorf("backoffDelay(%d, %v) took only %d distinct values in 500 draws: no jitter?", tt.n, tt.retryAfter, len(seen))
			}
		})
	}
}

func TestUrgentAndRetryDelay(t *testing.T) {
	issued := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rec := func(life time.Duration) *certstore.Record {
		return &certstore.Record{IssuedAt: issued, ExpiresAt: issued.Add(life)}
	}
	const day = 24 * time.Hour
	tests := []struct {
		name       string
		cur        *certstore.Record
		at         time.Duration // after issuance
		failures   int
		retryAfter time.Duration
		urgent     bool
		maxDelay   time.Duration
	}{
		{"90 days, day 60: not urgent, the 6 h cap", rec(90 * day), 60 * day, 12, 0, false, 6*time.Hour + 36*time.Minute},
		{"90 days, day 81: last tenth, 5 min", rec(90 * day), 81 * day, 12, 0, true, 5 * time.Minute},
		{"300 s, at 250 s: not yet the last tenth", rec(300 * time.Second), 250 * time.Second, 12, 0, false, 6*time.Hour + 36*time.Minute},
		{"300 s, at 271 s: last tenth", rec(300 * time.Second), 271 * time.Second, 12, 0, true, 5 * time.Minute},
		{"expired: 5 min", rec(300 * time.Second), time.Hour, 30, 0, true, 5 * time.Minute},
		{"expired, the CA asks for an hour: an hour", rec(300 * time.Second), time.Hour, 30, time.Hour, true, time.Hour},
		{"expired, first failure: still about a minute", rec(300 * time.Second), time.Hour, 1, 0, true, 66 * time.Second},
		{"no certificate: not urgent", nil, 0, 12, 0, false, 6*time.Hour + 36*time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := issued.Add(tt.at)
			if got := urgent(tt.cur, now); got != tt.urgent {
				t.Fatalf("urgent = %v, want %v", got, tt.urgent)
			}
			for range 100 {
				d := retryDelay(tt.failures, tt.retryAfter, tt.urgent)
				if d > tt.maxDelay || d < tt.retryAfter {
					t.Fatalf("retryDelay(%d, %v, %v) = %v, want at most %v and at least the Retry-After",
						tt.failures, tt.retryAfter, tt.urgent, d, tt.maxDelay)
				}
				if !tt.urgent && tt.failures >= 10 && d < 5*time.Hour {
					t.Fatalf("retryDelay = %v: the cap applied to a certificate that is not urgent", d)
				}
			}
		})
	}
}

func TestUntilNext(t *testing.T) {
	clock := &fakeClock{}
	r, err := New(Options{DirectoryURL: "https://127.0.0.1:1/dir", KV: newMemKV(), Keys: testKeyring(t),
		Certs: &certstore.Catalog{}, CheckInterval: 5 * time.Minute, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if d := r.untilNext(); d < 270*time.Second || d > 330*time.Second {
		t.Errorf("nothing planned: untilNext = %v, want the check interval (5 min ±10%%)", d)
	}
	now := clock.Now()
	r.note("a.example", State{NextRenewal: now.Add(40 * time.Second), ARICheckAfter: now.Add(6 * time.Hour)})
	r.note("b.example", State{NextAttempt: now.Add(90 * time.Second), NextRenewal: now.Add(-time.Hour)})
	if d := r.untilNext(); d < 39*time.Second || d > 41*time.Second {
		t.Errorf("a renewal planned in 40 s: untilNext = %v", d)
	}
	r.note("a.example", State{NextRenewal: now.Add(-time.Second)}) // renewed, say; only past times left
	if d := r.untilNext(); d < 89*time.Second || d > 91*time.Second {
		t.Errorf("an attempt planned in 90 s: untilNext = %v", d)
	}
	r.note("b.example", State{ARICheckAfter: now.Add(time.Hour)})
	if d := r.untilNext(); d < 270*time.Second || d > 330*time.Second {
		t.Errorf("only times past or beyond the interval: untilNext = %v", d)
	}
}

func testKeyring(t *testing.T) *atrest.Keyring {
	t.Helper()
	master := make([]byte, 32)
	_, _ = rand.Read(master)
	k, err := atrest.New(master)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
