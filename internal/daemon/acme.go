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
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-acme/lego/v5/lego"
	legolog "github.com/go-acme/lego/v5/log"

	"github.com/pryv/pryv-tls/internal/acme"
	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/metrics"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// Version is the build's version, for the ACME User-Agent.
var Version = "dev"

// DirectoryURL is the ACME directory the configuration points at.
func DirectoryURL(le config.LetsEncrypt) string {
	switch {
	case le.DirectoryURL != "":
		return le.DirectoryURL
	case le.Staging:
		return lego.DirectoryURLLetsEncryptStaging
	}
	return lego.DirectoryURLLetsEncrypt
}

// acmeSys is Strategy A's ACME: the HTTP-01 port on every core and, on the
// certRenewer core, the renewer. Both run while PlatformDB answers (the
// platform attaches them). It is the admin API's Renewer and renewal state
// (given to the API when it is built, never set on it from here).
type acmeSys struct {
	cfg     atomic.Pointer[config.Config]
	keys    *atrest.Keyring
	metrics *metrics.Metrics
	log     *slog.Logger

	mu      sync.Mutex // attach, detach and Reload: never a request's path
	db      *platformdb.Etcd
	catalog *certstore.Catalog
	w       *wiring
	renewer atomic.Pointer[acme.Renewer]
	stopRun func() // stops the running renewer
	// alpn answers the front's TLS-ALPN-01 validations on every core, from
	// PlatformDB (fed while it is attached).
	alpn *acme.TLSALPN01Responder
}

func newACMESys(cfg *config.Config, keys *atrest.Keyring, m *metrics.Metrics, log *slog.Logger) *acmeSys {
	a := &acmeSys{keys: keys, metrics: m, log: log, alpn: acme.NewTLSALPN01Responder(log.With("component", "acme"))}
	a.cfg.Store(cfg)
	return a
}

func (a *acmeSys) on() bool {
	cfg := a.cfg.Load()
	return cfg.LetsEncrypt.Enabled && a.keys != nil
}

func (a *acmeSys) Name() string { return "preparing ACME" }

// Start checks what can be checked before PlatformDB answers.
func (a *acmeSys) Start(context.Context) error {
	if !a.on() || !a.cfg.Load().LetsEncrypt.CertRenewer {
		return nil
	}
	_, err := a.options(a.cfg.Load())
	return err
}

func (a *acmeSys) Stop() { a.detach() }

// Reload takes letsEncrypt's email, profile, keyType, renewBeforeDays, the
// directory, EAB and the plans (hostnames) for the next order: the renewer
// is rebuilt with them and restarted (an order under way is abandoned and
// retried by the new one, the renewal state being in PlatformDB). The new
// renewer is built before the old one stops: a bad directoryCaFile keeps
// the old one.
func (a *acmeSys) Reload(next *config.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.on() || a.w == nil || !renewerChanged(a.cfg.Load(), next) {
		a.cfg.Store(next)
		return nil
	}
	r, err := a.newRenewer(next)
	if err != nil {
		return err
	}
	a.cfg.Store(next)
	a.run(r)
	return nil
}

// renewerChanged reports whether the renewer's options differ: any other
// change leaves the running renewer (and an order under way) alone.
func renewerChanged(cur, next *config.Config) bool {
	type opts struct {
		Email, KeyType, Profile, DirectoryURL, CAFile, EABKID string
		EABKey                                                config.Secret
		RenewBeforeDays                                       int
		Plans                                                 []config.Plan
	}
	of := func(c *config.Config) opts {
		le := c.LetsEncrypt
		return opts{Email: le.Email, KeyType: le.KeyType, Profile: le.Profile, DirectoryURL: DirectoryURL(le),
			CAFile: le.DirectoryCAFile, EABKID: le.EAB.KID, EABKey: le.EAB.HMACKey, RenewBeforeDays: le.RenewBeforeDays, Plans: c.Plans()}
	}
	return !reflect.DeepEqual(of(cur), of(next))
}

// attach starts the TLS-ALPN-01 responder's watch, the HTTP-01 listener
// (unless letsEncrypt.challenge is tls-alpn-01) and the renewer: the
// preferred one on the certRenewer, a standby elsewhere (decision 0027).
func (a *acmeSys) attach(ctx context.Context, w *wiring) error {
	if !a.on() || w.catalog == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	cfg := a.cfg.Load()
	a.db, a.catalog = w.db, w.catalog
	w.run.Go(func(ctx context.Context) { a.alpn.Run(ctx, w.db) })
	if cfg.LetsEncrypt.Challenge == config.ChallengeTLSALPN01 {
		a.log.Info("TLS-ALPN-01: challenges answered on the front's port from PlatformDB; no HTTP-01 listener", "addr", cfg.ListenAddr())
	} else if err := a.listenHTTP01(cfg, w); err != nil {
		return err
	}
	if err := registerCoreURL(ctx, w.db, cfg); err != nil {
		a.log.Warn("the certRenewer will not order this core's certificate until it is registered; retried at the next start", "error", err.Error())
	}
	if !cfg.LetsEncrypt.CertRenewer && a.alone(ctx, w) {
		// Nothing to stand by for: certRenewer: false on a core alone is
		// what an operator sets to keep it from ordering (a core being
		// migrated from open-pryv.io's own ACME, decision 0018).
		a.log.Info("certRenewer: false on a single core: no renewer runs; a standby starts once the core is in a cluster (at its next start)")
		return nil
	}
	a.w = w
	r, err := a.newRenewer(cfg)
	if err != nil && !cfg.LetsEncrypt.CertRenewer {
		// A standby is a spare: the core serves without it.
		a.log.Warn("this core cannot stand by for the certRenewer; its certificates still arrive through PlatformDB", "error", err.Error())
		a.w = nil
		return nil
	}
	if err != nil {
		return err
	}
	a.run(r)
	if !cfg.LetsEncrypt.CertRenewer {
		a.log.Info("standby renewer: certificates arrive through PlatformDB; this core orders one only when the certRenewer is gone or has left it due past a tenth of its lifetime (at least 10 minutes)")
		return nil
	}
	w.run.Go((&certstore.Unplanned{KV: w.db, Planned: corePlans{cfg: a.cfg.Load, kv: w.db, log: a.log}.planned, Logger: a.log}).Run)
	a.log.Info("certRenewer: ordering and renewing certificates", "directory", DirectoryURL(cfg.LetsEncrypt))
	return nil
}

// alone reports whether this core's PlatformDB has no other member. A
// store that does not answer is taken as a cluster: the standby then runs,
// as decision 0027 wants on every other core.
func (a *acmeSys) alone(ctx context.Context, w *wiring) bool {
	ms, err := w.db.Members(ctx)
	return err == nil && len(ms) <= 1
}

// detach stops the renewer (PlatformDB is going away).
func (a *acmeSys) detach() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopRun != nil {
		a.stopRun()
		a.stopRun = nil
	}
	a.renewer.Store(nil)
	a.w = nil
}

// run replaces the running renewer by r.
func (a *acmeSys) run(r *acme.Renewer) {
	if a.stopRun != nil {
		a.stopRun()
	}
	t := newTasks()
	parent := a.w.run.ctx
	stop := context.AfterFunc(parent, t.cancel) // stopped with PlatformDB too
	t.Go(r.Run)
	a.renewer.Store(r)
	a.stopRun = func() { stop(); t.Stop() }
}

func (a *acmeSys) listenHTTP01(cfg *config.Config, w *wiring) error {
	addr := net.JoinHostPort(cfg.HTTP.IP, strconv.Itoa(cfg.LetsEncrypt.HTTP01Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("letsEncrypt.http01Port: listening on %s: %w (the CA validates HTTP-01 on this port: run with CAP_NET_BIND_SERVICE, or forward port 80 here and set letsEncrypt.http01Port)", addr, err)
	}
	srv := &http.Server{
		Handler:           &acme.HTTP01Responder{KV: w.db, HTTPSPort: cfg.HTTP.Port, Logger: a.log},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	w.run.Go(func(ctx context.Context) {
		go func() { <-ctx.Done(); _ = srv.Close() }()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("HTTP-01 listener stopped", "error", err.Error())
		}
	})
	a.log.Info("HTTP-01 listener up (challenges from PlatformDB, everything else redirected to HTTPS)", "addr", ln.Addr().String())
	return nil
}

func (a *acmeSys) newRenewer(cfg *config.Config) (*acme.Renewer, error) {
	opts, err := a.options(cfg)
	if err != nil {
		return nil, err
	}
	opts.KV, opts.Certs = a.db, a.catalog
	opts.MorePlans = corePlans{cfg: a.cfg.Load, kv: a.db, log: a.log}.plans
	if a.w.dns01 != nil { // a nil *DNS01 in the interface would not read as "none"
		opts.DNS01 = a.w.dns01
	}
	return acme.New(opts)
}

// options are the renewer's options from configuration alone.
func (a *acmeSys) options(cfg *config.Config) (acme.Options, error) {
	le := cfg.LetsEncrypt
	httpClient, err := directoryClient(le.DirectoryCAFile)
	if err != nil {
		return acme.Options{}, err
	}
	var eab *acme.EAB
	if le.EAB.KID != "" {
		eab = &acme.EAB{KID: le.EAB.KID, HMACKey: le.EAB.HMACKey.Reveal()}
	}
	var fallbacks []acme.Fallback
	for _, f := range le.Fallback {
		fb := acme.Fallback{DirectoryURL: f.DirectoryURL}
		if f.EAB.KID != "" {
			fb.EAB = &acme.EAB{KID: f.EAB.KID, HMACKey: f.EAB.HMACKey.Reveal()}
		}
		fallbacks = append(fallbacks, fb)
	}
	var plans []acme.Plan
	for _, p := range cfg.Plans() {
		plans = append(plans, acme.Plan{Hostnames: p.Hostnames, Challenge: p.Challenge})
	}
	legolog.SetDefault(a.log.With("component", "lego"))
	m := a.metrics
	return acme.Options{
		DirectoryURL: DirectoryURL(le),
		HTTPClient:   httpClient,
		UserAgent:    "pryv-tls/" + Version,
		Email:        le.Email,
		KeyType:      le.KeyType,
		Profile:      le.Profile,
		EAB:          eab,
		Plans:        plans,
		RenewBefore:  time.Duration(le.RenewBeforeDays) * 24 * time.Hour,
		Keys:         a.keys,
		Logger:       a.log.With("component", "acme"),
		OnOrder: func(err error) {
			kind := ""
			if err != nil {
				kind = acme.ErrorKind(err)
			}
			m.ObserveOrder(kind)
		},
		OnFailure: a.onFailure(cfg),
		Fallbacks: fallbacks,
		Core:      coreName(cfg),
		Standby:   !le.CertRenewer,
	}, nil
}

// ForceRenew is the admin API's Renewer: the renewer running now.
func (a *acmeSys) ForceRenew(ctx context.Context, hostname string, ignoreBackoff bool) (*certstore.Record, error) {
	r := a.renewer.Load()
	if r == nil {
		return nil, errors.New("this core is not the certRenewer, or PlatformDB is not answering")
	}
	return r.ForceRenew(ctx, hostname, ignoreBackoff)
}

// adminRenewer is what the API is given: nil (no renewer endpoint) on a
// core that is not the certRenewer.
func (a *acmeSys) adminRenewer() admin.Renewer {
	cfg := a.cfg.Load()
	if !a.on() || !cfg.LetsEncrypt.CertRenewer {
		return nil
	}
	return a
}

// renewals is the renewal state by hostname (any core reads it: it lives in
// PlatformDB); nil without ACME.
func (a *acmeSys) renewals(db *platformdb.Etcd) func(context.Context) (map[string]admin.RenewalState, error) {
	if !a.on() {
		return nil
	}
	return func(ctx context.Context) (map[string]admin.RenewalState, error) {
		states, err := acme.LoadStates(ctx, db)
		out := make(map[string]admin.RenewalState, len(states))
		for k, s := range states {
			out[k] = renewalState(s)
		}
		return out, err
	}
}

// directoryClient trusts the system roots plus letsEncrypt.directoryCaFile.
func directoryClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("letsEncrypt.directoryCaFile: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("letsEncrypt.directoryCaFile: no PEM certificate in %s", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}, nil
}
