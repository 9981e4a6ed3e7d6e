package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pryv/pryv-tls/internal/apijson"
	"github.com/pryv/pryv-tls/internal/clusterca"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/join"
	"github.com/pryv/pryv-tls/internal/nodeid"
)

// DenylistName is this member's copy of the denylist, read by etcd's
// listeners (decision 0021).
const DenylistName = "denied.crl"

// switchTimeout bounds a live init-ca-holder: the member closed, opened
// again and wired (a one-member cluster: about a second).
const switchTimeout = 25 * time.Second

var errNotOpen = errors.New("PlatformDB is not open yet: try again once this core answers")

func (m *memberSys) denylistFile() string { return filepath.Join(m.id.Dir(), DenylistName) }

// renewLoop is the CA holder's: the node certificate checked at start and
// every nodeid.RenewEvery (re-issued from the CA near expiry), and the
// join listener's certificate read again after each check, so that /join
// and /renew present the renewed one. The certificate is recorded like
// those the CA holder issues to others (remove-core denies them).
func (m *memberSys) renewLoop(ctx context.Context, cert *join.ServerCert, tokens join.Tokens) {
	for {
		if err := m.id.RenewOnce(ctx); err != nil {
			m.log.Error("renewing this core's node certificate; the current one keeps working until it expires", "error", err.Error())
		}
		if err := cert.Reload(); err != nil {
			m.log.Error("join listener: reading the node certificate again; the loaded one stays", "error", err.Error())
		}
		leaf := cert.Leaf()
		if err := tokens.RecordNodeCert(ctx, join.NodeCertOf(leaf.Subject.CommonName, leaf, time.Now().UTC())); err != nil && ctx.Err() == nil {
			m.log.Warn("recording this core's node certificate; remove-core could not deny it until the next check", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(nodeid.RenewEvery):
		}
	}
}

// becomeCAHolder is a live init-ca-holder: this core's one-member
// PlatformDB is closed and opened again on req's addresses (on core.ip)
// with a node certificate from the cluster CA (reopenPlatform: the node
// identity is made again first), and the join listener starts; the front
// and the DNS server keep serving from memory. It returns once the new
// member is wired; a reload then reads req.Override too. If the new member
// does not come up, it is opened again on its old addresses (with the
// node certificate the CA now gives: a restart without the override would
// do the same).
func (c *core) becomeCAHolder(ctx context.Context, req join.CAHolderRequest) (join.CAHolderResponse, error) {
	p, m := c.plat, c.plat.deps.member
	m.switching.Lock()
	defer m.switching.Unlock()
	cur, db := c.cfg.Load(), p.db.Load()
	if db == nil || !p.wired.Load() {
		return join.CAHolderResponse{}, errNotOpen
	}
	if err := onCoreIP(cur, req); err != nil {
		return join.CAHolderResponse{}, err
	}
	if req.Override != "" {
		if _, err := os.Stat(req.Override); err != nil {
			return join.CAHolderResponse{}, fmt.Errorf("the override %s: %w (the core must read it for its reloads)", req.Override, err)
		}
	}
	ca, err := clusterca.LoadCA(cur.Cluster.CA.Path)
	if err != nil {
		return join.CAHolderResponse{}, fmt.Errorf("the running core cannot use the cluster CA (it must read it as the service's user): %w", err)
	}
	answer := func(changed bool) join.CAHolderResponse {
		d := p.db.Load()
		return join.CAHolderResponse{Member: coreName(cur), PeerURL: "https://" + d.PeerAddress(), ClientAddress: d.ClientAddress(),
			JoinAddress: net.JoinHostPort(cur.Core.IP, strconv.Itoa(cur.Cluster.JoinPort)), CAFingerprint: ca.Fingerprint(), Changed: changed}
	}
	if db.PeerAddress() == req.PeerAddress && db.ClientAddress() == req.ClientAddress && m.tlsFile != nil && m.tlsFile.CAFile == ca.CertFile() {
		return answer(false), nil
	}
	ms, err := db.Members(ctx)
	if err != nil {
		return join.CAHolderResponse{}, err
	}
	if len(ms) > 1 {
		return join.CAHolderResponse{}, fmt.Errorf("this core's PlatformDB has %d members: a member of a cluster is not moved live (the others dial its stored address); restart it with the override instead", len(ms))
	}

	next := *cur
	next.PlatformDB.PeerAddress, next.PlatformDB.ClientAddress = req.PeerAddress, req.ClientAddress
	log := c.log
	log.Info("becoming the CA holder: reopening PlatformDB on core.ip with a node certificate from the cluster CA; the front and DNS serve from memory meanwhile",
		"peer", req.PeerAddress, "client", req.ClientAddress, "ca", ca.CertFile())
	start := time.Now()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), switchTimeout)
	defer cancel()
	if err := c.reopenWired(sctx, &next); err != nil {
		log.Error("becoming the CA holder failed; reopening PlatformDB on its old addresses", "error", err.Error())
		bctx, bcancel := context.WithTimeout(context.Background(), switchTimeout)
		defer bcancel()
		if rerr := c.reopenWired(bctx, cur); rerr != nil {
			log.Error("reopening PlatformDB on its old addresses", "error", rerr.Error())
			return join.CAHolderResponse{}, fmt.Errorf("switching PlatformDB to %s: %w; reopening it on its old addresses failed too: %w", req.PeerAddress, err, rerr)
		}
		return join.CAHolderResponse{}, fmt.Errorf("switching PlatformDB to %s: %w (it was reopened on its old addresses, %s)", req.PeerAddress, err, cur.PlatformDB.ClientAddress)
	}
	if req.Override != "" && c.opts.AddLayer != nil {
		c.opts.AddLayer(req.Override) // a reload reads what now runs
	}
	log.Info("now the CA holder, without a restart", "member", coreName(cur), "peer", req.PeerAddress, "took", time.Since(start).Round(time.Millisecond).String())
	return answer(true), nil
}

// waitWired returns once PlatformDB is wired again after a reopen (Start
// returns earlier when the member waits for quorum).
func (p *platformSys) waitWired(ctx context.Context, addr string) error {
	for !p.wired.Load() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("PlatformDB did not answer on %s: %w", addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// reopenWired reopens PlatformDB with next and waits until it is wired.
func (c *core) reopenWired(ctx context.Context, next *config.Config) error {
	if err := c.reopenPlatform(ctx, next); err != nil {
		return err
	}
	return c.plat.waitWired(ctx, next.PlatformDB.ClientAddress)
}

// onCoreIP checks a request's addresses: host:port on core.ip.
func onCoreIP(cfg *config.Config, req join.CAHolderRequest) error {
	if cfg.Core.IP == "" {
		return errors.New("core.id and core.ip are not set in the running core's configuration")
	}
	for _, a := range []string{req.PeerAddress, req.ClientAddress} {
		host, port, err := net.SplitHostPort(a)
		if err == nil && host != cfg.Core.IP {
			err = fmt.Errorf("not on core.ip %s", cfg.Core.IP)
		}
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		if err != nil {
			return fmt.Errorf("address %q: %w", a, err)
		}
	}
	return nil
}

// serveCAHolder is POST /cluster/ca-holder.
func (c *clusterAPI) serveCAHolder(w http.ResponseWriter, r *http.Request) {
	var req join.CAHolderRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<12)).Decode(&req); err != nil || req.PeerAddress == "" || req.ClientAddress == "" {
		apijson.Error(w, http.StatusBadRequest, "cluster", "body must be {peerAddress, clientAddress}")
		return
	}
	res, err := c.caHolder(r.Context(), req)
	if err != nil {
		status := http.StatusConflict
		if errors.Is(err, errNotOpen) {
			status = http.StatusServiceUnavailable
		}
		apijson.Error(w, status, "cluster", err.Error())
		return
	}
	apijson.Write(w, http.StatusOK, res)
}
