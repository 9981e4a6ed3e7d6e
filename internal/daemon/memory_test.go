package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/testutil"
)

func TestGCPolicy(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	gcPercent := func() int { p := debug.SetGCPercent(-1); debug.SetGCPercent(p); return p }

	t.Setenv("GOGC", "")
	g := newGCPolicy()
	for _, step := range []struct {
		quiet bool
		want  int
	}{{false, busyGCPercent}, {true, quietGCPercent}, {true, quietGCPercent}, {false, busyGCPercent}, {true, quietGCPercent}} {
		g.set(step.quiet)
		if got := gcPercent(); got != step.want {
			t.Fatalf("quiet=%v: GC percent %d, want %d", step.quiet, got, step.want)
		}
	}

	debug.SetGCPercent(100)
	t.Setenv("GOGC", "300") // the operator's choice stays, quiet or not
	debug.SetGCPercent(300)
	g = newGCPolicy()
	for _, quiet := range []bool{true, false, true} {
		g.set(quiet)
		if got := gcPercent(); got != 300 {
			t.Fatalf("with GOGC=300, quiet=%v: GC percent %d", quiet, got)
		}
	}
}

var sink [][]byte

// garbage allocates n bytes the program drops at once.
func garbage(n int) {
	for range n >> 16 {
		sink = append(sink, make([]byte, 1<<16))
	}
	sink = nil
}

func TestTrimmer(t *testing.T) {
	trims := 0
	tr := &trimmer{free: func() { trims++; debug.FreeOSMemory() }}

	garbage(32 << 20)
	if _, quiet := tr.check(); trims != 0 || quiet {
		t.Fatalf("the first check: %d trims, quiet %v; it has no interval to judge activity by", trims, quiet)
	}
	garbage(32 << 20) // busy: allocating
	if _, quiet := tr.check(); trims != 0 || quiet {
		t.Fatalf("while the process allocates: %d trims, quiet %v", trims, quiet)
	}
	// Quiet, with the garbage of the busy interval held.
	if n, quiet := tr.check(); trims != 1 || n < trimMin || !quiet {
		t.Fatalf("quiet (%v) with %d bytes held: %d trims, want 1", quiet, n, trims)
	}
	// Quiet again, nothing held any more: the trim's own work is not
	// activity, and nothing is left to return.
	if _, quiet := tr.check(); trims != 1 || !quiet {
		t.Fatalf("%d trims after everything was returned (quiet %v), want 1", trims, quiet)
	}
}

// The policy lowers GOGC once the process is quiet, not before, and raises
// it again while the process allocates.
func TestMemoryPolicyFollowsActivity(t *testing.T) {
	t.Setenv("GOGC", "")
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	gogc := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); memoryPolicy(ctx, slog.New(slog.DiscardHandler)) }()
	defer func() { cancel(); <-done }()
	if g := gogc(); g != busyGCPercent {
		t.Fatalf("GOGC %d at once, want %d until quiet", g, busyGCPercent)
	}
	waitGOGC := func(want uint64, work bool) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, fmt.Sprintf("GOGC %d", want), func() (bool, string) {
			if g := gogc(); g == want {
				return true, ""
			}
			if work {
				garbage(4 << 20) // busy: over trimQuiet a second
			}
			return false, fmt.Sprintf("GOGC %d", gogc())
		})
	}
	waitGOGC(quietGCPercent, false)
	waitGOGC(busyGCPercent, true)
	waitGOGC(quietGCPercent, false)
}

var keep [][]byte

// A fragmented heap (live objects scattered over many spans) keeps unused
// space a trim cannot return: after one trim, quiet checks leave it alone
// instead of forcing a GC every second.
func TestTrimmerFragmentedHeap(t *testing.T) {
	trims := 0
	tr := &trimmer{free: func() { trims++; debug.FreeOSMemory() }}
	all := make([][]byte, 0, 300000)
	for i := range 300000 {
		all = append(all, make([]byte, 64+i%7*48))
	}
	keep = nil
	for i := 0; i < len(all); i += 3 {
		keep = append(keep, all[i]) // a third stays live, spread over every span
	}
	// all is dead from here: the other two thirds are garbage.
	t.Cleanup(func() { keep = nil })
	tr.check() // baseline
	for range 5 {
		tr.check()
	}
	if trims > 1 {
		t.Fatalf("%d trims over 5 quiet checks of an unchanged heap, want at most 1", trims)
	}
}

// The executable's pages are released when the process goes quiet after a
// start, again after a busy spell only once execReleaseEvery has passed, and
// never after a failure.
func TestExecReleaseSchedule(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		steps []bool          // quiet, one check each
		at    []time.Duration // since t0, per step
		fail  bool
		want  int
	}{
		{"quiet from the start: nothing ran yet", []bool{true, true}, []time.Duration{1, 2}, false, 0},
		{"quiet after the start", []bool{false, true, true, true}, []time.Duration{1, 2, 3, 4}, false, 1},
		{"a burst soon after", []bool{false, true, false, true}, []time.Duration{1, 2, 3, 4}, false, 1},
		{"a burst an hour later", []bool{false, true, false, true}, []time.Duration{1, 2, execReleaseEvery, execReleaseEvery + 3}, false, 2},
		{"quiet for an hour, no burst", []bool{false, true, true}, []time.Duration{1, 2, 2 * execReleaseEvery}, false, 1},
		{"failed once: never again", []bool{false, true, false, true}, []time.Duration{1, 2, execReleaseEvery, execReleaseEvery + 3}, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			e := &execRelease{release: func() (uintptr, error) {
				calls++
				if tc.fail {
					return 0, errors.New("madvise: invalid argument")
				}
				return 1 << 20, nil
			}}
			for i, quiet := range tc.steps {
				e.check(quiet, t0.Add(tc.at[i]), log)
			}
			if calls != tc.want {
				t.Fatalf("%d releases, want %d", calls, tc.want)
			}
		})
	}
}
