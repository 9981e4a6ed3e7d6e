package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/dns"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/platformdb"
	"github.com/pryv/pryv-tls/internal/rqlite"
	"github.com/pryv/pryv-tls/internal/usercore"
)

func (p *platform) static() dnsdata.Static {
	d := p.cfg.DNS
	st := dnsdata.Static{
		Domain:     d.Domain,
		TTL:        uint32(d.DefaultTTL),
		Root:       records(d.Records.Root),
		RootSOA:    d.Records.Root.SOA,
		NSHostIP:   d.PublicIP,
		NSHostIPv6: p.cfg.Core.IPv6,
	}
	for _, e := range d.StaticEntries {
		st.Entries = append(st.Entries, dnsdata.Entry{Subdomain: e.Subdomain, Records: records(e.Records)})
	}
	st.CAA = caaOptions(p.cfg)
	return st
}

// caaOptions binds the zone's CAA records to the ACME account of the
// configured directory and to the challenges the plans use for names
// inside the domain (issue 15).
func caaOptions(cfg *config.Config) dnsdata.CAA {
	le := cfg.LetsEncrypt
	if !le.Enabled || !le.CAAOn() {
		return dnsdata.CAA{}
	}
	caa := dnsdata.CAA{Directories: []string{DirectoryURL(le)}, Identity: le.CAAIdentity}
	domain := strings.TrimSuffix(strings.ToLower(cfg.DNS.Domain), ".")
	for _, p := range cfg.Plans() {
		for _, h := range p.Hostnames {
			inside := h == domain || strings.HasSuffix(h, "."+domain)
			switch {
			case !inside:
			case strings.HasPrefix(h, "*."):
				caa.WildMethods = appendNew(caa.WildMethods, p.Challenge)
			default:
				caa.Methods = appendNew(caa.Methods, p.Challenge)
			}
		}
	}
	return caa
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// startDNSServer answers the zone from configuration at once, before
// PlatformDB does (or without quorum).
func (p *platform) startDNSServer() error {
	d := p.cfg.DNS
	log := p.log.With("component", "dns")
	users, err := p.userLookup(log)
	if err != nil {
		return fmt.Errorf("dns.userLookup: %w", err)
	}
	opts := dns.ServerOptions{Logger: log}
	if users != nil {
		opts.Users = users // a nil *Resolver would be a non-nil interface
	}
	p.dns = dns.NewServer(opts)
	p.watch = &dnsdata.Watcher{Static: p.static(), Swap: p.dns.Swap, Logger: log}
	if users != nil {
		p.watch.Cores = func(cores []dnsdata.CoreInfo) { users.SetCores(p.registry(cores)) }
		users.SetCores(p.registry(nil))
	}
	if err := p.watch.ServeStatic(); err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	port := strconv.Itoa(d.Port)
	addrs := []string{net.JoinHostPort(d.IP, port)}
	if d.IP6 != "" {
		addrs = append(addrs, net.JoinHostPort(d.IP6, port))
	}
	if err := p.dns.ListenAndServe(addrs...); err != nil {
		return fmt.Errorf("dns: %w (set dns.ip / dns.port; port 53 needs root or CAP_NET_BIND_SERVICE)", err)
	}
	p.bg.Go(func(ctx context.Context) {
		<-ctx.Done()
		_ = p.dns.Shutdown(context.Background())
		if users != nil {
			users.Close()
		}
	})
	p.ob.dns.Store(p.dns)
	p.ob.metrics.WatchDNS(p.dns)
	udp, _ := p.dns.Addrs()
	p.log.Info("DNS server up", "domain", d.Domain, "addrs", fmt.Sprint(udp), "userLookup", d.UserLookup.Source)
	return nil
}

// userLookup is where the DNS server asks about the platform's users that
// are not in PlatformDB (decision 0015); nil with dns.userLookup.source off.
func (p *platform) userLookup(log *slog.Logger) (*usercore.Resolver, error) {
	cfg := p.cfg
	ul := cfg.DNS.UserLookup
	var (
		src usercore.Source
		err error
	)
	switch ul.Source {
	case config.UserLookupOff:
		return nil, nil
	case config.UserLookupAPI:
		src, err = usercore.NewAPI(cfg.Upstreams.API)
	case config.UserLookupRQLite:
		var c *rqlite.Client
		if c, err = rqlite.New(rqlite.Options{URL: cfg.Storages.Engines.RQLite.URL}); err != nil {
			return nil, fmt.Errorf("storages.engines.rqlite.url: %w", err)
		}
		src, err = usercore.NewRQLite(c, cfg.Platform.PIIMode, cfg.Platform.PIIHmacKey.Reveal())
	default:
		err = fmt.Errorf("source %q: want api, rqlite or off", ul.Source)
	}
	if err != nil {
		return nil, err
	}
	// A single core answers a user with the user's own endpoint: this
	// core. Its name in the zone is its core-info row's, if that row has
	// an address; else core.{domain} (dns.publicIp).
	self := coreName(cfg)
	if cfg.Core.IP == "" && cfg.Core.IPv6 == "" && cfg.Core.CName == "" {
		self = "core"
	}
	return usercore.New(usercore.Options{
		Domain:       cfg.DNS.Domain,
		SelfName:     self,
		Source:       src,
		TTL:          time.Duration(cfg.DNS.DefaultTTL) * time.Second,
		Timeout:      ul.Timeout.Std(),
		MaxPerSecond: ul.MaxPerSecond,
		Logger:       log.With("part", "user lookup"),
	})
}

// registry is the cores a lookup's answer may name: the core-info rows,
// and this core from configuration (before its row is written).
func (p *platform) registry(cores []dnsdata.CoreInfo) []usercore.Core {
	out := []usercore.Core{{ID: coreName(p.cfg), URL: p.cfg.Core.URL}}
	for _, c := range cores {
		out = append(out, usercore.Core{ID: c.ID, URL: c.URL})
	}
	return out
}

// startDNSWatch registers this core's core-info row, keeps the zone in step
// with PlatformDB, and returns the DNS-01 provider the renewer publishes
// through.
func (p *platform) startDNSWatch(ctx context.Context, db *platformdb.Etcd) (*dnsdata.DNS01, error) {
	cfg := p.cfg
	rows := dnsdata.Rows{KV: db}
	self := dnsdata.CoreInfo{ID: coreName(cfg), IP: cfg.Core.IP, IPv6: cfg.Core.IPv6, CNAME: cfg.Core.CName,
		URL: cfg.Core.URL, Hosting: cfg.Core.Hosting, Available: true}
	if err := rows.SetCoreInfo(ctx, self); err != nil {
		return nil, fmt.Errorf("registering this core in PlatformDB: %w", err)
	}
	p.watch.KV = db
	p.bg.Go(p.watch.Run)

	// DNS-01 is validated by querying the cores' DNS servers, so the value
	// must be answered by ours and every other core's before the CA looks.
	port := strconv.Itoa(cfg.DNS.Port)
	udp, _ := p.dns.Addrs()
	return &dnsdata.DNS01{
		KV:                   db,
		PropagationTimeout:   cfg.LetsEncrypt.DNS01.PropagationTimeout.Std(),
		SkipPropagationCheck: cfg.LetsEncrypt.DNS01.SkipPropagationCheck,
		Servers: func() []string {
			var out []string
			for _, a := range udp {
				ua := a.(*net.UDPAddr)
				ip := ua.IP
				if ip.IsUnspecified() {
					ip = net.IPv4(127, 0, 0, 1)
				}
				out = append(out, net.JoinHostPort(ip.String(), strconv.Itoa(ua.Port)))
			}
			cores, err := rows.Cores(context.Background())
			if err == nil {
				for _, c := range cores {
					if c.ID != self.ID && c.Available && c.IP != "" {
						out = append(out, net.JoinHostPort(c.IP, port))
					}
				}
			}
			return out
		},
	}, nil
}

func records(r config.RecordSet) dnsdata.Records {
	return dnsdata.Records{A: r.A, AAAA: r.AAAA, CNAME: r.CNAME, NS: r.NS, MX: r.MX, TXT: r.TXT, CAA: r.CAA}
}
