// Package platformdbtest starts a real PlatformDB (an embedded etcd member on
// loopback) for a test: the one helper the packages' tests share instead of
// each copying their own.
package platformdbtest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/platformdb"
)

// openTimeout bounds the member's start (a loaded CI machine takes seconds).
const openTimeout = 30 * time.Second

// Open starts a one-member PlatformDB in a temporary directory, on ports the
// kernel picks, logging nowhere. The test's cleanup closes it (after the
// cleanups registered later, such as a watcher's) and fails the test if
// closing does.
func Open(t testing.TB) *platformdb.Etcd {
	t.Helper()
	return OpenWith(t, platformdb.Options{})
}

// OpenWith is Open with options of the test's own (a name, mutual TLS, a
// data directory to reopen); what o leaves empty is Open's.
func OpenWith(t testing.TB, o platformdb.Options) *platformdb.Etcd {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	if o.PeerAddress == "" {
		o.PeerAddress = "127.0.0.1:0"
	}
	if o.ClientAddress == "" {
		o.ClientAddress = "127.0.0.1:0"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	db, err := platformdb.Open(ctx, o)
	if err != nil {
		t.Fatalf("platformdb.Open: %v", err)
	}
	t.Cleanup(func() {
		// Close is safe twice: a test that closed it itself passes here.
		if err := db.Close(); err != nil {
			t.Errorf("closing PlatformDB: %v", err)
		}
	})
	return db
}
