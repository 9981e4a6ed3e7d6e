package platformdbtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/platformdb"
)

// Two members opened by one test are two stores, each working, each on
// loopback; a data directory handed to OpenWith is reopened with its rows.
func TestOpen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, b := Open(t), Open(t)
	if _, err := a.Put(ctx, "k", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "k"); !errors.Is(err, platformdb.ErrNotFound) {
		t.Fatalf("the second member sees the first's row (%v): they share a store", err)
	}
	for _, db := range []*platformdb.Etcd{a, b} {
		if addr := db.ClientAddress(); addr == "" || addr[:10] != "127.0.0.1:" {
			t.Errorf("client address %q, want loopback", addr)
		}
	}

	dir := a.DataDir()
	if err := a.Close(); err != nil { // the cleanup's Close then passes
		t.Fatal(err)
	}
	c := OpenWith(t, platformdb.Options{DataDir: dir})
	e, err := c.Get(ctx, "k")
	if err != nil || string(e.Value) != "a" {
		t.Fatalf("reopened %s: %q %v, want the row written before", dir, e.Value, err)
	}
}
