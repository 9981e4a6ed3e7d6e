// Package certs owns the certificates the front serves: parsing and checking
// key/certificate pairs, the in-memory SNI set read on every handshake, the
// file source of Strategy C and the self-signed placeholder.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Set is an immutable SNI index. It is never modified after build, so the
// handshake path reads it without a lock.
type Set struct {
	exact    map[string]*tls.Certificate // lower-case DNS name -> cert
	wildcard map[string]*tls.Certificate // "example.com" for "*.example.com"
	fallback *tls.Certificate            // served when SNI matches nothing (or is absent)
	all      []*tls.Certificate
}

// newSet indexes certs from scratch at now: it is the definition the
// Cache's incremental updates must match (index.go, TestCacheMatchesRebuild).
// When several certificates name the same host, one still valid at now beats
// an expired one; then the most recently issued (latest NotBefore) wins,
// whatever its source: a renewal, a file replaced by certbot and a record
// rotated in PlatformDB all carry a newer NotBefore than what they replace;
// on a tie the earlier certificate in the list wins. An exact name whose
// certificate has expired is not indexed while a valid wildcard covers it,
// so the lookup falls through to the wildcard (an old core1.{domain}
// certificate must not shadow *.{domain}). The fallback, served when SNI
// matches nothing or is absent, is the certificate for defaultName, else
// the first one.
func newSet(certs []*tls.Certificate, defaultName string, now time.Time) *Set {
	s := &Set{
		exact:    make(map[string]*tls.Certificate),
		wildcard: make(map[string]*tls.Certificate),
		all:      certs,
	}
	for _, c := range certs {
		for _, name := range certNames(c) {
			name, wild := splitWildcard(indexName(name))
			m := s.exact
			if wild {
				m = s.wildcard
			}
			if cur, dup := m[name]; !dup || outranks(c, cur, now) {
				m[name] = c
			}
		}
	}
	for name, c := range s.exact {
		if !expired(c, now) {
			continue
		}
		if p := parentName(name); p == "" {
			continue
		} else if w, ok := s.wildcard[p]; ok && !expired(w, now) {
			delete(s.exact, name)
		}
	}
	s.setFallback(defaultName)
	return s
}

// outranks is newSet's rule between two certificates naming one host.
func outranks(a, b *tls.Certificate, now time.Time) bool {
	if ea, eb := expired(a, now), expired(b, now); ea != eb {
		return eb
	}
	return newer(a, b)
}

// expired reports whether c's leaf is past its NotAfter at now. A
// certificate without a parsed leaf never counts as expired (it names
// nothing either: it can only be the fallback).
func expired(c *tls.Certificate, now time.Time) bool {
	return c.Leaf != nil && now.After(c.Leaf.NotAfter)
}

// parentName is the wildcard map's key that covers an exact name ("" when
// the name has a single label): what lookup tries after the exact map.
func parentName(name string) string {
	if i := strings.IndexByte(name, '.'); i > 0 {
		return name[i+1:]
	}
	return ""
}

// setFallback picks the certificate for defaultName, else the first one.
func (s *Set) setFallback(defaultName string) {
	s.fallback = nil
	if len(s.all) > 0 {
		s.fallback = s.all[0]
		if defaultName != "" {
			if c := s.Lookup(defaultName); c != nil {
				s.fallback = c
			}
		}
	}
}

// indexName is a certificate's name as the set compares it: lower case,
// no trailing dot.
func indexName(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// splitWildcard tells where the set indexes a name: "*.example.com" as
// "example.com" in the wildcard map, any other in the exact one.
func splitWildcard(name string) (string, bool) { return strings.CutPrefix(name, "*.") }

func newer(a, b *tls.Certificate) bool {
	return a.Leaf != nil && b.Leaf != nil && a.Leaf.NotBefore.After(b.Leaf.NotBefore)
}

func certNames(c *tls.Certificate) []string {
	if c.Leaf == nil {
		return nil
	}
	if len(c.Leaf.DNSNames) > 0 {
		return c.Leaf.DNSNames
	}
	if c.Leaf.Subject.CommonName != "" {
		return []string{c.Leaf.Subject.CommonName}
	}
	return nil
}

// Lookup returns the certificate for a server name: exact name, then the
// wildcard one label up, then the fallback. It does not allocate when name is
// already lower case (what every mainstream client sends).
func (s *Set) Lookup(name string) *tls.Certificate {
	c, _ := s.lookup(name)
	return c
}

// Kinds of match a lookup makes, counted by Cache.GetCertificate.
const (
	matchExact = iota
	matchWildcard
	matchDefault
	matchNone
	numMatches
)

func (s *Set) lookup(name string) (*tls.Certificate, int) {
	if name != "" {
		name = strings.ToLower(name)
		if name[len(name)-1] == '.' {
			name = name[:len(name)-1]
		}
		if c, ok := s.exact[name]; ok {
			return c, matchExact
		}
		if i := strings.IndexByte(name, '.'); i > 0 {
			if c, ok := s.wildcard[name[i+1:]]; ok {
				return c, matchWildcard
			}
		}
	}
	if s.fallback == nil {
		return nil, matchNone
	}
	return s.fallback, matchDefault
}

// Len is the number of distinct certificates in the set.
func (s *Set) Len() int { return len(s.all) }

// Certificates returns the certificates of the set; callers must not modify them.
func (s *Set) Certificates() []*tls.Certificate { return s.all }

// Source names where certificates come from. The placeholder is served only
// while no other source has a certificate.
type Source int

const (
	SourceFiles       Source = iota // Strategy C: http.ssl.* files
	SourceStore                     // PlatformDB (ACME, import), materialised per hostname
	SourcePlaceholder               // self-signed, only while no other source has a certificate
	numSources
)

var errNoCertificate = errors.New("no certificate is loaded yet")

// Cache holds the current Set and derives the next one from it when a
// source changes: only the names of the certificates that changed are
// re-ranked (index.go), so rotating one certificate among 10,000 does not
// re-index the other 9,999. Writers are serialised by a mutex; readers
// (GetCertificate, on every handshake) only do an atomic load.
type Cache struct {
	mu          sync.Mutex
	sources     [numSources]source // every certificate, in the set's order
	cands       candidates         // every certificate naming each name, winning or not
	defaultName string
	cur         atomic.Pointer[Set]
	lookups     [numMatches]atomic.Uint64 // GetCertificate calls by kind of match

	// A certificate's expiry changes the winners without any source
	// changing: expiries wakes the store (timer) when the next one passes,
	// and the names it carried are re-ranked then. stale are the exact
	// names whose best certificate has expired, by parentName, for when the
	// wildcard that covers them changes.
	expiries expiryHeap
	timer    *time.Timer
	stale    map[string]map[string]struct{}
	now      func() time.Time // time.Now; tests set it
}

// NewCache returns an empty store: handshakes fail until a source puts a certificate.
func NewCache() *Cache {
	s := &Cache{now: time.Now}
	s.cur.Store(newSet(nil, "", s.now()))
	return s
}

// SetDefaultName makes name's certificate the one served to clients that
// send no SNI or an unknown name (normally the primary hostname).
func (s *Cache) SetDefaultName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.defaultName = name
	s.begin().commit()
}

// Replace sets the certificates of one source (nil clears it) and swaps in a
// new Set. A placeholder is dropped from the set as soon as any other source
// has a certificate, so it can never shadow a real one. The list's order is
// the set's order within the source (see newSet); a certificate that keeps
// its place costs nothing, so a list that changes in place (a rotation) is
// cheap and one with an entry inserted or removed mid-way is re-indexed
// from there on. A source kept by hostname is better fed with Update.
func (s *Cache) Replace(src Source, certs ...*tls.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.begin()
	u.replace(src, certs)
	u.commit()
}

// Change is one certificate of a source kept by key (the materialiser's
// hostnames): Cert nil removes Key.
type Change struct {
	Key  string
	Cert *tls.Certificate
	// Leaf is Cert's parsed leaf when Cert.Leaf is nil. The Cache keeps
	// what it needs of it (a Leaf) and not the parsed certificate, so a
	// caller that serves many certificates can leave Cert.Leaf nil and let
	// each parsed leaf go (decision 0034): 2-3 KB each. Neither: Cert names
	// nothing, it can only be the fallback.
	Leaf *x509.Certificate
}

// Update applies changes to one source, in order (a key changed twice ends
// with its last change), and swaps in a new Set derived from the current
// one: the cost is that of the changes and of the names they carry, not of
// the whole set. Within the source, certificates are in key order (what
// newSet's tie-break and first-certificate fallback see). A source is fed
// either by Update or by Replace: Replace drops the keys Update gave.
func (s *Cache) Update(src Source, changes ...Change) {
	if len(changes) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.begin()
	u.update(src, changes)
	u.commit()
}

// Current returns the Set in force.
func (s *Cache) Current() *Set { return s.cur.Load() }

// HasReal reports whether a source other than the placeholder has a certificate.
func (s *Cache) HasReal() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hasReal()
}

func (s *Cache) hasReal() bool {
	for i := range s.sources {
		if Source(i) != SourcePlaceholder && len(s.sources[i].entries) > 0 {
			return true
		}
	}
	return false
}

// GetCertificate is the tls.Config hook: no lock, no I/O, no allocation;
// one atomic add counts the lookup.
func (s *Cache) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, kind := s.cur.Load().lookup(hello.ServerName)
	s.lookups[kind].Add(1)
	if c != nil {
		return c, nil
	}
	return nil, errNoCertificate
}

// Lookups counts GetCertificate calls (one per handshake that is not a
// resumption) by what matched the client's server name.
type Lookups struct {
	Exact    uint64 // a certificate names it
	Wildcard uint64 // a wildcard one label up covers it
	Default  uint64 // nothing matched (or no SNI): the default certificate
	None     uint64 // no certificate at all: the handshake failed
}

// Lookups returns the counters since NewCache.
func (s *Cache) Lookups() Lookups {
	return Lookups{
		Exact:    s.lookups[matchExact].Load(),
		Wildcard: s.lookups[matchWildcard].Load(),
		Default:  s.lookups[matchDefault].Load(),
		None:     s.lookups[matchNone].Load(),
	}
}

// String names a source for logs and metrics.
func (src Source) String() string {
	switch src {
	case SourceFiles:
		return "files"
	case SourceStore:
		return "platformdb"
	case SourcePlaceholder:
		return "placeholder"
	}
	return "unknown"
}

// Served is one name the current set answers and the certificate it gets.
type Served struct {
	Name   string // lower case; "*.example.com" for a wildcard
	Source Source
	Leaf   *Leaf // nil for a certificate added without one
}

// Served lists every name the current set answers with the certificate
// served for it (sorted by name). It is for monitoring, not the handshake
// path: it takes the writers' mutex and allocates.
func (s *Cache) Served() []Served {
	s.mu.Lock()
	by := make(map[*tls.Certificate]*entry)
	for i := range s.sources {
		for _, e := range s.sources[i].entries {
			if _, dup := by[e.cert]; !dup {
				by[e.cert] = e
			}
		}
	}
	set := s.cur.Load() // under mu: the set these sources built
	s.mu.Unlock()
	out := make([]Served, 0, len(set.exact)+len(set.wildcard))
	served := func(name string, c *tls.Certificate) Served {
		e := by[c]
		return Served{Name: name, Source: e.src, Leaf: e.leaf}
	}
	for name, c := range set.exact {
		out = append(out, served(name, c))
	}
	for name, c := range set.wildcard {
		out = append(out, served("*."+name, c))
	}
	slices.SortFunc(out, func(a, b Served) int { return strings.Compare(a.Name, b.Name) })
	return out
}
