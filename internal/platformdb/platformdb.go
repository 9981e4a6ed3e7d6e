// Package platformdb is PlatformDB: the small key-value store every core of a
// deployment shares (certificates, the ACME account, HTTP-01 tokens, DNS
// records, user -> core and core-info rows). It is implemented on an embedded
// etcd member (Open), so a single core needs no extra server and a cluster
// gets Raft consensus, watches, leases and mutual TLS.
package platformdb

import (
	"context"
	"errors"
	"time"
)

// Store is the whole contract. Every implementation must honour it exactly;
// contract_test.go checks it against the embedded etcd one.
//
// Keys are UTF-8 strings; by convention "<table>/<row>" (e.g.
// "tls-cert/*.example.com": a "*" is kept literally). Values are opaque bytes;
// the store never interprets them and never logs them (they may be
// ciphertexts, but the store does not rely on it).
//
// Revisions: every write gets a store-wide, strictly increasing revision.
// An Entry's Revision is the revision of its last write (etcd's ModRevision);
// it is what CompareAndSwap compares, and what Watch resumes from. A revision
// is never 0 for an existing key; 0 stands for "absent".
//
// Consistency: reads are linearizable (a read after a write that returned, on
// any core, sees it). Writes are durable once they return. A write is atomic:
// after a crash a key holds either its old or its new value, never a mix.
//
// Errors: a missing key is ErrNotFound (Get only; Delete of a missing key is
// not an error); a failed compare is ErrConflict; a store that cannot reach
// quorum returns ErrUnavailable once ctx ends or its own request timeout
// passes; a closed store returns ErrClosed. Errors never contain values.
// (Errors wrap these sentinels with the operation and the key: test them
// with errors.Is. ErrUnavailable also wraps its cause, e.g.
// context.DeadlineExceeded when ctx ended.)
type Store interface {
	// Get returns the entry at key, or ErrNotFound.
	Get(ctx context.Context, key string) (Entry, error)

	// Put writes value at key unconditionally and returns the new revision.
	Put(ctx context.Context, key string, value []byte) (int64, error)

	// CompareAndSwap writes value at key only if the key's current revision
	// is expect (0: only if the key does not exist). It returns the new
	// revision, or ErrConflict and writes nothing.
	CompareAndSwap(ctx context.Context, key string, value []byte, expect int64) (int64, error)

	// Delete removes key if it exists. DeleteIf removes it only if its
	// revision is expect, else ErrConflict (a missing key is a conflict too).
	Delete(ctx context.Context, key string) error
	DeleteIf(ctx context.Context, key string, expect int64) error

	// List returns every entry whose key starts with prefix, sorted by key,
	// and the store revision the listing was read at. Watch(prefix, rev+1)
	// then misses nothing and repeats nothing.
	List(ctx context.Context, prefix string) ([]Entry, int64, error)

	// Watch streams changes to keys starting with prefix, from revision from
	// (0: from now), in revision order, each exactly once. It survives
	// reconnects (a restarted member, a lost connection) by resuming from the
	// last revision it delivered. If the history it needs was compacted it
	// sends one Event{Type: EventReset} and carries on from the current
	// revision: the consumer must then List again. The channel is closed when
	// ctx ends or the store closes; it never blocks the store (a slow consumer
	// only delays its own events).
	//
	// A from <= 0 is "from now": writes that returned before Watch was
	// called are not delivered. After an EventReset, events up to the
	// revision of the consumer's new List may still arrive (they are
	// already in the listing): skip those whose Revision is not above it.
	Watch(ctx context.Context, prefix string, from int64) <-chan Event

	// Lock takes the named lock, blocking until it is held or ctx ends. The
	// lock lives on a lease of ttl: if this process dies or loses the store
	// for longer than ttl, the lock is released and another holder may take
	// it. The returned Lock's Lost channel is closed when that happens, so a
	// holder stops working under a lock it no longer has.
	//
	// If ctx ends while another holder has the lock, the error wraps
	// ctx.Err() (waiting is not unavailability). The ttl may be rounded up
	// to the engine's granularity (whole seconds, and a minimum for etcd).
	Lock(ctx context.Context, name string, ttl time.Duration) (Lock, error)

	// Close releases everything. It is safe to call more than once.
	Close() error
}

// Entry is one key and its value.
type Entry struct {
	Key      string
	Value    []byte
	Revision int64 // revision of the last write to this key
}

// EventType says what happened to a key.
type EventType int

const (
	EventPut    EventType = iota + 1 // created or changed: Entry holds the new value
	EventDelete                      // removed: Entry.Key and Entry.Revision (of the delete) only
	EventReset                       // history lost: List again; Entry is empty
)

// Event is one change seen by Watch.
type Event struct {
	Type  EventType
	Entry Entry
}

// Lock is a held lease lock.
type Lock interface {
	// Lost is closed when the lock is no longer held (released, lease expired).
	Lost() <-chan struct{}
	// Fence returns a value that changes every time the lock changes hands,
	// for writes that must fail if the holder has changed (use with CompareAndSwap).
	Fence() int64
	// Put writes value at key only while this lock is held: one
	// transaction compares the lock's own key with Fence, so a holder whose
	// lease ended (a successor may hold the lock now) cannot overwrite what
	// the successor wrote. ErrConflict, and nothing written, when the lock
	// is no longer held.
	Put(ctx context.Context, key string, value []byte) (int64, error)
	// Unlock releases the lock. Safe to call more than once.
	Unlock(ctx context.Context) error
}

var (
	ErrNotFound    = errors.New("platformdb: not found")
	ErrConflict    = errors.New("platformdb: revision conflict")
	ErrUnavailable = errors.New("platformdb: store unavailable (no quorum or unreachable)")
	ErrClosed      = errors.New("platformdb: closed")
)
