package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pryv/pryv-tls/internal/acme"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/dnsdata"
)

// corePlans are the certificates the certRenewer keeps for the cluster's
// other cores (one per core.url, the spec's DNS-less multi-core row), from
// the core-info rows, as a renewer's MorePlans and the unplanned sweep's
// names. Under dns.domain the wildcard covers the cores already, and
// config.CorePlans adds nothing for them.
type corePlans struct {
	cfg func() *config.Config
	kv  dnsdata.KV
	log *slog.Logger
}

// urls are the available cores' core.url.
func (c corePlans) urls(ctx context.Context) ([]string, error) {
	cores, err := dnsdata.Rows{KV: c.kv}.Cores(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the cores' core-info rows: %w", err)
	}
	var urls []string
	for _, ci := range cores {
		if ci.Available && ci.URL != "" {
			urls = append(urls, ci.URL)
		}
	}
	return urls, nil
}

// plans is the renewer's MorePlans: none when the rows cannot be read (the
// configured plans still run; the next pass tries again).
func (c corePlans) plans(ctx context.Context) []acme.Plan {
	urls, err := c.urls(ctx)
	if err != nil {
		c.log.Warn("the other cores' certificates are not checked on this pass", "error", err.Error())
		return nil
	}
	var out []acme.Plan
	for _, p := range c.cfg().CorePlans(urls) {
		out = append(out, acme.Plan{Hostnames: p.Hostnames, Challenge: p.Challenge})
	}
	return out
}

// planned is every hostname planned, the configured and the other cores':
// the unplanned sweep's Planned. An error, and the sweep drops nothing.
func (c corePlans) planned(ctx context.Context) ([]string, error) {
	urls, err := c.urls(ctx)
	if err != nil {
		return nil, err
	}
	cfg := c.cfg()
	names := cfg.Hostnames()
	for _, p := range cfg.CorePlans(urls) {
		names = append(names, p.Hostnames...)
	}
	return names, nil
}

// registerCoreURL writes this core's core-info row when no DNS server
// does (dns.active registers it with the zone): in a DNS-less cluster, the
// certRenewer plans this core's core.url from it.
func registerCoreURL(ctx context.Context, kv dnsdata.KV, cfg *config.Config) error {
	if cfg.DNS.Active || cfg.Core.URL == "" {
		return nil
	}
	self := dnsdata.CoreInfo{ID: coreName(cfg), IP: cfg.Core.IP, IPv6: cfg.Core.IPv6, CNAME: cfg.Core.CName,
		URL: cfg.Core.URL, Hosting: cfg.Core.Hosting, Available: true}
	if err := (dnsdata.Rows{KV: kv}).SetCoreInfo(ctx, self); err != nil {
		return fmt.Errorf("registering this core's core.url in PlatformDB (the certRenewer orders its certificate from it): %w", err)
	}
	return nil
}
