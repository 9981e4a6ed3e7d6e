package join

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// Cluster is what removing a core needs of this core's PlatformDB member.
type Cluster interface {
	Get(ctx context.Context, key string) (platformdb.Entry, error)
	Put(ctx context.Context, key string, value []byte) (int64, error)
	CompareAndSwap(ctx context.Context, key string, value []byte, expect int64) (int64, error)
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix string) ([]platformdb.Entry, int64, error)
	Members(ctx context.Context) ([]platformdb.Member, error)
	RemoveMember(ctx context.Context, id uint64) error
	RevokeLeasesOf(ctx context.Context, memberID uint64) (int, error)
	Deny(ctx context.Context, rows ...platformdb.DeniedCert) error
	ID() uint64
}

// Removal is what remove-core did.
type Removal struct {
	CoreID        string   `json:"coreId"`
	MemberRemoved bool     `json:"memberRemoved"`
	DeniedCerts   []string `json:"deniedCerts"`   // serials, hex
	DeletedRows   []string `json:"deletedRows"`   // keys
	LeasesRevoked int      `json:"leasesRevoked"` // the locks it held
	UsersPinned   int      `json:"usersPinned"`   // users still pinned to it: move them
}

// Errors of Remove; their text is what the operator reads.
var (
	ErrNoSuchCore = errors.New("no such core: it is neither a PlatformDB member nor in core-info/ (see \"pryv-tls status\")")
	ErrRemoveSelf = errors.New("this is the core the command runs on: removing it stops its own PlatformDB member; run remove-core on another core, or add --force")
	ErrLastVoter  = errors.New("it is the last voting PlatformDB member: the cluster would have no quorum left; add --force to remove it anyway")
)

// RemoveRequest names the core Remove takes out. Force removes it even when
// it is the core the command runs on, or the last voting member. Domain is
// dns.domain, for the {id}.{domain} certificate ("" when DNS is off).
type RemoveRequest struct {
	ID     string
	Force  bool
	Domain string
}

// Remove takes core id out of the cluster for good: every node certificate
// recorded for it is denied (before the member goes, so it cannot come back
// in between), its member removed, its locks released, and its rows
// deleted (core-info, join token, its DNS records, the certificates of
// names only it served). Users pinned to it are counted, not moved. It can
// be run again (a removal cut short finishes).
func Remove(ctx context.Context, db Cluster, req RemoveRequest) (*Removal, error) {
	id, force, domain := req.ID, req.Force, req.Domain
	ms, err := db.Members(ctx)
	if err != nil {
		return nil, err
	}
	var member *platformdb.Member
	voters := 0
	for i, m := range ms {
		if !m.IsLearner {
			voters++
		}
		if m.Name == id {
			member = &ms[i]
		}
	}
	rows := dnsdata.Rows{KV: db}
	cores, err := rows.Cores(ctx)
	if err != nil {
		return nil, err
	}
	var info *dnsdata.CoreInfo
	for i, c := range cores {
		if c.ID == id {
			info = &cores[i]
		}
	}
	tokens := Tokens{KV: db}
	certs, err := tokens.NodeCerts(ctx, id)
	if err != nil {
		return nil, err
	}
	if member == nil {
		// A join cut short: added as a learner that never started (no
		// name yet), found by the peer URL of its token.
		if t, _, err := tokens.Get(ctx, id); err == nil && t.PeerURL != "" {
			for i, m := range ms {
				if m.Name == "" && slices.Contains(m.PeerURLs, t.PeerURL) {
					member = &ms[i]
				}
			}
		}
	}
	if member == nil && info == nil && len(certs) == 0 {
		return nil, fmt.Errorf("core %s: %w", id, ErrNoSuchCore)
	}
	if member != nil && !force {
		if member.ID == db.ID() {
			return nil, fmt.Errorf("core %s: %w", id, ErrRemoveSelf)
		}
		if !member.IsLearner && voters <= 1 {
			return nil, fmt.Errorf("core %s: %w", id, ErrLastVoter)
		}
	}

	out := &Removal{CoreID: id, DeniedCerts: []string{}, DeletedRows: []string{}}
	now := time.Now().UTC()
	var deny []platformdb.DeniedCert
	for _, c := range certs {
		deny = append(deny, platformdb.DeniedCert{Serial: c.Serial, SPKI: c.SPKI, CoreID: id, DeniedAt: now, NotAfter: c.NotAfter})
		out.DeniedCerts = append(out.DeniedCerts, c.Serial)
	}
	if err := db.Deny(ctx, deny...); err != nil {
		return nil, fmt.Errorf("denying its node certificates: %w", err)
	}
	if member != nil {
		if n, err := db.RevokeLeasesOf(ctx, member.ID); err == nil {
			out.LeasesRevoked = n
		}
		if err := db.RemoveMember(ctx, member.ID); err != nil {
			return out, fmt.Errorf("removing its PlatformDB member %x: %w", member.ID, err)
		}
		out.MemberRemoved = true
	}

	del := []string{dnsdata.CoreInfoPrefix + id, TokenPrefix + id, dnsdata.RecordPrefix + id}
	for _, c := range certs {
		del = append(del, NodeCertPrefix+id+"/"+c.Serial)
	}
	for _, name := range onlyItsNames(id, info, cores, domain) {
		del = append(del, certstore.RowKey(name))
	}
	for _, key := range del {
		if _, err := db.Get(ctx, key); errors.Is(err, platformdb.ErrNotFound) {
			continue
		} else if err != nil {
			return out, err
		}
		if err := db.Delete(ctx, key); err != nil {
			return out, err
		}
		out.DeletedRows = append(out.DeletedRows, key)
	}
	users, err := rows.Users(ctx)
	if err != nil {
		return out, err
	}
	for _, u := range users {
		if u[1] == id {
			out.UsersPinned++
		}
	}
	return out, nil
}

// onlyItsNames are the hostnames that name core id and no other core:
// {id}.{domain}, and its core.url's host unless another core has it too.
func onlyItsNames(id string, info *dnsdata.CoreInfo, cores []dnsdata.CoreInfo, domain string) []string {
	var names []string
	if domain != "" {
		names = append(names, id+"."+strings.TrimSuffix(domain, "."))
	}
	if info == nil || info.URL == "" {
		return names
	}
	u, err := url.Parse(info.URL)
	if err != nil || u.Hostname() == "" {
		return names
	}
	host := strings.ToLower(u.Hostname())
	for _, c := range cores {
		if c.ID == id || c.URL == "" {
			continue
		}
		if o, err := url.Parse(c.URL); err == nil && strings.EqualFold(o.Hostname(), host) {
			return names
		}
	}
	if len(names) == 0 || names[0] != host {
		names = append(names, host)
	}
	return names
}
