// Package daemon runs one core: its subsystems started in order (the
// control socket first, answering "starting"; certificates from disk;
// metrics; PlatformDB and what needs it; the front), then ready, then taken
// down in reverse. Decision 0019 is the start order and what "ready" means.
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
	"sync/atomic"
	"time"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/front"
	"github.com/pryv/pryv-tls/internal/health"
	"github.com/pryv/pryv-tls/internal/sdnotify"
)

// Options are the process-level knobs of serve that are not configuration.
type Options struct {
	Logger       *slog.Logger
	Reload       <-chan struct{} // SIGHUP: re-read certificate files now
	DrainTimeout time.Duration   // how long in-flight requests get at shutdown
	// Ready, if set, is called once the core is ready: the front bound and
	// the control socket answering (tests and the demo use it).
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

// core is one run of serve: its subsystems, in the order they start.
type core struct {
	cfg    *config.Config
	opts   Options
	log    *slog.Logger
	notify *sdnotify.Notifier
	bg     *tasks

	sock  *admin.Socket // the control socket; nil without PlatformDB
	store *certs.Store
	files *certs.FileSource // the http.ssl files, when they are watched
	ob    *observability
	p     *platform // nil without PlatformDB
	fopts front.Options
	front *front.Front

	serveErr chan error
	ready    atomic.Bool
	reload   chan struct{} // SIGHUP, to the file source
	reloaded chan error    // its answer
}

// step is one subsystem's start.
type step struct {
	what  string // for STATUS=, the starting answer and the log
	start func(ctx context.Context) error
}

func (c *core) steps() []step {
	return []step{
		{"opening the control socket", c.openSocket},
		{"loading the certificates", c.loadCertificates},
		{"starting the metrics listener", c.listenMetrics},
		{"opening PlatformDB", c.openPlatform},
		{"starting the front", c.startFront},
	}
}

// Run starts the core, serves until ctx is cancelled, then drains and
// returns nil. It returns an error only when the core cannot start (a bad
// upstream URL, a taken port, a PlatformDB that does not come up); ctx
// cancelled during start-up (SIGTERM) is a stop, not an error.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	c, err := newCore(cfg, opts)
	if err != nil {
		return err
	}
	defer c.close()
	for _, s := range c.steps() {
		if ctx.Err() != nil {
			return c.stoppedDuringStartup(s.what)
		}
		c.status("starting: " + s.what)
		if err := s.start(ctx); err != nil {
			if ctx.Err() != nil {
				return c.stoppedDuringStartup(s.what)
			}
			return err
		}
	}
	c.setReady()
	return c.serve(ctx)
}

// stoppedDuringStartup is SIGTERM before the core was ready: not a
// failure (exit 0). What was opened is closed by close, in reverse.
func (c *core) stoppedDuringStartup(step string) error {
	c.log.Info("stopped during start-up", "step", step)
	return nil
}

// newCore checks what can be checked without opening anything.
func newCore(cfg *config.Config, opts Options) (*core, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	api, err := url.Parse(cfg.Upstreams.API)
	if err != nil {
		return nil, fmt.Errorf("upstreams.api: %w", err)
	}
	hfs, err := url.Parse(cfg.Upstreams.HFS)
	if err != nil {
		return nil, fmt.Errorf("upstreams.hfs: %w", err)
	}
	bgCtx, cancel := context.WithCancel(context.Background())
	c := &core{cfg: cfg, opts: opts, log: log, notify: sdnotify.New(log),
		bg: &tasks{ctx: bgCtx, cancel: cancel}, store: certs.NewStore(),
		serveErr: make(chan error, 1), reload: make(chan struct{}), reloaded: make(chan error, 1)}
	c.bg.Go(c.notify.Watchdog)
	c.bg.Go(func(ctx context.Context) { memoryPolicy(ctx, log) })
	c.store.SetDefaultName(cfg.PrimaryHostname())
	c.ob = newObservability(cfg, c.store, log)
	c.fopts = front.Options{Addr: cfg.ListenAddr(), API: api, HFS: hfs, Logger: log, Local: map[string]http.Handler{}}
	return c, nil
}

// status is the one-line state: systemd's STATUS= and, while starting, the
// control socket's answer.
func (c *core) status(s string) {
	c.log.Debug("state", "status", s)
	c.notify.Status(s)
	if c.sock != nil {
		c.sock.Step(s)
	}
}

// openSocket listens on control.socket before anything else, so that a
// command run right after serve reaches the process and is told to wait.
// A second pryv-tls on the same configuration stops here, having opened
// nothing else.
func (c *core) openSocket(context.Context) error {
	if !c.cfg.PlatformDBEnabled() {
		return nil // no PlatformDB: nothing for the commands to reach
	}
	s, err := admin.OpenSocket(c.cfg.Control.Socket, c.log)
	if err != nil {
		return err
	}
	c.sock = s
	return nil
}

func (c *core) loadCertificates(context.Context) error {
	if !c.cfg.TLSEnabled() {
		return nil
	}
	c.fopts.GetCertificate = c.store.GetCertificate
	if c.ob.metrics != nil {
		c.fopts.OnHandshake = c.ob.metrics.ObserveHandshake
	}
	c.startFiles()
	return nil
}

func (c *core) listenMetrics(context.Context) error {
	c.fopts.Local[health.FrontLive] = health.Live()
	c.fopts.Local[health.FrontReady] = health.Ready(c.ob.checks)
	if c.ob.metrics != nil {
		c.fopts.Observe = c.ob.metrics.ObserveProxy
	}
	return c.ob.listen(c.bg)
}

func (c *core) openPlatform(ctx context.Context) error {
	if !c.cfg.PlatformDBEnabled() {
		return nil
	}
	c.bg.Go(c.ob.keepHealth)
	p, err := startPlatform(ctx, c)
	if err != nil {
		return err
	}
	c.p = p
	h := p.Public()
	for _, path := range admin.PublicPaths {
		c.fopts.Local[path] = h
	}
	return nil
}

func (c *core) startFront(context.Context) error {
	if c.cfg.TLSEnabled() {
		ph := &placeholder{store: c.store, names: c.cfg.Hostnames(), log: c.log}
		ph.refresh(time.Now())
		c.bg.Go(ph.run)
	}
	f, err := front.New(c.fopts)
	if err != nil {
		return err
	}
	if err := f.Listen(); err != nil {
		return err
	}
	c.front = f
	go func() { c.serveErr <- f.Serve() }()
	return nil
}

// setReady tells systemd and the caller that the core serves: the front is
// bound and serving, and the control socket gives its real answer (the API,
// or "unavailable" while PlatformDB waits for quorum).
func (c *core) setReady() {
	c.ready.Store(true) // before state(): see platform.wired
	c.notify.Ready(c.state())
	c.log.Info("ready", "front", c.front.Addr().String(), "status", c.state())
	if c.opts.Ready != nil {
		c.opts.Ready(c.front.Addr().String())
	}
	c.bg.Go(c.reloads)
}

// state is the one-line state once ready.
func (c *core) state() string {
	if c.p != nil && !c.p.wired.Load() {
		return "serving; PlatformDB is not answering yet (no quorum?): the last materialised certificates and the configured DNS zone"
	}
	return "serving"
}

// onWired is called once PlatformDB is wired, possibly after ready.
func (c *core) onWired() {
	if c.ready.Load() {
		c.notify.Status(c.state())
	}
}

// serve waits for the end, then drains.
func (c *core) serve(ctx context.Context) error {
	select {
	case err := <-c.serveErr:
		return fmt.Errorf("front stopped: %w", err)
	case <-ctx.Done():
	}
	drain := c.opts.DrainTimeout
	if drain <= 0 {
		drain = 20 * time.Second
	}
	c.notify.Stopping("draining in-flight requests")
	c.ob.draining.Store(true) // readyz answers 503 from now on
	if c.sock != nil {
		c.sock.Stopping()
	}
	c.log.Info("shutting down: draining in-flight requests", "timeout", drain.String())
	sctx, cancelDrain := context.WithTimeout(context.Background(), drain)
	defer cancelDrain()
	_ = c.front.Shutdown(sctx)
	if err := <-c.serveErr; err != nil {
		return err
	}
	c.close()
	c.log.Info("stopped")
	return nil
}

// close takes down what was started, in reverse: the background loops (the
// DNS server, the listeners, the materialiser), PlatformDB, the control
// socket. Safe after a partial start, and twice.
func (c *core) close() {
	c.bg.Stop()
	if c.p != nil {
		c.p.Close()
	}
	if c.sock != nil {
		c.sock.Close()
	}
}

// reloads answers SIGHUP: the certificate files are read again now
// (RELOADING=1 until that read is done, then READY=1).
func (c *core) reloads(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.opts.Reload:
		}
		c.notify.Reloading("reloading: re-reading the certificate files")
		if c.files != nil {
			select {
			case c.reload <- struct{}{}:
				select {
				case <-c.reloaded:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
		c.notify.Ready(c.state())
	}
}

// startFiles does the start-up read of the http.ssl files (so the first
// handshake already has the real certificate when it exists) and keeps
// watching them.
func (c *core) startFiles() {
	cfg, store, log := c.cfg, c.store, c.log
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
		OnLoad: func(cert *tls.Certificate) { store.Replace(certs.SourceFiles, cert) },
		OnReload: func(err error) {
			select {
			case c.reloaded <- err:
			default:
			}
		},
	}
	if err := src.Load(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			log.Warn("no certificate files yet; they are watched and served as soon as they appear",
				"certFile", certFile, "keyFile", keyFile)
		} else {
			log.Error("certificate files refused", "error", err.Error())
		}
	}
	c.files = src
	c.bg.Go(func(ctx context.Context) { src.Run(ctx, c.reload) })
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
