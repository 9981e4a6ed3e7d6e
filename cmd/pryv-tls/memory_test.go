package main

import (
	"runtime"
	"testing"
)

// The binary samples no allocations for heap profiles (see init in main.go).
func TestHeapProfilingOff(t *testing.T) {
	if runtime.MemProfileRate != 0 {
		t.Errorf("runtime.MemProfileRate = %d, want 0", runtime.MemProfileRate)
	}
}
