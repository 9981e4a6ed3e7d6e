//go:build !demo

package cli

import (
	"fmt"
	"io"
)

// demoACME explains how to get a build with Pebble in it: the production
// binary leaves the demo CA out (decision 0028).
func demoACME(_, _ string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "demo: --acme runs Pebble, a demo ACME CA that this build leaves out; "+
		"from the source tree run: go run -tags demo ./cmd/pryv-tls demo --acme")
	return exitUsage
}
