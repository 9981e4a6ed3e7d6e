package platformdb

import (
	"context"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Backoff between two attempts to resume an interrupted watch. The cap is
// what a member cut off from the quorum adds to its catch-up once the
// partition heals: etcd refuses a leader-requiring watch at once while the
// member has no leader, so the retries back off to the cap during the cut
// and the first one after the heal can be a whole cap away (2 s here made
// the catch-up 0.5-2.3 s, e2e TestFaultsCluster; the target is 1 s). A
// refused attempt costs the local member next to nothing, so the cap is low.
const (
	watchRetryMin = 50 * time.Millisecond
	watchRetryMax = 250 * time.Millisecond
)

// Watch streams the changes under prefix from revision from, in order, each
// once, on an unbuffered channel fed by a goroutine of its own (a slow
// consumer delays only itself; etcd's client buffers meanwhile).
//
// from <= 0 means "from now": from the revision read when Watch is called
// (the local member's applied revision for Etcd, no request; a
// linearizable read for a Conn from Connect, bounded by the request
// timeout), so a write that returned before Watch was called is not
// delivered and one that starts after it is. (If a Conn cannot read it,
// the goroutine retries and "now" is when it succeeds.)
//
// The underlying etcd watch requires a leader (a member cut from the
// quorum has its watches cancelled rather than silently stalled); when it
// ends for any reason but ctx or Close, Watch resumes it after a short
// backoff from the revision after the last one delivered. When the history
// it needs was compacted, it sends one EventReset and carries on from the
// current revision, read before the reset is sent: a List
// made after receiving the reset sees at least that revision, so nothing is
// lost, but events up to the List's revision may follow the reset (skip the
// ones whose Revision is not above the List's).
func (s *Conn) Watch(ctx context.Context, prefix string, from int64) <-chan Event {
	out := make(chan Event)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		close(out)
		return out
	}
	s.wg.Add(1)
	s.mu.Unlock()
	if from <= 0 {
		from = 0
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		if r, err := s.rev(rctx); err == nil {
			from = r + 1
		}
		cancel()
	}
	go s.watch(ctx, prefix, from, out)
	return out
}

// resolveRev reads the current revision, retrying until it succeeds or ctx
// ends.
func (s *Conn) resolveRev(ctx context.Context) (int64, bool) {
	backoff := watchRetryMin
	for {
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		r, err := s.rev(rctx)
		cancel()
		if err == nil {
			return r, true
		}
		if !sleep(ctx, backoff) {
			return 0, false
		}
		backoff = min(2*backoff, watchRetryMax)
	}
}

// sleep waits d or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Conn) watch(ctx context.Context, prefix string, next int64, out chan<- Event) {
	defer s.wg.Done()
	defer close(out)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()

	if next <= 0 { // Watch could not read the current revision
		r, ok := s.resolveRev(ctx)
		if !ok {
			return
		}
		next = r + 1
	}
	backoff := watchRetryMin
	for ctx.Err() == nil {
		compacted, delivered := false, false
		ictx, icancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		id := s.addInner(icancel)
		wch := s.cli.Watch(ictx, prefix,
			clientv3.WithPrefix(), clientv3.WithRev(next), clientv3.WithProgressNotify())
	recv:
		for resp := range wch {
			switch {
			case resp.CompactRevision != 0:
				compacted = true
				break recv
			case resp.Canceled || resp.Err() != nil:
				if ctx.Err() == nil {
					s.log.Debug("platformdb: watch interrupted, resuming",
						"prefix", prefix, "from", next, "err", resp.Err())
				}
				break recv
			case resp.IsProgressNotify():
				// Every event up to the header revision was sent: resume
				// from there (less history needed after a long quiet spell).
				if r := resp.Header.Revision + 1; r > next {
					next = r
				}
				continue
			}
			// Events of one revision (a transaction) come in one response:
			// advance next after the whole response, and skip what an
			// earlier attempt already delivered.
			last := next
			for _, ev := range resp.Events {
				rev := ev.Kv.ModRevision
				if rev < next {
					continue
				}
				e := Event{Type: EventPut, Entry: Entry{Key: string(ev.Kv.Key), Value: ev.Kv.Value, Revision: rev}}
				if ev.Type == mvccpb.DELETE {
					e = Event{Type: EventDelete, Entry: Entry{Key: string(ev.Kv.Key), Revision: rev}}
				}
				select {
				case out <- e:
				case <-ctx.Done():
					icancel()
					s.removeInner(id)
					return
				}
				delivered = true
				last = max(last, rev+1)
			}
			next = last
		}
		icancel()
		s.removeInner(id)
		if ctx.Err() != nil {
			return
		}
		if compacted {
			r, ok := s.resolveRev(ctx)
			if !ok {
				return
			}
			next = r + 1
			s.log.Info("platformdb: watch history compacted, sending reset", "prefix", prefix, "resume_from", next)
			select {
			case out <- Event{Type: EventReset}:
			case <-ctx.Done():
				return
			}
			backoff = watchRetryMin
			continue
		}
		if delivered {
			backoff = watchRetryMin
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, watchRetryMax)
	}
}

func (s *Conn) addInner(cancel context.CancelFunc) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.innerSeq++
	s.inner[s.innerSeq] = cancel
	return s.innerSeq
}

func (s *Conn) removeInner(id int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inner, id)
}

// breakWatches cancels the etcd watch under every live Watch, as a lost
// connection would; the Watches resume by themselves. For tests.
func (s *Conn) breakWatches() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.inner {
		c()
	}
}
