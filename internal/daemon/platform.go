package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/cluster"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/platformdb"
	"github.com/pryv/pryv-tls/internal/rotatehook"
)

// platform is this core's PlatformDB member and what runs on it.
type platform struct {
	db    *platformdb.Etcd
	admin *admin.API
	once  sync.Once
}

func (p *platform) Close() { p.once.Do(func() { _ = p.db.Close() }) }

// startPlatform serves the last materialised certificates from disk, opens
// PlatformDB, and starts the materialiser and the control socket.
func startPlatform(ctx context.Context, cfg *config.Config, store *certs.Store, bg *tasks, log *slog.Logger) (*platform, error) {
	var keys *atrest.Keyring
	if cfg.LetsEncrypt.AtRestKey != "" {
		raw, err := cfg.LetsEncrypt.AtRestKeyBytes()
		if err == nil {
			keys, err = atrest.New(raw)
		}
		if err != nil {
			return nil, fmt.Errorf("letsEncrypt.atRestKey: %w", err)
		}
	}

	var mat *certstore.Materialiser
	if keys != nil {
		certFile, keyFile, _ := cfg.CertFiles()
		hook := &rotatehook.Runner{Script: cfg.LetsEncrypt.OnRotateScript, Logger: log}
		mat = &certstore.Materialiser{
			TLSDir:  cfg.LetsEncrypt.TLSDir,
			Primary: cfg.PrimaryHostname(),
			Logger:  log,
			Serve:   func(list []*tls.Certificate) { store.Replace(certs.SourceStore, list...) },
			OnRotate: func(host, certPath, keyPath string) {
				bg.Go(func(ctx context.Context) { hook.Run(ctx, host, certPath, keyPath) })
			},
		}
		// The http.ssl files are outputs only under Strategy A; under
		// Strategy C they belong to whoever manages them (certbot's symlinks).
		if cfg.LetsEncrypt.Enabled {
			mat.CertFile, mat.KeyFile = certFile, keyFile
		}
		mat.LoadDisk()
	}

	tlsFiles, err := nodeTLS(cfg)
	if err != nil {
		return nil, err
	}
	db, err := platformdb.Open(ctx, platformdb.Options{
		Name:          coreName(cfg),
		DataDir:       cfg.PlatformDB.DataDir,
		PeerAddress:   cfg.PlatformDB.PeerAddress,
		ClientAddress: cfg.PlatformDB.ClientAddress,
		TLS:           tlsFiles,
		Logger:        log.With("component", "platformdb"),
	})
	if err != nil {
		return nil, fmt.Errorf("starting PlatformDB: %w", err)
	}
	p := &platform{db: db}
	if keys == nil {
		log.Info("PlatformDB up; no letsEncrypt.atRestKey, so no certificate is stored in it")
		return p, nil
	}

	catalog := &certstore.Catalog{KV: db, Keys: keys}
	mat.Catalog = catalog
	bg.Go(mat.Run)

	p.admin = &admin.API{Certs: catalog, DNS: dnsdata.Rows{KV: db}, Logger: log}
	var dns01 *dnsdata.DNS01
	if cfg.DNS.Active {
		if _, dns01, err = startDNS(ctx, cfg, db, bg, log); err != nil {
			p.Close()
			return nil, err
		}
	}
	if cfg.LetsEncrypt.Enabled {
		if err := startACME(cfg, db, keys, catalog, p.admin, dns01, bg, log); err != nil {
			p.Close()
			return nil, err
		}
	}
	ln, err := admin.ListenSocket(cfg.Control.Socket)
	if err != nil {
		p.Close()
		return nil, err
	}
	bg.Go(func(ctx context.Context) { p.admin.ServeSocket(ctx, ln) })
	return p, nil
}

// nodeTLS gives PlatformDB's listeners mutual TLS, so no process without a
// node certificate can read or write the store, not even on loopback. The
// cluster CA at cluster.ca.path signs the node certificate when this core
// holds it; a core that is not (yet) part of a cluster uses a CA of its own,
// next to its data directory.
func nodeTLS(cfg *config.Config) (*platformdb.TLSFiles, error) {
	dir := filepath.Join(filepath.Dir(cfg.PlatformDB.DataDir), "platformdb-tls")
	caDir := cfg.Cluster.CA.Path
	ca, err := cluster.LoadCA(caDir)
	if err != nil {
		caDir = dir
		if ca, err = cluster.LoadOrCreateCA(dir); err != nil {
			return nil, fmt.Errorf("PlatformDB TLS: %w", err)
		}
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, a := range []string{cfg.PlatformDB.PeerAddress, cfg.PlatformDB.ClientAddress, cfg.Core.IP} {
		host := a
		if h, _, err := net.SplitHostPort(a); err == nil {
			host = h
		}
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			ips = append(ips, ip)
		}
	}
	certFile, keyFile, err := cluster.EnsureNodeCert(ca, dir, coreName(cfg), nil, ips)
	if err != nil {
		return nil, fmt.Errorf("PlatformDB TLS: %w", err)
	}
	return &platformdb.TLSFiles{CAFile: filepath.Join(caDir, cluster.CACertName), CertFile: certFile, KeyFile: keyFile}, nil
}

func coreName(cfg *config.Config) string {
	if cfg.Core.ID != "" {
		return cfg.Core.ID
	}
	return "single"
}
