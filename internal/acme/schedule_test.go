package acme

import (
	"testing"
	"time"
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
