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
	plain := newObservability(mustConfig(t, "http:\n  port: 8080\n"), certs.NewCache(), log)
	if got := summary(plain.checks()); got != "" {
		t.Errorf("Strategy B: %q, want no check", got)
	}

	cfg := mustConfig(t, `
dnsLess: {isActive: true, publicUrl: "https://your-domain.com"}
letsEncrypt: {enabled: true, email: ops@your-domain.com, atRestKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", certRenewer: true}
`)
	store := certs.NewCache()
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
	if got := summary(ob.checks()); got != "certificate=FAIL expiry=ok platformdb=FAIL" {
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
	if got := summary(checks); got != "certificate=ok expiry=ok platformdb=ok" || !strings.Contains(checks[2].Detail, "last materialised") {
		t.Errorf("from disk: %q %+v", got, checks)
	}
	// The health snapshot says PlatformDB answers.
	ob.health.Store(&platformHealth{At: time.Now(), Up: true})
	if checks := ob.checks(); checks[2].Detail != "reachable" {
		t.Errorf("reachable: %+v", checks)
	}
	// An expired certificate served: not ready, naming it (status lists the
	// same failed check).
	old, err := ca.Issue(devpki.Leaf{Names: []string{"old.your-domain.com"}, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	oldPair, err := tls.X509KeyPair(old.FullChain, old.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	store.Replace(certs.SourceStore, &pair, &oldPair)
	if checks := ob.checks(); summary(checks) != "certificate=ok expiry=FAIL platformdb=ok" ||
		!strings.Contains(checks[1].Detail, "serving an expired certificate for old.your-domain.com (expired ") {
		t.Errorf("an expired certificate served: %q %+v", summary(checks), checks)
	}
	if self := ob.self(context.Background()); len(self.Readiness) != 3 || self.Readiness[1].OK {
		t.Errorf("status's readiness: %+v", self.Readiness)
	}
	store.Replace(certs.SourceStore, &pair)
	// Draining: never ready.
	ob.draining.Store(true)
	if got := summary(ob.checks()); got != "shutdown=FAIL certificate=ok expiry=ok platformdb=ok" {
		t.Errorf("draining: %q", got)
	}

	// The cached health of a member not open yet is not reused once it is.
	ob.health.Store(&platformHealth{At: time.Now()})
	if h := ob.platformHealth(context.Background()); h.Up || h.db != nil {
		t.Errorf("no member: %+v", h)
	}

	// dns.active: the DNS server must be serving.
	dnsCfg := mustConfig(t, "dns: {active: true, domain: mc.example.com}\n")
	dob := newObservability(dnsCfg, certs.NewCache(), log)
	if got := summary(dob.checks()); got != "dns=FAIL platformdb=FAIL" {
		t.Errorf("dns.active, nothing up: %q", got)
	}
}
