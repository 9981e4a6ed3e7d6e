package certstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// KV is what the certificate store needs of PlatformDB.
type KV interface {
	Get(ctx context.Context, key string) (platformdb.Entry, error)
	Put(ctx context.Context, key string, value []byte) (int64, error)
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix string) ([]platformdb.Entry, int64, error)
	Watch(ctx context.Context, prefix string, from int64) <-chan platformdb.Event
}

// ErrNoRecord is returned for a hostname with no stored certificate.
var ErrNoRecord = errors.New("no certificate stored for this hostname")

// Catalog reads and writes certificate records.
type Catalog struct {
	KV   KV
	Keys *atrest.Keyring
	Now  func() time.Time
}

func (c *Catalog) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Store validates a PEM pair and writes it as its record (see Input).
// Nothing is written if the pair is not servable.
func (c *Catalog) Store(ctx context.Context, in Input) (*Record, error) {
	r, _, err := NewRecord(c.Keys, in, c.now())
	if err != nil {
		return nil, err
	}
	data, err := r.Marshal()
	if err != nil {
		return nil, err
	}
	if _, err := c.KV.Put(ctx, RowKey(r.Hostname), data); err != nil {
		return nil, fmt.Errorf("storing %s: %w", RowKey(r.Hostname), err)
	}
	return r, nil
}

// Get returns hostname's record (key still sealed).
func (c *Catalog) Get(ctx context.Context, hostname string) (*Record, error) {
	e, err := c.KV.Get(ctx, RowKey(hostname))
	if errors.Is(err, platformdb.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", hostname, ErrNoRecord)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", RowKey(hostname), err)
	}
	return Unmarshal(e.Key, e.Value)
}

// List returns every record sorted by hostname. A row that does not decode is
// reported in errs and skipped, so one bad row does not hide the others.
func (c *Catalog) List(ctx context.Context) (recs []*Record, errs []error, err error) {
	entries, _, err := c.KV.List(ctx, Prefix)
	if err != nil {
		return nil, nil, fmt.Errorf("listing %s: %w", Prefix, err)
	}
	for _, e := range entries {
		r, err := Unmarshal(e.Key, e.Value)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		recs = append(recs, r)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Hostname < recs[j].Hostname })
	return recs, errs, nil
}

// Export returns hostname's chain and unsealed key PEM.
func (c *Catalog) Export(ctx context.Context, hostname string) (chainPEM, keyPEM []byte, err error) {
	r, err := c.Get(ctx, hostname)
	if err != nil {
		return nil, nil, err
	}
	_, keyPEM, err = r.Open(c.Keys, c.now())
	if err != nil {
		return nil, nil, err
	}
	return []byte(r.Chain), keyPEM, nil
}

// Delete removes hostname's record. Every core then stops serving it and
// removes its materialised directory (copies on http.ssl paths stay).
func (c *Catalog) Delete(ctx context.Context, hostname string) error {
	if _, err := c.Get(ctx, hostname); err != nil {
		return err
	}
	if err := c.KV.Delete(ctx, RowKey(hostname)); err != nil {
		return fmt.Errorf("deleting %s: %w", RowKey(hostname), err)
	}
	return nil
}
