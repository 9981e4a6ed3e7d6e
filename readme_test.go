// Package pryvtls_test holds checks on the repository itself, not on one
// package: the README's package map must name every package under internal/,
// so a newcomer's first look at the tree is a complete one.
package pryvtls_test

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// packageMapLine matches one entry of the map: the path, then spaces, then
// what the package owns.
var packageMapLine = regexp.MustCompile(`^(internal/[a-z0-9/]+|cmd/[a-z0-9-]+/?|e2e/|docs/decisions/|bench/)\s+\S`)

func TestReadmePackageMapIsComplete(t *testing.T) {
	listed := readmePackageMap(t)
	var missing []string
	for _, pkg := range internalPackages(t) {
		if !listed[pkg] {
			missing = append(missing, pkg)
		}
	}
	if len(missing) > 0 {
		t.Errorf("README.md \"Development\" package map lacks %d package(s): %s\n"+
			"add a line `<path>  <what it owns>` for each inside the map's code block",
			len(missing), strings.Join(missing, ", "))
	}
	for pkg := range listed {
		if !strings.HasPrefix(pkg, "internal/") {
			continue
		}
		if _, err := os.Stat(pkg); err != nil {
			t.Errorf("README.md package map names %s, which does not exist any more", pkg)
		}
	}
}

// readmePackageMap returns the paths listed in the first code block after
// the "## Development" heading.
func readmePackageMap(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open("README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	listed := map[string]bool{}
	inSection, inBlock := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			if inSection && len(listed) > 0 {
				return listed
			}
			inSection = line == "## Development"
		case inSection && strings.HasPrefix(line, "```"):
			if inBlock {
				return listed
			}
			inBlock = true
		case inBlock:
			if m := packageMapLine.FindStringSubmatch(line); m != nil {
				listed[strings.TrimSuffix(m[1], "/")] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(listed) == 0 {
		t.Fatal(`README.md: no package map found (a code block after "## Development")`)
	}
	return listed
}

// internalPackages lists every directory under internal/ holding a non-test
// Go file.
func internalPackages(t *testing.T) []string {
	t.Helper()
	set := map[string]bool{}
	err := filepath.WalkDir("internal", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			set[filepath.ToSlash(filepath.Dir(path))] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pkgs := make([]string, 0, len(set))
	for p := range set {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	return pkgs
}
