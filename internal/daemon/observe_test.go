package daemon

import (
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/health"
)

func mustConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.LoadBytes("test.yml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func summary(checks []health.Check) string {
	var parts []string
	for _, c := range checks {
		s := c.Name + "=ok"
		if !c.OK {
			s = c.Name + "=FAIL"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func TestReadinessChecks(t *testing.T) {
	log := slog.New(slog.DiscardHandler)

	// Strategy B without PlatformDB: nothing to wait for.
	plain := newObservability(mustConfig(t, "http:\n  port: 8080\n"), certs.NewStore(), log)
	if got := summary(plain.checks()); got != "" {
		t.Errorf("Strategy B: %q, want no check", got)
	}

	cfg := mustConfig(t, `
dnsLess: {isActive: true, publicUrl: "https://your-domain.com"}
letsEncrypt: {enabled: true, email: ops@your-domain.com, atRestKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", certRenewer: true}
`)
	store := certs.NewStore()
	ph, err := certs.Placeholder([]string{"your-domain.com"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	store.Replace(certs.SourcePlaceholder, ph)
	ob := newObservability(cfg, store, log)
	if ob.metrics != nil {
		t.Error("metrics on without metrics.listen")
	}

	// The placeholder, PlatformDB not open: not ready.
	if got := summary(ob.checks()); got != "certificate=FAIL platformdb=FAIL" {
		t.Errorf("placeholder, no PlatformDB: %q", got)
	}
	// No store yet, but a materialised certificate: ready (served from disk).
	ca, err := devpki.NewCA("readiness CA")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := ca.Issue(devpki.Leaf{Names: []string{"your-domain.com"}})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(iss.FullChain, iss.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	store.Replace(certs.SourceStore, &pair)
	checks := ob.checks()
	if got := summary(checks); got != "certificate=ok platformdb=ok" || !strings.Contains(checks[1].Detail, "last materialised") {
		t.Errorf("from disk: %q %+v", got, checks)
	}
	// The health snapshot says PlatformDB answers.
	ob.health.Store(&platformHealth{At: time.Now(), Up: true})
	if checks := ob.checks(); checks[1].Detail != "reachable" {
		t.Errorf("reachable: %+v", checks)
	}
	// Draining: never ready.
	ob.draining.Store(true)
	if got := summary(ob.checks()); got != "shutdown=FAIL certificate=ok platformdb=ok" {
		t.Errorf("draining: %q", got)
	}

	// The cached health of a member not open yet is not reused once it is.
	ob.health.Store(&platformHealth{At: time.Now()})
	if h := ob.platformHealth(context.Background()); h.Up || h.db != nil {
		t.Errorf("no member: %+v", h)
	}

	// dns.active: the DNS server must be serving.
	dnsCfg := mustConfig(t, "dns: {active: true, domain: mc.example.com}\n")
	dob := newObservability(dnsCfg, certs.NewStore(), log)
	if got := summary(dob.checks()); got != "dns=FAIL platformdb=FAIL" {
		t.Errorf("dns.active, nothing up: %q", got)
	}
}
