package platformdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ConnectOptions configure Connect.
type ConnectOptions struct {
	// Endpoints are the host:port client addresses of etcd members
	// (e.g. the running daemon's Etcd.ClientAddress()). Required.
	Endpoints []string
	// Logger receives the client's warnings and errors. Default slog.Default().
	Logger *slog.Logger
	// RequestTimeout bounds every request (default 5 s), as in Options.
	RequestTimeout time.Duration
	// TLS: dial with mutual TLS, presenting the node certificate and
	// trusting only the CA (see TLSFiles); required by members opened
	// with Options.TLS, so always set by the daemon and its tools. The
	// certificate must name the endpoints' hosts too (it is a server
	// certificate as well, and only node certificates are trusted).
	TLS *TLSFiles
}

// Conn is a Store over an etcd client, without a member of its own: what
// Etcd uses for its own member, and what a tool (a CLI next to a running
// daemon, which holds the data dir) uses to reach it. Its semantics are
// those of Store; its methods' docs give the etcd details.
type Conn struct {
	log     *slog.Logger
	timeout time.Duration
	cli     *clientv3.Client
	// rev reads the current store revision (Watch from 0, after a reset).
	rev func(context.Context) (int64, error)
	// rangeKV is List's request: the gRPC client's Range, or for an Etcd
	// its own member's, in process (see Open).
	rangeKV func(context.Context, *pb.RangeRequest) (*pb.RangeResponse, error)

	ctx    context.Context // cancelled by Close: watchers, pending locks
	cancel context.CancelFunc

	closing   atomic.Bool // Close has started: calls return ErrClosed, shutdown noise is demoted
	mu        sync.Mutex
	closed    bool
	locks     map[*etcdLock]struct{}
	inner     map[int]context.CancelFunc // live inner watches (tests break them)
	innerSeq  int
	wg        sync.WaitGroup // watcher goroutines
	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Conn)(nil)

// Connect returns a Store over a client of the etcd members at
// opts.Endpoints. It checks the connection with one linearizable read
// (bounded by ctx and the request timeout) and fails naming the endpoints
// if it cannot complete.
func Connect(ctx context.Context, opts ConnectOptions) (*Conn, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("platformdb: connect: no endpoints")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	c, err := newConn(opts)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := c.rev(rctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("platformdb: connect to %s: %w", strings.Join(opts.Endpoints, ","), err)
	}
	return c, nil
}

func newConn(opts ConnectOptions) (*Conn, error) {
	c := &Conn{
		log:     opts.Logger,
		timeout: opts.RequestTimeout,
		locks:   make(map[*etcdLock]struct{}),
		inner:   make(map[int]context.CancelFunc),
	}
	cfg := clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: opts.RequestTimeout,
		Logger:      newZapLogger(opts.Logger, "etcd-client", &c.closing),
		// The default 2 MiB would refuse a page of a listing bigger than
		// that (listPage certificates of a few KiB each).
		MaxCallRecvMsgSize: 256 << 20,
	}
	if opts.TLS != nil {
		for _, ep := range opts.Endpoints {
			if strings.HasPrefix(ep, "http://") || strings.HasPrefix(ep, "unix:") {
				// clientv3 would silently dial it without TLS.
				return nil, fmt.Errorf("platformdb: connect to %s: TLS is set but the endpoint is not https", ep)
			}
		}
		tc, err := opts.TLS.clientConfig()
		if err != nil {
			return nil, fmt.Errorf("platformdb: connect to %s: %w", strings.Join(opts.Endpoints, ","), err)
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("platformdb: connect to %s: %w", strings.Join(opts.Endpoints, ","), err)
	}
	c.cli = cli
	c.rev = c.readRev
	kv := clientv3.RetryKVClient(cli) // what cli.Get calls, without its Op
	c.rangeKV = func(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
		resp, err := kv.Range(ctx, r)
		return resp, clientv3.ContextError(ctx, err) // as cli.Get: rpctypes errors
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// readRev reads the store revision with a linearizable read of one
// (reserved, absent) key.
func (s *Conn) readRev(ctx context.Context) (int64, error) {
	resp, err := s.cli.Get(ctx, lockPrefix, clientv3.WithCountOnly())
	if err != nil {
		return 0, s.fail("revision", "", err)
	}
	return resp.Header.Revision, nil
}

// Client returns the underlying etcd client. It is for tests and
// operators' tools only (raw reads, compaction, member list): writes
// through it bypass the Store contract.
func (s *Conn) Client() *clientv3.Client { return s.cli }

// Close releases the held locks (revoking their leases, so another holder
// can take them at once), ends the watches (their channels close) and
// closes the client. It is safe to call more than once; later calls return
// the first call's result.
func (s *Conn) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		locks := make([]*etcdLock, 0, len(s.locks))
		for l := range s.locks {
			locks = append(locks, l)
		}
		s.mu.Unlock()
		s.closing.Store(true)

		for _, l := range locks {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = l.release(ctx)
			cancel()
		}
		s.cancel()
		s.wg.Wait()
		if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			s.closeErr = fmt.Errorf("platformdb: close client: %w", err)
		}
	})
	return s.closeErr
}

// kill closes the client without releasing anything, as if the process
// died: held locks stay until their lease expires. For tests.
func (s *Conn) kill() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.closing.Store(true)
		s.cancel()
		s.wg.Wait()
		_ = s.cli.Close()
	})
}

func (s *Conn) isClosed() bool { return s.closing.Load() }

// check refuses calls on a closed store and malformed keys.
func (s *Conn) check(op, key string) error {
	if s.isClosed() {
		return fmt.Errorf("%w: %s %q", ErrClosed, op, key)
	}
	if key == "" {
		return fmt.Errorf("platformdb: %s: empty key", op)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("platformdb: %s %q: key is not UTF-8", op, key)
	}
	return nil
}

// fail maps an etcd error to the contract's: ErrClosed after Close;
// ErrUnavailable when the request could not complete in time (context
// deadline or cancellation, no leader, etcd's own timeouts); other errors
// (quota exceeded, request too large) are wrapped as they are. etcd error
// strings never carry values.
func (s *Conn) fail(op, key string, err error) error {
	if s.isClosed() {
		return fmt.Errorf("%w: %s %q", ErrClosed, op, key)
	}
	if unavailable(err) {
		return fmt.Errorf("%w: %s %q: %w", ErrUnavailable, op, key, err)
	}
	return fmt.Errorf("platformdb: %s %q: %w", op, key, err)
}

func unavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		switch ee.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			return true
		}
		return false
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			return true
		}
	}
	return false
}

// Get returns the entry at key, or ErrNotFound. The read is linearizable.
func (s *Conn) Get(ctx context.Context, key string) (Entry, error) {
	if err := s.check("get", key); err != nil {
		return Entry{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return Entry{}, s.fail("get", key, err)
	}
	if len(resp.Kvs) == 0 {
		return Entry{}, fmt.Errorf("%w: get %q", ErrNotFound, key)
	}
	kv := resp.Kvs[0]
	return Entry{Key: string(kv.Key), Value: kv.Value, Revision: kv.ModRevision}, nil
}

// Put writes value at key and returns the new revision.
func (s *Conn) Put(ctx context.Context, key string, value []byte) (int64, error) {
	if err := s.check("put", key); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Put(ctx, key, string(value))
	if err != nil {
		return 0, s.fail("put", key, err)
	}
	return resp.Header.Revision, nil
}

// CompareAndSwap writes value at key if the key's revision is expect (0:
// the key must not exist). A negative expect always conflicts.
func (s *Conn) CompareAndSwap(ctx context.Context, key string, value []byte, expect int64) (int64, error) {
	if err := s.check("compare-and-swap", key); err != nil {
		return 0, err
	}
	if expect < 0 {
		return 0, fmt.Errorf("%w: compare-and-swap %q", ErrConflict, key)
	}
	cmp := clientv3.Compare(clientv3.ModRevision(key), "=", expect)
	if expect == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(value))).Commit()
	if err != nil {
		return 0, s.fail("compare-and-swap", key, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("%w: compare-and-swap %q", ErrConflict, key)
	}
	return resp.Header.Revision, nil
}

// Delete removes key; a missing key is not an error.
func (s *Conn) Delete(ctx context.Context, key string) error {
	if err := s.check("delete", key); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := s.cli.Delete(ctx, key); err != nil {
		return s.fail("delete", key, err)
	}
	return nil
}

// DeleteIf removes key if its revision is expect; else ErrConflict (a
// missing key, and so any expect <= 0, is a conflict).
func (s *Conn) DeleteIf(ctx context.Context, key string, expect int64) error {
	if err := s.check("delete-if", key); err != nil {
		return err
	}
	if expect <= 0 {
		return fmt.Errorf("%w: delete-if %q", ErrConflict, key)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", expect)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return s.fail("delete-if", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: delete-if %q", ErrConflict, key)
	}
	return nil
}

// List reads listPage keys in its first request, then as many as make
// about listPageBytes of keys and values at the previous page's mean size,
// between listPage/10 and listPage*10: 10,000 users a page, or a few hundred
// certificates. (Each page costs etcd a walk of the index to the end of the
// range, to count it: small pages of a big range would be slow.)
// listPageHook, if set, runs between two pages (tests).
var (
	listPage      int64 = 1000
	listPageBytes       = 4 << 20
	listPageHook  func()
)

// List returns the entries under prefix sorted by key, and the revision the
// listing was read at. An empty prefix lists the whole store, Lock's
// "_lock/" keys included.
//
// It reads a page of keys per request (see listPage): the first is a linearizable
// read, which fixes the revision; the next ones read that same revision
// (etcd's multi-version snapshot) from the member that answered (a
// serializable read: no quorum round, since that member has applied it),
// so the listing is what one read would return. One read of 100,000 users
// made etcd build, and both sides hold, the whole response at once: tens
// of MB allocated at once at every start, freed a moment later. Each
// request has the request timeout. When the history of that revision is
// compacted before the last page (more writes meanwhile than the
// compaction keeps), or a page is read from another member that has not
// applied it yet (a Conn over several endpoints), the listing starts over,
// up to three times.
func (s *Conn) List(ctx context.Context, prefix string) ([]Entry, int64, error) {
	if s.isClosed() {
		return nil, 0, fmt.Errorf("%w: list %q", ErrClosed, prefix)
	}
	if !utf8.ValidString(prefix) {
		return nil, 0, fmt.Errorf("platformdb: list %q: prefix is not UTF-8", prefix)
	}
	for attempt := 0; ; attempt++ {
		entries, rev, err := s.list(ctx, prefix)
		if (errors.Is(err, rpctypes.ErrCompacted) || errors.Is(err, rpctypes.ErrFutureRev)) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, 0, s.fail("list", prefix, err)
		}
		return entries, rev, nil
	}
}

func (s *Conn) list(ctx context.Context, prefix string) ([]Entry, int64, error) {
	var (
		entries []Entry
		rev     int64
		key     = prefix
		page    = listPage
	)
	for {
		// The requests clientv3's Get made: WithLimit, WithSort(key, ascending)
		// (no sort for etcd: its order), WithPrefix on the first page
		// (linearizable), then WithRange or WithFromKey, WithRev and
		// WithSerializable.
		req := &pb.RangeRequest{Key: []byte(key), Limit: page, SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_KEY}
		if key == "" {
			req.Key = []byte{0} // etcd refuses an empty key; \x00 is the first one
		}
		req.RangeEnd = []byte(clientv3.GetPrefixRangeEnd(prefix)) // "\x00" for "": every key from key on
		if rev != 0 {
			req.Revision, req.Serializable = rev, true
		}
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		resp, err := s.rangeKV(rctx, req)
		cancel()
		if err != nil {
			return nil, 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
			entries = make([]Entry, 0, resp.Count)
		}
		size := 0
		for _, kv := range resp.Kvs {
			entries = append(entries, Entry{Key: string(kv.Key), Value: kv.Value, Revision: kv.ModRevision})
			size += len(kv.Key) + len(kv.Value)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return entries, rev, nil
		}
		page = min(max(int64(listPageBytes/max(size/len(resp.Kvs), 1)), listPage/10, 1), listPage*10)
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		if listPageHook != nil {
			listPageHook()
		}
	}
}
