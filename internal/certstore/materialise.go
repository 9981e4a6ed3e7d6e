package certstore

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// Materialiser keeps this core's disk and SNI set in step with the records in
// PlatformDB: it lists tls-cert/, then watches it, and for every new or changed
// record opens the key, re-checks the pair, writes it under TLSDir (and onto
// the http.ssl files for the primary hostname), swaps it into the front and
// runs the rotation hook. A record that does not check out is refused and the
// certificate already served for that hostname stays.
type Materialiser struct {
	Catalog *Catalog
	TLSDir  string
	// Primary's record is also written to CertFile/KeyFile (http.ssl.*), unless
	// those are the materialised files themselves. Empty: not written.
	Primary           string
	CertFile, KeyFile string
	// Update receives what changed after each change, keyed by hostname (a
	// nil Cert: no longer served), for certs.Cache.Update, which costs what
	// changed rather than what is served. Serve, used when Update is nil,
	// receives every certificate to serve instead, sorted by hostname.
	Update func([]certs.Change)
	Serve  func([]*tls.Certificate)
	// OnRotate is called after a hostname's files changed on disk.
	OnRotate func(hostname, certPath, keyPath string)
	// OnServed, if set, is called when a record that changed while watching
	// is being served, with the time since the writer stored it (by the
	// writer's clock; never negative). Records found by a listing (start,
	// re-list) are not timed: they may have been stored long ago.
	OnServed func(hostname string, sinceStored time.Duration)
	// OnListed, if set, is called after each full listing is applied (at
	// start, after a re-list): the listing's burst of garbage is over
	// (10,000 records: ~400 MB allocated during a restart), a good time
	// to return it to the OS.
	OnListed func()
	Logger   *slog.Logger

	// Only Run's goroutine (LoadDisk before it) touches what follows.
	served  map[string]served // by hostname
	changed []string          // hostnames changed since the last publish
	hosts   []string          // served's keys, sorted, for Serve; nil when to be redone
	// versions are the stamps of each name's (DirName's) version
	// directories on disk, from the scan of TLSDir at each listing and the
	// writes since: a rotation prunes its name's old ones without reading
	// the directory.
	versions map[string][]int64
	// unwritten are the served records whose files could not be written
	// (a full or read-only tlsDir): retried every writeRetry while watching,
	// so the files and the hooks catch up once the disk has room again
	// rather than at the name's next rotation.
	unwritten map[string]pending
}

// writeRetry is how often files that could not be written are tried again.
var writeRetry = 5 * time.Second

type served struct {
	hash string
	// cert is what the front serves. Fed by Update, it has no parsed
	// leaf: leaf is it until the Cache has had it (publish), then nil, so
	// that 10,000 certificates do not each hold 2-3 KB of parsed leaf
	// nothing reads (decision 0034).
	cert *tls.Certificate
	leaf *x509.Certificate
	// files: read from the http.ssl files at start (no row behind it): a
	// listing without the primary's row does not forget it, a row replaces it.
	files bool
}

func (m *Materialiser) log() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.Default()
}

// LoadDisk serves what an earlier run materialised, so a core that starts
// while PlatformDB is unreachable still has its certificates. Call it before
// Run.
func (m *Materialiser) LoadDisk() {
	if m.served == nil {
		m.served = make(map[string]served)
	}
	entries, err := os.ReadDir(m.TLSDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		m.log().Warn("reading materialised certificates", "dir", m.TLSDir, "error", err.Error())
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		dir := filepath.Join(m.TLSDir, name)
		chain, err1 := os.ReadFile(filepath.Join(dir, "fullchain.pem"))
		key, err2 := os.ReadFile(filepath.Join(dir, "privkey.pem"))
		if err1 != nil || err2 != nil {
			continue
		}
		c, err := certs.ParsePair(chain, key, time.Now())
		if err != nil {
			m.log().Warn("materialised certificate refused", "dir", dir, "error", err.Error())
			continue
		}
		// "wildcard.x" holds "*.x" — unless it is a literal host named
		// wildcard.x: the certificate says which.
		host := name
		if rest, ok := strings.CutPrefix(name, "wildcard."); ok && slices.Contains(c.Leaf.DNSNames, "*."+rest) {
			host = "*." + rest
		}
		m.take(host, served{hash: pairHash(chain, key), cert: c})
	}
	m.loadPrimaryFiles()
	m.publish()
}

// loadPrimaryFiles serves a valid pair already at http.ssl for the primary
// hostname when nothing was materialised for it yet (a core coming from
// Strategy C, certbot's files in place): better than the placeholder until
// PlatformDB has the primary's record (the first order).
func (m *Materialiser) loadPrimaryFiles() {
	if m.Primary == "" || m.CertFile == "" || m.KeyFile == "" {
		return
	}
	if _, ok := m.served[m.Primary]; ok {
		return
	}
	c, err := certs.LoadFiles(m.CertFile, m.KeyFile, "", time.Now())
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			m.log().Warn("the pair at http.ssl is not served until PlatformDB has the primary's certificate", "error", err.Error())
		}
		return
	}
	chain, err1 := os.ReadFile(m.CertFile)
	key, err2 := os.ReadFile(m.KeyFile)
	if err1 != nil || err2 != nil {
		return // replaced in between: the next start reads it
	}
	m.log().Info("serving the pair at http.ssl until PlatformDB has the primary's certificate",
		"hostname", m.Primary, "certFile", m.CertFile, "certificate", certs.Describe(c.Leaf), "notAfter", c.Leaf.NotAfter.UTC())
	m.take(m.Primary, served{hash: pairHash(chain, key), cert: c, files: true})
}

// Run syncs from PlatformDB until ctx ends: a full listing, then the watch;
// after a watch reset (history compacted away) it lists again.
func (m *Materialiser) Run(ctx context.Context) {
	if m.served == nil {
		m.served = make(map[string]served)
	}
	for ctx.Err() == nil {
		rev, err := m.sync(ctx)
		if err != nil {
			m.log().Warn("listing certificates in PlatformDB; serving what is on disk meanwhile", "error", err.Error())
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			continue
		}
		if m.OnListed != nil {
			m.OnListed()
		}
		m.watch(ctx, rev+1)
	}
}

// sync applies the full listing and forgets hostnames no longer stored.
func (m *Materialiser) sync(ctx context.Context) (int64, error) {
	entries, rev, err := m.Catalog.KV.List(ctx, Prefix)
	if err != nil {
		return 0, err
	}
	// The one full read of TLSDir, at start and after a re-list: what each
	// name has on disk, whoever left it.
	if m.versions, err = scanVersions(m.TLSDir); err != nil {
		m.log().Warn("reading the materialised certificates' directory; old versions may stay", "dir", m.TLSDir, "error", err.Error())
	}
	seen := make(map[string]bool, len(entries))
	var batch []pending
	for _, e := range entries {
		seen[strings.TrimPrefix(e.Key, Prefix)] = true
		if p, ok := m.apply(e); ok {
			batch = append(batch, p)
		}
	}
	for host, sv := range m.served {
		if !seen[host] && !sv.files {
			m.forget(host)
		}
	}
	m.publish()
	m.finish(batch, false)
	return rev, nil
}

// watch applies events until the channel closes or asks for a re-list.
func (m *Materialiser) watch(ctx context.Context, from int64) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := m.Catalog.KV.Watch(wctx, Prefix, from)
	retry := time.NewTicker(writeRetry)
	defer retry.Stop()
	for {
		var ev platformdb.Event
		select {
		case e, ok := <-events:
			if !ok {
				return
			}
			ev = e
		case <-retry.C:
			m.retryWrites()
			continue
		}
		// Take what is already queued too, and swap the SNI set once for
		// the lot: a burst of N records costs one update, not N.
		var batch []pending
		for {
			switch ev.Type {
			case platformdb.EventPut:
				if p, ok := m.apply(ev.Entry); ok {
					batch = append(batch, p)
				}
			case platformdb.EventDelete:
				host := strings.TrimPrefix(ev.Entry.Key, Prefix)
				if _, ok := m.served[host]; ok {
					m.forget(host)
				}
			case platformdb.EventReset:
				m.publish()
				m.finish(batch, true)
				return
			}
			if len(batch) >= 1000 {
				break
			}
			var more bool
			select {
			case ev, more = <-events:
			default:
			}
			if !more {
				break
			}
		}
		m.publish()
		m.finish(batch, true)
	}
}

// pending is a record taken into the served set whose files are still to
// be written.
type pending struct {
	rec    *Record
	keyPEM []byte
	leaf   *x509.Certificate // for the log
}

// apply opens and checks one record and takes it into the served set (the
// caller publishes); ok is false when nothing changed or it was refused.
func (m *Materialiser) apply(e platformdb.Entry) (pending, bool) {
	if cur, ok := m.served[strings.TrimPrefix(e.Key, Prefix)]; ok && cur.hash != "" && cur.hash == recordHash(e.Value) {
		return pending{}, false // a listing after a start: most rows are what is on disk
	}
	r, err := Unmarshal(e.Key, e.Value)
	if err != nil {
		m.log().Error("certificate record refused", "row", e.Key, "error", err.Error())
		return pending{}, false
	}
	if cur, ok := m.served[r.Hostname]; ok && cur.hash == r.Hash {
		return pending{}, false
	}
	c, keyPEM, err := r.Open(m.Catalog.Keys, time.Now())
	if err != nil {
		m.log().Error("certificate record refused; the previous certificate keeps serving",
			"row", e.Key, "error", err.Error())
		return pending{}, false
	}
	p := pending{rec: r, keyPEM: keyPEM, leaf: c.Leaf}
	m.take(r.Hostname, served{hash: pairHash([]byte(r.Chain), keyPEM), cert: c})
	return p, true
}

// finish runs after the batch is served from memory: the disk copies (with
// their fsyncs) are for other readers and the next start, and need not
// delay the handshake. Then the rotation hooks.
func (m *Materialiser) finish(batch []pending, live bool) {
	if len(batch) == 0 {
		return
	}
	type written struct {
		certPath, keyPath string
		kept              [2]string
	}
	paths := make([]written, len(batch))
	flipped := false
	for i, p := range batch {
		r := p.rec
		if live && m.OnServed != nil && !r.StoredAt.IsZero() {
			m.OnServed(r.Hostname, max(time.Since(r.StoredAt), 0))
		}
		certPath, keyPath, kept, err := m.write(r.Hostname, []byte(r.Chain), p.keyPEM)
		flipped = flipped || kept[0] != ""
		if err != nil {
			if _, again := m.unwritten[r.Hostname]; !again {
				m.log().Error("writing certificate files; the certificate is served from memory, the files are tried again",
					"hostname", r.Hostname, "error", err.Error(), "retry", writeRetry)
			}
			m.keepVersion(DirName(r.Hostname), kept[0]) // for the name's next write to prune
			if m.unwritten == nil {
				m.unwritten = make(map[string]pending)
			}
			m.unwritten[r.Hostname] = p
			continue
		}
		delete(m.unwritten, r.Hostname)
		paths[i] = written{certPath, keyPath, kept}
	}
	// One fsync of the directory for the batch's link flips (each pair's
	// files were synced before its flip), and only then may the versions
	// they replaced go: a crash before it finds the previous links, and
	// what they name.
	if flipped {
		syncDir(m.TLSDir)
	}
	// Settle the directory before anyone is told: the hooks see exactly the
	// current and the previous version of each name.
	for i, p := range batch {
		if paths[i].certPath != "" {
			m.prune(DirName(p.rec.Hostname), paths[i].kept)
		}
	}
	for i, p := range batch {
		r := p.rec
		m.log().Info("certificate materialised", "hostname", r.Hostname, "certificate", certs.Describe(p.leaf),
			"notAfter", p.leaf.NotAfter.UTC(), "source", r.Source, "path", paths[i].certPath)
		if paths[i].certPath != "" && m.OnRotate != nil {
			m.OnRotate(r.Hostname, paths[i].certPath, paths[i].keyPath)
		}
	}
}

// retryWrites writes again the files that could not be written, for the
// records still served (a newer record of the name replaced the entry).
func (m *Materialiser) retryWrites() {
	if len(m.unwritten) == 0 {
		return
	}
	batch := make([]pending, 0, len(m.unwritten))
	for _, p := range m.unwritten {
		batch = append(batch, p)
	}
	slices.SortFunc(batch, func(a, b pending) int { return strings.Compare(a.rec.Hostname, b.rec.Hostname) })
	m.finish(batch, false)
}

// prune removes name's version directories other than the two kept (the
// one just written and the one before), from what is known to be on disk:
// only directories of that name, and no read of the whole directory.
func (m *Materialiser) prune(name string, kept [2]string) {
	var left []int64
	for _, v := range kept {
		if n, stamp, ok := parseVersion(v); ok && n == name && !slices.Contains(left, stamp) {
			left = append(left, stamp)
		}
	}
	for _, stamp := range m.versions[name] {
		if !slices.Contains(left, stamp) {
			_ = os.RemoveAll(filepath.Join(m.TLSDir, versionDir(name, stamp)))
		}
	}
	if m.versions == nil {
		m.versions = make(map[string][]int64)
	}
	m.versions[name] = left
}

// keepVersion records a version directory of name left on disk.
func (m *Materialiser) keepVersion(name, v string) {
	n, stamp, ok := parseVersion(v)
	if !ok || n != name || slices.Contains(m.versions[name], stamp) {
		return
	}
	if m.versions == nil {
		m.versions = make(map[string][]int64)
	}
	m.versions[name] = append(m.versions[name], stamp)
}

// take serves c for host (the caller publishes).
func (m *Materialiser) take(host string, c served) {
	if m.served == nil {
		m.served = make(map[string]served)
	}
	if m.Update != nil {
		// The Cache gets the leaf beside the certificate (certs.Change.Leaf)
		// and keeps only what it ranks by; Serve's Replace reads Leaf. The
		// certificate is ParsePair's, nobody else's yet: changed in place.
		c.leaf, c.cert.Leaf = c.cert.Leaf, nil
	}
	if _, ok := m.served[host]; !ok {
		m.hosts = nil // a new name: Serve's order is to be redone
	}
	m.served[host] = c
	m.changed = append(m.changed, host)
}

func (m *Materialiser) forget(host string) {
	delete(m.served, host)
	delete(m.unwritten, host)
	m.hosts = nil
	m.changed = append(m.changed, host)
	name := DirName(host)
	dir := filepath.Join(m.TLSDir, name)
	if fi, err := os.Lstat(dir); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		target, _ := os.Readlink(dir)
		_ = os.Remove(dir)
		if isVersionOf(target, name) {
			_ = os.RemoveAll(filepath.Join(m.TLSDir, target))
		}
	}
	// And the version before, with whatever else of the name is known.
	for _, stamp := range m.versions[name] {
		_ = os.RemoveAll(filepath.Join(m.TLSDir, versionDir(name, stamp)))
	}
	delete(m.versions, name)
	m.log().Info("certificate no longer stored; not served any more", "hostname", host)
}

// publish hands what changed since the last publish to the SNI set.
func (m *Materialiser) publish() {
	changed := m.changed
	m.changed = nil
	switch {
	case len(changed) == 0:
	case m.Update != nil:
		list := make([]certs.Change, len(changed))
		for i, h := range changed {
			sv := m.served[h]
			list[i] = certs.Change{Key: h, Cert: sv.cert, Leaf: sv.leaf} // Cert nil once forgotten
		}
		m.Update(list)
		for _, h := range changed {
			if sv, ok := m.served[h]; ok && sv.leaf != nil {
				sv.leaf = nil
				m.served[h] = sv
			}
		}
	case m.Serve != nil:
		if m.hosts == nil {
			m.hosts = slices.Sorted(maps.Keys(m.served))
		}
		list := make([]*tls.Certificate, len(m.hosts))
		for i, h := range m.hosts {
			list[i] = m.served[h].cert
		}
		m.Serve(list)
	}
}

// write materialises a pair and returns the paths an outside reader should use.
func (m *Materialiser) write(host string, chain, key []byte) (certPath, keyPath string, kept [2]string, err error) {
	dir, kept, err := writePair(m.TLSDir, DirName(host), chain, key)
	if err != nil {
		return "", "", kept, err
	}
	certPath, keyPath = filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	if host != m.Primary || m.CertFile == "" {
		return certPath, keyPath, kept, nil
	}
	if filepath.Clean(m.CertFile) == certPath && filepath.Clean(m.KeyFile) == keyPath {
		return certPath, keyPath, kept, nil
	}
	// Separate http.ssl paths cannot switch as a pair; the key goes first so
	// a reader that checks the pair (as ours does) refuses the in-between
	// state rather than serving it, and sees the new pair a moment later.
	// A symlink (certbot's live/ -> archive/) is written through, kept.
	if err := writeThrough(m.KeyFile, key, 0o600); err != nil {
		return "", "", kept, err
	}
	if err := writeThrough(m.CertFile, chain, 0o644); err != nil {
		return "", "", kept, err
	}
	return m.CertFile, m.KeyFile, kept, nil
}

func pairHash(chain, key []byte) string {
	h := sha256.New()
	h.Write(chain)
	h.Write([]byte{0})
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil))
}
