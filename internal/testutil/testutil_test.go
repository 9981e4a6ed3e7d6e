package testutil

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB whose Fatalf ends the goroutine, as the real one
// does, keeping the message.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls f with a recorder on a goroutine of its own (Fatalf ends it).
func run(f func(tb testing.TB)) string {
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.msg
}

func TestEventually(t *testing.T) {
	cases := []struct {
		name string
		cond func() (bool, string)
		want string // the failure, "" when it must pass
	}{
		{"holds at once", func() (bool, string) { return true, "" }, ""},
		{"holds later", countdown(5), ""},
		{"never, with what it saw", func() (bool, string) { return false, "3 rows" }, "rows: not within 50ms (last seen: 3 rows)"},
		{"never, nothing to show", func() (bool, string) { return false, "" }, "rows: not within 50ms"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			begin := time.Now()
			got := run(func(tb testing.TB) { Eventually(tb, 50*time.Millisecond, "rows", c.cond) })
			if got != c.want {
				t.Errorf("failure %q, want %q", got, c.want)
			}
			if c.want != "" && time.Since(begin) < 50*time.Millisecond {
				t.Errorf("gave up after %v, before the timeout", time.Since(begin))
			}
		})
	}
	if got := run(func(tb testing.TB) { EventuallyTrue(tb, 20*time.Millisecond, "flag", func() bool { return false }) }); !strings.HasPrefix(got, "flag: not within 20ms") {
		t.Errorf("EventuallyTrue failure %q", got)
	}
}

// TestEventuallyBacksOff: a condition that takes long is not read every
// firstPoll: over 500 ms, a pause doubling to 50 ms allows about 16 reads
// (and a slow machine fewer), a fixed 2 ms one some 250.
func TestEventuallyBacksOff(t *testing.T) {
	calls := 0
	run(func(tb testing.TB) {
		Eventually(tb, 500*time.Millisecond, "never", func() (bool, string) { calls++; return false, "" })
	})
	if calls < 2 || calls > 40 {
		t.Errorf("cond read %d times in 500 ms, want a few (the pause doubling to %v)", calls, maxPoll)
	}
}

// countdown holds on its n-th call.
func countdown(n int) func() (bool, string) {
	return func() (bool, string) {
		n--
		return n <= 0, fmt.Sprint(n)
	}
}
