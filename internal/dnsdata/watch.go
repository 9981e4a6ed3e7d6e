package dnsdata

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pryv/pryv-tls/internal/authdns"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// Watcher keeps the DNS server's zone equal to configuration + PlatformDB:
// it lists the DNS tables once, then applies watch events to an in-memory
// copy and rebuilds the zone from it — never reading the store per query,
// never per event: a burst of events costs one rebuild.
type Watcher struct {
	Static Static
	KV     interface {
		List(ctx context.Context, prefix string) ([]platformdb.Entry, int64, error)
		Watch(ctx context.Context, prefix string, from int64) <-chan platformdb.Event
		Put(ctx context.Context, key string, value []byte) (int64, error) // the serial row
	}
	Swap   func(*authdns.Zone)
	Logger *slog.Logger
	// Settle is how long a change waits for followers before the rebuild
	// (default 10 ms): long enough to batch a burst, far under the 1 s target.
	Settle time.Duration
	// Spacing is the least time between the starts of two rebuilds
	// (default 100 ms): a change after a quiet spell is answered after
	// Settle, one during a burst at most Spacing later. A rebuild itself
	// costs the zone's few other names, but the first change after it
	// copies the map of users the new zone holds (3 MB for 100,000
	// users): rebuilding every Settle through a bulk load of users made
	// hundreds of MB/s of garbage, and as much GC work.
	Spacing time.Duration
	// Cores, if set, is given every core-info row (by id) after each
	// rebuild that follows a change of them: the registry a user lookup
	// maps a core's answer to. It must not keep the slice's callers
	// waiting (it runs in the watcher's goroutine).
	Cores func([]CoreInfo)
	// Listed, if set, is called once, in the watcher's goroutine, after
	// the zone of the first listing is served: the start's burst is over
	// (the daemon returns its garbage then, decision 0036).
	Listed func()
	// Keys, when set (dns.dnssec), opens the DNSSEC key rows and the zone
	// is signed with them (Static.DNSSEC); set it before Run.
	Keys Opener

	// mu guards Static and the rows between the watcher's goroutine and
	// SetStatic (a reload); queries never take it: they read the zone.
	mu     sync.Mutex
	rows   *rows
	serial uint32
	// loaded: the rows have been read from PlatformDB once; before, the
	// zone is served incomplete (names it lacks answered SERVFAIL).
	loaded bool
	warned map[string]bool
	sigs   *authdns.SigCache // with Keys: the signatures, kept across rebuilds
}

// ResignEvery is how often a signed zone is rebuilt when nothing changes.
const ResignEvery = 24 * time.Hour

var tables = []string{UserCorePrefix, CoreInfoPrefix, RecordPrefix, ChallengePrefix, AccountPrefix, DNSSECKeyPrefix, SerialPrefix}

// SerialPrefix holds SerialRow, which every watcher rewrites before it
// lists the DNS tables (at its start, after a lost watch).
//
// The zone's SOA serial is the highest revision among the DNS tables' rows
// (SerialRow included), kept up by the revisions of their watch events:
// the same on every core that read the same rows, whenever it started.
// Neither the listing's header revision (it counts writes to every table:
// a core starting after a certificate or lock write answered a serial the
// running cores never would) nor the rows' revisions alone (a deletion
// leaves no row with its revision: a core starting after it answered a
// lower serial than the running cores, and than it did before a restart)
// is that. Writing SerialRow first makes the starting core's serial the
// newest revision, past any deletion; the running cores see the row's
// event and take the same. A restart so moves every core's serial up by
// one write, never down.
const (
	SerialPrefix = "dns-serial/"
	SerialRow    = SerialPrefix + "listed"
)

func (w *Watcher) log() *slog.Logger {
	if w.Logger != nil {
		return w.Logger
	}
	return slog.Default()
}

// Static serves a zone from configuration alone, for the time before
// PlatformDB answers (or without it).
func (w *Watcher) ServeStatic() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rows = newRows()
	return w.rebuild()
}

// SetStatic replaces the configuration's part of the zone (a reload) and
// rebuilds it with the rows it holds; a zone that does not build keeps the
// old Static and zone, and the error says why.
func (w *Watcher) SetStatic(st Static) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	old := w.Static
	w.Static = st
	if err := w.rebuild(); err != nil {
		w.Static = old
		return err
	}
	return nil
}

// Run syncs until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	settle, spacing := w.Settle, w.Spacing
	if settle <= 0 {
		settle = 10 * time.Millisecond
	}
	if spacing <= 0 {
		spacing = 100 * time.Millisecond
	}
	for ctx.Err() == nil {
		revs, err := w.listAll(ctx)
		if err != nil {
			w.log().Warn("listing DNS rows in PlatformDB; answering from the last zone meanwhile", "error", err.Error())
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			continue
		}
		w.rebuildLogged()
		if w.Listed != nil {
			w.Listed()
			w.Listed = nil
		}
		w.follow(ctx, revs, settle, spacing)
	}
}

func (w *Watcher) listAll(ctx context.Context) (map[string]int64, error) {
	// A store that refuses the write (no space) still serves its rows:
	// this core's serial may then differ from the others' until the next
	// change of the DNS tables, which the warning says.
	if _, err := w.KV.Put(ctx, SerialRow, []byte(`{"why":"a DNS watcher listed the DNS tables; the revision of this row is a floor of the SOA serial"}`)); err != nil {
		w.log().Warn("writing the DNS serial row; this core's SOA serial may differ from the other cores' until the next DNS change", "row", SerialRow, "error", err.Error())
	}
	r := newRows()
	revs := map[string]int64{}
	var maxRev int64
	for _, t := range tables {
		entries, rev, err := w.KV.List(ctx, t)
		if err != nil {
			return nil, err
		}
		revs[t] = rev
		if t == UserCorePrefix {
			r.expectUsers(len(entries))
		}
		for _, e := range entries {
			maxRev = max(maxRev, e.Revision)
			r.apply(platformdb.Event{Type: platformdb.EventPut, Entry: e})
		}
	}
	w.mu.Lock()
	w.rows = r
	w.serial = max(w.serial, uint32(maxRev)) //nolint:gosec // G115: an SOA serial is 32 bits (RFC 1982 arithmetic); 4 billion revisions are decades of writes
	w.loaded = true
	w.mu.Unlock()
	return revs, nil
}

// follow applies events from every table until a watch asks for a re-list
// (history compacted) or ctx ends.
func (w *Watcher) follow(ctx context.Context, revs map[string]int64, settle, spacing time.Duration) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan platformdb.Event, 256)
	var wg sync.WaitGroup
	for _, t := range tables {
		ch := w.KV.Watch(wctx, t, revs[t]+1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range ch {
				select {
				case events <- ev:
				case <-wctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(events) }()

	var (
		timer <-chan time.Time
		last  time.Time // start of the last rebuild
	)
	// A signed zone's signatures are made at the rebuild: a quiet zone is
	// rebuilt daily, well within their validity (7 days).
	var resign <-chan time.Time
	if w.Keys != nil {
		t := time.NewTicker(ResignEvery)
		defer t.Stop()
		resign = t.C
	}
	for {
		select {
		case <-resign:
			last = time.Now()
			w.rebuildLogged()
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Type == platformdb.EventReset {
				return
			}
			w.mu.Lock()
			w.rows.apply(ev)
			w.serial = max(w.serial, uint32(ev.Entry.Revision)) //nolint:gosec // G115: an SOA serial is 32 bits (RFC 1982 arithmetic); 4 billion revisions are decades of writes
			w.mu.Unlock()
			if timer == nil {
				timer = time.After(max(settle, spacing-time.Since(last)))
			}
		case <-timer:
			timer = nil
			last = time.Now()
			w.rebuildLogged()
		}
	}
}

func (w *Watcher) rebuildLogged() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.rebuild(); err != nil {
		w.log().Error("DNS zone not rebuilt; the previous zone keeps answering", "error", err.Error())
	}
}

func (w *Watcher) rebuild() error {
	st := w.Static
	if w.Keys != nil {
		if w.sigs == nil {
			w.sigs = authdns.NewSigCache()
		}
		st.DNSSEC, st.Sigs = w.Keys, w.sigs
	}
	z, warnings, err := Build(st, w.rows, w.serial)
	if err != nil {
		return err
	}
	if !w.loaded {
		z.SetIncomplete()
	}
	if w.warned == nil {
		w.warned = map[string]bool{}
	}
	for _, msg := range warnings {
		if !w.warned[msg] { // each conflict once, not at every rebuild
			w.warned[msg] = true
			w.log().Warn("DNS record conflict", "detail", msg)
		}
	}
	w.Swap(z)
	if w.Cores != nil && w.rows.coresChanged {
		w.rows.coresChanged = false
		cores := make([]CoreInfo, 0, len(w.rows.cores))
		for _, id := range slices.Sorted(maps.Keys(w.rows.cores)) {
			c := w.rows.cores[id]
			c.ID = id // the row's key names the core in the zone
			cores = append(cores, c)
		}
		w.Cores(cores)
	}
	return nil
}

// apply updates the in-memory rows with one event.
func (r *rows) apply(ev platformdb.Event) {
	key := ev.Entry.Key
	del := ev.Type == platformdb.EventDelete
	switch {
	case strings.HasPrefix(key, UserCorePrefix):
		name := strings.TrimPrefix(key, UserCorePrefix)
		id, ok := r.userCoreOf(ev.Entry.Value)
		if del || !ok {
			r.deleteUser(name)
			return
		}
		r.setUser(name, id)
	case strings.HasPrefix(key, CoreInfoPrefix):
		id := strings.TrimPrefix(key, CoreInfoPrefix)
		var c CoreInfo
		r.coresChanged = true
		if del || json.Unmarshal(ev.Entry.Value, &c) != nil {
			delete(r.cores, id)
			return
		}
		r.cores[id] = c
	case strings.HasPrefix(key, RecordPrefix):
		sub := strings.TrimPrefix(key, RecordPrefix)
		var rec Records
		if del || json.Unmarshal(ev.Entry.Value, &rec) != nil {
			delete(r.records, sub)
			return
		}
		r.records[sub] = rec
	case strings.HasPrefix(key, ChallengePrefix):
		rest := strings.TrimPrefix(key, ChallengePrefix)
		i := strings.LastIndexByte(rest, '/')
		if i <= 0 {
			return
		}
		fqdn, id := rest[:i], rest[i+1:]
		if del {
			delete(r.challenges[fqdn], id)
			if len(r.challenges[fqdn]) == 0 {
				delete(r.challenges, fqdn)
			}
			return
		}
		if r.challenges[fqdn] == nil {
			r.challenges[fqdn] = map[string]string{}
		}
		r.challenges[fqdn][id] = string(ev.Entry.Value)
	case strings.HasPrefix(key, DNSSECKeyPrefix):
		var k KeyRow
		if del || json.Unmarshal(ev.Entry.Value, &k) != nil {
			delete(r.dnssec, key)
			return
		}
		r.dnssec[key] = k
	case strings.HasPrefix(key, AccountPrefix):
		a, ok := parseAccount(ev.Entry.Value)
		if del || !ok {
			delete(r.accounts, key)
			return
		}
		r.accounts[key] = a
	}
}

// userCoreOf reads a user row's core id. The form SetUserCore writes,
// {"core":"<id>"} with an id that needs no escaping, is read without
// encoding/json (a start reads every user's row: 100,000 reflective
// decodes were most of the watcher's start) and gives the id string the
// rows already hold for that core; anything else goes through
// encoding/json, as before. ok false: not a usable row.
func (r *rows) userCoreOf(v []byte) (id string, ok bool) {
	const pre, suf = `{"core":"`, `"}`
	if len(v) > len(pre)+len(suf) && string(v[:len(pre)]) == pre && string(v[len(v)-len(suf):]) == suf {
		b := v[len(pre) : len(v)-len(suf)]
		plain := true
		for _, c := range b {
			plain = plain && c >= 0x20 && c < 0x7f && c != '"' && c != '\\'
		}
		if plain {
			if i, ok := r.coreIdx[string(b)]; ok {
				return r.coreIDs[i], true
			}
			return string(b), true
		}
	}
	var uc UserCore
	if json.Unmarshal(v, &uc) != nil || uc.Core == "" {
		return "", false
	}
	return uc.Core, true
}

// expectUsers sizes the empty users' map of a new rows for n users: a
// start fills it at once, and growing it there rehashed it a dozen times.
func (r *rows) expectUsers(n int) {
	if len(r.users) == 0 && !r.shared {
		r.users = make(map[string]uint32, n)
	}
}
