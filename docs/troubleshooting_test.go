package docs_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestTroubleshootingCoversLogs checks every error and warning the code logs
// (slog's Error/Warn with a constant message) is on the troubleshooting page.
func TestTroubleshootingCoversLogs(t *testing.T) {
	page := readDoc(t, filepath.Join(guideDir, "troubleshooting.md"))
	// Not operator-facing: test servers, the demo.
	skip := []string{"devpki", filepath.Join("acme", "pebbledev"), filepath.Join("acme", "acmetest"), filepath.Join("cli", "demo.go"), filepath.Join("cli", "demo_acme.go")}
	logRE := regexp.MustCompile(`\.(?:Error|Warn)\("([^"]+)"`)
	root := filepath.Join(moduleRoot, "internal")
	n := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if slices.ContainsFunc(skip, func(s string) bool { return rel == s || strings.HasPrefix(rel, s+string(filepath.Separator)) }) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		for _, m := range logRE.FindAllStringSubmatch(readDoc(t, path), -1) {
			n++
			if !strings.Contains(page, m[1]) {
				t.Errorf("internal/%s logs %q; add it to docs/operator-guide/troubleshooting.md with its meaning and fix", rel, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 20 {
		t.Fatalf("found only %d log messages under internal/; the scan is broken", n)
	}
}
