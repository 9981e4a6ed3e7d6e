package certs

import (
	"cmp"
	"container/heap"
	"crypto/tls"
	"iter"
	"maps"
	"slices"
	"time"
)

// The Cache derives each Set from the one before: a change re-ranks only
// the names the changed certificates carry, and the Set shares with its
// predecessor whichever of its two maps no winner changed in (the other is
// copied, since readers hold the old one). What newSet would build from the
// whole list is the definition; TestCacheMatchesRebuild holds the two
// together.

// source is one source's certificates in the set's order: by key (Update),
// then by position in the list (Replace, whose entries have no key).
type source struct {
	entries []*entry
}

// entry is one certificate of a source.
type entry struct {
	cert *tls.Certificate
	leaf *Leaf // what it is ranked by: cert.Leaf or Change.Leaf, kept when added
	src  Source
	key  string
	seq  int
	// gone: removed from its source (it may still sit in the expiry heap);
	// queued: in the expiry heap, not yet passed.
	gone, queued bool
}

func (e *entry) compare(key string, seq int) int {
	if c := cmp.Compare(e.key, key); c != 0 {
		return c
	}
	return cmp.Compare(e.seq, seq)
}

// before reports whether e comes before o in the set's order.
func (e *entry) before(o *entry) bool {
	if e.src != o.src {
		return e.src < o.src
	}
	return e.compare(o.key, o.seq) < 0
}

// ranksAbove is newSet's rule for a name several certificates carry: valid
// before expired, then the most recently issued, then the earlier in the
// order.
func ranksAbove(a, b *entry, now time.Time) bool {
	if a.leaf.outranks(b.leaf, now) {
		return true
	}
	if b.leaf.outranks(a.leaf, now) {
		return false
	}
	return a.before(b)
}

// update is a change to the Cache in the making (under s.mu): the names
// whose winner may have changed.
type update struct {
	s       *Cache
	hadReal bool
	dirty   []string // indexNames; may repeat
	changed bool     // the list of certificates changed
	now     time.Time
}

func (s *Cache) begin() *update { return &update{s: s, hadReal: s.hasReal(), now: s.now()} }

// add adds ch's certificate at seq, ranked by its leaf (Cert.Leaf, else
// ch.Leaf).
func (u *update) add(src Source, seq int, ch Change) *entry {
	c, leaf := ch.Cert, ch.Leaf
	if c.Leaf != nil {
		leaf = c.Leaf
	}
	e := &entry{cert: c, leaf: newLeaf(leaf), src: src, key: ch.Key, seq: seq}
	if e.leaf != nil && !e.leaf.expired(u.now) {
		e.queued = true
		u.s.expiries.push(e)
	}
	for _, n := range e.leaf.names() {
		n = indexName(n)
		if u.s.cands.add(n, e) {
			u.dirty = append(u.dirty, n)
		}
	}
	u.changed = true
	return e
}

func (u *update) remove(e *entry) {
	e.gone = true
	if e.queued {
		e.queued = false
		u.s.expiries.live--
	}
	for _, n := range e.leaf.names() {
		n = indexName(n)
		if u.s.cands.remove(n, e) {
			u.dirty = append(u.dirty, n)
		}
	}
	u.changed = true
}

// replace makes certs (nil ones skipped) the source's list, position by
// position: an entry whose certificate is unchanged at its place stays.
func (u *update) replace(src Source, certs []*tls.Certificate) {
	old := u.s.sources[src].entries
	next := make([]*entry, 0, len(certs))
	for _, c := range certs {
		if c == nil {
			continue
		}
		i := len(next)
		if i < len(old) && old[i].cert == c && old[i].compare("", i) == 0 {
			next = append(next, old[i])
			old[i] = nil // kept
			continue
		}
		next = append(next, u.add(src, i, Change{Cert: c}))
	}
	for _, e := range old {
		if e != nil {
			u.remove(e)
		}
	}
	u.s.sources[src].entries = next
}

// mergeAbove is the number of changes from which update merges them into
// the source in one pass rather than one binary search and one insertion
// each (a shift of the source's slice).
const mergeAbove = 8

func (u *update) update(src Source, changes []Change) {
	entries := u.s.sources[src].entries
	if len(changes) <= mergeAbove {
		for _, ch := range changes {
			i, found := slices.BinarySearchFunc(entries, ch.Key, func(e *entry, key string) int { return e.compare(key, 0) })
			switch {
			case found && ch.Cert != nil:
				u.remove(entries[i])
				entries[i] = u.add(src, 0, ch)
			case found:
				u.remove(entries[i])
				entries = slices.Delete(entries, i, i+1)
			case ch.Cert != nil:
				entries = slices.Insert(entries, i, u.add(src, 0, ch))
			}
		}
		u.s.sources[src].entries = entries
		return
	}
	// Many changes (a listing, a burst): the last one of each key, in key
	// order, merged with the entries in one pass.
	last := make(map[string]Change, len(changes))
	for _, ch := range changes {
		last[ch.Key] = ch
	}
	keys := slices.Sorted(maps.Keys(last))
	next := make([]*entry, 0, len(entries)+len(keys))
	i := 0
	for _, k := range keys {
		for i < len(entries) && entries[i].compare(k, 0) < 0 {
			next = append(next, entries[i])
			i++
		}
		if i < len(entries) && entries[i].compare(k, 0) == 0 {
			u.remove(entries[i])
			i++
		}
		if ch := last[k]; ch.Cert != nil {
			next = append(next, u.add(src, 0, ch))
		}
	}
	next = append(next, entries[i:]...)
	clear(entries) // the entries moved to next; drop the old array's references
	u.s.sources[src].entries = next
}

// commit re-ranks the dirty names and swaps in the next Set.
func (u *update) commit() {
	s := u.s
	prev := s.cur.Load()
	hasReal := s.hasReal()
	if hasReal != u.hadReal {
		// The placeholder comes in or goes out of the set.
		for _, e := range s.sources[SourcePlaceholder].entries {
			for _, n := range e.leaf.names() {
				u.dirty = append(u.dirty, indexName(n))
			}
		}
		u.changed = true
	}
	next := &Set{exact: prev.exact, wildcard: prev.wildcard, all: prev.all}
	copiedExact, copiedWild := false, false
	for i := 0; i < len(u.dirty); i++ { // grows: a wildcard re-ranks the stale names it covers
		n := u.dirty[i]
		name, wild := splitWildcard(n)
		m, copied := &next.exact, &copiedExact
		if wild {
			m, copied = &next.wildcard, &copiedWild
			for q := range s.stale[name] {
				u.dirty = append(u.dirty, q)
			}
		}
		best := s.best(n, hasReal, u.now)
		if !wild {
			best = s.exactWinner(name, best, hasReal, u.now)
		}
		var want *tls.Certificate
		if best != nil {
			want = best.cert
		}
		if cur, ok := (*m)[name]; ok == (want != nil) && cur == want {
			continue
		}
		if !*copied {
			*m = maps.Clone(*m)
			if *m == nil {
				*m = make(map[string]*tls.Certificate)
			}
			*copied = true
		}
		if want == nil {
			delete(*m, name)
		} else {
			(*m)[name] = want
		}
	}
	if u.changed {
		next.all = s.list(hasReal)
	}
	next.setFallback(s.defaultName)
	s.cur.Store(next)
	s.arm(u.now)
}

// exactWinner is what the exact map holds for name given its best
// certificate c: nil (not indexed, the lookup falls through to the
// wildcard) when c has expired and a valid wildcard covers name. It keeps
// s.stale, the exact names whose best has expired, up to date.
func (s *Cache) exactWinner(name string, c *entry, hasReal bool, now time.Time) *entry {
	p := parentName(name)
	if p == "" {
		return c
	}
	if c == nil || !c.leaf.expired(now) {
		if names, ok := s.stale[p]; ok {
			delete(names, name)
			if len(names) == 0 {
				delete(s.stale, p)
			}
		}
		return c
	}
	if s.stale == nil {
		s.stale = make(map[string]map[string]struct{})
	}
	if s.stale[p] == nil {
		s.stale[p] = make(map[string]struct{})
	}
	s.stale[p][name] = struct{}{}
	if w := s.best("*."+p, hasReal, now); w != nil && !w.leaf.expired(now) {
		return nil
	}
	return c
}

// best is the certificate a name goes to, nil if none carries it.
func (s *Cache) best(n string, hasReal bool, now time.Time) *entry {
	var best *entry
	for e := range s.cands.all(n) {
		if e.src == SourcePlaceholder && hasReal {
			continue
		}
		if best == nil || ranksAbove(e, best, now) {
			best = e
		}
	}
	return best
}

// candidates are the certificates naming each name (by indexName), winning
// or not, in no particular order (ranksAbove is a total order). Most names
// have one, held in one; the others go to more.
type candidates struct {
	one  map[string]*entry
	more map[string][]*entry
}

// add adds e under n; false if it is there already (a certificate that
// names it twice: e, just made, can only be the last one added).
func (c *candidates) add(n string, e *entry) bool {
	first, ok := c.one[n]
	switch {
	case !ok:
		if c.one == nil {
			c.one = make(map[string]*entry)
		}
		c.one[n] = e
	case first == e:
		return false
	default:
		list := c.more[n]
		if len(list) > 0 && list[len(list)-1] == e {
			return false
		}
		if c.more == nil {
			c.more = make(map[string][]*entry)
		}
		c.more[n] = append(list, e)
	}
	return true
}

// remove removes e from under n; false if it is not there (removed already).
func (c *candidates) remove(n string, e *entry) bool {
	list := c.more[n]
	if c.one[n] == e {
		if len(list) == 0 {
			delete(c.one, n)
			return true
		}
		c.one[n] = list[len(list)-1]
		list = slices.Delete(list, len(list)-1, len(list))
	} else {
		i := slices.Index(list, e)
		if i < 0 {
			return false
		}
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(c.more, n)
	} else {
		c.more[n] = list
	}
	return true
}

func (c *candidates) all(n string) iter.Seq[*entry] {
	return func(yield func(*entry) bool) {
		if e, ok := c.one[n]; !ok || !yield(e) {
			return
		}
		for _, e := range c.more[n] {
			if !yield(e) {
				return
			}
		}
	}
}

func (c *candidates) len() int { return len(c.one) }

// list is every certificate of the set, in order; the placeholder only
// while no other source has one.
func (s *Cache) list(hasReal bool) []*tls.Certificate {
	n := 0
	for i := range s.sources {
		if Source(i) != SourcePlaceholder || !hasReal {
			n += len(s.sources[i].entries)
		}
	}
	all := make([]*tls.Certificate, 0, n)
	for i := range s.sources {
		if Source(i) == SourcePlaceholder && hasReal {
			continue
		}
		for _, e := range s.sources[i].entries {
			all = append(all, e.cert)
		}
	}
	return all
}

// maxWake bounds the expiry timer: it runs on the monotonic clock, and a
// wall clock stepped forward (NTP after a long suspend) must still see
// certificates expire within that long.
const maxWake = time.Hour

// arm sets the timer for the next expiry still to come (under s.mu).
func (s *Cache) arm(now time.Time) {
	h := &s.expiries
	for h.Len() > 0 && h.items[0].gone {
		heap.Pop(h)
	}
	if h.Len() > 2*h.live+64 { // rotations leave removed entries behind
		h.items = slices.DeleteFunc(h.items, func(e *entry) bool { return e.gone })
		heap.Init(h)
	}
	if h.Len() == 0 {
		if s.timer != nil {
			s.timer.Stop()
		}
		return
	}
	// x509's "expired" is strictly after NotAfter.
	d := min(max(h.items[0].leaf.NotAfter.Add(time.Millisecond).Sub(now), 0), maxWake)
	if s.timer == nil {
		s.timer = time.AfterFunc(d, s.expire)
		return
	}
	s.timer.Reset(d)
}

// expire re-ranks the names of the certificates that expired since the
// last time: the timer's function.
func (s *Cache) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.begin()
	h := &s.expiries
	for h.Len() > 0 && (h.items[0].gone || h.items[0].leaf.expired(u.now)) {
		e := heap.Pop(h).(*entry)
		if e.gone {
			continue
		}
		e.queued = false
		h.live--
		for _, n := range e.leaf.names() {
			u.dirty = append(u.dirty, indexName(n))
		}
	}
	if len(u.dirty) == 0 {
		s.arm(u.now)
		return
	}
	u.commit()
}

// expiryHeap holds the entries not yet expired, soonest NotAfter first;
// removed ones stay until they reach the top (or a compaction). live counts
// those not removed.
type expiryHeap struct {
	items []*entry
	live  int
}

func (h *expiryHeap) push(e *entry) { heap.Push(h, e); h.live++ }

func (h *expiryHeap) Len() int { return len(h.items) }
func (h *expiryHeap) Less(i, j int) bool {
	return h.items[i].leaf.NotAfter.Before(h.items[j].leaf.NotAfter)
}
func (h *expiryHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *expiryHeap) Push(x any)    { h.items = append(h.items, x.(*entry)) }
func (h *expiryHeap) Pop() any {
	e := h.items[len(h.items)-1]
	h.items[len(h.items)-1] = nil
	h.items = h.items[:len(h.items)-1]
	return e
}
