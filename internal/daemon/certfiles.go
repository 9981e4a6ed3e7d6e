package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"log/slog"
	"time"

	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/config"
)

// filesSys is the certificate source of the http.ssl files: read at start
// (so the first handshake already has the real certificate when it exists),
// polled from then on, and read again on every reload.
type filesSys struct {
	log      *slog.Logger
	cache    *certs.Cache
	src      *certs.FileSource // nil when the files are not watched
	bg       *tasks
	reload   chan struct{} // a reload: read the files now
	reloaded chan error    // the source's answer
}

func newFilesSys(cfg *config.Config, cache *certs.Cache, log *slog.Logger) *filesSys {
	f := &filesSys{log: log, cache: cache, bg: newTasks(), reload: make(chan struct{}), reloaded: make(chan error, 1)}
	certFile, keyFile, caFile := cfg.CertFiles()
	if !cfg.TLSEnabled() || certFile == "" || (cfg.LetsEncrypt.Enabled && cfg.PlatformDBEnabled()) {
		// Under Strategy A the files are the materialiser's outputs: the
		// certificates come from PlatformDB (and, at start, from the last
		// materialised copies), not from watching what we wrote ourselves.
		return f
	}
	f.src = &certs.FileSource{
		CertFile: certFile, KeyFile: keyFile, CAFile: caFile,
		Logger: log,
		OnLoad: func(cert *tls.Certificate) { cache.Replace(certs.SourceFiles, cert) },
		OnReload: func(err error) {
			select {
			case f.reloaded <- err:
			default:
			}
		},
	}
	return f
}

func (f *filesSys) Name() string { return "loading the certificates" }

func (f *filesSys) Start(context.Context) error {
	if f.src == nil {
		return nil
	}
	if err := f.src.Load(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			f.log.Warn("no certificate files yet; they are watched and served as soon as they appear",
				"certFile", f.src.CertFile, "keyFile", f.src.KeyFile)
		} else {
			f.log.Error("certificate files refused", "error", err.Error())
		}
	}
	f.bg.Go(func(ctx context.Context) { f.src.Run(ctx, f.reload) })
	return nil
}

func (f *filesSys) Stop() { f.bg.Stop() }

// Reload reads the files again now, and returns once they were (a bad pair
// is logged and the served certificate stays: it is not a reload error).
// Their paths are restart-only keys.
func (f *filesSys) Reload(*config.Config) error {
	if f.src == nil {
		return nil
	}
	select {
	case f.reload <- struct{}{}:
		select {
		case _ = <-f.reloaded: // the source logged a bad pair; not a reload error (above)
		case <-f.bg.ctx.Done():
		}
	case <-f.bg.ctx.Done():
	}
	return nil
}

// placeholderValidity is short on purpose: a placeholder is a sign something
// is not done yet, and it is renewed while that stays true.
const placeholderValidity = 24 * time.Hour

// placeholderSys keeps a self-signed certificate in the store while no real
// certificate exists, renewing it before it expires. It starts after every
// other source had its first say.
type placeholderSys struct {
	cache    *certs.Cache
	names    []string // nil: TLS is off
	log      *slog.Logger
	bg       *tasks
	notAfter time.Time
}

func newPlaceholderSys(cfg *config.Config, cache *certs.Cache, log *slog.Logger) *placeholderSys {
	p := &placeholderSys{cache: cache, log: log, bg: newTasks()}
	if cfg.TLSEnabled() {
		p.names = cfg.Hostnames()
	}
	return p
}

func (p *placeholderSys) Name() string { return "checking for a certificate to serve" }

func (p *placeholderSys) Start(context.Context) error {
	if p.names == nil {
		return nil
	}
	p.refresh(time.Now())
	p.bg.Go(p.run)
	return nil
}

func (p *placeholderSys) Stop() { p.bg.Stop() }

// Reload: the placeholder names the configured hostnames, restart-only keys.
func (p *placeholderSys) Reload(*config.Config) error { return nil }

func (p *placeholderSys) run(ctx context.Context) {
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

func (p *placeholderSys) refresh(now time.Time) {
	if p.cache.HasReal() {
		if !p.notAfter.IsZero() {
			p.cache.Replace(certs.SourcePlaceholder)
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
	p.cache.Replace(certs.SourcePlaceholder, c)
	p.notAfter = c.Leaf.NotAfter
	p.log.Warn("SERVING A SELF-SIGNED PLACEHOLDER CERTIFICATE: no real certificate is available yet; clients will not trust this core until one is",
		"hostnames", c.Leaf.DNSNames, "notAfter", p.notAfter.UTC())
}
