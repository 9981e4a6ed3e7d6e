package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/dns"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// startDNS registers this core's core-info row, serves the zone built from
// configuration at once, then keeps it in step with PlatformDB. It returns
// the DNS-01 provider the renewer publishes through.
func startDNS(ctx context.Context, cfg *config.Config, db *platformdb.Etcd, bg *tasks, log *slog.Logger) (*dns.Server, *dnsdata.DNS01, error) {
	d := cfg.DNS
	static := dnsdata.Static{
		Domain:     d.Domain,
		TTL:        uint32(d.DefaultTTL),
		Root:       records(d.Records.Root),
		RootSOA:    d.Records.Root.SOA,
		NSHostIP:   d.PublicIP,
		NSHostIPv6: cfg.Core.IPv6,
	}
	for _, e := range d.StaticEntries {
		static.Entries = append(static.Entries, dnsdata.Entry{Subdomain: e.Subdomain, Records: records(e.Records)})
	}
	rows := dnsdata.Rows{KV: db}
	self := dnsdata.CoreInfo{ID: coreName(cfg), IP: cfg.Core.IP, IPv6: cfg.Core.IPv6, URL: cfg.Core.URL,
		Hosting: cfg.Core.Hosting, Available: true}
	if err := rows.SetCoreInfo(ctx, self); err != nil {
		return nil, nil, fmt.Errorf("registering this core in PlatformDB: %w", err)
	}

	srv := dns.NewServer(dns.ServerOptions{Logger: log.With("component", "dns")})
	w := &dnsdata.Watcher{Static: static, KV: db, Swap: srv.Swap, Logger: log.With("component", "dns")}
	if err := w.ServeStatic(); err != nil {
		return nil, nil, fmt.Errorf("dns: %w", err)
	}
	port := strconv.Itoa(d.Port)
	addrs := []string{net.JoinHostPort(d.IP, port)}
	if d.IP6 != "" {
		addrs = append(addrs, net.JoinHostPort(d.IP6, port))
	}
	if err := srv.ListenAndServe(addrs...); err != nil {
		return nil, nil, fmt.Errorf("dns: %w (set dns.ip / dns.port; port 53 needs root or CAP_NET_BIND_SERVICE)", err)
	}
	bg.Go(w.Run)
	bg.Go(func(ctx context.Context) {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	})
	udp, _ := srv.Addrs()
	log.Info("DNS server up", "domain", d.Domain, "addrs", fmt.Sprint(udp))

	// DNS-01 is validated by querying the cores' DNS servers, so the value
	// must be answered by ours and every other core's before the CA looks.
	provider := &dnsdata.DNS01{
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
	}
	return srv, provider, nil
}

func records(r config.RecordSet) dnsdata.Records {
	return dnsdata.Records{A: r.A, AAAA: r.AAAA, CNAME: r.CNAME, NS: r.NS, MX: r.MX, TXT: r.TXT, CAA: r.CAA}
}
