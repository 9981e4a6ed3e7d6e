package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteFileFreshMode: an override or bundle written over an existing,
// wider file ends up with the mode asked for (os.WriteFile kept 0644), the
// whole new content, and no temp file beside it; a directory that cannot
// take the file is an error naming the path, and the old file is intact.
func TestWriteFileFreshMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, clusterOverrideName)
	if err := os.WriteFile(p, []byte("old: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(p, []byte("auth: {adminAccessKey: k}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode %o, want 600", got)
	}
	if b, _ := os.ReadFile(p); string(b) != "auth: {adminAccessKey: k}\n" {
		t.Errorf("content %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left beside it: %v", ents)
	}
	err = writeFile(filepath.Join(dir, "missing", "x.yml"), []byte("x"), 0o600)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "missing", "x.yml")) {
		t.Errorf("into a missing directory: %v", err)
	}
}
