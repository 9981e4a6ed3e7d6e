package dnsdata

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/apijson"
	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/authdns"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// DNSSECKeyPrefix holds the zone's DNSSEC keys, one row each:
// dnssec-key/<sequence, 6 digits> -> KeyRow. Every key is published and
// signs; there are two only during a rollover (decision 0022).
const DNSSECKeyPrefix = "dnssec-key/"

// KeyRow is one DNSSEC key: ECDSA P-256 (algorithm 13), one combined
// signing key (flags 257), its private half sealed with atRestKey so every
// core signs with the same key.
type KeyRow struct {
	Created time.Time `json:"created"`
	// Public is the DNSKEY's public key field (base64), as published.
	Public string `json:"public"`
	Key    []byte `json:"key"` // atrest envelope of the PKCS#8 private key
}

// Opener opens what atrest sealed (an *atrest.Keyring).
type Opener interface {
	Open(purpose atrest.Purpose, row string, envelope []byte) ([]byte, error)
}

// Sealer seals for atrest (an *atrest.Keyring).
type Sealer interface {
	Seal(purpose atrest.Purpose, row string, plaintext []byte) ([]byte, error)
}

// dnskey returns the key's DNSKEY record for the zone origin.
func (k KeyRow) dnskey(origin string, ttl uint32) *dns.DNSKEY {
	return &dns.DNSKEY{
		Hdr:   dns.RR_Header{Name: origin, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: ttl},
		Flags: 257, Protocol: 3, Algorithm: dns.ECDSAP256SHA256, PublicKey: k.Public,
	}
}

// signingKeys opens the key rows (sorted by row) into the zone's keys;
// a row that does not open is reported and left out.
func signingKeys(open Opener, origin string, ttl uint32, rows map[string]KeyRow) ([]authdns.Key, []string) {
	var (
		keys     []authdns.Key
		warnings []string
	)
	for _, row := range slices.Sorted(maps.Keys(rows)) {
		k := rows[row]
		signer, err := openKey(open, row, k)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("DNSSEC key %s: %v; not used (is letsEncrypt.atRestKey the same on every core?)", row, err))
			continue
		}
		keys = append(keys, authdns.Key{DNSKEY: k.dnskey(origin, ttl), Signer: signer})
	}
	return keys, warnings
}

func openKey(open Opener, row string, k KeyRow) (crypto.Signer, error) {
	der, err := open.Open(atrest.PurposeDNSSECKey, row, k.Key)
	if err != nil {
		return nil, err
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the private key: %w", err)
	}
	ec, ok := priv.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an ECDSA P-256 key", priv)
	}
	// The row's public half must be the private key's: a mismatch would
	// publish one key and sign with another.
	if pub, err := dnskeyPublic(ec); err != nil || pub != k.Public {
		return nil, errors.New("its public key does not match its private key")
	}
	return ec, nil
}

// dnskeyPublic is the DNSKEY public key field of an algorithm 13 key:
// base64 of X | Y (RFC 6605 §4).
func dnskeyPublic(ec *ecdsa.PrivateKey) (string, error) {
	pub, err := ec.PublicKey.ECDH()
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(pub.Bytes()[1:]), nil // drop the 0x04 prefix
}

// KeyStore makes, lists and rolls the zone's DNSSEC keys in PlatformDB.
type KeyStore struct {
	KV interface {
		List(ctx context.Context, prefix string) ([]platformdb.Entry, int64, error)
		CompareAndSwap(ctx context.Context, key string, value []byte, expect int64) (int64, error)
		Delete(ctx context.Context, key string) error
	}
	Keys interface {
		Opener
		Sealer
	}
	Domain string // dns.domain
	TTL    uint32 // the DNSKEY's TTL (dns.defaultTTL)
	Now    func() time.Time
}

func (s *KeyStore) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// list returns the key rows by row name, sorted.
func (s *KeyStore) list(ctx context.Context) ([]string, map[string]KeyRow, error) {
	entries, _, err := s.KV.List(ctx, DNSSECKeyPrefix)
	if err != nil {
		return nil, nil, fmt.Errorf("listing the DNSSEC keys: %w", err)
	}
	rows := map[string]KeyRow{}
	for _, e := range entries {
		var k KeyRow
		if err := json.Unmarshal(e.Value, &k); err != nil {
			return nil, nil, fmt.Errorf("DNSSEC key %s: not a key row: %w", e.Key, err)
		}
		rows[e.Key] = k
	}
	return slices.Sorted(maps.Keys(rows)), rows, nil
}

// Ensure makes the zone's first key unless one exists. Two cores starting
// at once make one key: the row is created only if absent.
func (s *KeyStore) Ensure(ctx context.Context) (created bool, err error) {
	names, _, err := s.list(ctx)
	if err != nil || len(names) > 0 {
		return false, err
	}
	err = s.create(ctx, 1)
	if errors.Is(err, platformdb.ErrConflict) {
		return false, nil // another core made it
	}
	return err == nil, err
}

// Rollover adds a new key: both keys are then published and sign, so
// resolvers holding either DNSKEY set validate. FinishRollover removes the
// old one once the parent's DS names the new key.
func (s *KeyStore) Rollover(ctx context.Context) (KeyInfo, error) {
	names, _, err := s.list(ctx)
	if err != nil {
		return KeyInfo{}, err
	}
	if len(names) > 1 {
		return KeyInfo{}, fmt.Errorf("a rollover is already under way (%d keys): put the new key's DS at the registrar, then run: pryv-tls dns rollover --finish", len(names))
	}
	seq := 1
	if len(names) == 1 {
		n, err := strconv.Atoi(strings.TrimPrefix(names[0], DNSSECKeyPrefix))
		if err != nil {
			return KeyInfo{}, fmt.Errorf("DNSSEC key row %s: not a sequence number", names[0])
		}
		seq = n + 1
	}
	if err := s.create(ctx, seq); err != nil {
		return KeyInfo{}, err
	}
	infos, err := s.Infos(ctx)
	if err != nil {
		return KeyInfo{}, err
	}
	return infos[len(infos)-1], nil
}

// FinishRollover deletes every key but the newest, once the newest has
// been published for two DNSKEY TTLs (so no resolver holds a DNSKEY set
// without it).
func (s *KeyStore) FinishRollover(ctx context.Context) ([]string, error) {
	names, rows, err := s.list(ctx)
	if err != nil {
		return nil, err
	}
	if len(names) < 2 {
		return nil, errors.New("no rollover under way (one key): start one with: pryv-tls dns rollover")
	}
	newest := rows[names[len(names)-1]]
	if wait := newest.Created.Add(2 * time.Duration(s.TTL) * time.Second).Sub(s.now()); wait > 0 {
		return nil, fmt.Errorf("the new key was published %s ago; wait %s more (two DNSKEY TTLs) and make sure the registrar has its DS", s.now().Sub(newest.Created).Round(time.Second), wait.Round(time.Second))
	}
	var deleted []string
	for _, n := range names[:len(names)-1] {
		if err := s.KV.Delete(ctx, n); err != nil {
			return deleted, fmt.Errorf("deleting the old DNSSEC key %s: %w", n, err)
		}
		deleted = append(deleted, n)
	}
	return deleted, nil
}

func (s *KeyStore) create(ctx context.Context, seq int) error {
	row := fmt.Sprintf("%s%06d", DNSSECKeyPrefix, seq)
	k := KeyRow{}.dnskey(dns.Fqdn(s.Domain), s.TTL)
	priv, err := k.Generate(256)
	if err != nil {
		return fmt.Errorf("making a DNSSEC key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	sealed, err := s.Keys.Seal(atrest.PurposeDNSSECKey, row, der)
	if err != nil {
		return err
	}
	data, err := json.Marshal(KeyRow{Created: s.now().UTC(), Public: k.PublicKey, Key: sealed})
	if err != nil {
		return err
	}
	if _, err := s.KV.CompareAndSwap(ctx, row, data, 0); err != nil {
		return fmt.Errorf("storing the DNSSEC key %s: %w", row, err)
	}
	return nil
}

// KeyInfo is what `pryv-tls dns ds` shows of a key: never its private half.
type KeyInfo struct {
	Row     string    `json:"row"`
	KeyTag  uint16    `json:"keyTag"`
	Created time.Time `json:"created"`
	DNSKEY  string    `json:"dnskey"`
	DS      string    `json:"ds"` // SHA-256 digest, for the registrar
}

// Infos lists the keys, oldest first.
func (s *KeyStore) Infos(ctx context.Context) ([]KeyInfo, error) {
	names, rows, err := s.list(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]KeyInfo, 0, len(names))
	for _, n := range names {
		k := rows[n].dnskey(dns.Fqdn(s.Domain), s.TTL)
		ds := k.ToDS(dns.SHA256)
		if ds == nil {
			return nil, fmt.Errorf("DNSSEC key %s: its public key does not make a DS", n)
		}
		out = append(out, KeyInfo{Row: n, KeyTag: k.KeyTag(), Created: rows[n].Created, DNSKEY: k.String(), DS: ds.String()})
	}
	return out, nil
}

// ServeHTTP is the control socket's /dnssec/ API: GET /dnssec/keys,
// POST /dnssec/rollover, POST /dnssec/rollover/finish.
func (s *KeyStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reply := func(code int, v any) { apijson.Write(w, code, v) }
	fail := func(code int, err error) { apijson.Error(w, code, "dnssec", err.Error()) }
	ctx := r.Context()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/dnssec/keys":
		infos, err := s.Infos(ctx)
		if err != nil {
			fail(http.StatusServiceUnavailable, err)
			return
		}
		reply(http.StatusOK, map[string]any{"keys": infos})
	case r.Method == http.MethodPost && r.URL.Path == "/dnssec/rollover":
		info, err := s.Rollover(ctx)
		if err != nil {
			fail(http.StatusConflict, err)
			return
		}
		reply(http.StatusOK, map[string]any{"key": info})
	case r.Method == http.MethodPost && r.URL.Path == "/dnssec/rollover/finish":
		deleted, err := s.FinishRollover(ctx)
		if err != nil {
			fail(http.StatusConflict, err)
			return
		}
		reply(http.StatusOK, map[string]any{"deleted": deleted})
	default:
		fail(http.StatusNotFound, fmt.Errorf("no %s %s", r.Method, r.URL.Path))
	}
}
