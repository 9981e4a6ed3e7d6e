package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/pryv/pryv-tls/internal/acme"
	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/front"
	"github.com/pryv/pryv-tls/internal/health"
)

// frontSys is the public listener: HTTPS (or plain HTTP behind a proxy)
// to the core's API and HFS, with pryv-tls's own paths answered here.
type frontSys struct {
	log      *slog.Logger
	cfg      *config.Config
	drain    time.Duration
	front    *front.Front
	serveErr chan error
}

// frontDeps are where the front's certificates and local paths come from.
type frontDeps struct {
	cache *certs.Cache // nil: plain HTTP
	// alpn answers TLS-ALPN-01 validations on the front (nil: none).
	alpn  *acme.TLSALPN01Responder
	ob    *observability
	plat  *platformSys
	drain time.Duration
}

// upstreams parses upstreams.api and upstreams.hfs.
func upstreams(cfg *config.Config) (api, hfs *url.URL, err error) {
	if api, err = url.Parse(cfg.Upstreams.API); err != nil {
		return nil, nil, fmt.Errorf("upstreams.api: %w", err)
	}
	if hfs, err = url.Parse(cfg.Upstreams.HFS); err != nil {
		return nil, nil, fmt.Errorf("upstreams.hfs: %w", err)
	}
	return api, hfs, nil
}

func newFrontSys(cfg *config.Config, d frontDeps, log *slog.Logger) (*frontSys, error) {
	api, hfs, err := upstreams(cfg)
	if err != nil {
		return nil, err
	}
	ob := d.ob
	opts := front.Options{Addr: cfg.ListenAddr(), API: api, HFS: hfs, Logger: log, Local: map[string]http.Handler{
		health.FrontLive:  health.Live(),
		health.FrontReady: health.Ready(ob.checks),
	}, HSTS: cfg.HTTP.HSTS, UpstreamHeaderTimeout: time.Duration(cfg.Upstreams.ResponseHeaderTimeout)}
	if ob.metrics != nil {
		opts.Observe = ob.metrics.ObserveProxy
	}
	if cfg.TLSEnabled() {
		opts.GetCertificate = d.cache.GetCertificate
		if d.alpn != nil {
			opts.ACMETLS = d.alpn.GetCertificate
		}
		if ob.metrics != nil {
			opts.OnHandshake = ob.metrics.ObserveHandshake
		}
	}
	if cfg.PlatformDBEnabled() {
		h := d.plat.Public()
		for _, path := range admin.PublicPaths {
			opts.Local[path] = h
		}
	}
	f, err := front.New(opts)
	if err != nil {
		return nil, err
	}
	drain := d.drain
	if drain <= 0 {
		drain = 20 * time.Second
	}
	return &frontSys{log: log, cfg: cfg, drain: drain, front: f, serveErr: make(chan error, 1)}, nil
}

func (f *frontSys) Name() string { return "starting the front" }

func (f *frontSys) Start(context.Context) error {
	if err := f.front.Listen(); err != nil {
		return err
	}
	go func() { f.serveErr <- f.front.Serve() }()
	return nil
}

// Addr is the bound address.
func (f *frontSys) Addr() string { return f.front.Addr().String() }

// Drain stops accepting and lets in-flight requests finish, up to the
// drain timeout.
func (f *frontSys) Drain() error {
	f.log.Info("shutting down: draining in-flight requests", "timeout", f.drain.String())
	ctx, cancel := context.WithTimeout(context.Background(), f.drain)
	defer cancel()
	_ = f.front.Shutdown(ctx)
	return <-f.serveErr
}

// Stop: the front is drained by serve before the other subsystems stop;
// a front that never served has nothing to stop.
func (f *frontSys) Stop() {}

// Reload sends new requests to the new upstreams; requests under way
// finish where they started.
func (f *frontSys) Reload(next *config.Config) error {
	if next.Upstreams == f.cfg.Upstreams {
		f.cfg = next
		return nil
	}
	api, hfs, err := upstreams(next)
	if err != nil {
		return err
	}
	if err := f.front.SetUpstreams(api, hfs); err != nil {
		return err
	}
	f.log.Info("upstreams changed", "api", next.Upstreams.API, "hfs", next.Upstreams.HFS)
	f.cfg = next
	return nil
}
