// Package docs_test keeps docs/ from drifting away from the code: the proxy
// and systemd samples parse and route as the daemon does, the sample
// configurations load, the commands and flags the guides show exist, every
// page's relative links resolve, and the troubleshooting page names every
// message the code logs. It is a test-only package: docs/ holds no Go code.
//
// The check that troubleshooting.md names every validator message stays in
// internal/config (troubleshooting_test.go): it reads validate.go's own
// idioms, and whoever adds a message runs that package's tests.
package docs_test

import (
	"os"
	"path/filepath"
	"testing"
)

const (
	// moduleRoot is the repository root, seen from this directory.
	moduleRoot = ".."
	guideDir   = "operator-guide"
)

var samplesDir = filepath.Join(guideDir, "samples")

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
