package e2e

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var demoBuild struct {
	once sync.Once
	path string
	out  []byte
	err  error
}

// demoBinary is pryv-tls built with -tags demo, the build that links Pebble
// for `demo --acme` (decision 0028), next to the production binary the other
// tests run; built once, by the first test that needs it.
func demoBinary(t *testing.T) string {
	t.Helper()
	demoBuild.once.Do(func() {
		demoBuild.path = filepath.Join(filepath.Dir(binary), "pryv-tls-demo")
		demoBuild.out, demoBuild.err = exec.Command("go", "build", "-tags", "demo", "-o", demoBuild.path, "../cmd/pryv-tls").CombinedOutput()
	})
	if demoBuild.err != nil {
		t.Fatalf("go build -tags demo: %v\n%s", demoBuild.err, demoBuild.out)
	}
	return demoBuild.path
}

// TestDemoACMENotInProduction: the binary built without tags carries no
// Pebble (its module list says so) and `demo --acme` tells how to run it.
func TestDemoACMENotInProduction(t *testing.T) {
	mods, err := exec.Command("go", "version", "-m", binary).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	for _, m := range []string{"github.com/letsencrypt/pebble", "github.com/letsencrypt/challtestsrv"} {
		if strings.Contains(string(mods), m) {
			t.Errorf("the production binary links %s; only a -tags demo build may (decision 0028)", m)
		}
	}
	cmd := exec.Command(binary, "demo", "--acme", "--dir", t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("demo --acme on the production build: %v, want exit code 2", err)
	}
	if want := "go run -tags demo ./cmd/pryv-tls demo --acme"; !strings.Contains(stderr.String(), want) {
		t.Errorf("demo --acme said %q, want the command %q", stderr.String(), want)
	}
	// The same check on the demo build finds Pebble, or it proves nothing.
	demoMods, err := exec.Command("go", "version", "-m", demoBinary(t)).Output()
	if err != nil || !strings.Contains(string(demoMods), "github.com/letsencrypt/pebble") {
		t.Errorf("the -tags demo build's modules (%v) lack Pebble", err)
	}
}
