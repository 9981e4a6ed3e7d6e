// Package daemon wires the subsystems of one core together in start order
// and takes them down in reverse: certificates from disk, PlatformDB and the
// materialiser, the control socket, then the front.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/front"
	"github.com/pryv/pryv-tls/internal/health"
)

// Options are the process-level knobs of serve that are not configuration.
type Options struct {
	Logger       *slog.Logger
	Reload       <-chan struct{} // SIGHUP: re-read certificate files now
	DrainTimeout time.Duration   // how long in-flight requests get at shutdown
	// Ready, if set, is called once the front is bound (tests and the demo use it).
	Ready func(addr string)
	// Join, if set, joins a cluster before this core's PlatformDB member
	// first starts (serve --bootstrap).
	Join *Join
}

// placeholderValidity is short on purpose: a placeholder is a sign something
// is not done yet, and it is renewed while that stays true.
const placeholderValidity = 24 * time.Hour

// tasks runs background loops and waits for them at shutdown.
type tasks struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (t *tasks) Go(f func(ctx context.Context)) {
	t.wg.Add(1)
	go func() { defer t.wg.Done(); f(t.ctx) }()
}

func (t *tasks) Stop() { t.cancel(); t.wg.Wait() }

// Run serves until ctx is cancelled, then drains and returns nil. It returns
// an error only when the core cannot start (a bad upstream URL, a taken port,
// a PlatformDB that does not come up).
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	api, err := url.Parse(cfg.Upstreams.API)
	if err != nil {
		return fmt.Errorf("upstreams.api: %w", err)
	}
	hfs, err := url.Parse(cfg.Upstreams.HFS)
	if err != nil {
		return fmt.Errorf("upstreams.hfs: %w", err)
	}
	bgCtx, cancel := context.WithCancel(context.Background())
	bg := &tasks{ctx: bgCtx, cancel: cancel}
	defer bg.Stop()
	bg.Go(func(ctx context.Context) { memoryPolicy(ctx, log) })

	fopts := front.Options{Addr: cfg.ListenAddr(), API: api, HFS: hfs, Logger: log, Local: map[string]http.Handler{}}
	store := certs.NewStore()
	store.SetDefaultName(cfg.PrimaryHostname())
	ob := newObservability(cfg, store, log)
	fopts.Local[health.FrontLive] = health.Live()
	fopts.Local[health.FrontReady] = health.Ready(ob.checks)
	if ob.metrics != nil {
		fopts.Observe = ob.metrics.ObserveProxy
	}
	if cfg.TLSEnabled() {
		fopts.GetCertificate = store.GetCertificate
		if ob.metrics != nil {
			fopts.OnHandshake = ob.metrics.ObserveHandshake
		}
		startFiles(cfg, store, opts, bg, log)
	}
	if err := ob.listen(bg); err != nil {
		return err
	}

	if cfg.PlatformDBEnabled() {
		bg.Go(ob.keepHealth)
		p, err := startPlatform(ctx, cfg, store, opts.Join, ob, bg, log)
		if err != nil {
			return err
		}
		defer p.Close()
		h := p.Public()
		for _, path := range admin.PublicPaths {
			fopts.Local[path] = h
		}
	}

	if cfg.TLSEnabled() {
		ph := &placeholder{store: store, names: cfg.Hostnames(), log: log}
		ph.refresh(time.Now())
		bg.Go(ph.run)
	}

	f, err := front.New(fopts)
	if err != nil {
		return err
	}
	if err := f.Listen(); err != nil {
		return err
	}
	if opts.Ready != nil {
		opts.Ready(f.Addr().String())
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- f.Serve() }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("front stopped: %w", err)
	case <-ctx.Done():
	}
	drain := opts.DrainTimeout
	if drain <= 0 {
		drain = 20 * time.Second
	}
	ob.draining.Store(true) // readyz answers 503 from now on
	log.Info("shutting down: draining in-flight requests", "timeout", drain.String())
	sctx, cancelDrain := context.WithTimeout(context.Background(), drain)
	defer cancelDrain()
	_ = f.Shutdown(sctx)
	if err := <-serveErr; err != nil {
		return err
	}
	bg.Stop()
	log.Info("stopped")
	return nil
}

// startFiles does the start-up read of the http.ssl files (so the first
// handshake already has the real certificate when it exists) and keeps
// watching them.
func startFiles(cfg *config.Config, store *certs.Store, opts Options, bg *tasks, log *slog.Logger) {
	certFile, keyFile, caFile := cfg.CertFiles()
	if certFile == "" || (cfg.LetsEncrypt.Enabled && cfg.PlatformDBEnabled()) {
		// Under Strategy A the files are the materialiser's outputs: the
		// certificates come from PlatformDB (and, at start, from the last
		// materialised copies), not from watching what we wrote ourselves.
		return
	}
	src := &certs.FileSource{
		CertFile: certFile, KeyFile: keyFile, CAFile: caFile,
		Logger: log,
		OnLoad: func(c *tls.Certificate) { store.Replace(certs.SourceFiles, c) },
	}
	if err := src.Load(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			log.Warn("no certificate files yet; they are watched and served as soon as they appear",
				"certFile", certFile, "keyFile", keyFile)
		} else {
			log.Error("certificate files refused", "error", err.Error())
		}
	}
	bg.Go(func(ctx context.Context) { src.Run(ctx, opts.Reload) })
}

// placeholder keeps a self-signed certificate in the store while no real
// certificate exists, renewing it before it expires.
type placeholder struct {
	store    *certs.Store
	names    []string
	log      *slog.Logger
	notAfter time.Time
}

func (p *placeholder) run(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.refresh(now)
		}
	}
}

func (p *placeholder) refresh(now time.Time) {
	if p.store.HasReal() {
		if !p.notAfter.IsZero() {
			p.store.Replace(certs.SourcePlaceholder)
			p.notAfter = time.Time{}
		}
		return
	}
	if !p.notAfter.IsZero() && p.notAfter.Sub(now) > placeholderValidity/2 {
		return
	}
	c, err := certs.Placeholder(p.names, placeholderValidity, now)
	if err != nil {
		p.log.Error("making the placeholder certificate", "error", err.Error())
		return
	}
	p.store.Replace(certs.SourcePlaceholder, c)
	p.notAfter = c.Leaf.NotAfter
	p.log.Warn("SERVING A SELF-SIGNED PLACEHOLDER CERTIFICATE: no real certificate is available yet; clients will not trust this core until one is",
		"hostnames", c.Leaf.DNSNames, "notAfter", p.notAfter.UTC())
}
