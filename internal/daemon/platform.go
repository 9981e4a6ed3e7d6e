package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pryv/pryv-tls/internal/acme"
	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/cluster"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/dns"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/join"
	"github.com/pryv/pryv-tls/internal/platformdb"
	"github.com/pryv/pryv-tls/internal/rotatehook"
)

// quorumWait is how long start-up waits for PlatformDB before serving
// without it: a restarted core of a cluster that has lost quorum serves its
// last materialised certificates and catches up when quorum returns.
const quorumWait = 10 * time.Second

// platform is this core's PlatformDB member and what runs on it. Everything
// that needs the store is wired once it answers (wire); until then the
// front serves from disk and the admin endpoints answer 503.
type platform struct {
	cfg   *config.Config
	log   *slog.Logger
	bg    *tasks
	keys  *atrest.Keyring
	mat   *certstore.Materialiser
	dns   *dns.Server
	watch *dnsdata.Watcher
	ob    *observability

	sock    *admin.Socket // the control socket, open since the start
	status  func(string)  // the start-up step, for systemd and the socket
	onWired func()

	db     atomic.Pointer[platformdb.Etcd]
	public atomic.Pointer[http.Handler] // admin API on the front, once wired
	wired  atomic.Bool                  // everything that needs the store runs
	once   sync.Once
}

// Close stops the member (safe before it is open, and twice).
func (p *platform) Close() {
	p.once.Do(func() {
		if db := p.db.Load(); db != nil {
			_ = db.Close()
		}
	})
}

// Public is the front's admin handler: 503 until PlatformDB answers.
func (p *platform) Public() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := p.public.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":{"id":"unavailable","message":"PlatformDB is not reachable yet (no quorum?)"}}` + "\n"))
	})
}

// startPlatform serves the last materialised certificates and the static DNS
// zone at once, then opens PlatformDB (joining the cluster first when
// c.opts.Join is set) and wires the rest when it answers. It waits for that
// up to quorumWait, or until ctx ends (SIGTERM: the open is abandoned and
// c.close closes what it opened).
func startPlatform(ctx context.Context, c *core) (*platform, error) {
	cfg, store, ob, bg, log := c.cfg, c.store, c.ob, c.bg, c.log
	p := &platform{cfg: cfg, log: log, bg: bg, ob: ob, sock: c.sock, status: c.status, onWired: c.onWired}
	c.p = p // closed by c.close from here on, whatever happens below
	if cfg.LetsEncrypt.AtRestKey != "" {
		raw, err := cfg.LetsEncrypt.AtRestKeyBytes()
		if err == nil {
			p.keys, err = atrest.New(raw)
		}
		if err != nil {
			return nil, fmt.Errorf("letsEncrypt.atRestKey: %w", err)
		}
	}
	if p.keys != nil {
		certFile, keyFile, _ := cfg.CertFiles()
		hook := &rotatehook.Runner{Script: cfg.LetsEncrypt.OnRotateScript, Logger: log}
		p.mat = &certstore.Materialiser{
			TLSDir:  cfg.LetsEncrypt.TLSDir,
			Primary: cfg.PrimaryHostname(),
			Logger:  log,
			Update:  func(ch []certs.Change) { store.Update(certs.SourceStore, ch...) },
			OnRotate: func(host, certPath, keyPath string) {
				bg.Go(func(ctx context.Context) {
					res := hook.Run(ctx, host, certPath, keyPath)
					if hook.Script != "" {
						ob.metrics.ObserveRotateScript(res.Err != nil, res.TimedOut)
					}
				})
			},
			OnServed: func(_ string, d time.Duration) { ob.metrics.ObserveRotation(d) },
		}
		// The http.ssl files are outputs only under Strategy A; under
		// Strategy C they belong to whoever manages them (certbot's symlinks).
		if cfg.LetsEncrypt.Enabled {
			p.mat.CertFile, p.mat.KeyFile = certFile, keyFile
		}
		p.mat.LoadDisk()
	}
	if cfg.DNS.Active {
		p.status("starting: the DNS server")
		if err := p.startDNSServer(); err != nil {
			return nil, err
		}
	}

	tlsFiles, err := nodeTLS(cfg)
	if err != nil {
		return nil, err
	}
	opts := platformdb.Options{
		Name:          coreName(cfg),
		DataDir:       cfg.PlatformDB.DataDir,
		PeerAddress:   cfg.PlatformDB.PeerAddress,
		ClientAddress: cfg.PlatformDB.ClientAddress,
		TLS:           tlsFiles,
		Logger:        log.With("component", "platformdb"),
	}
	if pending := c.opts.Join; pending != nil && !hasMember(cfg.PlatformDB.DataDir) {
		p.status("starting: joining the cluster")
		jr, err := pending.Do(ctx)
		if err != nil {
			return nil, err
		}
		opts.InitialCluster, opts.ClusterState = jr.InitialCluster, "existing"
		log.Info("joined the cluster as a learner; starting the PlatformDB member", "initialCluster", jr.InitialCluster)
	}

	p.status("starting: opening PlatformDB")
	ready := make(chan error, 1)
	// A task, so that c.close waits for an open still under way (and its
	// member, once open, is closed after it).
	bg.Go(func(bgCtx context.Context) { ready <- p.open(bgCtx, opts) })
	select {
	case err := <-ready:
		if err != nil {
			return nil, fmt.Errorf("starting PlatformDB: %w", err)
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(quorumWait):
		log.Warn("PlatformDB is not answering yet (a cluster without quorum?): serving the last materialised certificates; everything else starts when it answers")
		p.sock.Unavailable("PlatformDB is not reachable yet (no quorum?): this core serves its last materialised certificates; try again once the cluster has quorum")
		bg.Go(func(ctx context.Context) {
			select {
			case err := <-ready:
				if err != nil && ctx.Err() == nil {
					log.Error("PlatformDB did not start", "error", err.Error())
				}
			case <-ctx.Done():
			}
		})
	}
	return p, nil
}

// open opens the member, waits for its promotion when it joins as a
// learner, and wires what needs it.
func (p *platform) open(ctx context.Context, opts platformdb.Options) error {
	db, err := platformdb.Open(ctx, opts)
	if err != nil {
		return err
	}
	p.db.Store(db)
	p.ob.db.Store(db)
	p.ob.refreshHealth(ctx, 0) // readiness need not wait for the next tick
	if opts.ClusterState == "existing" {
		// A learner serves no request: wait for the promotion.
		p.status("starting: waiting to be promoted from learner to voter")
		if err := db.WaitVoter(ctx); err != nil {
			return err
		}
	}
	return p.wire(ctx, db)
}

// hasMember reports whether dataDir already holds an etcd member (a restart).
func hasMember(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "member"))
	return err == nil
}

// wire starts what needs the store.
func (p *platform) wire(ctx context.Context, db *platformdb.Etcd) error {
	cfg, log, bg := p.cfg, p.log, p.bg
	api := &admin.API{DNS: dnsdata.Rows{KV: db}, Logger: log}
	if p.keys != nil {
		catalog := &certstore.Catalog{KV: db, Keys: p.keys}
		api.Certs = catalog
		api.ACME = &acme.AccountAPI{KV: db, Keys: p.keys, Logger: log}
		p.mat.Catalog = catalog
		bg.Go(p.mat.Run)
	}
	api.Members = func(ctx context.Context) (map[string]bool, error) { return memberHealth(ctx, db) }
	var dns01 *dnsdata.DNS01
	if cfg.DNS.Active {
		var err error
		if dns01, err = p.startDNSWatch(ctx, db); err != nil {
			return err
		}
	}
	if cfg.LetsEncrypt.Enabled && p.keys != nil {
		if err := startACME(cfg, db, p.keys, api.Certs.(*certstore.Catalog), api, dns01, p.ob.metrics, bg, log); err != nil {
			return err
		}
	}
	if err := p.startJoinListener(db); err != nil {
		return err
	}
	bg.Go(p.renewNodeCert)
	api.Cluster = &clusterAPI{cfg: cfg, db: db}
	api.Self = p.ob.self
	p.sock.Serve(api.Local())
	h := api.Public(cfg.Auth.AdminAccessKey.Reveal())
	p.public.Store(&h)
	p.wired.Store(true) // before onWired reads the core's ready: see core.setReady
	p.onWired()
	log.Info("PlatformDB ready", "member", coreName(cfg))
	return nil
}

// startJoinListener answers joining cores, on the CA holder only (the core
// that has the cluster CA's key).
func (p *platform) startJoinListener(db *platformdb.Etcd) error {
	cfg := p.cfg
	ca, err := cluster.LoadCA(cfg.Cluster.CA.Path)
	if err != nil {
		return nil // not the CA holder
	}
	dir := nodeTLSDir(cfg)
	tlsCfg, err := join.TLSConfig(filepath.Join(dir, cluster.NodeCertName), filepath.Join(dir, cluster.NodeKeyName), ca.Pool())
	if err != nil {
		return err
	}
	host := cfg.Core.IP
	if host == "" {
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, strconv.Itoa(cfg.Cluster.JoinPort))
	ln, err := tls.Listen("tcp", addr, tlsCfg)
	if err != nil {
		return fmt.Errorf("cluster.joinPort: listening on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler: &join.Server{Tokens: join.Tokens{KV: db}, Members: db, Logger: p.log, Base: p.bg.ctx,
			Renew: func(old *x509.Certificate) ([]byte, error) {
				p.log.Info("renewing a node certificate", "core", old.Subject.CommonName, "notAfter", old.NotAfter)
				return ca.Renew(old, cluster.DefaultNodeValidity)
			}},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	p.bg.Go(func(ctx context.Context) {
		go func() { <-ctx.Done(); _ = srv.Close() }()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("join listener stopped", "error", err.Error())
		}
	})
	p.ob.caHolder.Store(true)
	p.log.Info("CA holder: answering joining cores", "addr", addr)
	return nil
}

// renewNodeCert keeps this core's node certificate current, at start and
// twice a day: a joined core asks the CA holder for a new certificate for
// the same key inside cluster.RenewBefore, authenticating with the current
// one; the CA holder, or a core on its own CA, re-issues its own from the CA
// it holds. etcd reloads the pair at the next handshake.
func (p *platform) renewNodeCert(ctx context.Context) {
	for {
		if err := p.renewNodeCertOnce(ctx); err != nil {
			p.log.Error("renewing this core's node certificate; the current one keeps working until it expires", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(12 * time.Hour):
		}
	}
}

func (p *platform) renewNodeCertOnce(ctx context.Context) error {
	dir := nodeTLSDir(p.cfg)
	joinURL, err := os.ReadFile(filepath.Join(dir, JoinURLName))
	if err != nil {
		_, err := nodeTLS(p.cfg) // EnsureNodeCert: re-issues when near expiry
		return err
	}
	certFile, keyFile := filepath.Join(dir, cluster.NodeCertName), filepath.Join(dir, cluster.NodeKeyName)
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	if time.Until(c.Leaf.NotAfter) >= cluster.RenewBefore {
		return nil
	}
	pem, err := join.RenewNodeCert(ctx, strings.TrimSpace(string(joinURL)), filepath.Join(dir, MemberCAName), certFile, keyFile)
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err == nil {
		_, err = tls.X509KeyPair(pem, keyPEM)
	}
	if err == nil {
		err = writeAtomic(certFile, pem, 0o644)
	}
	if err == nil {
		p.log.Info("node certificate renewed by the CA holder")
	}
	return err
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
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

// nodeTLSDir holds this core's node certificate (and, before the core is
// part of a cluster, its own small CA).
func nodeTLSDir(cfg *config.Config) string {
	return filepath.Join(filepath.Dir(cfg.PlatformDB.DataDir), "platformdb-tls")
}

// MemberCAName is the cluster CA certificate a joined core trusts (it has no
// CA key: only the CA holder has).
const MemberCAName = "cluster-ca.pem"

// nodeTLS gives PlatformDB's listeners mutual TLS, so no process without a
// node certificate can read or write the store, not even on loopback:
//   - the CA holder (cluster.ca.path has the CA key) issues its own node
//     certificate from the cluster CA;
//   - a joined core uses the node certificate and cluster CA from its bundle;
//   - a core that is not (yet) part of a cluster uses a CA of its own.
func nodeTLS(cfg *config.Config) (*platformdb.TLSFiles, error) {
	dir := nodeTLSDir(cfg)
	if _, err := os.Stat(filepath.Join(dir, MemberCAName)); err == nil {
		return &platformdb.TLSFiles{CAFile: filepath.Join(dir, MemberCAName),
			CertFile: filepath.Join(dir, cluster.NodeCertName), KeyFile: filepath.Join(dir, cluster.NodeKeyName)}, nil
	}
	ca, err := cluster.LoadCA(cfg.Cluster.CA.Path)
	if err != nil {
		if ca, err = cluster.LoadOrCreateCA(dir); err != nil {
			return nil, fmt.Errorf("PlatformDB TLS: %w", err)
		}
	}
	certFile, keyFile, err := cluster.EnsureNodeCert(ca, dir, coreName(cfg), nodeNames(cfg), nodeIPs(cfg))
	if err != nil {
		return nil, fmt.Errorf("PlatformDB TLS: %w", err)
	}
	return &platformdb.TLSFiles{CAFile: ca.CertFile(), CertFile: certFile, KeyFile: keyFile}, nil
}

// nodeNames and nodeIPs are a node certificate's SANs: {id}.{domain}, the
// core's addresses and loopback (etcd checks a peer's source address, and a
// connection between two loopback addresses comes from 127.0.0.1).
func nodeNames(cfg *config.Config) []string {
	if cfg.DNS.Domain != "" && cfg.Core.ID != "" {
		return []string{cfg.Core.ID + "." + cfg.DNS.Domain}
	}
	return nil
}

func nodeIPs(cfg *config.Config) []net.IP {
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, a := range []string{cfg.PlatformDB.PeerAddress, cfg.PlatformDB.ClientAddress, cfg.Core.IP, cfg.Core.IPv6} {
		host := a
		if h, _, err := net.SplitHostPort(a); err == nil {
			host = h
		}
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			ips = append(ips, ip)
		}
	}
	return ips
}

func coreName(cfg *config.Config) string {
	if cfg.Core.ID != "" {
		return cfg.Core.ID
	}
	return "single"
}
