package platformdb

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pryv/pryv-tls/internal/atomicfile"
)

// DeniedPrefix holds the node certificates refused by every member: one row
// per certificate, "denied-cert/<serial, hex>". bootstrap remove-core writes
// them; every member watches them.
const DeniedPrefix = "denied-cert/"

// DeniedCert is a denylist row: a certificate refused on both PlatformDB
// listeners of every member (by serial) and by the join listener (by serial
// or public key, so that a certificate renewed for the same key is refused
// too).
type DeniedCert struct {
	Serial   string    `json:"serial"`         // hex, as SerialNumber.Text(16)
	SPKI     string    `json:"spki,omitempty"` // sha256 of the SubjectPublicKeyInfo, hex
	CoreID   string    `json:"coreId"`
	DeniedAt time.Time `json:"deniedAt"`
	NotAfter time.Time `json:"notAfter,omitzero"` // the certificate's: after it, nobody can use it anyway
}

// DeniedKey is the row of a serial.
func DeniedKey(serial string) string { return DeniedPrefix + strings.ToLower(serial) }

// SerialHex and SPKIHash are how a certificate is named in the denylist.
func SerialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

func SPKIHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// denySet is the denylist in memory, swapped whole (read lock-free by the
// TLS checks).
type denySet struct {
	serials map[string]bool
	spkis   map[string]bool
	rows    []DeniedCert
}

func newDenySet(rows []DeniedCert) *denySet {
	d := &denySet{serials: map[string]bool{}, spkis: map[string]bool{}, rows: rows}
	for _, r := range rows {
		d.serials[strings.ToLower(r.Serial)] = true
		if r.SPKI != "" {
			d.spkis[r.SPKI] = true
		}
	}
	return d
}

func (d *denySet) denied(c *x509.Certificate) bool {
	return d != nil && (d.serials[SerialHex(c)] || d.spkis[SPKIHash(c)])
}

// denylist keeps the set current from PlatformDB and writes it where etcd
// reads it: etcd's listeners take no verification hook, but check every
// new connection's certificate serials against a CRL file (CRLFile of
// both TLS infos, read at each handshake, its signature not checked). The
// file is that CRL, signed by a key made for it at each write: it is this
// member's copy of the rows, not a CA's statement.
type denylist struct {
	file    string
	set     atomic.Pointer[denySet]
	written atomic.Bool // the file holds set (not the last run's copy)
	mu      sync.Mutex  // one refresh at a time (Deny and the watch): not on the TLS checks' path
}

// ErrDenied is the refusal of a denied certificate.
var ErrDenied = errors.New("the node certificate was revoked (its core was removed with \"pryv-tls bootstrap remove-core\")")

// Denied reports whether c is on the denylist this member last read
// (in memory: no request, no lock).
func (s *Etcd) Denied(c *x509.Certificate) bool {
	return s.deny != nil && s.deny.set.Load().denied(c)
}

// DeniedCerts lists the denylist this member last read.
func (s *Etcd) DeniedCerts() []DeniedCert {
	if s.deny == nil {
		return nil
	}
	return append([]DeniedCert(nil), s.deny.set.Load().rows...)
}

// Deny adds rows to the denylist: stored, then applied to this member's
// listeners at once (the other members apply them when their watch sees
// them, within a second).
func (s *Etcd) Deny(ctx context.Context, rows ...DeniedCert) error {
	for _, r := range rows {
		if r.Serial == "" {
			return errors.New("platformdb: deny: no serial")
		}
		data, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if _, err := s.Put(ctx, DeniedKey(r.Serial), data); err != nil {
			return err
		}
	}
	if s.deny != nil {
		return s.refreshDenylist(ctx)
	}
	return nil
}

// startDenylist writes the CRL file etcd is started with: the copy of
// the last run when there is one (a restart keeps refusing what it
// refused), else an empty list.
func startDenylist(file string) (*denylist, error) {
	d := &denylist{file: file}
	d.set.Store(newDenySet(nil))
	if data, err := os.ReadFile(file); err == nil {
		if _, err := x509.ParseRevocationList(data); err == nil {
			return d, nil
		}
	}
	if err := writeCRL(file, nil); err != nil {
		return nil, err
	}
	return d, nil
}

// refreshDenylist reads the rows and, when they changed, swaps the set and
// rewrites the file.
func (s *Etcd) refreshDenylist(ctx context.Context) error {
	s.deny.mu.Lock()
	defer s.deny.mu.Unlock()
	entries, _, err := s.List(ctx, DeniedPrefix)
	if err != nil {
		return err
	}
	rows := make([]DeniedCert, 0, len(entries))
	for _, e := range entries {
		var r DeniedCert
		if err := json.Unmarshal(e.Value, &r); err != nil || r.Serial == "" {
			s.log.Error("a denylist row is unreadable: ignored (delete or rewrite it)", "key", e.Key)
			continue
		}
		rows = append(rows, r)
	}
	old := s.deny.set.Load()
	if s.deny.written.Load() && sameDenied(old.rows, rows) {
		return nil
	}
	if err := writeCRL(s.deny.file, rows); err != nil {
		return err
	}
	s.deny.set.Store(newDenySet(rows))
	s.deny.written.Store(true)
	if len(rows) == 0 && len(old.rows) == 0 {
		return nil
	}
	s.log.Info("denylist updated", "certificates", len(rows), "file", s.deny.file)
	return nil
}

func sameDenied(a, b []DeniedCert) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Serial != b[i].Serial || a[i].SPKI != b[i].SPKI {
			return false
		}
	}
	return true
}

// watchDenylist keeps the denylist current until the member closes.
func (s *Etcd) watchDenylist(ctx context.Context) {
	for {
		_, rev, err := s.List(ctx, DeniedPrefix)
		if err == nil {
			err = s.refreshDenylist(ctx)
		}
		if err != nil {
			if errors.Is(err, ErrClosed) || ctx.Err() != nil {
				return
			}
			if strings.Contains(err.Error(), "learner") {
				s.log.Debug("reading the denylist: a learner serves no reads yet; retrying")
			} else {
				s.log.Warn("reading the denylist; retrying", "error", err.Error())
			}
			if !sleep(ctx, time.Second) {
				return
			}
			continue
		}
		for ev := range s.Watch(ctx, DeniedPrefix, rev+1) {
			_ = ev // any change: read the rows again (there are few)
			if err := s.refreshDenylist(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("reading the denylist", "error", err.Error())
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// writeCRL writes rows as a CRL, atomically (etcd reads it at every
// handshake: never a half-written file).
func writeCRL(file string, rows []DeniedCert) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	issuer := &x509.Certificate{
		Subject:      pkix.Name{CommonName: "pryv-tls PlatformDB denylist (not a CA)"},
		SubjectKeyId: []byte{1},
		KeyUsage:     x509.KeyUsageCRLSign,
		PublicKey:    key.Public(),
	}
	now := time.Now()
	tmpl := &x509.RevocationList{Number: big.NewInt(now.UnixNano()), ThisUpdate: now, NextUpdate: now.Add(100 * 365 * 24 * time.Hour)}
	for _, r := range rows {
		n, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			continue
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: n, RevocationTime: r.DeniedAt})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		return fmt.Errorf("platformdb: denylist: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("platformdb: denylist: %w", err)
	}
	if err := atomicfile.Write(file, der, 0o644); err != nil {
		return fmt.Errorf("platformdb: denylist: %w", err)
	}
	return nil
}
