// Package nodeid is this core's identity in the cluster: its node
// certificate (PlatformDB's mutual TLS), the bundle a joining core installs,
// whether it is already a member, and the renewal of its node certificate.
// It owns the node directory (platformdb-tls, beside PlatformDB's data
// directory); the daemon gives it an Options of plain values.
package nodeid

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pryv/pryv-tls/internal/atomicfile"
	"github.com/pryv/pryv-tls/internal/clusterca"
	"github.com/pryv/pryv-tls/internal/join"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// MemberCAName is the cluster CA certificate a joined core trusts (it has no
// CA key: only the CA holder has).
const MemberCAName = "cluster-ca.pem"

// JoinURLName keeps the CA holder's join URL on a joined core, for the
// renewal of its node certificate.
const JoinURLName = "join-url"

// RenewEvery is how often the node certificate is looked at.
const RenewEvery = 12 * time.Hour

// Options are what the identity is made of.
type Options struct {
	Dir     string   // the node directory: node certificate, key, and a CA of its own before a cluster
	DataDir string   // PlatformDB's data directory: a member there means a restart
	Name    string   // the member's name and the certificate's common name
	CAPath  string   // cluster.ca.path: the CA holder has the CA key there
	Names   []string // DNS SANs ({id}.{domain})
	// Addrs are the listeners' and the core's addresses (host:port or a
	// bare IP): their IPs are SANs, with loopback (etcd checks a peer's
	// source address, and a connection between two loopback addresses
	// comes from 127.0.0.1).
	Addrs  []string
	Logger *slog.Logger
}

// Identity is this core's node identity.
type Identity struct {
	opts Options
	log  *slog.Logger
}

// New returns the identity; nothing is read or written until asked.
func New(o Options) *Identity {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Identity{opts: o, log: log}
}

// Dir is the node directory.
func (id *Identity) Dir() string { return id.opts.Dir }

// CertFile and KeyFile are the node certificate and key.
func (id *Identity) CertFile() string { return filepath.Join(id.opts.Dir, clusterca.NodeCertName) }
func (id *Identity) KeyFile() string  { return filepath.Join(id.opts.Dir, clusterca.NodeKeyName) }

// HasMember reports whether the data directory already holds an etcd member
// (a restart, or a join already done).
func (id *Identity) HasMember() bool {
	_, err := os.Stat(filepath.Join(id.opts.DataDir, "member"))
	return err == nil
}

// ClusterCA is the cluster CA with its key: an error on a core that is not
// the CA holder.
func (id *Identity) ClusterCA() (*clusterca.CA, error) { return clusterca.LoadCA(id.opts.CAPath) }

// JoinedBefore tells, for a core given a bundle, whether it already runs a
// PlatformDB member: of this cluster (a join re-run: nothing to do), or of
// its own (it must not be merged: the operator moves it aside first).
func (id *Identity) JoinedBefore(b *join.Bundle) (member, sameCluster bool) {
	if !id.HasMember() {
		return false, false
	}
	ca, err := os.ReadFile(filepath.Join(id.opts.Dir, MemberCAName))
	return true, err == nil && string(ca) == b.CACert
}

// InstallBundle writes a bundle's cluster CA and node certificate where TLS
// looks for them (the key 0600), replacing any earlier ones.
func (id *Identity) InstallBundle(b *join.Bundle) error {
	if err := os.MkdirAll(id.opts.Dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data string
		mode os.FileMode
	}{
		{clusterca.NodeKeyName, b.NodeKey, 0o600},
		{clusterca.NodeCertName, b.NodeCert, 0o644},
		{MemberCAName, b.CACert, 0o644},
		{JoinURLName, b.JoinURL + "\n", 0o644},
	} {
		if err := atomicfile.Write(filepath.Join(id.opts.Dir, f.name), []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	return nil
}

// TLS gives PlatformDB's listeners mutual TLS, so no process without a node
// certificate can read or write the store, not even on loopback:
//   - the CA holder (cluster.ca.path has the CA key) issues its own node
//     certificate from the cluster CA;
//   - a joined core uses the node certificate and cluster CA from its bundle;
//   - a core that is not (yet) part of a cluster uses a CA of its own.
//
// A node certificate near its expiry is issued again (EnsureNodeCert).
func (id *Identity) TLS() (*platformdb.TLSFiles, error) {
	dir := id.opts.Dir
	if _, err := os.Stat(filepath.Join(dir, MemberCAName)); err == nil {
		return &platformdb.TLSFiles{CAFile: filepath.Join(dir, MemberCAName), CertFile: id.CertFile(), KeyFile: id.KeyFile()}, nil
	}
	ca, err := id.ClusterCA()
	if err != nil {
		if ca, err = clusterca.LoadOrCreateCA(dir); err != nil {
			return nil, fmt.Errorf("PlatformDB TLS: %w", err)
		}
	}
	certFile, keyFile, err := clusterca.EnsureNodeCert(ca, dir, clusterca.Node{ID: id.opts.Name, DNSNames: id.opts.Names, IPs: sanIPs(id.opts.Addrs)})
	if err != nil {
		return nil, fmt.Errorf("PlatformDB TLS: %w", err)
	}
	return &platformdb.TLSFiles{CAFile: ca.CertFile(), CertFile: certFile, KeyFile: keyFile}, nil
}

// RenewLoop keeps the node certificate current, at start and every
// RenewEvery, until ctx ends: a joined core asks the CA holder for a new
// certificate for the same key inside clusterca.RenewBefore, authenticating
// with the current one; the CA holder, or a core on its own CA, re-issues
// its own from the CA it holds. etcd reloads the pair at the next handshake.
func (id *Identity) RenewLoop(ctx context.Context) {
	for {
		if err := id.RenewOnce(ctx); err != nil {
			id.log.Error("renewing this core's node certificate; the current one keeps working until it expires", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(RenewEvery):
		}
	}
}

// RenewOnce renews the node certificate if it is due.
func (id *Identity) RenewOnce(ctx context.Context) error {
	joinURL, err := os.ReadFile(filepath.Join(id.opts.Dir, JoinURLName))
	if err != nil {
		_, err := id.TLS() // EnsureNodeCert: re-issues when near expiry
		return err
	}
	certFile, keyFile := id.CertFile(), id.KeyFile()
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	if time.Until(c.Leaf.NotAfter) >= clusterca.RenewBefore {
		return nil
	}
	pem, err := join.RenewNodeCert(ctx, strings.TrimSpace(string(joinURL)), platformdb.TLSFiles{CAFile: filepath.Join(id.opts.Dir, MemberCAName), CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err == nil {
		_, err = tls.X509KeyPair(pem, keyPEM) // a certificate for another key never replaces ours
	}
	if err == nil {
		err = atomicfile.Write(certFile, pem, 0o644)
	}
	if err == nil {
		id.log.Info("node certificate renewed by the CA holder")
	}
	return err
}

func sanIPs(addrs []string) []net.IP {
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, a := range addrs {
		host := a
		if h, _, err := net.SplitHostPort(a); err == nil {
			host = h
		}
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			ips = append(ips, ip)
		}
	}
	return ips
}
