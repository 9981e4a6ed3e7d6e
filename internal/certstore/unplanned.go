package certstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/pryv/pryv-tls/internal/platformdb"
)

// Unplanned drops the records of names the topology no longer plans once
// their certificate has expired: nothing renews them, and until they go
// every core keeps serving (and `status` keeps listing) a dead certificate
// for a name — an old core1.{domain} after the cluster went to a wildcard.
// It runs on the certRenewer core only, the one whose plans decide what is
// ordered. A record is kept while any planned name needs it: its row or any
// name it carries is planned, or it covers a planned name (a wildcard).
type Unplanned struct {
	KV interface {
		KV
		DeleteIf(ctx context.Context, key string, expect int64) error
	}
	// Planned is every hostname the topology plans now (config Plans'
	// hostnames, and the other cores' core.url under DNS-less multi-core).
	Planned  func(ctx context.Context) ([]string, error)
	Interval time.Duration // between sweeps; default an hour
	Logger   *slog.Logger
	Now      func() time.Time
}

// Dropped is one record Sweep removed.
type Dropped struct {
	Hostname  string
	Source    string
	ExpiresAt time.Time
}

// Run sweeps at start and then every Interval until ctx ends.
func (u *Unplanned) Run(ctx context.Context) {
	every := u.Interval
	if every <= 0 {
		every = time.Hour
	}
	for {
		if _, err := u.Sweep(ctx); err != nil && ctx.Err() == nil {
			u.log().Warn("cleaning the records of names no longer planned; retried later", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// Sweep removes the expired records no planned name needs and returns
// them. A row rewritten since it was read (a renewal, an import) is left
// alone: the delete is conditional on the revision read.
func (u *Unplanned) Sweep(ctx context.Context) ([]Dropped, error) {
	planned, err := u.Planned(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing the planned names: %w", err)
	}
	if len(planned) == 0 {
		// A topology that plans nothing is a configuration being fixed,
		// not a reason to drop every certificate.
		return nil, nil
	}
	entries, _, err := u.KV.List(ctx, Prefix)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", Prefix, err)
	}
	now := time.Now()
	if u.Now != nil {
		now = u.Now()
	}
	var dropped []Dropped
	for _, e := range entries {
		r, err := Unmarshal(e.Key, e.Value)
		if err != nil {
			continue // reported by the materialiser; never dropped unread
		}
		if !now.After(r.ExpiresAt) || needed(r, planned) {
			continue
		}
		err = u.KV.DeleteIf(ctx, e.Key, e.Revision)
		if errors.Is(err, platformdb.ErrConflict) {
			continue
		}
		if err != nil {
			return dropped, fmt.Errorf("deleting %s: %w", e.Key, err)
		}
		d := Dropped{Hostname: r.Hostname, Source: r.Source, ExpiresAt: r.ExpiresAt}
		dropped = append(dropped, d)
		u.log().Warn("certificate record dropped: its name is no longer planned by the topology and the certificate has expired",
			"row", e.Key, "names", r.Names, "source", r.Source, "expiredAt", r.ExpiresAt.UTC())
	}
	return dropped, nil
}

// needed reports whether a planned name needs r: r's row or one of its
// names is planned, or one of its names covers a planned one.
func needed(r *Record, planned []string) bool {
	for _, p := range planned {
		p = strings.ToLower(p)
		if r.Hostname == p || covers(r.Names, p) {
			return true
		}
		for _, n := range r.Names {
			if strings.EqualFold(n, p) {
				return true
			}
		}
	}
	return false
}

func (u *Unplanned) log() *slog.Logger {
	if u.Logger != nil {
		return u.Logger
	}
	return slog.Default()
}
