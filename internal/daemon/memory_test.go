package daemon

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestSetGCPercent(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })

	t.Setenv("GOGC", "")
	setGCPercent()
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GC percent %d, want %d", got, gcPercent)
	}
	t.Setenv("GOGC", "100") // the operator's choice stays
	setGCPercent()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC=100: GC percent %d, want 100", got)
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

// The policy lowers GOGC once the process is first quiet, not before.
func TestMemoryPolicyStartsWhenQuiet(t *testing.T) {
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
	if g := gogc(); g != 100 {
		t.Fatalf("GOGC %d at once, want 100 until quiet", g)
	}
	deadline := time.Now().Add(10 * time.Second)
	for gogc() != gcPercent {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC still %d after 10 quiet seconds", gogc())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
