package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/authdns"
	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/health"
	"github.com/pryv/pryv-tls/internal/metrics"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// PlatformDB health is refreshed in the background this often, and a scrape
// or a status call refreshes it when it is older than that; each refresh is
// bounded by healthTimeout.
const (
	healthMaxAge  = 5 * time.Second
	healthTimeout = 2 * time.Second
)

// observability is what the metrics, the health endpoints and the status
// read: state kept up to date as the subsystems start, never the store on a
// request's path.
type observability struct {
	cfg     atomic.Pointer[config.Config] // read per readiness check: swapped by Reload
	cache   *certs.Cache
	metrics *metrics.Metrics // nil when metrics.listen is off
	log     *slog.Logger

	db       atomic.Pointer[platformdb.Etcd] // once PlatformDB is open
	dns      atomic.Pointer[authdns.Server]  // once the DNS server listens
	caHolder atomic.Bool
	draining atomic.Bool

	refresh sync.Mutex // one health refresh at a time
	health  atomic.Pointer[platformHealth]

	lastReload atomic.Pointer[admin.ReloadState] // nil until the first SIGHUP
	srv        *http.Server                      // the metrics listener, nil when off
	bg         *tasks
}

// platformHealth is PlatformDB as this core last saw it.
type platformHealth struct {
	db                           *platformdb.Etcd // the member it was read from (nil: not open yet)
	At                           time.Time
	Up                           bool            // this member answers a quorum read
	Leader                       bool            // this member leads
	Alarms                       []string        // etcd's alarms on this member (NOSPACE, CORRUPT)
	Members                      map[string]bool // name -> answers (learners: false); nil if the list could not be read
	Healthy, Unhealthy, Learners int
}

func newObservability(cfg *config.Config, cache *certs.Cache, log *slog.Logger) *observability {
	o := &observability{cache: cache, log: log, bg: newTasks()}
	o.cfg.Store(cfg)
	o.health.Store(&platformHealth{})
	if cfg.Metrics.Listen == "" {
		return o
	}
	o.metrics = metrics.New(Version)
	if cfg.TLSEnabled() {
		o.metrics.WatchCertificates(cache, nil)
	}
	if cfg.PlatformDBEnabled() {
		o.metrics.WatchPlatformDB(func(ctx context.Context) metrics.PlatformDBHealth {
			h := o.platformHealth(ctx)
			return metrics.PlatformDBHealth{Up: h.Up, Leader: h.Leader, Alarms: h.Alarms, MembersKnown: h.Members != nil,
				Healthy: h.Healthy, Unhealthy: h.Unhealthy, Learners: h.Learners}
		}, healthTimeout)
		o.watchRenewals()
	}
	return o
}

// platformHealth returns the cached health, refreshed first if it is older
// than healthMaxAge.
func (o *observability) platformHealth(ctx context.Context) platformHealth {
	if h := o.health.Load(); time.Since(h.At) < healthMaxAge && h.db == o.db.Load() {
		return *h
	}
	return o.refreshHealth(ctx, healthMaxAge)
}

// refreshHealth checks PlatformDB now, unless another caller did less than
// maxAge ago (while this one waited for it).
func (o *observability) refreshHealth(ctx context.Context, maxAge time.Duration) platformHealth {
	o.refresh.Lock()
	defer o.refresh.Unlock()
	db := o.db.Load()
	if h := o.health.Load(); time.Since(h.At) < maxAge && h.db == db {
		return *h
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	h := checkPlatform(ctx, db)
	o.health.Store(&h)
	return h
}

func checkPlatform(ctx context.Context, db *platformdb.Etcd) platformHealth {
	h := platformHealth{db: db, At: time.Now()}
	if db == nil {
		return h
	}
	_, err := db.Get(ctx, "_health")
	h.Up = err == nil || errors.Is(err, platformdb.ErrNotFound)
	h.Leader = db.IsLeader()
	h.Alarms = db.Alarms()
	ms, err := db.Members(ctx)
	if err != nil {
		return h
	}
	h.Members = make(map[string]bool, len(ms))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			ok := !m.IsLearner && db.Healthy(ctx, m)
			mu.Lock()
			defer mu.Unlock()
			h.Members[m.Name] = ok
			switch {
			case m.IsLearner:
				h.Learners++
			case ok:
				h.Healthy++
			default:
				h.Unhealthy++
			}
		})
	}
	wg.Wait()
	return h
}

// keepHealth refreshes the PlatformDB health in the background, so the
// readiness endpoints only read it.
func (o *observability) keepHealth(ctx context.Context) {
	t := time.NewTicker(healthMaxAge)
	defer t.Stop()
	for {
		o.refreshHealth(ctx, time.Second)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checks are the readiness conditions: a real certificate when TLS is on,
// the DNS server serving when dns.active, PlatformDB reachable or this core
// serving from its last materialised state; never while shutting down.
func (o *observability) checks() []health.Check {
	var out []health.Check
	if o.draining.Load() {
		out = append(out, health.Check{Name: "shutdown", OK: false, Detail: "shutting down: draining in-flight requests"})
	}
	cfg := o.cfg.Load()
	hasReal := cfg.TLSEnabled() && o.cache.HasReal()
	if cfg.TLSEnabled() {
		c := health.Check{Name: "certificate", OK: hasReal, Detail: "a certificate is served"}
		if !hasReal {
			c.Detail = "serving the self-signed placeholder: no certificate yet"
		}
		out = append(out, c, o.expiryCheck(time.Now()))
	}
	dnsServing := false
	if cfg.DNS.Active {
		s := o.dns.Load()
		dnsServing = s != nil && s.Serving()
		c := health.Check{Name: "dns", OK: dnsServing, Detail: "serving"}
		if !dnsServing {
			c.Detail = "the DNS server is not serving"
		}
		out = append(out, c)
	}
	if cfg.PlatformDBEnabled() {
		h := o.health.Load()
		c := health.Check{Name: "platformdb", OK: true, Detail: "reachable"}
		switch {
		case h.Up:
		case hasReal:
			c.Detail = "unreachable: serving the last materialised certificates"
		case !cfg.TLSEnabled() && dnsServing:
			c.Detail = "unreachable: serving the last DNS zone"
		case h.db == nil:
			c.OK, c.Detail = false, "not open yet (starting, or waiting for quorum)"
		default:
			c.OK, c.Detail = false, "unreachable"
		}
		out = append(out, c)
	}
	return out
}

func (o *observability) Name() string { return "starting the metrics listener" }

// Start serves /metrics, /healthz and /readyz on metrics.listen, and keeps
// PlatformDB's health fresh in the background.
func (o *observability) Start(context.Context) error {
	cfg := o.cfg.Load()
	if cfg.PlatformDBEnabled() {
		o.bg.Go(o.keepHealth)
	}
	if cfg.Metrics.Listen == "" {
		return nil
	}
	srv, err := o.listen(cfg.Metrics.Listen)
	if err != nil {
		return err
	}
	o.srv = srv
	return nil
}

func (o *observability) Stop() { o.bg.Stop() }

// Reload moves the metrics listener to a new metrics.listen (the new one
// bound before the old one closes; a taken address keeps the old one) and
// swaps the configuration the checks read. Turning metrics on or off needs
// a restart: the front and the sources are built with or without them.
func (o *observability) Reload(next *config.Config) error {
	cur := o.cfg.Load()
	if old, now := cur.Metrics.Listen, next.Metrics.Listen; old != now {
		if old == "" || now == "" {
			return restartNeeded("metrics.listen", "turning metrics on or off: the front and the certificate sources are built with or without them")
		}
		srv, err := o.listen(now)
		if err != nil {
			return err
		}
		prev := o.srv
		o.srv = srv
		_ = prev.Close()
	}
	o.cfg.Store(next)
	return nil
}

// listen serves /metrics, /healthz and /readyz on addr until Stop.
func (o *observability) listen(addr string) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: listening on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", o.metrics.Handler())
	mux.Handle("/healthz", health.Live())
	mux.Handle("/readyz", health.Ready(o.checks))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(o.log.Handler(), slog.LevelDebug),
	}
	o.bg.Go(func(ctx context.Context) {
		go func() { <-ctx.Done(); _ = srv.Close() }()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.log.Error("metrics listener stopped", "error", err.Error())
		}
	})
	o.log.Info("metrics listener up: /metrics, /healthz, /readyz", "addr", ln.Addr().String())
	return srv, nil
}

// self is this core for the status endpoint.
func (o *observability) self(ctx context.Context) admin.Self {
	cfg := o.cfg.Load()
	h := o.platformHealth(ctx)
	s := admin.Self{
		ID:         coreName(cfg),
		Renewer:    cfg.LetsEncrypt.Enabled && cfg.LetsEncrypt.CertRenewer && cfg.LetsEncrypt.AtRestKey != "",
		CAHolder:   o.caHolder.Load(),
		PlatformDB: admin.MemberState{Up: h.Up, Leader: h.Leader, Alarms: h.Alarms},
		TLS:        cfg.TLSEnabled(),
		LastReload: o.lastReload.Load(),
		Readiness:  o.checks(),
	}
	s.Placeholder = s.TLS && !o.cache.HasReal()
	s.DNS.Active = cfg.DNS.Active
	if d := o.dns.Load(); d != nil {
		s.DNS.Serving = d.Serving()
	}
	now := time.Now()
	seen := map[*certs.Leaf]bool{}
	for _, sv := range o.cache.Served() {
		leaf := sv.Leaf
		if sv.Source != certs.SourceFiles || leaf == nil || seen[leaf] {
			continue
		}
		seen[leaf] = true
		host := sv.Name
		if len(leaf.DNSNames) > 0 {
			host = leaf.DNSNames[0]
		}
		s.FileCerts = append(s.FileCerts, admin.CertInfo{
			Hostname: host, IssuedAt: leaf.NotBefore.UTC(), ExpiresAt: leaf.NotAfter.UTC(),
			DaysUntilExpiry: int(leaf.NotAfter.Sub(now).Hours() / 24), Names: leaf.DNSNames,
			Issuer: leaf.Issuer, Serial: leaf.SerialNumber.Text(16), Source: "files",
		})
	}
	return s
}
