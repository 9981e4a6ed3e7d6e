package cluster

import (
	"bytes"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// needOpenSSL returns openssl's path; CI installs it, so there a missing
// openssl fails the test instead of skipping it.
func needOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is required in CI (.ci/run installs it) but is not on PATH")
		}
		t.Skip("openssl not installed")
	}
	return p
}

func openssl(t *testing.T, bin string, args ...string) {
	t.Helper()
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// coreCA makes a cluster CA the way open-pryv.io's bootstrap
// (components/business/src/bootstrap/ClusterCA.ts) does: a SEC 1 P-256 key
// from "ecparam -genkey -noout", a certificate from "req -x509 -new" with
// CN pryv-cluster-ca for 3650 days and openssl.cnf's default extensions,
// and the serial file ca.srl its node certificates leave behind. extra is
// appended to the req command (e.g. -addext).
func coreCA(t *testing.T, extra ...string) string {
	t.Helper()
	bin := needOpenSSL(t)
	dir := filepath.Join(t.TempDir(), "ca")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key, crt := filepath.Join(dir, "ca.key"), filepath.Join(dir, "ca.crt")
	openssl(t, bin, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	openssl(t, bin, append([]string{"req", "-x509", "-new", "-key", key, "-days", "3650", "-out", crt, "-subj", "/CN=pryv-cluster-ca"}, extra...)...)
	if err := os.WriteFile(filepath.Join(dir, "ca.srl"), []byte("1A2B3C\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

// TestCoreCA: a CA made by open-pryv.io's bootstrap is used as it is, signs
// node certificates that chain to its ca.crt, and its directory is left
// byte for byte as it was (no ca.pem, ca.srl untouched).
func TestCoreCA(t *testing.T) {
	t.Parallel()
	dir := coreCA(t)
	if b, _ := os.ReadFile(filepath.Join(dir, "ca.key")); !bytes.Contains(b, []byte("BEGIN EC PRIVATE KEY")) {
		t.Fatalf("openssl did not write a SEC 1 key:\n%s", b)
	}
	before := snapshot(t, dir)

	for _, load := range []func(string) (*CA, error){LoadCA, LoadOrCreateCA} {
		ca, err := load(dir)
		if err != nil {
			t.Fatalf("loading the core's CA: %v", err)
		}
		if ca.CertFile() != filepath.Join(dir, CoreCACertName) {
			t.Errorf("CertFile = %s, want the core's ca.crt", ca.CertFile())
		}
		if ca.Certificate().Subject.CommonName != "pryv-cluster-ca" {
			t.Errorf("CA subject %q", ca.Certificate().Subject)
		}
		certPEM, _, err := ca.IssueNode("core2", []string{"core2.mc.example.com"}, loopback, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := parseCertPEM(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		crt, _ := os.ReadFile(filepath.Join(dir, CoreCACertName))
		if !pool.AppendCertsFromPEM(crt) {
			t.Fatal("ca.crt does not parse")
		}
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "core2.mc.example.com", KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("node certificate does not chain to ca.crt for %v: %v", usage, err)
			}
		}
	}

	after := snapshot(t, dir)
	if len(after) != len(before) {
		t.Errorf("CA directory files changed: before %d, after %d", len(before), len(after))
	}
	for name, b := range before {
		if !bytes.Equal(after[name], b) {
			t.Errorf("%s was modified", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, CACertName)); err == nil {
		t.Error("a ca.pem was written beside the core's ca.crt")
	}
}

// TestCoreCARefuses: the checks a CA from another program must pass.
func TestCoreCARefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup func(t *testing.T) string
		want  []string
	}{
		{"NotACA", func(t *testing.T) string {
			return coreCA(t, "-addext", "basicConstraints=critical,CA:FALSE")
		}, []string{"ca.crt", "is not a CA certificate", "CA:TRUE"}},
		{"KeyUsageWithoutCertSign", func(t *testing.T) string {
			return coreCA(t, "-addext", "keyUsage=critical,digitalSignature")
		}, []string{"ca.crt", "without keyCertSign"}},
		{"WorldReadableKey", func(t *testing.T) string {
			dir := coreCA(t)
			if err := os.Chmod(filepath.Join(dir, "ca.key"), 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}, []string{"ca.key", "chmod 600"}},
		{"KeyOfAnotherCA", func(t *testing.T) string {
			dir, other := coreCA(t), coreCA(t)
			b, _ := os.ReadFile(filepath.Join(other, "ca.key"))
			if err := os.WriteFile(filepath.Join(dir, "ca.key"), b, 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}, []string{"does not match certificate", "ca.crt"}},
		{"BothCAsDiffer", func(t *testing.T) string {
			dir := coreCA(t)
			_, ours := newCA(t)
			b, _ := os.ReadFile(filepath.Join(ours, CACertName))
			if err := os.WriteFile(filepath.Join(dir, CACertName), b, 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}, []string{"ca.pem", "ca.crt", "not the same certificate"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := tc.setup(t)
			before := snapshot(t, dir)
			for _, load := range []func(string) (*CA, error){LoadCA, LoadOrCreateCA} {
				_, err := load(dir)
				if err == nil {
					t.Fatal("loaded")
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
			}
			after := snapshot(t, dir)
			for name, b := range before {
				if !bytes.Equal(after[name], b) {
					t.Errorf("%s was modified by a refused load", name)
				}
			}
			if len(after) != len(before) {
				t.Errorf("a refused load created files: %d -> %d", len(before), len(after))
			}
		})
	}
}

// TestCoreCASameCertTwice: ca.pem beside ca.crt is fine when it is the same
// certificate (an operator copied it).
func TestCoreCASameCertTwice(t *testing.T) {
	t.Parallel()
	dir := coreCA(t)
	b, _ := os.ReadFile(filepath.Join(dir, CoreCACertName))
	if err := os.WriteFile(filepath.Join(dir, CACertName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(dir); err != nil {
		t.Fatal(err)
	}
}
