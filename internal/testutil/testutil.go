// Package testutil holds the small helpers the packages' tests share.
package testutil

import (
	"testing"
	"time"
)

// poll is how often Eventually looks again: short, since what it waits for
// (a watch event, a rebuilt zone, a file written) takes milliseconds.
const poll = 2 * time.Millisecond

// Eventually calls cond until it holds, failing the test once timeout has
// passed; cond returns what it saw, which the failure names (a bare
// "timed out" says nothing of how far things got).
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, seen string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if seen != "" {
				t.Fatalf("%s: not within %v (last seen: %s)", what, timeout, seen)
			}
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(poll)
	}
}

// EventuallyTrue is Eventually for a condition with nothing to show.
func EventuallyTrue(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Eventually(t, timeout, what, func() (bool, string) { return cond(), "" })
}
