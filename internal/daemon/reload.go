package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/config"
)

// restartNeeded is a subsystem's refusal of a change it cannot make live.
func restartNeeded(key, why string) error {
	return fmt.Errorf("%s: %s %s; restart pryv-tls to apply the new value", key, config.RestartOnlyMessage, why)
}

// reopenPlatform closes this core's PlatformDB member and opens it again
// with next (validated, and differing from the running configuration only
// where the caller means it to: a live init-ca-holder), the front and the
// DNS server serving from memory meanwhile; then the other subsystems take
// next as a reload would. The SIGHUP loop is not running a reload
// meanwhile: callers run on the control socket, reloads on their own loop,
// and both hold reloadMu.
func (c *core) reopenPlatform(ctx context.Context, next *config.Config) error {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	if err := c.plat.Restart(ctx, next); err != nil {
		return err
	}
	if err := c.applyAll(next); err != nil {
		return err
	}
	c.cfg.Store(next)
	return nil
}

// reloadLoop answers SIGHUP: RELOADING=1, the configuration loaded again
// and applied (or refused, the old one kept), the certificate files read
// again, then READY=1.
func (c *core) reloadLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.opts.Reload:
		}
		c.notify.Reloading("reloading: the configuration and the certificate files")
		c.reloadMu.Lock()
		if c.opts.Load != nil {
			c.recordReload(c.reloadConfig())
		} else {
			_ = c.applyAll(c.cfg.Load()) // the files only
		}
		c.reloadMu.Unlock()
		if ctx.Err() != nil {
			return
		}
		c.notify.Ready(c.state())
	}
}

// reloadConfig loads the files again and applies them; nil when the new
// configuration runs.
func (c *core) reloadConfig() error {
	next, err := c.opts.Load()
	if err != nil {
		_ = c.applyAll(c.cfg.Load()) // the certificate files are read again all the same
		return err
	}
	cur := c.cfg.Load()
	if err := config.Diff(cur, next).Err(); err != nil {
		_ = c.applyAll(cur)
		return err
	}
	if err := c.applyAll(next); err != nil {
		return err
	}
	c.cfg.Store(next)
	return nil
}

// applyAll gives next to every started subsystem in start order; when one
// refuses, the ones before it get the running configuration back, so that
// nothing of next stays.
func (c *core) applyAll(next *config.Config) error {
	cur := c.cfg.Load()
	c.setLogLevel(next)
	for i, s := range c.started {
		if err := s.Reload(next); err != nil {
			c.setLogLevel(cur)
			for _, done := range c.started[:i] {
				if rerr := done.Reload(cur); rerr != nil {
					c.log.Error("reload: putting the running configuration back", "subsystem", done.Name(), "error", rerr.Error())
				}
			}
			return err
		}
	}
	return nil
}

func (c *core) setLogLevel(cfg *config.Config) {
	if c.opts.LogLevel == nil || cfg.Log.Level == "" {
		return
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(cfg.Log.Level)); err == nil {
		c.opts.LogLevel.Set(lv)
	}
}

// recordReload logs the outcome and keeps it for status (lastReload).
func (c *core) recordReload(err error) {
	st := &admin.ReloadState{At: time.Now().UTC(), OK: err == nil}
	if err != nil {
		st.Error = err.Error()
		c.log.Error("configuration not reloaded; the running configuration stays", "error", st.Error)
	} else {
		c.log.Info("configuration reloaded")
	}
	c.ob.lastReload.Store(st)
}
