package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pryv/pryv-tls/internal/apijson"
	"github.com/pryv/pryv-tls/internal/clusterca"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/join"
	"github.com/pryv/pryv-tls/internal/nodeid"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// Join is a join in progress (serve --bootstrap): done before this core's
// PlatformDB member first starts.
type Join struct {
	Bundle *join.Bundle
}

// Do calls the CA holder.
func (j *Join) Do(ctx context.Context) (*join.Response, error) {
	return join.Call(ctx, j.Bundle)
}

// JoinURLName keeps the CA holder's join URL on a joined core.
const JoinURLName = nodeid.JoinURLName

// MemberCAName is the cluster CA certificate a joined core trusts.
const MemberCAName = nodeid.MemberCAName

// identity is this core's node identity as the configuration places it.
func identity(cfg *config.Config) *nodeid.Identity { return nodeid.New(identityOptions(cfg)) }

func identityOptions(cfg *config.Config) nodeid.Options {
	var names []string
	if cfg.DNS.Domain != "" && cfg.Core.ID != "" {
		names = []string{cfg.Core.ID + "." + cfg.DNS.Domain}
	}
	return nodeid.Options{
		Dir:     filepath.Join(filepath.Dir(cfg.PlatformDB.DataDir), "platformdb-tls"),
		DataDir: cfg.PlatformDB.DataDir,
		Name:    coreName(cfg),
		CAPath:  cfg.Cluster.CA.Path,
		Names:   names,
		Addrs:   []string{cfg.PlatformDB.PeerAddress, cfg.PlatformDB.ClientAddress, cfg.Core.IP, cfg.Core.IPv6},
	}
}

// JoinedBefore tells, for a core given a bundle, whether it already runs a
// PlatformDB member: of this cluster (a join re-run: nothing to do), or of
// its own (it must not be merged: the operator moves it aside first).
func JoinedBefore(cfg *config.Config, b *join.Bundle) (member, sameCluster bool) {
	return identity(cfg).JoinedBefore(b)
}

// InstallBundle writes a bundle's cluster CA and node certificate where the
// node identity looks for them (the key 0600), replacing any earlier ones.
func InstallBundle(cfg *config.Config, b *join.Bundle) error {
	return identity(cfg).InstallBundle(b)
}

// memberSys is this core's cluster membership: its node certificate (made or
// checked before PlatformDB opens), its renewal, and, on the CA holder, the
// listener that answers joining cores.
type memberSys struct {
	cfg     *config.Config
	id      *nodeid.Identity
	log     *slog.Logger
	ob      *observability
	tlsFile *platformdb.TLSFiles // once started

	switching sync.Mutex // one live init-ca-holder at a time
}

func newMemberSys(cfg *config.Config, ob *observability, log *slog.Logger) *memberSys {
	o := identityOptions(cfg)
	o.Logger = log
	return &memberSys{cfg: cfg, id: nodeid.New(o), log: log, ob: ob}
}

func (m *memberSys) Name() string { return "checking the node certificate" }

func (m *memberSys) Start(context.Context) error {
	if !m.cfg.PlatformDBEnabled() {
		return nil
	}
	files, err := m.id.TLS()
	if err != nil {
		return err
	}
	m.tlsFile = files
	return nil
}

func (m *memberSys) Stop() {}

// reidentify makes the node identity again from next (PlatformDB is
// stopped: see platformSys.Restart).
func (m *memberSys) reidentify(ctx context.Context, next *config.Config) error {
	o := identityOptions(next)
	o.Logger = m.log
	m.cfg, m.id = next, nodeid.New(o)
	return m.Start(ctx)
}

// Reload: the node identity follows core.id, the PlatformDB addresses and
// cluster.*: restart-only keys.
func (m *memberSys) Reload(*config.Config) error { return nil }

// attach starts the node certificate's renewal and, on the CA holder (the
// core that has the cluster CA's key), the join listener.
func (m *memberSys) attach(_ context.Context, w *wiring) error {
	ca, err := m.id.ClusterCA()
	if err != nil {
		m.ob.caHolder.Store(false)
		w.run.Go(m.id.RenewLoop)
		return nil // not the CA holder
	}
	cert, err := join.LoadServerCert(m.id.CertFile(), m.id.KeyFile())
	if err != nil {
		return err
	}
	w.run.Go(func(ctx context.Context) { m.renewLoop(ctx, cert, join.Tokens{KV: w.db}) })
	tlsCfg := cert.TLSConfig(ca.Pool())
	host := m.cfg.Core.IP
	if host == "" {
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, strconv.Itoa(m.cfg.Cluster.JoinPort))
	ln, err := tls.Listen("tcp", addr, tlsCfg)
	if err != nil {
		return fmt.Errorf("cluster.joinPort: listening on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler: &join.Server{Tokens: join.Tokens{KV: w.db}, Members: w.db, Logger: m.log, Base: w.run.ctx, Denied: w.db.Denied,
			Renew: func(old *x509.Certificate) ([]byte, error) {
				m.log.Info("renewing a node certificate", "core", old.Subject.CommonName, "notAfter", old.NotAfter)
				return ca.Renew(old, clusterca.DefaultNodeValidity)
			}},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelDebug),
	}
	w.run.Go(func(ctx context.Context) {
		go func() { <-ctx.Done(); _ = srv.Close() }()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("join listener stopped", "error", err.Error())
		}
	})
	m.ob.caHolder.Store(true)
	m.log.Info("CA holder: answering joining cores", "addr", addr)
	return nil
}

// TokenRequest is the body of POST /cluster/join-tokens on the control
// socket: the token row (hash only) and the new core's info, pre-registered
// as unavailable until it joins.
type TokenRequest struct {
	Token join.Token       `json:"token"`
	Core  dnsdata.CoreInfo `json:"core"`
}

// clusterAPI serves /cluster/ on the control socket of the CA holder.
type clusterAPI struct {
	db       *platformdb.Etcd
	domain   string
	log      *slog.Logger
	caHolder func(context.Context, join.CAHolderRequest) (join.CAHolderResponse, error)
}

func (c *clusterAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tokens := join.Tokens{KV: c.db}
	rows := dnsdata.Rows{KV: c.db}
	ctx := r.Context()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/cluster/join-tokens":
		var req TokenRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.Token.CoreID == "" {
			apijson.Error(w, http.StatusBadRequest, "cluster", "body must be a TokenRequest")
			return
		}
		if ms, err := c.db.Members(ctx); err == nil {
			for _, m := range ms {
				if m.Name == req.Token.CoreID {
					apijson.Error(w, http.StatusConflict, "cluster", fmt.Sprintf("core %s is already a PlatformDB member", req.Token.CoreID))
					return
				}
			}
		}
		req.Core.Available = false
		if err := tokens.Put(ctx, req.Token); err != nil {
			apijson.Error(w, http.StatusServiceUnavailable, "cluster", err.Error())
			return
		}
		if err := rows.SetCoreInfo(ctx, req.Core); err != nil {
			_ = tokens.Revoke(ctx, req.Token.CoreID) // all or nothing
			apijson.Error(w, http.StatusServiceUnavailable, "cluster", err.Error())
			return
		}
		apijson.Write(w, http.StatusOK, map[string]string{"coreId": req.Token.CoreID})
	case r.Method == http.MethodGet && r.URL.Path == "/cluster/join-tokens":
		list, err := tokens.List(ctx)
		if err != nil {
			apijson.Error(w, http.StatusServiceUnavailable, "cluster", err.Error())
			return
		}
		for i := range list {
			list[i].Hash = "" // never leaves the store
		}
		apijson.Write(w, http.StatusOK, map[string]any{"tokens": list})
	case r.Method == http.MethodDelete && len(r.URL.Path) > len("/cluster/join-tokens/"):
		id := r.URL.Path[len("/cluster/join-tokens/"):]
		if err := tokens.Revoke(ctx, id); err != nil {
			status := http.StatusServiceUnavailable
			if errors.Is(err, join.ErrTokenUnknown) {
				status = http.StatusNotFound
			}
			apijson.Error(w, status, "cluster", err.Error())
			return
		}
		// A core that never joined is not left listed as a core.
		if _, err := c.memberByName(ctx, id); err != nil {
			_ = c.db.Delete(ctx, dnsdata.CoreInfoPrefix+id)
		}
		apijson.Write(w, http.StatusOK, map[string]string{"revoked": id})
	case strings.HasPrefix(r.URL.Path, join.RemoveCorePath):
		join.RemoveHandler(c.db, c.domain, c.log).ServeHTTP(w, r)
	case r.Method == http.MethodPost && r.URL.Path == join.CAHolderPath:
		c.serveCAHolder(w, r)
	default:
		apijson.Error(w, http.StatusNotFound, "cluster", "unknown cluster endpoint")
	}
}

func (c *clusterAPI) memberByName(ctx context.Context, name string) (platformdb.Member, error) {
	ms, err := c.db.Members(ctx)
	if err != nil {
		return platformdb.Member{}, err
	}
	for _, m := range ms {
		if m.Name == name {
			return m, nil
		}
	}
	return platformdb.Member{}, errors.New("not a member")
}
