package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/devpki"
)

const mvDomain = "pryv.example.com"

// mvTree copies testdata/v1/tree into a fresh PRYV_CONF_ROOT.
func mvTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "pryv-conf-root")
	src := filepath.Join("testdata", "v1", "tree")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := filepath.Join(root, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func mvSecret(root string) string { return filepath.Join(root, "pryv", "nginx", "conf", "secret") }

func mvSSLConfig(root string) string {
	return filepath.Join(root, "config-leader", "ssl", "conf", "ssl-certificate.yml")
}

// mvIssue makes a throwaway certificate (leaf + intermediate) for names.
func mvIssue(t *testing.T, names []string, notBefore, notAfter time.Time) *devpki.Issued {
	t.Helper()
	ca, err := devpki.NewCA("migrate-v1 test root")
	if err != nil {
		t.Fatal(err)
	}
	ica, err := ca.NewIntermediate("migrate-v1 test intermediate")
	if err != nil {
		t.Fatal(err)
	}
	is, err := ica.Issue(devpki.Leaf{Names: names, NotBefore: notBefore, NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	return is
}

// mvWriteCert writes the pair where v1's renew-ssl-certificate left it.
func mvWriteCert(t *testing.T, root, domain string, chain, key []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(mvSecret(root), domain+"-bundle.crt"), chain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mvSecret(root), domain+"-key.pem"), key, 0o600); err != nil {
		t.Fatal(err)
	}
}

// mvGoodTree is a v1 tree holding a wildcard certificate for mvDomain.
func mvGoodTree(t *testing.T) (string, *devpki.Issued) {
	t.Helper()
	root := mvTree(t)
	is := mvIssue(t, []string{"*." + mvDomain, mvDomain}, time.Time{}, time.Time{})
	mvWriteCert(t, root, mvDomain, is.FullChain, is.KeyPEM)
	return root, is
}

// mvSnapshot records every entry of the tree: kind, mode, mtime, size and
// content hash (or link target), after backdating every mtime so that even
// a rewrite with the same bytes would show.
func mvSnapshot(t *testing.T, root string, backdate bool) map[string]string {
	t.Helper()
	snap := map[string]string{}
	if _, err := os.Lstat(root); errors.Is(err, fs.ErrNotExist) {
		return snap
	}
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if backdate && d.Type()&fs.ModeSymlink == 0 {
			if err := os.Chtimes(p, old, old); err != nil {
				return err
			}
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d %d", fi.Mode(), fi.ModTime().UnixNano(), fi.Size())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			desc += " " + hex.EncodeToString(sum[:])
		}
		snap[p] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// mvRun runs "pryv-tls migrate-v1 args..." through Main and checks that the
// v1 tree at root (if any) is byte-, mode- and mtime-identical afterwards.
func mvRun(t *testing.T, root string, args ...string) (int, string, string) {
	t.Helper()
	var before map[string]string
	if root != "" {
		before = mvSnapshot(t, root, true)
	}
	var stdout, stderr bytes.Buffer
	code := Main(append([]string{"migrate-v1"}, args...), &stdout, &stderr)
	if root != "" {
		after := mvSnapshot(t, root, false)
		for p, b := range before {
			if a, ok := after[p]; !ok {
				t.Errorf("migrate-v1 removed %s", p)
			} else if a != b {
				t.Errorf("migrate-v1 changed %s:\n  before %s\n  after  %s", p, b, a)
			}
		}
		for p := range after {
			if _, ok := before[p]; !ok {
				t.Errorf("migrate-v1 created %s in the v1 tree", p)
			}
		}
	}
	return code, stdout.String(), stderr.String()
}

// mvCore is a stand-in for the running core's control socket: it answers
// POST /certs as admin.Local does and records what it was sent.
type mvCore struct {
	config string // a configuration file whose control.socket is this server
	mu     sync.Mutex
	got    []admin.ImportRequest
}

func (c *mvCore) requests() []admin.ImportRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

func startMVCore(t *testing.T) *mvCore {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "c.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	core := &mvCore{config: filepath.Join(dir, "override.yml")}
	if err := os.WriteFile(core.config, []byte("control:\n  socket: "+sock+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /certs", func(w http.ResponseWriter, r *http.Request) {
		var req admin.ImportRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, `{"error":{"id":"invalid-request-structure","message":"not JSON"}}`, http.StatusBadRequest)
			return
		}
		core.mu.Lock()
		core.got = append(core.got, req)
		core.mu.Unlock()
		b, _ := pem.Decode([]byte(req.Chain))
		leaf, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			http.Error(w, `{"error":{"id":"invalid-certificate","message":"bad chain"}}`, http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(admin.CertInfo{
			Hostname: strings.ToLower(req.Hostname), IssuedAt: leaf.NotBefore, ExpiresAt: leaf.NotAfter,
			DaysUntilExpiry: int(time.Until(leaf.NotAfter).Hours() / 24), Names: leaf.DNSNames,
			Issuer: leaf.Issuer.CommonName, Serial: leaf.SerialNumber.Text(16), Source: req.Source,
		})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return core
}

// mvBlock cuts the v2 YAML out of migrate-v1's output: from "letsEncrypt:"
// to the first blank line.
func mvBlock(t *testing.T, out string) string {
	t.Helper()
	i := strings.Index(out, "\nletsEncrypt:\n")
	if i < 0 {
		t.Fatalf("no letsEncrypt: block in the output:\n%s", out)
	}
	block := out[i+1:]
	if j := strings.Index(block, "\n\n"); j >= 0 {
		block = block[:j+1]
	}
	return block
}

// mvKeygen is a real "pryv-tls keygen" output.
func mvKeygen(t *testing.T) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := Main([]string{"keygen"}, &out, &errb); code != 0 {
		t.Fatalf("keygen: %d %s", code, errb.String())
	}
	return strings.TrimSpace(out.String())
}

func mvLoadBlock(t *testing.T, block string) *config.Config {
	t.Helper()
	if !strings.Contains(block, "'"+atRestKeyPlaceholder+"'") {
		t.Fatalf("the block has no atRestKey placeholder:\n%s", block)
	}
	cfg, err := config.LoadBytes("printed.yml", []byte(strings.Replace(block, atRestKeyPlaceholder, mvKeygen(t), 1)))
	if err != nil {
		t.Fatalf("the printed block does not load: %v\n%s", err, block)
	}
	return cfg
}

var mvReplacements = []string{
	"renew-ssl-certificate", "POST /system/admin/certs/force-renew",
	"ensure-permissions", "0600",
	"restart-config-follower", "restart-pryv", "onRotateScript",
	"pryvio_ssl_certificate",
}

func TestMigrateV1DryRun(t *testing.T) {
	root, _ := mvGoodTree(t)
	core := startMVCore(t)
	for _, args := range [][]string{
		{"--conf-root", root, "--dry-run"},
		{"--dry-run", "--conf-root", root, "--config", core.config},
	} {
		code, out, errs := mvRun(t, root, args...)
		if code != exitOK {
			t.Fatalf("%v: exit %d\n%s", args, code, errs)
		}
		cfg := mvLoadBlock(t, mvBlock(t, out))
		if cfg.DNS.Domain != mvDomain || cfg.LetsEncrypt.Email != "ops@pryv.example.com" || cfg.LetsEncrypt.Staging {
			t.Errorf("block: domain %q email %q staging %t", cfg.DNS.Domain, cfg.LetsEncrypt.Email, cfg.LetsEncrypt.Staging)
		}
		for _, want := range append([]string{
			"dry run: *." + mvDomain + " not imported",
			"domain " + mvDomain + " (from the only *-bundle.crt",
			"acme.email            ops@pryv.example.com  -> letsEncrypt.email",
			"acme.isProduction     true  -> letsEncrypt.staging: false (directory https://acme-v02.api.letsencrypt.org/directory)",
			"acme.dnsRebootWaitMs  180000",
			"not used (no v2 equivalent): leader, acme.dnsRetryWaitMs, acme.dnsRetriesCount, logs",
			"stored in v2 as *." + mvDomain,
		}, mvReplacements...) {
			if !strings.Contains(out, want) {
				t.Errorf("%v: output lacks %q:\n%s", args, want, out)
			}
		}
		if strings.Contains(out, "PRIVATE KEY") {
			t.Errorf("the output shows the key")
		}
	}
	if got := core.requests(); len(got) != 0 {
		t.Fatalf("a dry run sent %d import(s)", len(got))
	}
}

func TestMigrateV1Import(t *testing.T) {
	for _, c := range []struct {
		name, hostname string
		names          []string
	}{
		{"wildcard and apex", "*." + mvDomain, []string{"*." + mvDomain, mvDomain}},
		{"wildcard only", "*." + mvDomain, []string{"*." + strings.ToUpper(mvDomain)}},
		{"apex only", mvDomain, []string{mvDomain, "www." + mvDomain}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := mvTree(t)
			is := mvIssue(t, c.names, time.Time{}, time.Time{})
			mvWriteCert(t, root, mvDomain, is.FullChain, is.KeyPEM)
			core := startMVCore(t)
			code, out, errs := mvRun(t, root, "--conf-root", root, "--config", core.config)
			if code != exitOK {
				t.Fatalf("exit %d\n%s", code, errs)
			}
			got := core.requests()
			if len(got) != 1 {
				t.Fatalf("%d imports, want 1", len(got))
			}
			r := got[0]
			if r.Hostname != c.hostname || r.Chain != string(is.FullChain) || r.Key != string(is.KeyPEM) || r.Source != certstore.SourceImport {
				t.Fatalf("core received hostname %q source %q, chain equal %t, key equal %t; want %q %q",
					r.Hostname, r.Source, r.Chain == string(is.FullChain), r.Key == string(is.KeyPEM), c.hostname, certstore.SourceImport)
			}
			want := fmt.Sprintf("stored %s in PlatformDB (serial %s", c.hostname, is.Cert.SerialNumber.Text(16))
			if !strings.Contains(out, want) {
				t.Fatalf("output lacks %q:\n%s", want, out)
			}
			mvLoadBlock(t, mvBlock(t, out))
		})
	}
}

func TestMigrateV1CoreUnreachable(t *testing.T) {
	root, _ := mvGoodTree(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "override.yml")
	if err := os.WriteFile(conf, []byte("control:\n  socket: "+filepath.Join(dir, "none.sock")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := mvRun(t, root, "--conf-root", root, "--config", conf)
	if code != exitFailed {
		t.Fatalf("exit %d, want %d\n%s", code, exitFailed, errs)
	}
	if !strings.Contains(errs, "cannot reach the running core") || !strings.Contains(errs, "none.sock") {
		t.Errorf("stderr does not say the core is unreachable:\n%s", errs)
	}
	mvLoadBlock(t, mvBlock(t, out))
	for _, want := range mvReplacements {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestMigrateV1Settings(t *testing.T) {
	for _, c := range []struct {
		name, yml string
		timeout   time.Duration
		skip      bool
		note      string
		staging   bool
	}{
		{"fixture", "", 3 * time.Minute, false, "propagationTimeout: 3m\n                          (v1's wait, rounded up", false},
		{"real layout, staging", "leader: {url: 'http://pryvio_leader:9000'}\nacme: {isProduction: false, email: a@b.example, dnsRebootWaitMs: 10000}\n", 2 * time.Minute, false, "acme.isProduction     false  -> letsEncrypt.staging: true (directory https://acme-staging-v02.api.letsencrypt.org/directory)", true},
		{"isProduction a string, as v1's JS config took it", "acme: {isProduction: 'true', email: a@b.example}\n", 2 * time.Minute, false, "acme.isProduction     true  -> letsEncrypt.staging: false", false},
		{"isProduction unset: v1's default, false", "acme: {email: a@b.example}\n", 2 * time.Minute, false, "acme.isProduction     not set (false, v1's default)  -> letsEncrypt.staging: true", true},
		{"no acme", "email: a@b.example\n", 2 * time.Minute, false, "not set  -> letsEncrypt.dns01.propagationTimeout: 2m\n                          (not set: the default)", true},
		{"small wait", "email: a@b.example\nacme: {dnsRebootWaitMs: 10000, skipDnsChecks: true}\n", 2 * time.Minute, true, "(v1 slept 10s after restarting its DNS; v2 restarts nothing", true},
		{"exactly 2m", "email: a@b.example\nacme: {dnsRebootWaitMs: 120000}\n", 2 * time.Minute, false, "(v1 slept 2m0s after", true},
		{"rounded up", "email: a@b.example\nacme: {dnsRebootWaitMs: 150500}\n", 2*time.Minute + 31*time.Second, false, "150500  -> letsEncrypt.dns01.propagationTimeout: 2m31s", true},
		{"hours", "email: a@b.example\nacme: {dnsRebootWaitMs: 5400000}\n", time.Hour, false, "propagationTimeout: 1h\n                          (capped at 1h)", true},
		{"negative", "email: a@b.example\nacme: {dnsRebootWaitMs: -5}\n", 2 * time.Minute, false, "(no wait: the default)", true},
		{"strings, as v1's JS config took them", "email: 'a@b.example'\nacme: {dnsRebootWaitMs: '300000', skipDnsChecks: 'true'}\n", 5 * time.Minute, true, "propagationTimeout: 5m\n", true},
		{"null acme", "email: a@b.example\nacme:\n", 2 * time.Minute, false, "(not set: the default)", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			root, _ := mvGoodTree(t)
			if c.yml != "" {
				if err := os.WriteFile(mvSSLConfig(root), []byte(c.yml), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			code, out, errs := mvRun(t, root, "--conf-root", root, "--dry-run")
			if code != exitOK {
				t.Fatalf("exit %d\n%s", code, errs)
			}
			cfg := mvLoadBlock(t, mvBlock(t, out))
			le := cfg.LetsEncrypt
			if !le.Enabled || !le.CertRenewer || !cfg.DNS.Active || cfg.DNS.Domain != mvDomain {
				t.Errorf("block: enabled %t certRenewer %t dns.active %t dns.domain %q", le.Enabled, le.CertRenewer, cfg.DNS.Active, cfg.DNS.Domain)
			}
			if le.DNS01.PropagationTimeout.Std() != c.timeout || le.DNS01.SkipPropagationCheck != c.skip {
				t.Errorf("dns01: %s %t, want %s %t", le.DNS01.PropagationTimeout, le.DNS01.SkipPropagationCheck, c.timeout, c.skip)
			}
			if !strings.Contains(out, c.note) {
				t.Errorf("output lacks %q:\n%s", c.note, out)
			}
			if le.Staging != c.staging {
				t.Errorf("letsEncrypt.staging %t, want %t", le.Staging, c.staging)
			}
			if plans := cfg.Plans(); len(plans) != 1 || plans[0].Challenge != config.ChallengeDNS01 {
				t.Errorf("plans %+v, want one DNS-01 wildcard", plans)
			}
		})
	}
}

func TestMigrateV1BadSettings(t *testing.T) {
	for _, c := range []struct{ name, yml, want string }{
		{"missing email", "acme:\n  skipDnsChecks: false\n", "no email"},
		{"v1's placeholder", "leader: {}\nacme: {email: REPLACE_ME, isProduction: true}\n", "acme.email is v1's placeholder REPLACE_ME"},
		{"acme.email a list", "acme: {email: [a@b.example]}\n", "acme.email: expected an address"},
		{"acme.email not an address", "acme: {email: ops}\n", `letsEncrypt.email: "ops" is not an email address`},
		{"isProduction not a bool", "acme: {email: a@b.example, isProduction: sometimes}\n", "acme.isProduction: expected true or false"},
		{"empty file", "", "no email"},
		{"null email", "email:\nacme: {}\n", "no email"},
		{"blank email", "email: '  '\n", "no email"},
		{"email not an address", "email: ops at example\n", `letsEncrypt.email: "ops at example" is not an email address`},
		{"email a list", "email: [a@b.example]\n", "email: expected an address"},
		{"skipDnsChecks not a bool", "email: a@b.example\nacme: {skipDnsChecks: maybe}\n", "acme.skipDnsChecks: expected true or false"},
		{"dnsRebootWaitMs not a number", "email: a@b.example\nacme: {dnsRebootWaitMs: 10s}\n", "acme.dnsRebootWaitMs: expected a number of milliseconds"},
		{"acme not a mapping", "email: a@b.example\nacme: yes please\n", "acme: expected a mapping"},
		{"not YAML", "email: [a\n", "ssl-certificate.yml"},
		{"not a mapping", "- email\n", "expected a mapping"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root, _ := mvGoodTree(t)
			if err := os.WriteFile(mvSSLConfig(root), []byte(c.yml), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, errs := mvRun(t, root, "--conf-root", root, "--dry-run")
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitUsage, out, errs)
			}
			if !strings.Contains(errs, c.want) {
				t.Errorf("stderr lacks %q:\n%s", c.want, errs)
			}
			if out != "" {
				t.Errorf("printed a configuration for a refused input:\n%s", out)
			}
		})
	}
}

func TestMigrateV1DomainDiscovery(t *testing.T) {
	other := "other.example.org"
	for _, c := range []struct {
		name    string
		domains []string // bundles in the secret directory
		flag    string
		code    int
		want    string
	}{
		{"one bundle", []string{mvDomain}, "", exitOK, "domain " + mvDomain + " (from the only *-bundle.crt"},
		{"one bundle and --domain", []string{mvDomain}, mvDomain, exitOK, "domain " + mvDomain + " (from --domain)"},
		{"two bundles", []string{mvDomain, other}, "", exitUsage, "--domain DOMAIN"},
		{"two bundles and --domain", []string{mvDomain, other}, other, exitOK, "domain " + other + " (from --domain)"},
		{"no bundle", nil, "", exitUsage, "no *-bundle.crt in"},
		{"--domain with no such bundle", []string{mvDomain}, other, exitUsage, "pryv/nginx/conf/secret/" + other + "-bundle.crt is missing"},
		{"--domain a wildcard", []string{mvDomain}, "*." + mvDomain, exitUsage, "is not a domain name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := mvTree(t)
			for _, d := range c.domains {
				is := mvIssue(t, []string{"*." + d, d}, time.Time{}, time.Time{})
				mvWriteCert(t, root, d, is.FullChain, is.KeyPEM)
			}
			args := []string{"--conf-root", root, "--dry-run"}
			if c.flag != "" {
				args = append(args, "--domain", c.flag)
			}
			code, out, errs := mvRun(t, root, args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, c.code, out, errs)
			}
			if !strings.Contains(out+errs, c.want) {
				t.Errorf("output lacks %q:\n%s%s", c.want, out, errs)
			}
			if code == exitOK {
				want := c.flag
				if want == "" {
					want = c.domains[0]
				}
				if cfg := mvLoadBlock(t, mvBlock(t, out)); cfg.DNS.Domain != want {
					t.Errorf("dns.domain %q, want %q", cfg.DNS.Domain, want)
				}
			}
		})
	}
}

func TestMigrateV1WrongLayout(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, root string) // on a good tree
		want  string
	}{
		{"no such directory", func(t *testing.T, root string) { mvMust(t, os.RemoveAll(root)) }, "no such file or directory"},
		{"a file, not a directory", func(t *testing.T, root string) {
			mvMust(t, os.RemoveAll(root))
			mvMust(t, os.WriteFile(root, []byte("x"), 0o644))
		}, "is not a directory"},
		{"no config-leader (a follower, or a v2 core)", func(t *testing.T, root string) {
			mvMust(t, os.RemoveAll(filepath.Join(root, "config-leader")))
			mvMust(t, os.WriteFile(filepath.Join(root, "override-config.yml"), []byte("dnsLess: {isActive: true}\n"), 0o644))
		}, "config-leader/ssl/conf/ssl-certificate.yml is missing"},
		{"no ssl-certificate.yml", func(t *testing.T, root string) { mvMust(t, os.Remove(mvSSLConfig(root))) }, "config-leader/ssl/conf/ssl-certificate.yml is missing"},
		{"ssl-certificate.yml a directory", func(t *testing.T, root string) {
			mvMust(t, os.Remove(mvSSLConfig(root)))
			mvMust(t, os.Mkdir(mvSSLConfig(root), 0o755))
		}, "ssl-certificate.yml is not a regular file"},
		{"no secret directory", func(t *testing.T, root string) { mvMust(t, os.RemoveAll(filepath.Join(root, "pryv"))) }, "pryv/nginx/conf/secret/ is missing"},
		{"secret a file", func(t *testing.T, root string) {
			mvMust(t, os.RemoveAll(mvSecret(root)))
			mvMust(t, os.WriteFile(mvSecret(root), nil, 0o644))
		}, "pryv/nginx/conf/secret/ is not a directory"},
		{"no key", func(t *testing.T, root string) {
			mvMust(t, os.Remove(filepath.Join(mvSecret(root), mvDomain+"-key.pem")))
		}, "pryv/nginx/conf/secret/" + mvDomain + "-key.pem is missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root, _ := mvGoodTree(t)
			c.setup(t, root)
			code, out, errs := mvRun(t, root, "--conf-root", root, "--dry-run")
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\n%s%s", code, exitUsage, out, errs)
			}
			for _, want := range []string{c.want, "A Pryv.io v1 configuration root", "pryv/nginx/conf/secret/DOMAIN-bundle.crt"} {
				if !strings.Contains(errs, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errs)
				}
			}
			if out != "" {
				t.Errorf("printed something for a refused tree:\n%s", out)
			}
		})
	}
}

func TestMigrateV1BadCertificate(t *testing.T) {
	good := mvIssue(t, []string{"*." + mvDomain, mvDomain}, time.Time{}, time.Time{})
	other := mvIssue(t, []string{"*." + mvDomain, mvDomain}, time.Time{}, time.Time{})
	expired := mvIssue(t, []string{"*." + mvDomain, mvDomain}, time.Now().AddDate(0, -4, 0), time.Now().AddDate(0, -1, 0))
	elsewhere := mvIssue(t, []string{"*.elsewhere.example.net"}, time.Time{}, time.Time{})
	cut := good.FullChain[:len(good.FullChain)-40]
	for _, c := range []struct {
		name       string
		chain, key []byte
		want       string
	}{
		{"mismatched key", good.FullChain, other.KeyPEM, "the private key does not match the certificate"},
		{"expired", expired.FullChain, expired.KeyPEM, "expired on"},
		{"garbage certificate", []byte("not a certificate\n"), good.KeyPEM, "no PEM certificate found"},
		{"garbage key", good.FullChain, []byte("-----BEGIN NOTHING-----\n"), "no PEM private key found"},
		{"half-written chain", cut, good.KeyPEM, "incomplete PEM block"},
		{"another domain", elsewhere.FullChain, elsewhere.KeyPEM, "neither *." + mvDomain + " nor " + mvDomain},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := mvTree(t)
			mvWriteCert(t, root, mvDomain, c.chain, c.key)
			core := startMVCore(t)
			for _, args := range [][]string{
				{"--conf-root", root, "--dry-run"},
				{"--conf-root", root, "--config", core.config},
			} {
				code, out, errs := mvRun(t, root, args...)
				if code != exitFailed {
					t.Fatalf("%v: exit %d, want %d\n%s%s", args, code, exitFailed, out, errs)
				}
				for _, want := range []string{c.want, filepath.Join(mvSecret(root), mvDomain+"-bundle.crt")} {
					if !strings.Contains(errs, want) {
						t.Errorf("stderr lacks %q:\n%s", want, errs)
					}
				}
				if strings.Contains(errs, "PRIVATE KEY") && !strings.Contains(c.name, "garbage key") {
					t.Errorf("stderr shows the key")
				}
			}
			if got := core.requests(); len(got) != 0 {
				t.Fatalf("a bad certificate was sent to the core")
			}
		})
	}
}

// TestMigrateV1LeavesV1FilesUnchanged runs every path (dry run, import,
// unreachable core, refusals) over one tree; mvRun compares every entry's
// mode, mtime, size and content before and after each run.
func TestMigrateV1LeavesV1FilesUnchanged(t *testing.T) {
	root, _ := mvGoodTree(t)
	core := startMVCore(t)
	// A symlinked key, as some operators keep them, must stay a symlink.
	secret := mvSecret(root)
	mvMust(t, os.Rename(filepath.Join(secret, mvDomain+"-key.pem"), filepath.Join(secret, "real-key.pem")))
	mvMust(t, os.Symlink("real-key.pem", filepath.Join(secret, mvDomain+"-key.pem")))
	mvMust(t, os.Chmod(mvSSLConfig(root), 0o640))

	for _, args := range [][]string{
		{"--conf-root", root, "--dry-run"},
		{"--conf-root", root, "--config", core.config},
		{"--conf-root", root, "--config", core.config, "--domain", mvDomain},
		{"--conf-root", root, "--config", filepath.Join("testdata", "v1", "no-such.yml")},
		{"--conf-root", root, "--dry-run", "--domain", "missing.example.com"},
	} {
		mvRun(t, root, args...)
	}
	if got := core.requests(); len(got) != 2 {
		t.Fatalf("%d imports, want 2", len(got))
	}
	snap := mvSnapshot(t, root, false)
	if len(snap) < 10 {
		t.Fatalf("snapshot of %d entries: the tree is not what the test thinks", len(snap))
	}
}

func TestMigrateV1Usage(t *testing.T) {
	root, _ := mvGoodTree(t)
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no --conf-root", []string{"--dry-run"}, exitUsage, "--conf-root DIR is required"},
		{"import without --config", []string{"--conf-root", root}, exitUsage, "--config FILE is required"},
		{"operand", []string{"--conf-root", root, "--dry-run", "extra"}, exitUsage, `unexpected argument "extra"`},
		{"unknown flag", []string{"--conf-root", root, "--force"}, exitUsage, "flag provided but not defined"},
		{"bad config", []string{"--conf-root", root, "--config", filepath.Join("testdata", "v1", "tree", "config-leader", "ssl", "conf", "ssl-certificate.yml")}, exitUsage, "configuration is not valid"},
		{"help", []string{"-h"}, exitOK, "pryv-tls migrate-v1 --conf-root DIR [--domain DOMAIN] [--config FILE ...] [--dry-run]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := mvRun(t, root, c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, c.code, out, errs)
			}
			if !strings.Contains(errs, c.want) {
				t.Errorf("stderr lacks %q:\n%s", c.want, errs)
			}
		})
	}
	var out bytes.Buffer
	Main([]string{"help"}, &out, &out)
	if !strings.Contains(out.String(), "pryv-tls migrate-v1 --conf-root DIR") {
		t.Errorf("the usage text does not list migrate-v1:\n%s", out.String())
	}
}

func mvMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestMigrateV1SnapshotSeesRewrites checks the guard itself: a rewrite with
// the same bytes, or a mode change, shows in the snapshot.
func TestMigrateV1SnapshotSeesRewrites(t *testing.T) {
	root, is := mvGoodTree(t)
	key := filepath.Join(mvSecret(root), mvDomain+"-key.pem")
	before := mvSnapshot(t, root, true)
	mvMust(t, os.WriteFile(key, is.KeyPEM, 0o600))
	if after := mvSnapshot(t, root, false); after[key] == before[key] {
		t.Fatalf("a same-content rewrite went unseen: %s", after[key])
	}
	before = mvSnapshot(t, root, true)
	mvMust(t, os.Chmod(key, 0o644))
	mvMust(t, os.Chtimes(key, time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC), time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)))
	if after := mvSnapshot(t, root, false); after[key] == before[key] {
		t.Fatalf("a mode change went unseen: %s", after[key])
	}
}

// TestMigrateV1Layouts reads the two forms of ssl-certificate.yml: v1's own
// (the email under acme:, beside leader:) and the legacy top-level email;
// and checks acme.isProduction against the certificate in hand.
func TestMigrateV1Layouts(t *testing.T) {
	legacy, err := os.ReadFile(filepath.Join("testdata", "v1", "ssl-certificate-legacy.yml"))
	mvMust(t, err)
	for _, c := range []struct {
		name, yml string // "" keeps the tree's fixture (v1's layout)
		issuer    string // the intermediate's name
		email     string
		staging   bool
		want      []string
		not       []string
	}{
		{"v1's layout", "", "R11", "ops@pryv.example.com", false,
			[]string{"acme.email            ops@pryv.example.com", "not used (no v2 equivalent): leader, acme.dnsRetryWaitMs"},
			[]string{"WARNING"}},
		{"legacy top-level email", string(legacy), "R11", "ops@pryv.example.com", true,
			[]string{"    email                 ops@pryv.example.com  -> letsEncrypt.email", "not set (false, v1's default)", "WARNING: v1 ordered from Let's Encrypt's STAGING directory", `"R11"`},
			nil},
		{"both: acme.email is what v1 reads", "email: old@pryv.example.com\nacme: {email: new@pryv.example.com, isProduction: true}\n", "R11", "new@pryv.example.com", false,
			[]string{"acme.email            new@pryv.example.com", "not used (no v2 equivalent): email (v1 reads acme.email)"},
			[]string{"old@pryv.example.com"}},
		{"staging, with a staging certificate", "acme: {email: a@b.example, isProduction: false}\n", "(STAGING) Ersatz Edamame E1", "a@b.example", true,
			[]string{"(a staging certificate, as v1 ordered it: set staging: false for trusted ones)"},
			[]string{"WARNING"}},
		{"production, with a staging certificate", "acme: {email: a@b.example, isProduction: true}\n", "(STAGING) Ersatz Edamame E1", "a@b.example", false,
			[]string{`WARNING: this certificate is from Let's Encrypt's staging CA ("(STAGING) Ersatz Edamame E1")`}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := mvTree(t)
			ca, err := devpki.NewCA("migrate-v1 test root")
			mvMust(t, err)
			ica, err := ca.NewIntermediate(c.issuer)
			mvMust(t, err)
			is, err := ica.Issue(devpki.Leaf{Names: []string{"*." + mvDomain, mvDomain}})
			mvMust(t, err)
			mvWriteCert(t, root, mvDomain, is.FullChain, is.KeyPEM)
			if c.yml != "" {
				mvMust(t, os.WriteFile(mvSSLConfig(root), []byte(c.yml), 0o644))
			}
			code, out, errs := mvRun(t, root, "--conf-root", root, "--dry-run")
			if code != exitOK {
				t.Fatalf("exit %d\n%s", code, errs)
			}
			cfg := mvLoadBlock(t, mvBlock(t, out))
			if cfg.LetsEncrypt.Email != c.email || cfg.LetsEncrypt.Staging != c.staging {
				t.Errorf("block: email %q staging %t, want %q %t", cfg.LetsEncrypt.Email, cfg.LetsEncrypt.Staging, c.email, c.staging)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range c.not {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}
}
