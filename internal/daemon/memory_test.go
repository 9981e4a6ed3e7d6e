package daemon

import (
	"runtime/debug"
	"testing"
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
	if tr.check(); trims != 0 {
		t.Fatal("the first check trimmed: it has no interval to judge activity by")
	}
	garbage(32 << 20) // busy: allocating
	if tr.check(); trims != 0 {
		t.Fatal("trimmed while the process allocates")
	}
	// Quiet, with the garbage of the busy interval held.
	if n := tr.check(); trims != 1 || n < trimMin {
		t.Fatalf("quiet with %d bytes held: %d trims, want 1", n, trims)
	}
	// Quiet again, nothing held any more: the trim's own work is not
	// activity, and nothing is left to return.
	if tr.check(); trims != 1 {
		t.Fatalf("%d trims after everything was returned, want 1", trims)
	}
}
