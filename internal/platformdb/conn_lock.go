package platformdb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Lock takes the named lock: an etcd concurrency.Mutex under "_lock/<name>"
// on a session (lease) of its own, kept alive by the client. ttl is rounded
// up to whole seconds, at least 1; etcd raises it to its minimum lease TTL
// (1.5 election timeouts, rounded up: 1 s with the default 500 ms election
// timeout, 2 s with etcd's own 1 s). Waiters are served in arrival order.
//
// Lock blocks while another holder has the lock, until ctx ends: it then
// returns an error wrapping ctx.Err() (not ErrUnavailable: waiting for a
// busy lock is normal). Getting the lease is a request like the others:
// ErrUnavailable when it cannot complete within the request timeout.
//
// Lost is closed when the lease ends: Unlock, Close, or the lease expired
// (the client closes it when no keep-alive answer came within the TTL, so
// a core cut from the quorum notices on its own). Fence is the create
// revision of this holder's mutex key: unique per acquisition, and
// increasing from one holder to the next.
func (s *Conn) Lock(ctx context.Context, name string, ttl time.Duration) (Lock, error) {
	if err := s.check("lock", name); err != nil {
		return nil, err
	}
	secs := int64((ttl + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	// Close aborts a waiting Lock.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()

	gctx, gcancel := context.WithTimeout(ctx, s.timeout)
	lease, err := s.cli.Grant(gctx, secs)
	gcancel()
	if err != nil {
		return nil, s.fail("lock", name, err)
	}
	// The session's own context is not ctx: the keep-alive must outlive
	// this call. Orphan (release) ends it.
	sess, err := concurrency.NewSession(s.cli,
		concurrency.WithLease(lease.ID), concurrency.WithTTL(int(secs)),
		concurrency.WithContext(context.Background()))
	if err != nil {
		s.revoke(lease.ID)
		return nil, s.fail("lock", name, err)
	}
	l := &etcdLock{s: s, name: name, sess: sess}

	// Mutex.Lock cleans up after a cancelled wait with a delete on the
	// client's own context, which waits as long as the store is
	// unreachable: do not let that hold the caller past ctx.
	m := concurrency.NewMutex(sess, lockPrefix+name)
	done := make(chan error, 1)
	go func() { done <- m.Lock(ctx) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		go func() { _ = <-done; l.abandon() }() // abandon releases the lock if Lock won it after all
		return nil, s.lockFail(name, ctx.Err())
	case <-sess.Done():
		// Our lease could not be kept alive while we waited: our place
		// in the queue is gone.
		cancel()
		go func() { _ = <-done; l.abandon() }() // abandon releases the lock if Lock won it after all
		if s.isClosed() {
			return nil, fmt.Errorf("%w: lock %q", ErrClosed, name)
		}
		return nil, fmt.Errorf("%w: lock %q: lease lost while waiting", ErrUnavailable, name)
	}
	if err != nil {
		l.abandon()
		if errors.Is(err, concurrency.ErrSessionExpired) {
			return nil, fmt.Errorf("%w: lock %q: lease expired while waiting", ErrUnavailable, name)
		}
		return nil, s.lockFail(name, err)
	}

	gctx, gcancel = context.WithTimeout(ctx, s.timeout)
	resp, err := s.cli.Get(gctx, m.Key())
	gcancel()
	if err != nil {
		l.abandon()
		return nil, s.fail("lock", name, err)
	}
	if len(resp.Kvs) == 0 {
		l.abandon()
		return nil, fmt.Errorf("%w: lock %q: lease expired while acquiring", ErrUnavailable, name)
	}
	l.key, l.fence = m.Key(), resp.Kvs[0].CreateRevision

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.abandon()
		return nil, fmt.Errorf("%w: lock %q", ErrClosed, name)
	}
	s.locks[l] = struct{}{}
	s.mu.Unlock()
	return l, nil
}

func (s *Conn) lockFail(name string, err error) error {
	if s.isClosed() {
		return fmt.Errorf("%w: lock %q", ErrClosed, name)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("platformdb: lock %q: not acquired: %w", name, err)
	}
	return s.fail("lock", name, err)
}

// revoke revokes a lease, bounded in time; errors are ignored (the lease
// then expires by its TTL).
func (s *Conn) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	_, _ = s.cli.Revoke(ctx, id)
}

type etcdLock struct {
	s     *Conn
	name  string
	sess  *concurrency.Session
	key   string // this holder's mutex key, created at revision fence
	fence int64
	once  sync.Once
	err   error
}

func (l *etcdLock) Lost() <-chan struct{} { return l.sess.Done() }

func (l *etcdLock) Fence() int64 { return l.fence }

// Put is a write fenced by the lock: it commits only if this holder's mutex
// key still exists with its create revision (the key goes with the lease).
func (l *etcdLock) Put(ctx context.Context, key string, value []byte) (int64, error) {
	if err := l.s.check("fenced put", key); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, l.s.timeout)
	defer cancel()
	resp, err := l.s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.fence)).
		Then(clientv3.OpPut(key, string(value))).Commit()
	if err != nil {
		return 0, l.s.fail("fenced put", key, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("%w: fenced put %q: the lock %q is no longer held", ErrConflict, key, l.name)
	}
	return resp.Header.Revision, nil
}

// Unlock stops the keep-alive (Lost closes) and revokes the lease, which
// deletes the mutex key: the next waiter gets the lock at once. If the
// revoke cannot complete (store unreachable) the lease expires by its TTL
// and Unlock returns ErrUnavailable; Lost is closed either way. After Close
// (which releases every lock) Unlock returns nil.
func (l *etcdLock) Unlock(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.s.timeout)
	defer cancel()
	if err := l.release(ctx); err != nil && !l.s.isClosed() {
		return l.s.fail("unlock", l.name, err)
	}
	return nil
}

func (l *etcdLock) release(ctx context.Context) error {
	l.once.Do(func() {
		lost := false
		select {
		case <-l.sess.Done():
			// The lease expired or could not be kept alive for its TTL:
			// it is gone or going; a revoke would only make etcd log
			// "lease not found".
			lost = true
		default:
		}
		l.sess.Orphan()
		if !lost {
			_, err := l.s.cli.Revoke(ctx, l.sess.Lease())
			if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
				l.err = err
			}
		}
		l.s.mu.Lock()
		delete(l.s.locks, l)
		l.s.mu.Unlock()
	})
	return l.err
}

// abandon releases a lock that was never handed out.
func (l *etcdLock) abandon() {
	ctx, cancel := context.WithTimeout(context.Background(), l.s.timeout)
	defer cancel()
	_ = l.release(ctx)
}
