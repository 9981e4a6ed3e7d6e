package docs_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pryv/pryv-tls/internal/config"
)

// Valid secrets for the samples' placeholders (the values of
// internal/config's own tests).
const (
	testAtRestKey = "GC7BAkJ0lsqe50IsM8rBvtLQkR9AREmjVfRO5MmdLVM="
	testAdminKey  = "admin-key-7f3a9c1e5b"
)

// loadSample loads a sample with its placeholders replaced by valid values.
func loadSample(t *testing.T, name string) *config.Config {
	t.Helper()
	text := readDoc(t, filepath.Join(samplesDir, name))
	for _, ph := range []string{"'<base64 of 32 random bytes>'", "'<output of pryv-tls keygen>'"} {
		text = strings.ReplaceAll(text, ph, "'"+testAtRestKey+"'")
	}
	text = strings.ReplaceAll(text, "'<a long random string>'", "'"+testAdminKey+"'")
	if strings.Contains(text, "'<") {
		t.Fatalf("%s: a placeholder this test does not know", name)
	}
	c, err := config.LoadBytes(name, []byte(text))
	if err != nil {
		t.Fatalf("%s does not load:\n%v", name, err)
	}
	return c
}

func TestSampleConfigs(t *testing.T) {
	// The spec's "minimum config on a single-core host", verbatim.
	spec := readDoc(t, filepath.Join(moduleRoot, "internal", "config", "testdata", "spec-single-core.yml"))
	sample := readDoc(t, filepath.Join(samplesDir, "strategy-a.yml"))
	keyLine := regexp.MustCompile(`(?m)^  atRestKey: .*$`)
	if keyLine.ReplaceAllString(spec, "") != keyLine.ReplaceAllString(sample, "") {
		t.Error("samples/strategy-a.yml is no longer the spec's single-core config (testdata/spec-single-core.yml)")
	}
	a := loadSample(t, "strategy-a.yml")
	if p := a.Plans(); len(p) != 1 || p[0].Row() != "your-domain.com" || p[0].Challenge != config.ChallengeHTTP01 || !a.PlatformDBEnabled() {
		t.Errorf("strategy-a.yml: plans %+v", p)
	}

	b := loadSample(t, "strategy-b.yml")
	if b.TLSEnabled() || b.PlatformDBEnabled() || b.ListenAddr() != "127.0.0.1:8080" {
		t.Errorf("strategy-b.yml: TLS %v, PlatformDB %v, listen %s; want plain HTTP on 127.0.0.1:8080 without PlatformDB",
			b.TLSEnabled(), b.PlatformDBEnabled(), b.ListenAddr())
	}
	for _, f := range []string{"nginx.conf", "Caddyfile", "traefik-dynamic.yml"} {
		if !strings.Contains(readDoc(t, filepath.Join(samplesDir, f)), b.ListenAddr()) {
			t.Errorf("%s does not say how to reach pryv-tls in plain mode at %s", f, b.ListenAddr())
		}
	}

	c := loadSample(t, "strategy-c.yml")
	cert, key, _ := c.CertFiles()
	if !c.TLSEnabled() || c.PlatformDBEnabled() || !strings.HasPrefix(cert, "/etc/letsencrypt/live/") || !strings.HasPrefix(key, "/etc/letsencrypt/live/") {
		t.Errorf("strategy-c.yml: TLS %v, PlatformDB %v, files %s %s", c.TLSEnabled(), c.PlatformDBEnabled(), cert, key)
	}

	core1 := loadSample(t, "cluster-core1.yml")
	if p := core1.Plans(); len(p) != 1 || p[0].Row() != "*.mc.example.com" || p[0].Challenge != config.ChallengeDNS01 {
		t.Errorf("cluster-core1.yml: plans %+v", p)
	}
	if core1.Core.ID == "" || core1.Core.IP == "" || !core1.DNS.Active || !core1.LetsEncrypt.CertRenewer || core1.Auth.AdminAccessKey == "" {
		t.Error("cluster-core1.yml: bootstrap init-ca-holder needs core.id and core.ip; the walkthrough needs dns.active, certRenewer and an admin key")
	}
}
