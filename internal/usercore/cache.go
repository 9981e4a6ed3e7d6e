package usercore

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/pryv/pryv-tls/internal/authdns"
)

// cache is a fixed number of slots, two per hash (a 2-way set-associative
// table): a reader loads at most two atomic pointers and never locks or
// allocates; a writer replaces one entry. Its size never changes, so a
// flood of random labels evicts entries but cannot grow memory.
type cache struct {
	seed  maphash.Seed
	slots []atomic.Pointer[entry]
	mask  uint64
	mu    sync.Mutex // writers only
}

// entry is one label's answer until expires (Unix nanoseconds). Entries are
// never changed once published.
type entry struct {
	label   string
	host    authdns.UserHost
	lookup  authdns.Lookup
	expires int64
}

// newCache returns a cache of at least size slots (a power of two, 2 or more).
func newCache(size int) *cache {
	n := 2
	if size > 2 {
		n = 1 << bits.Len(uint(size-1))
	}
	return &cache{seed: maphash.MakeSeed(), slots: make([]atomic.Pointer[entry], n), mask: uint64(n - 1)}
}

func (c *cache) index(label string) int {
	return int(maphash.String(c.seed, label)&c.mask) &^ 1 //nolint:gosec // G115: masked to the slot count, an int
}

// get returns label's entry if it is there and alive at now.
func (c *cache) get(label string, now int64) *entry {
	i := c.index(label)
	for j := i; j < i+2; j++ {
		if e := c.slots[j].Load(); e != nil && e.label == label {
			if now < e.expires {
				return e
			}
			return nil
		}
	}
	return nil
}

// put stores e in its set: over the entry of the same label, else an empty
// or expired slot, else the one that expires first.
func (c *cache) put(e *entry, now int64) {
	i := c.index(e.label)
	c.mu.Lock()
	defer c.mu.Unlock()
	a, b := c.slots[i].Load(), c.slots[i+1].Load()
	switch {
	case a != nil && a.label == e.label:
	case b != nil && b.label == e.label:
		i++
	case a == nil:
	case b == nil:
		i++
	case a.expires <= now:
	case b.expires <= now || b.expires < a.expires:
		i++
	}
	c.slots[i].Store(e)
}

// len counts the entries alive at now (tests).
func (c *cache) len(now int64) int {
	n := 0
	for i := range c.slots {
		if e := c.slots[i].Load(); e != nil && now < e.expires {
			n++
		}
	}
	return n
}
