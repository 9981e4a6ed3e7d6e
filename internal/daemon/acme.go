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
	"strconv"
	"time"

	"github.com/go-acme/lego/v5/lego"
	legolog "github.com/go-acme/lego/v5/log"

	"github.com/pryv/pryv-tls/internal/acme"
	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/dnsdata"
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

// startACME runs the HTTP-01 port on every core of a Strategy A deployment
// and, on the certRenewer core, the renewer.
func startACME(cfg *config.Config, db *platformdb.Etcd, keys *atrest.Keyring, catalog *certstore.Catalog, api *admin.API, dns01 *dnsdata.DNS01, m *metrics.Metrics, bg *tasks, log *slog.Logger) error {
	le := cfg.LetsEncrypt
	addr := net.JoinHostPort(cfg.HTTP.IP, strconv.Itoa(le.HTTP01Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("letsEncrypt.http01Port: listening on %s: %w (the CA validates HTTP-01 on this port: run with CAP_NET_BIND_SERVICE, or forward port 80 here and set letsEncrypt.http01Port)", addr, err)
	}
	srv := &http.Server{
		Handler:           &acme.HTTP01Responder{KV: db, HTTPSPort: cfg.HTTP.Port, Logger: log},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	bg.Go(func(ctx context.Context) {
		go func() {
			<-ctx.Done()
			_ = srv.Close()
		}()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP-01 listener stopped", "error", err.Error())
		}
	})
	log.Info("HTTP-01 listener up (challenges from PlatformDB, everything else redirected to HTTPS)", "addr", ln.Addr().String())

	api.Renewals = func(ctx context.Context) (map[string]admin.RenewalState, error) {
		states, err := acme.LoadStates(ctx, db)
		out := make(map[string]admin.RenewalState, len(states))
		for k, s := range states {
			out[k] = admin.RenewalState{NextRenewal: s.NextRenewal, LastError: s.LastError, LastErrorAt: s.LastErrorAt}
		}
		return out, err
	}
	if !le.CertRenewer {
		log.Info("not the certRenewer core: certificates arrive through PlatformDB")
		return nil
	}

	httpClient, err := directoryClient(le.DirectoryCAFile)
	if err != nil {
		return err
	}
	var eab *acme.EAB
	if le.EAB.KID != "" {
		eab = &acme.EAB{KID: le.EAB.KID, HMACKey: le.EAB.HMACKey.Reveal()}
	}
	var plans []acme.Plan
	for _, p := range cfg.Plans() {
		plans = append(plans, acme.Plan{Hostnames: p.Hostnames, Challenge: p.Challenge})
	}
	legolog.SetDefault(log.With("component", "lego"))
	opts := acme.Options{
		DirectoryURL: DirectoryURL(le),
		HTTPClient:   httpClient,
		UserAgent:    "pryv-tls/" + Version,
		Email:        le.Email,
		KeyType:      le.KeyType,
		Profile:      le.Profile,
		EAB:          eab,
		Plans:        plans,
		RenewBefore:  time.Duration(le.RenewBeforeDays) * 24 * time.Hour,
		KV:           db,
		Keys:         keys,
		Certs:        catalog,
		Logger:       log.With("component", "acme"),
		OnOrder: func(err error) {
			kind := ""
			if err != nil {
				kind = acme.ErrorKind(err)
			}
			m.ObserveOrder(kind)
		},
	}
	if dns01 != nil { // a nil *DNS01 in the interface would not read as "none"
		opts.DNS01 = dns01
	}
	r, err := acme.New(opts)
	if err != nil {
		return err
	}
	api.Renewer = r
	bg.Go(r.Run)
	bg.Go((&certstore.Unplanned{KV: db, Planned: func(context.Context) ([]string, error) { return cfg.Hostnames(), nil }, Logger: log}).Run)
	log.Info("certRenewer: ordering and renewing certificates", "directory", DirectoryURL(le))
	return nil
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
