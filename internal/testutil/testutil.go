// Package testutil holds the small helpers the packages' tests share.
package testutil

import (
	"testing"
	"time"
)

// Eventually looks again after firstPoll, doubling the pause up to
// maxPoll: what most tests wait for (a watch event, a rebuilt zone, a file
// written) takes milliseconds and is seen at once, while a condition that
// takes seconds (an ACME order, a renewal) and reads a database or parses
// certificates is not read hundreds of times a second on a loaded machine.
const (
	firstPoll = 2 * time.Millisecond
	maxPoll   = 50 * time.Millisecond
)

// Eventually calls cond until it holds, failing the test once timeout has
// passed; cond returns what it saw, which the failure names after what is
// waited for (a bare "timed out" says nothing of how far things got).
// It is the one polling loop of the tests: a test that waits for something
// calls it (or EventuallyTrue) rather than a loop of its own.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, seen string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	poll := firstPoll
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
		poll = min(2*poll, maxPoll)
	}
}

// EventuallyTrue is Eventually for a condition with nothing to show.
func EventuallyTrue(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Eventually(t, timeout, what, func() (bool, string) { return cond(), "" })
}
