package platformdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/wal"
)

// Defaults of Options.
const (
	DefaultName           = "default"
	DefaultPeerAddress    = "127.0.0.1:2380"
	DefaultClientAddress  = "127.0.0.1:2379"
	DefaultRequestTimeout = 5 * time.Second

	// DefaultHeartbeatInterval and DefaultElectionTimeout are the raft
	// timing. etcd's defaults are 100 ms / 1 s; the election timeout here
	// is etcd's documented 500 ms variant: a member that starts alone
	// elects itself after a random 1 to 6 heartbeats (100-600 ms) instead
	// of 1 to 11 (up to 1.1 s), a cluster notices a dead leader twice as
	// fast, and etcd's minimum lease TTL drops from 2 s to 1 s. It needs
	// a round-trip time well under 50 ms between members (one data
	// centre); raise it across regions or on disks whose fsync stalls.
	DefaultHeartbeatInterval = 100 * time.Millisecond
	DefaultElectionTimeout   = 500 * time.Millisecond
)

// Storage tuning for a small store (a few thousand rows of a few KiB: certificates,
// the ACME account, DNS rows, user -> core rows).
const (
	// QuotaBackendBytes caps the bbolt file. etcd's 2 GiB default is far
	// more than this store needs; when the quota is hit etcd turns
	// read-only (NOSPACE alarm), so it is a ceiling, not a target.
	QuotaBackendBytes = 512 << 20

	// WALSegmentBytes is the preallocated size of a WAL segment (etcd's
	// default is 64 MB per file, mostly empty for this store).
	WALSegmentBytes = 8 << 20

	// SnapshotCount is the number of applied entries between raft snapshots
	// (etcd 3.7's default). Lower would snapshot more often for nothing:
	// the store is small and writes are rare. It does not bound the raft
	// log held in memory: etcd 3.7 snapshots in memory every 100 entries
	// and keeps the last SnapshotCatchUpEntries (its default, 5000) for
	// followers that lag: about 0.8 MB of user rows, but 5000 times a
	// certificate record (a few KB) after a bulk import of certificates.
	// Fewer would cost a whole-database snapshot to a follower more than
	// that many writes behind (a core restarting during an import): kept.
	SnapshotCount = 10000

	// CompactionRevisions: auto-compaction in "revision" mode, keeping the
	// last 10000 revisions (etcd checks every 5 minutes). Revision mode
	// bounds the history by count whatever the write rate (a burst such as
	// a migration of many users cannot fill the quota with history, as a
	// time window could), and at this store's normal rate (a few writes a
	// minute) 10000 revisions are days of history, so a watcher that
	// reconnects resumes without an EventReset.
	CompactionRevisions = 10000
)

// lockPrefix is where Lock keeps its keys: "_lock/<name>/<lease id>". Keys
// under it are reserved for Lock; they appear in List("") and Watch("").
const lockPrefix = "_lock/"

// Options configure Open. Zero values take the defaults above.
type Options struct {
	// Name is the etcd member name (default "default"). In a cluster it
	// must be unique and stable for a core.
	Name string
	// DataDir holds the member's WAL and database; it is created 0700.
	// Required.
	DataDir string
	// PeerAddress is the host:port of the raft peer listener (default
	// 127.0.0.1:2380); ClientAddress the host:port of the gRPC client
	// listener (default 127.0.0.1:2379), which the in-process client uses.
	// Port 0 picks a free port; Etcd.PeerAddress/ClientAddress report the
	// bound addresses.
	PeerAddress   string
	ClientAddress string
	// Logger receives etcd's warnings and errors (its info lines are
	// dropped). Default slog.Default().
	Logger *slog.Logger
	// RequestTimeout bounds every single request (Get, Put, ...), on top of
	// the caller's context (default 5 s). When it passes the request fails
	// with ErrUnavailable.
	RequestTimeout time.Duration
	// HeartbeatInterval and ElectionTimeout are the raft timing (defaults
	// above). The election timeout must be at least 5 heartbeats; every
	// member of a cluster should use the same values.
	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration

	// TLS turns on mutual TLS from the cluster CA on both listeners: they
	// speak https only, require a client certificate signed by TLS.CAFile
	// (and trust nothing else), and the in-process client presents the
	// node certificate. Without it anyone who can reach the listeners can
	// read and write the store, and join it through the peer listener: the
	// daemon always sets it; nil is for tests of this package. Open checks
	// the files first (the certificate chains to the CA for server and
	// client auth, and names the listeners' hosts) and fails naming them.
	TLS *TLSFiles

	// InitialCluster and ClusterState join an existing cluster: the
	// member must first have been added (as a learner) by a member of it
	// (Etcd.AddLearner), which returns the InitialCluster to use;
	// ClusterState is then "existing". Both are read only when the data
	// dir holds no member yet; a restart finds the membership in it.
	// Empty: a new one-member cluster.
	InitialCluster string // "name1=https://10.0.0.1:2380,name2=..."
	ClusterState   string // "new" (default) or "existing"

	// DenylistFile, with TLS, is where this member keeps its copy of the
	// denylist (the DeniedPrefix rows) for etcd's listeners to read: both
	// refuse a new connection from a denied certificate. Empty: no
	// denylist (tests of this package).
	DenylistFile string
}

// Etcd is a Store on an embedded etcd member, through an in-process
// client (a Conn) connected to it over loopback. Its Store methods are the
// Conn's; close the Etcd, not its Conn (which would leave the member
// running). A request (key + value) is limited to etcd's 1.5 MiB: a larger
// Put fails (with an error that is not one of the sentinels).
type Etcd struct {
	*Conn

	dataDir string
	name    string
	scheme  string // of both listeners: "https" with Options.TLS, else "http"

	srv        *embed.Etcd
	clientAddr string
	peerAddr   string

	deny *denylist      // nil without Options.DenylistFile
	bg   sync.WaitGroup // the denylist watch

	closing   atomic.Bool // set when the member stops: demotes its shutdown noise
	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Etcd)(nil)

// wal.SegmentSizeBytes is a package variable of etcd: set it once, before
// the first member starts, so concurrent Opens do not race on it. It is
// global to the process (every embedded member in it uses the same size).
var walSegmentOnce sync.Once

// Open starts an embedded etcd member on opts.DataDir and connects a client
// to it. It returns once the member serves requests (it has a leader and
// has published itself), or an error naming the data dir and addresses.
// ctx bounds the start only.
func Open(ctx context.Context, opts Options) (*Etcd, error) {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.PeerAddress == "" {
		opts.PeerAddress = DefaultPeerAddress
	}
	if opts.ClientAddress == "" {
		opts.ClientAddress = DefaultClientAddress
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if opts.ElectionTimeout <= 0 {
		opts.ElectionTimeout = DefaultElectionTimeout
	}
	if opts.DataDir == "" {
		return nil, errors.New("platformdb: open: no data dir")
	}
	for _, a := range []struct{ what, addr string }{{"peer", opts.PeerAddress}, {"client", opts.ClientAddress}} {
		host, port, err := net.SplitHostPort(a.addr)
		if err == nil && host == "" {
			err = errors.New("missing host")
		}
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		if err != nil {
			return nil, fmt.Errorf("platformdb: open: %s address %q: want host:port: %w", a.what, a.addr, err)
		}
	}
	scheme := "http"
	if opts.TLS != nil {
		scheme = "https"
		_, leaf, err := opts.TLS.load()
		if err == nil {
			err = checkHost(opts.TLS, leaf, "peer", opts.PeerAddress)
		}
		if err == nil {
			err = checkHost(opts.TLS, leaf, "client", opts.ClientAddress)
		}
		if err != nil {
			return nil, fmt.Errorf("platformdb: open: %w", err)
		}
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("platformdb: open: data dir: %w", err)
	}
	walSegmentOnce.Do(func() { wal.SegmentSizeBytes = WALSegmentBytes })

	s := &Etcd{dataDir: opts.DataDir, name: opts.Name, scheme: scheme}
	where := fmt.Sprintf("member %q, data dir %s, peer %s, client %s", opts.Name, opts.DataDir, opts.PeerAddress, opts.ClientAddress)
	if opts.TLS != nil {
		where += ", mutual TLS"
	}

	cfg := embed.NewConfig()
	cfg.Name = opts.Name
	cfg.Dir = opts.DataDir
	peerURL := url.URL{Scheme: scheme, Host: opts.PeerAddress}
	clientURL := url.URL{Scheme: scheme, Host: opts.ClientAddress}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ClusterState = embed.ClusterStateFlagNew
	if opts.InitialCluster != "" {
		cfg.InitialCluster = opts.InitialCluster
	}
	if opts.ClusterState == embed.ClusterStateFlagExisting {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	cfg.LogLevel = "warn"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(opts.Logger, "etcd", &s.closing))
	cfg.AutoCompactionMode = embed.CompactorModeRevision
	cfg.AutoCompactionRetention = strconv.Itoa(CompactionRevisions)
	cfg.QuotaBackendBytes = QuotaBackendBytes
	cfg.SnapshotCount = SnapshotCount
	cfg.TickMs = uint(opts.HeartbeatInterval.Milliseconds())   //nolint:gosec // G115: positive (defaulted above)
	cfg.ElectionMs = uint(opts.ElectionTimeout.Milliseconds()) //nolint:gosec // G115: positive (defaulted above)
	cfg.EnableGRPCGateway = false                              // gRPC only: no JSON gateway on the client port
	if t := opts.TLS; t != nil {
		// etcd reads the files itself (again at every handshake).
		// ClientCertAuth: a client certificate signed by the CA is
		// required; etcd's peer listener also checks its IP SANs
		// against the source address (see TLSFiles).
		cfg.PeerTLSInfo.CertFile = t.CertFile
		cfg.PeerTLSInfo.KeyFile = t.KeyFile
		cfg.PeerTLSInfo.TrustedCAFile = t.CAFile
		cfg.PeerTLSInfo.ClientCertAuth = true
		cfg.ClientTLSInfo.CertFile = t.CertFile
		cfg.ClientTLSInfo.KeyFile = t.KeyFile
		cfg.ClientTLSInfo.TrustedCAFile = t.CAFile
		cfg.ClientTLSInfo.ClientCertAuth = true
		cfg.TlsMinVersion = "TLS1.3" // as tlsMinVersion
		if opts.DenylistFile != "" {
			d, err := startDenylist(opts.DenylistFile)
			if err != nil {
				return nil, fmt.Errorf("platformdb: open (%s): %w", where, err)
			}
			s.deny = d
			cfg.PeerTLSInfo.CRLFile = opts.DenylistFile
			cfg.ClientTLSInfo.CRLFile = opts.DenylistFile
		}
	}

	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("platformdb: start etcd (%s): %w", where, err)
	}
	s.srv = srv
	select {
	case <-srv.Server.ReadyNotify():
	case err := <-srv.Err():
		s.stopServer()
		return nil, fmt.Errorf("platformdb: start etcd (%s): %w", where, err)
	case <-srv.Server.StopNotify():
		s.stopServer()
		return nil, fmt.Errorf("platformdb: start etcd (%s): server stopped before it was ready", where)
	case <-ctx.Done():
		s.abort()
		return nil, fmt.Errorf("platformdb: start etcd (%s): not ready: %w", where, ctx.Err())
	}
	s.clientAddr = srv.Clients[0].Addr().String()
	s.peerAddr = srv.Peers[0].Addr().String()

	conn, err := newConn(ConnectOptions{
		Endpoints:      []string{dialAddress(s.clientAddr)},
		Logger:         opts.Logger,
		RequestTimeout: opts.RequestTimeout,
		TLS:            opts.TLS,
	})
	if err != nil {
		s.stopServer()
		return nil, fmt.Errorf("platformdb: start etcd (%s): %w", where, err)
	}
	// The local member's applied revision: no request, never unavailable.
	conn.rev = func(context.Context) (int64, error) { return srv.Server.KV().Rev(), nil }
	// List asks the member in process: the same request and answer as over
	// gRPC (the first page linearizable, then serializable at its
	// revision), without the loopback TLS, the protobuf encoding and the
	// copies in between, which were half the CPU time of listing 100,000
	// user rows at a start (decision 0033).
	conn.rangeKV = func(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
		resp, err := srv.Server.Range(ctx, r)
		return resp, localError(err)
	}
	s.Conn = conn
	if s.deny != nil {
		s.bg.Go(func() { s.watchDenylist(conn.ctx) })
	}

	if opts.ClusterState == embed.ClusterStateFlagExisting {
		return s, nil // a joining learner: its peer URL is the one it was added with
	}
	if err := s.fixPeerURL(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("platformdb: start etcd (%s): %w", where, err)
	}
	return s, nil
}

// fixPeerURL records the bound peer URL in the membership when it differs
// from the stored one in a one-member cluster: after a start with port 0
// (tests), after the operator changed PeerAddress, or after TLS was turned
// on or off (the scheme changes between http and https). A member that later
// joins the cluster dials the stored URL, so it must be right. Clusters of
// several members are left alone (a peer URL change there is an operator's
// "member update", done by the cluster issue's tooling).
func (s *Etcd) fixPeerURL(ctx context.Context) error {
	want := (&url.URL{Scheme: s.scheme, Host: s.peerAddr}).String()
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("member list: %w", err)
	}
	if len(resp.Members) != 1 {
		return nil
	}
	m := resp.Members[0]
	if len(m.PeerURLs) == 1 && m.PeerURLs[0] == want {
		return nil
	}
	if _, err := s.cli.MemberUpdate(ctx, m.ID, []string{want}); err != nil {
		return fmt.Errorf("member update of peer URL: %w", err)
	}
	return nil
}

// localError is the error the gRPC client would have returned for err, an
// error of the member's own server (Conn reads rpctypes errors: compacted,
// unavailable).
func localError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mvcc.ErrCompacted):
		return rpctypes.ErrCompacted
	case errors.Is(err, mvcc.ErrFutureRev):
		return rpctypes.ErrFutureRev
	}
	return rpctypes.Error(err) // etcdserver's errors: the gRPC ones' messages
}

// dialAddress is where the in-process client reaches a listener bound to
// addr: the loopback address for a listener on every address (0.0.0.0 or
// ::), which the node certificate always names.
func dialAddress(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// stopServer stops the embedded member. embed.Etcd.Close panics when called
// twice: this runs once, from a failed Open or from Close's sync.Once.
// abort stops a member that is not ready yet (waiting for quorum). Close
// alone would wait for the client listeners, which only start once the
// member is ready (etcd issue 9533): stopping the server first ends that
// wait.
func (s *Etcd) abort() {
	s.closing.Store(true)
	s.srv.Server.HardStop()
	s.stopServer()
}

func (s *Etcd) stopServer() {
	s.closing.Store(true)
	s.srv.Close()
}

// ClientAddress and PeerAddress return the bound listener addresses.
func (s *Etcd) ClientAddress() string { return s.clientAddr }
func (s *Etcd) PeerAddress() string   { return s.peerAddr }

// DataDir returns the member's data directory.
func (s *Etcd) DataDir() string { return s.dataDir }

// Close closes the Conn (releasing the held locks and ending the watches),
// then stops the member. It is safe to call more than once.
func (s *Etcd) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.Conn.Close()
		s.bg.Wait()
		s.stopServer()
	})
	return s.closeErr
}
