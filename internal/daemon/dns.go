package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pryv/pryv-tls/internal/authdns"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/rqlite"
	"github.com/pryv/pryv-tls/internal/usercore"
)

// dnsSys is the authoritative DNS server: it answers the zone from
// configuration at once, before PlatformDB does (or without quorum), and
// follows PlatformDB's rows once the platform attaches it.
type dnsSys struct {
	cfg   atomic.Pointer[config.Config]
	log   *slog.Logger
	ob    *observability
	srv   *authdns.Server
	watch *dnsdata.Watcher
	users *usercore.Resolver // nil with dns.userLookup.source off
	bg    *tasks
}

func newDNSSys(cfg *config.Config, ob *observability, log *slog.Logger) *dnsSys {
	d := &dnsSys{log: log.With("component", "dns"), ob: ob, bg: newTasks()}
	d.cfg.Store(cfg)
	return d
}

func (d *dnsSys) on() bool {
	cfg := d.cfg.Load()
	return cfg.DNS.Active && cfg.PlatformDBEnabled()
}

func (d *dnsSys) Name() string { return "starting the DNS server" }

func (d *dnsSys) Start(context.Context) error {
	if !d.on() {
		return nil
	}
	cfg := d.cfg.Load()
	users, err := userLookup(cfg, d.log)
	if err != nil {
		return fmt.Errorf("dns.userLookup: %w", err)
	}
	opts := authdns.ServerOptions{Logger: d.log}
	if users != nil {
		opts.Users = users // a nil *Resolver would be a non-nil interface
		d.users = users
	}
	d.srv = authdns.NewServer(opts)
	d.watch = &dnsdata.Watcher{Static: static(cfg), Swap: d.srv.Swap, Logger: d.log}
	if users != nil {
		d.watch.Cores = func(cores []dnsdata.CoreInfo) { users.SetCores(registry(d.cfg.Load(), cores)) }
		users.SetCores(registry(cfg, nil))
	}
	if err := d.watch.ServeStatic(); err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	port := strconv.Itoa(cfg.DNS.Port)
	addrs := []string{net.JoinHostPort(cfg.DNS.IP, port)}
	if cfg.DNS.IP6 != "" {
		addrs = append(addrs, net.JoinHostPort(cfg.DNS.IP6, port))
	}
	if err := d.srv.ListenAndServe(addrs...); err != nil {
		return fmt.Errorf("dns: %w (set dns.ip / dns.port; port 53 needs root or CAP_NET_BIND_SERVICE)", err)
	}
	d.ob.dns.Store(d.srv)
	d.ob.metrics.WatchDNS(d.srv)
	udp, _ := d.srv.Addrs()
	d.log.Info("DNS server up", "domain", cfg.DNS.Domain, "addrs", fmt.Sprint(udp), "userLookup", cfg.DNS.UserLookup.Source)
	return nil
}

func (d *dnsSys) Stop() {
	d.bg.Stop()
	if d.srv != nil {
		_ = d.srv.Shutdown(context.Background())
	}
	if d.users != nil {
		d.users.Close()
	}
}

// Reload rebuilds the zone from the new static entries, root records and
// TTL (PlatformDB's rows kept); a zone that does not build keeps the old
// one.
func (d *dnsSys) Reload(next *config.Config) error {
	if !d.on() || d.watch == nil || reflect.DeepEqual(static(d.cfg.Load()), static(next)) {
		d.cfg.Store(next)
		return nil
	}
	if err := d.watch.SetStatic(static(next)); err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	if cur := d.cfg.Swap(next); d.users != nil && cur.DNS.DefaultTTL != next.DNS.DefaultTTL {
		d.log.Warn("dns.defaultTTL reloaded for the zone; the user lookup's answers and cache keep the TTL they started with until a restart",
			"startedWith", cur.DNS.DefaultTTL, "now", next.DNS.DefaultTTL)
	}
	return nil
}

// attach registers this core's core-info row, keeps the zone in step with
// PlatformDB while it answers, and gives the wiring the DNS-01 provider the
// renewer publishes through.
func (d *dnsSys) attach(ctx context.Context, w *wiring) error {
	if !d.on() {
		return nil
	}
	cfg := d.cfg.Load()
	rows := dnsdata.Rows{KV: w.db}
	self := dnsdata.CoreInfo{ID: coreName(cfg), IP: cfg.Core.IP, IPv6: cfg.Core.IPv6, CNAME: cfg.Core.CName,
		URL: cfg.Core.URL, Hosting: cfg.Core.Hosting, Available: true}
	if err := rows.SetCoreInfo(ctx, self); err != nil {
		return fmt.Errorf("registering this core in PlatformDB: %w", err)
	}
	d.watch.KV = w.db
	if cfg.DNS.DNSSEC && w.keys != nil {
		if err := d.dnssec(ctx, w); err != nil {
			return err
		}
	}
	d.watch.Listed = func() { go releaseAfterListing(d.log) }
	w.run.Go(d.watch.Run)

	// DNS-01 is validated by querying the cores' DNS servers, so the value
	// must be answered by ours and every other core's before the CA looks.
	port := strconv.Itoa(cfg.DNS.Port)
	udp, _ := d.srv.Addrs()
	w.dns01 = &dnsdata.DNS01{
		KV:                   w.db,
		PropagationTimeout:   cfg.LetsEncrypt.DNS01.PropagationTimeout.Std(),
		SkipPropagationCheck: cfg.LetsEncrypt.DNS01.SkipPropagationCheck,
		Logger:               d.log.With("component", "dns01"),
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
	}
	return nil
}

// dnssec makes the zone's key if no core has yet and signs the zone with
// the keys in PlatformDB (issue 15, decision 0022).
func (d *dnsSys) dnssec(ctx context.Context, w *wiring) error {
	cfg := d.cfg.Load()
	ks := &dnsdata.KeyStore{KV: w.db, Keys: w.keys, Domain: cfg.DNS.Domain, TTL: uint32(cfg.DNS.DefaultTTL)} //nolint:gosec // G115: config validates 1..2^31-1
	created, err := ks.Ensure(ctx)
	if err != nil {
		return fmt.Errorf("dns.dnssec: %w", err)
	}
	if created {
		d.log.Info("DNSSEC key made: give the registrar its DS record (pryv-tls dns ds)")
	}
	d.watch.Keys = w.keys
	w.dnssec = ks
	return nil
}

// static is the zone's part from configuration.
func static(cfg *config.Config) dnsdata.Static {
	d := cfg.DNS
	st := dnsdata.Static{
		Domain:     d.Domain,
		TTL:        uint32(d.DefaultTTL), //nolint:gosec // G115: config validates 1..2^31-1
		Root:       records(d.Records.Root),
		RootSOA:    d.Records.Root.SOA,
		NSHostIP:   d.PublicIP,
		NSHostIPv6: cfg.Core.IPv6,
	}
	for _, e := range d.StaticEntries {
		st.Entries = append(st.Entries, dnsdata.Entry{Subdomain: e.Subdomain, Records: records(e.Records)})
	}
	st.CAA = caaOptions(cfg)
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

// CAAOptions are the zone's CAA options for cfg, for "pryv-tls doctor"
// to check the published records against.
func CAAOptions(cfg *config.Config) dnsdata.CAA { return caaOptions(cfg) }

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

func records(r config.RecordSet) dnsdata.Records {
	return dnsdata.Records{A: r.A, AAAA: r.AAAA, CNAME: r.CNAME, NS: r.NS, MX: r.MX, TXT: r.TXT, CAA: r.CAA}
}

// userLookup is where the DNS server asks about the platform's users that
// are not in PlatformDB (decision 0015); nil with dns.userLookup.source off.
func userLookup(cfg *config.Config, log *slog.Logger) (*usercore.Resolver, error) {
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
func registry(cfg *config.Config, cores []dnsdata.CoreInfo) []usercore.Core {
	out := []usercore.Core{{ID: coreName(cfg), URL: cfg.Core.URL}}
	for _, c := range cores {
		out = append(out, usercore.Core{ID: c.ID, URL: c.URL})
	}
	return out
}

func coreName(cfg *config.Config) string {
	if cfg.Core.ID != "" {
		return cfg.Core.ID
	}
	return "single"
}

// releaseAfterListing returns the start's garbage to the OS and releases the
// executable's pages once the DNS watcher's first listing is served: a
// 100,000-user start held 100-108 MiB 1 s after its last user answered,
// 54-65 MiB once the heap policy's quiet checks had done the same a few
// seconds later (decision 0036). The policy's own release still runs when
// the process goes quiet.
func releaseAfterListing(log *slog.Logger) {
	debug.FreeOSMemory()
	if n, err := releaseExecPages(); err != nil {
		log.Debug("after the first listing: the executable's pages stay resident", "error", err.Error())
	} else {
		log.Debug("after the first listing: released the executable's pages", "bytes", n)
	}
}
