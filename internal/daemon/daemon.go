// Package daemon runs one core as a list of subsystems (subsystems.go):
// started in order (the control socket first, answering "starting"; the
// certificate files; metrics; the materialised certificates, DNS, ACME and
// node identity; PlatformDB, which wires them when it answers; the front),
// then ready, then stopped in reverse. SIGHUP reloads the configuration into
// them. Decision 0019 is the start order and what "ready" means; decision
// 0020 is the shape and what a reload may change.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/sdnotify"
)

// Options are the process-level knobs of serve that are not configuration.
type Options struct {
	Logger *slog.Logger
	// LogLevel, if set, is the level Logger's handler reads: a reload sets
	// it from log.level.
	LogLevel *slog.LevelVar
	// Reload is SIGHUP: the configuration is loaded again with Load (when
	// set) and the certificate files are re-read.
	Reload <-chan struct{}
	// Load loads and validates the files serve was started with, as they
	// are now.
	Load         func() (*config.Config, error)
	DrainTimeout time.Duration // how long in-flight requests get at shutdown
	// Ready, if set, is called once the core is ready: the front bound and
	// the control socket answering (tests and the demo use it).
	Ready func(addr string)
	// Join, if set, joins a cluster before this core's PlatformDB member
	// first starts (serve --bootstrap).
	Join *Join
	// AddLayer, if set, adds a configuration file Load reads last from then
	// on: the override a live init-ca-holder wrote (what now runs).
	AddLayer func(file string)
}

// subsystem is one part of a running core. Start brings it up (ctx ends
// the start, not the subsystem: a SIGTERM during start-up); Stop takes it
// down and is safe after a failed or partial Start; Reload applies a new,
// validated configuration to what it owns, fully or not at all (an error
// leaves the old one running), and refuses, naming the key, what it cannot
// change while running.
type subsystem interface {
	Name() string // the start-up step: STATUS=, the socket's "starting" answer, the log
	Start(ctx context.Context) error
	Stop()
	Reload(next *config.Config) error
}

// env is what every subsystem shares: the log, systemd, and the one-line
// state.
type env struct {
	log    *slog.Logger
	notify *sdnotify.Notifier
	sock   *socketSys
}

// status is the one-line state: systemd's STATUS= and, while starting, the
// control socket's answer.
func (e *env) status(s string) {
	e.log.Debug("state", "status", s)
	e.notify.Status(s)
	e.sock.Step(s)
}

// tasks runs background loops and waits for them when stopped.
type tasks struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newTasks() *tasks {
	ctx, cancel := context.WithCancel(context.Background())
	return &tasks{ctx: ctx, cancel: cancel}
}

func (t *tasks) Go(f func(ctx context.Context)) {
	t.wg.Add(1)
	go func() { defer t.wg.Done(); f(t.ctx) }()
}

func (t *tasks) Stop() { t.cancel(); t.wg.Wait() }

// core is one run of serve.
type core struct {
	env
	opts     Options
	cfg      atomic.Pointer[config.Config] // the running configuration
	subs     []subsystem                   // in start order
	started  []subsystem
	bg       *tasks     // process-wide loops: watchdog, memory policy
	hup      *tasks     // the SIGHUP loop: stopped first, so no reload meets a stop
	reloadMu sync.Mutex // one reload (or PlatformDB reopen) at a time
	front    *frontSys
	plat     *platformSys
	ob       *observability
	ready    atomic.Bool
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
	return c.run(ctx)
}

// run starts the subsystems in order, then serves.
func (c *core) run(ctx context.Context) error {
	defer c.stop()
	for _, s := range c.subs {
		if ctx.Err() != nil {
			return c.stoppedDuringStartup(s.Name())
		}
		c.status("starting: " + s.Name())
		c.started = append(c.started, s) // stopped whatever Start did
		if err := s.Start(ctx); err != nil {
			if ctx.Err() != nil {
				return c.stoppedDuringStartup(s.Name())
			}
			return err
		}
	}
	c.setReady()
	return c.serve(ctx)
}

// stoppedDuringStartup is SIGTERM before the core was ready: not a
// failure (exit 0). What was started is stopped by stop, in reverse.
func (c *core) stoppedDuringStartup(step string) error {
	c.log.Info("stopped during start-up", "step", step)
	return nil
}

// setReady tells systemd and the caller that the core serves: the front is
// bound and serving, and the control socket gives its real answer (the API,
// or "unavailable" while PlatformDB waits for quorum).
func (c *core) setReady() {
	c.ready.Store(true) // before state(): see platformSys.wire
	addr := c.front.Addr()
	c.notify.Ready(c.state())
	c.log.Info("ready", "front", addr, "status", c.state())
	if c.opts.Ready != nil {
		c.opts.Ready(addr)
	}
	c.hup.Go(c.reloadLoop)
}

// state is the one-line state once ready.
func (c *core) state() string {
	if c.plat.enabled() && !c.plat.wired.Load() {
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
	case err := <-c.front.serveErr:
		return fmt.Errorf("front stopped: %w", err)
	case <-ctx.Done():
	}
	c.notify.Stopping("draining in-flight requests")
	c.ob.draining.Store(true) // readyz answers 503 from now on
	c.sock.Stopping()
	if err := c.front.Drain(); err != nil {
		return err
	}
	c.stop()
	c.log.Info("stopped")
	return nil
}

// stop takes down what was started, in reverse, then the process-wide
// loops. Safe after a partial start, and twice.
func (c *core) stop() {
	c.hup.Stop()
	for i := len(c.started) - 1; i >= 0; i-- {
		c.started[i].Stop()
	}
	c.started = nil
	c.bg.Stop()
}
