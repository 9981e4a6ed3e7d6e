package platformdb

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Member is one etcd member of the PlatformDB cluster.
type Member struct {
	ID         uint64
	Name       string // "" for a member added but not started yet
	PeerURLs   []string
	ClientURLs []string
	IsLearner  bool
}

func members(ms []*etcdMember) []Member {
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Members lists the cluster's members.
func (s *Etcd) Members(ctx context.Context) ([]Member, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.MemberList(ctx)
	if err != nil {
		return nil, s.fail("member list", "", err)
	}
	return members(resp.Members), nil
}

// AddLearner adds a member with peerURL as a learner (it receives the log
// but does not vote until promoted) and returns the InitialCluster string
// the new member must start with. Adding a learner never costs quorum, even
// in a one-member cluster. It is idempotent: a member already at peerURL is
// returned as it is. etcd refuses membership changes for a few seconds after
// a member (re)joined ("unhealthy cluster"): that is retried until ctx ends.
func (s *Etcd) AddLearner(ctx context.Context, name, peerURL string) (Member, string, error) {
	for {
		ms, err := s.Members(ctx)
		if err != nil {
			return Member{}, "", err
		}
		for _, m := range ms {
			for _, u := range m.PeerURLs {
				if u == peerURL {
					return m, initialCluster(ms, m.ID, name), nil
				}
			}
		}
		actx, cancel := context.WithTimeout(ctx, s.timeout)
		resp, err := s.cli.MemberAddAsLearner(actx, []string{peerURL})
		cancel()
		if err == nil {
			all := members(resp.Members)
			return Member{ID: resp.Member.ID, PeerURLs: resp.Member.PeerURLs, IsLearner: true}, initialCluster(all, resp.Member.ID, name), nil
		}
		if !retryableMembership(err) {
			return Member{}, "", s.fail("member add", "", err)
		}
		select {
		case <-ctx.Done():
			return Member{}, "", s.fail("member add", "", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Promote makes learner id a voting member once it has caught up; etcd
// refuses before that, so it is retried until ctx ends.
func (s *Etcd) Promote(ctx context.Context, id uint64) error {
	for {
		pctx, cancel := context.WithTimeout(ctx, s.timeout)
		_, err := s.cli.MemberPromote(pctx, id)
		cancel()
		if err == nil || strings.Contains(err.Error(), "not a learner") {
			return nil
		}
		if !retryableMembership(err) && !strings.Contains(err.Error(), "in sync") {
			return s.fail("member promote", "", err)
		}
		select {
		case <-ctx.Done():
			return s.fail("member promote", "", err)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// RemoveMember removes a member (a core that will not come back). etcd
// refuses to remove a voter while that could cost the quorum it has
// (members connected for less than 5 s do not count, so just after a join
// or a restart; "unhealthy cluster"): that is retried until ctx ends or
// removeRetryFor passes.
func (s *Etcd) RemoveMember(ctx context.Context, id uint64) error {
	ctx, cancel := context.WithTimeout(ctx, removeRetryFor)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, s.timeout)
		_, err := s.cli.MemberRemove(rctx, id)
		rcancel()
		if err == nil || strings.Contains(err.Error(), "member not found") {
			return nil
		}
		if !retryableMembership(err) {
			return s.fail("member remove", "", err)
		}
		select {
		case <-ctx.Done():
			return s.fail("member remove", "", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// removeRetryFor bounds RemoveMember's retries: longer than etcd's 5 s
// health interval.
const removeRetryFor = 15 * time.Second

// Healthy reports whether a member answers on its client URL within the
// request timeout (a status request over the node's mutual TLS).
func (s *Etcd) Healthy(ctx context.Context, m Member) bool {
	if len(m.ClientURLs) == 0 {
		return false
	}
	u, err := url.Parse(m.ClientURLs[0])
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, min(s.timeout, 2*time.Second))
	defer cancel()
	_, err = s.cli.Status(ctx, u.Host)
	return err == nil
}

// WaitVoter returns once this member serves requests: a member that joined
// as a learner answers "rpc not supported for learner" until the cluster
// promotes it (once it has caught up).
func (s *Etcd) WaitVoter(ctx context.Context) error {
	for {
		gctx, cancel := context.WithTimeout(ctx, s.timeout)
		_, err := s.cli.Get(gctx, "_voter-probe")
		cancel()
		if err == nil {
			return nil
		}
		if !strings.Contains(err.Error(), "learner") {
			return s.fail("waiting to be promoted", "", err)
		}
		select {
		case <-ctx.Done():
			return s.fail("waiting to be promoted", "", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ID is this member's id.
func (s *Etcd) ID() uint64 { return uint64(s.srv.Server.MemberID()) }

// IsLeader reports whether this member is the raft leader, as it last knew
// (no request: for monitoring).
func (s *Etcd) IsLeader() bool { return s.srv.Server.Leader() == s.srv.Server.MemberID() }

func initialCluster(ms []Member, newID uint64, newName string) string {
	var parts []string
	for _, m := range ms {
		name := m.Name
		if m.ID == newID {
			name = newName
		}
		if name == "" {
			continue // added but never started: not part of the initial view
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, fmt.Sprintf("%s=%s", name, u))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// retryableMembership: etcd's transient refusals of membership changes.
func retryableMembership(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "unhealthy cluster") || strings.Contains(msg, "request timed out") ||
		strings.Contains(msg, "leader changed") || strings.Contains(msg, "not in sync")
}

type etcdMember = pb.Member

// RevokeLeasesOf revokes the leases of the locks a member holds (a member
// being removed: its locks are then free at once instead of after their
// TTL) and returns how many. etcd makes a lease id on the member the grant
// was sent to, its top 16 bits (less the sign bit) being that member's id's
// low 16 bits: a lock whose lease carries them is that member's. When
// another member's id shares those bits nothing is revoked (the leases
// expire by themselves, the removed member cannot keep them alive).
func (s *Etcd) RevokeLeasesOf(ctx context.Context, memberID uint64) (int, error) {
	ms, err := s.Members(ctx)
	if err != nil {
		return 0, err
	}
	prefix := leasePrefix(memberID)
	for _, m := range ms {
		if m.ID != memberID && leasePrefix(m.ID) == prefix {
			return 0, nil
		}
	}
	lctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Get(lctx, lockPrefix, clientv3.WithPrefix()) // (keys-only answers carry no lease)
	if err != nil {
		return 0, s.fail("list locks", lockPrefix, err)
	}
	seen := map[int64]bool{}
	for _, kv := range resp.Kvs {
		if kv.Lease == 0 || seen[kv.Lease] || uint64(kv.Lease)>>48 != prefix { //nolint:gosec // G115: a lease id read as its bits
			continue
		}
		seen[kv.Lease] = true
		if _, err := s.cli.Revoke(lctx, clientv3.LeaseID(kv.Lease)); err != nil && !strings.Contains(err.Error(), "not found") {
			return len(seen) - 1, s.fail("revoke lease", string(kv.Key), err)
		}
	}
	return len(seen), nil
}

// leasePrefix is the part of a lease id etcd takes from the member id.
func leasePrefix(memberID uint64) uint64 { return uint64(uint16(memberID)) & 0x7fff } //nolint:gosec // G115: etcd keeps the low 16 bits, so do we
