package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// list runs go list over the module's packages.
func list(t *testing.T, args ...string) []pkg {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-json"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

const module = "github.com/pryv/pryv-tls/"

// TestImportGraph keeps the package layout honest (docs/decisions/0010).
func TestImportGraph(t *testing.T) {
	leaves := map[string]bool{ // import no internal package but another leaf
		"internal/certs": true, "internal/authdns": true, "internal/devpki": true,
		"internal/atrest": true, "internal/rotatehook": true, "internal/clusterca": true,
		"internal/atomicfile": true, "internal/apijson": true,
	}
	configUsers := map[string]bool{"internal/cli": true, "internal/daemon": true}
	testHarness := map[string]bool{ // imported by _test.go files only
		"internal/acme/acmetest": true, "internal/platformdb/platformdbtest": true, "internal/testutil": true,
	}
	pkgs := list(t, "../../internal/...")
	seen := map[string]bool{}
	for _, p := range pkgs {
		seen[strings.TrimPrefix(p.ImportPath, module)] = true
	}
	// A renamed package must not drop out of its rule unnoticed.
	for _, named := range []map[string]bool{leaves, configUsers, testHarness} {
		for name := range named {
			if !seen[name] {
				t.Errorf("TestImportGraph names %s, which is not a package: update the rule after a rename", name)
			}
		}
	}
	for _, p := range pkgs {
		name := strings.TrimPrefix(p.ImportPath, module)
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			if leaves[name] && !leaves[dep] {
				t.Errorf("%s is a leaf but imports %s, which is not one", name, dep)
			}
			if dep == "internal/config" && !configUsers[name] {
				t.Errorf("%s imports internal/config: only cli and daemon read the configuration; take an Options struct", name)
			}
			if testHarness[dep] && !testHarness[name] {
				t.Errorf("%s (non-test code) imports the test harness %s", name, dep)
			}
		}
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, "github.com/prometheus/") && name != "internal/metrics" && name != "internal/daemon" {
				t.Errorf("%s imports %s: only internal/metrics (and the daemon wiring it) know Prometheus; expose counters or hooks", name, imp)
			}
		}
	}
}

// TestBinaryDeps: the binary must not pull lego's DNS providers (the module
// root imports them all; two of their SDKs are refused by the module proxy).
func TestBinaryDeps(t *testing.T) {
	for _, p := range list(t, ".") {
		for _, d := range p.Deps {
			if strings.HasPrefix(d, "github.com/go-acme/lego/v5/providers/") || d == "github.com/go-acme/lego/v5" {
				t.Errorf("the binary depends on %s", d)
			}
		}
	}
}
