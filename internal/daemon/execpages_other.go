//go:build !linux

package daemon

// releaseExecPages does nothing off Linux (no MADV_PAGEOUT).
func releaseExecPages() (uintptr, error) { return 0, nil }
