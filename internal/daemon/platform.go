package daemon

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pryv/pryv-tls/internal/acme"
	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/apijson"
	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/join"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// quorumWait is how long start-up waits for PlatformDB before serving
// without it: a restarted core of a cluster that has lost quorum serves its
// last materialised certificates and catches up when quorum returns.
const quorumWait = 10 * time.Second

// wiring is what the subsystems that need PlatformDB get once it answers,
// for as long as it does: run is stopped (and their loops with it) when
// the platform stops.
type wiring struct {
	db      *platformdb.Etcd
	catalog *certstore.Catalog // nil without letsEncrypt.atRestKey
	dns01   *dnsdata.DNS01     // set by the DNS server's attach, when it runs
	keys    *atrest.Keyring    // nil without letsEncrypt.atRestKey
	dnssec  *dnsdata.KeyStore  // set by the DNS server's attach with dns.dnssec
	run     *tasks
}

// attacher is a subsystem that also runs on PlatformDB.
type attacher interface {
	attach(ctx context.Context, w *wiring) error
}

// platformDeps are the platform's explicit dependencies.
type platformDeps struct {
	sock     *socketSys
	ob       *observability
	keys     *atrest.Keyring
	member   *memberSys
	acme     *acmeSys
	attached []attacher // in order; each one's attach may use what the one before put in the wiring
	onWired  func()
	// caHolder is a live init-ca-holder (the control socket's /cluster/ca-holder).
	caHolder func(context.Context, join.CAHolderRequest) (join.CAHolderResponse, error)
}

// platformSys is this core's PlatformDB member and what runs on it. The
// subsystems that need the store are attached once it answers (wire); until
// then the front serves from disk and the admin endpoints answer 503. It can
// be stopped and started again in-process (Restart): the front and the DNS
// server keep answering from memory meanwhile.
type platformSys struct {
	env  *env
	cfg  atomic.Pointer[config.Config]
	deps platformDeps
	join *Join // serve --bootstrap, for the first start only

	mu     sync.Mutex // Start, Stop and Reload; never a request's path
	run    *tasks     // what runs on the current member; nil while stopped
	db     atomic.Pointer[platformdb.Etcd]
	api    atomic.Pointer[admin.API]
	public atomic.Pointer[http.Handler] // admin API on the front, once wired
	wired  atomic.Bool                  // everything that needs the store runs
}

func newPlatformSys(e *env, cfg *config.Config, join *Join, deps platformDeps) *platformSys {
	p := &platformSys{env: e, join: join, deps: deps}
	p.cfg.Store(cfg)
	return p
}

func (p *platformSys) enabled() bool { return p.cfg.Load().PlatformDBEnabled() }

func (p *platformSys) Name() string { return "opening PlatformDB" }

// Start opens the member (joining the cluster first when serve --bootstrap
// gave a bundle) and wires the rest when it answers. It waits for that up
// to quorumWait, or until ctx ends (SIGTERM: the open is abandoned and Stop
// closes what it opened).
func (p *platformSys) Start(ctx context.Context) error {
	if !p.enabled() {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cfg, log := p.cfg.Load(), p.env.log
	run := newTasks()
	p.run = run // stopped by Stop from here on, whatever happens below
	opts := platformdb.Options{
		Name:          coreName(cfg),
		DataDir:       cfg.PlatformDB.DataDir,
		PeerAddress:   cfg.PlatformDB.PeerAddress,
		ClientAddress: cfg.PlatformDB.ClientAddress,
		TLS:           p.deps.member.tlsFile,
		DenylistFile:  p.deps.member.denylistFile(),
		Logger:        log.With("component", "platformdb"),
	}
	if pending := p.join; pending != nil && !p.deps.member.id.HasMember() {
		p.env.status("starting: joining the cluster")
		jr, err := pending.Do(ctx)
		if err != nil {
			return err
		}
		opts.InitialCluster, opts.ClusterState = jr.InitialCluster, "existing"
		log.Info("joined the cluster as a learner; starting the PlatformDB member", "initialCluster", jr.InitialCluster)
	}
	p.join = nil // a member now exists: a later start opens it

	p.env.status("starting: opening PlatformDB")
	ready := make(chan error, 1)
	// A task, so that Stop waits for an open still under way (and its
	// member, once open, is closed after it).
	run.Go(func(ctx context.Context) { ready <- p.open(ctx, opts, run) })
	select {
	case err := <-ready:
		if err != nil {
			return fmt.Errorf("starting PlatformDB: %w", err)
		}
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(quorumWait):
		log.Warn("PlatformDB is not answering yet (a cluster without quorum?): serving the last materialised certificates; everything else starts when it answers")
		p.deps.sock.Unavailable("PlatformDB is not reachable yet (no quorum?): this core serves its last materialised certificates; try again once the cluster has quorum")
		run.Go(func(ctx context.Context) {
			select {
			case err := <-ready:
				if err != nil && ctx.Err() == nil {
					log.Error("PlatformDB did not start", "error", err.Error())
				}
			case <-ctx.Done():
			}
		})
	}
	return nil
}

// Stop takes down what runs on the member, then the member (safe before
// it is open, and twice). The front's admin endpoints answer 503 from then
// on; the certificates and the DNS zone served stay.
func (p *platformSys) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run == nil {
		return
	}
	p.wired.Store(false)
	p.public.Store(nil)
	p.api.Store(nil)
	p.deps.acme.detach()
	p.run.Stop()
	p.run = nil
	if db := p.db.Swap(nil); db != nil {
		_ = db.Close()
	}
	p.deps.ob.db.Store(nil)
}

// Restart closes the member and opens it again with next (the same
// configuration, or one a live change such as init-ca-holder made), while
// the front and the DNS server keep serving from memory. The control socket
// answers 503 meanwhile.
//
// The node identity is made again from next first (a new cluster CA, a new
// core.ip: init-ca-holder), then the member opens with it. The subsystems
// it attaches keep their own configuration (their Reload gives them next).
func (p *platformSys) Restart(ctx context.Context, next *config.Config) error {
	if !next.PlatformDBEnabled() {
		return restartNeeded("letsEncrypt.enabled, letsEncrypt.atRestKey, dns.active", "PlatformDB cannot be turned off while pryv-tls runs")
	}
	p.deps.sock.Unavailable("PlatformDB is restarting; try again in a moment")
	p.Stop()
	p.cfg.Store(next)
	if err := p.deps.member.reidentify(ctx, next); err != nil {
		return err
	}
	return p.Start(ctx)
}

// Reload takes auth.adminAccessKey for the front's admin endpoints.
func (p *platformSys) Reload(next *config.Config) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.cfg.Swap(next)
	if api := p.api.Load(); api != nil && next.Auth.AdminAccessKey != cur.Auth.AdminAccessKey {
		h := api.Public(next.Auth.AdminAccessKey.Reveal())
		p.public.Store(&h)
	}
	return nil
}

// Public is the front's admin handler: 503 until PlatformDB answers.
func (p *platformSys) Public() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := p.public.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		apijson.Error(w, http.StatusServiceUnavailable, "unavailable", "PlatformDB is not reachable yet (no quorum?)")
	})
}

// open opens the member, waits for its promotion when it joins as a
// learner, and wires what needs it.
func (p *platformSys) open(ctx context.Context, opts platformdb.Options, run *tasks) error {
	db, err := platformdb.Open(ctx, opts)
	if err != nil {
		return err
	}
	p.db.Store(db)
	p.deps.ob.db.Store(db)
	p.deps.ob.refreshHealth(ctx, 0) // readiness need not wait for the next tick
	if opts.ClusterState == "existing" {
		// A learner serves no request: wait for the promotion.
		p.env.status("starting: waiting to be promoted from learner to voter")
		if err := db.WaitVoter(ctx); err != nil {
			return err
		}
	}
	return p.wire(ctx, &wiring{db: db, run: run})
}

// wire attaches what needs the store, then serves the admin API.
func (p *platformSys) wire(ctx context.Context, w *wiring) error {
	d, db, log := p.deps, w.db, p.env.log
	if d.keys != nil {
		w.catalog = &certstore.Catalog{KV: db, Keys: d.keys}
		w.keys = d.keys
	}
	for _, a := range d.attached {
		if err := a.attach(ctx, w); err != nil {
			return err
		}
	}
	api := &admin.API{
		DNS:      dnsdata.Rows{KV: db},
		Logger:   log,
		Members:  func(ctx context.Context) (map[string]bool, error) { return memberHealth(ctx, db) },
		Cluster:  &clusterAPI{db: db, domain: p.cfg.Load().DNS.Domain, log: log, caHolder: d.caHolder},
		Self:     d.ob.self,
		Renewer:  d.acme.adminRenewer(),
		Renewals: d.acme.renewals(db),
	}
	if w.catalog != nil {
		api.Certs = w.catalog
		api.ACME = &acme.AccountAPI{KV: db, Keys: d.keys, Logger: log}
		api.Keys = &certstore.RotateAPI{KV: db, Keys: d.keys, Logger: log}
	}
	if w.dnssec != nil {
		api.DNSSEC = w.dnssec
		api.ParentDS = &dnsdata.ParentDSChecker{Domain: w.dnssec.Domain, Keys: w.dnssec.Infos}
	}
	d.sock.Serve(api.Local())
	cfg := p.cfg.Load()
	h := api.Public(cfg.Auth.AdminAccessKey.Reveal())
	p.api.Store(api)
	p.public.Store(&h)
	p.wired.Store(true) // before onWired reads the core's ready: see core.setReady
	d.onWired()
	log.Info("PlatformDB ready", "member", coreName(cfg))
	return nil
}

// memberHealth maps each PlatformDB member's name to whether it answers.
func memberHealth(ctx context.Context, db *platformdb.Etcd) (map[string]bool, error) {
	ms, err := db.Members(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(ms))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			ok := !m.IsLearner && db.Healthy(ctx, m)
			mu.Lock()
			out[m.Name] = ok
			mu.Unlock()
		})
	}
	wg.Wait()
	return out, nil
}
