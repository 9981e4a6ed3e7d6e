// Command pryv-tls runs on every core of a Pryv.io deployment and takes care
// of its public TLS. See README.md.
package main

import (
	"os"
	"runtime"

	"github.com/pryv/pryv-tls/internal/cli"
)

func init() {
	// No heap profile is ever read (the binary serves no pprof endpoint):
	// sampling allocations for one only costs memory, a bucket per sampled
	// stack kept for the life of the process. As early as Go code of ours
	// can run (allocations made by the inits of the packages below are
	// sampled at the default rate). The daemon's heap policy is in
	// internal/daemon/memory.go.
	runtime.MemProfileRate = 0
}

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
