package daemon

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The daemon's memory policy (docs/decisions/0011-memory.md). Its heap is
// mostly long-lived (the etcd index, the DNS zone, the certificates) and it
// allocates in bursts (a bulk import, a zone rebuild, a load of users) with
// long quiet spells between them, next to the Pryv.io services it fronts.
// Go's defaults suit the opposite (a busy heap of short-lived objects): a
// heap goal of twice the live heap, and the free part kept for the next
// cycle.
const (
	// quietGCPercent is the GC's target heap growth over the live heap
	// (GOGC) while the process is quiet: the heap grows to 1.5 times what
	// is live, not twice, so a core at rest holds less. busyGCPercent
	// (Go's default) applies while it works: the front allocates ~10 KB
	// per proxied request over a small live heap, and at 50 the collector
	// ran twice as often — bench/run http1 measured 15-25% more server CPU
	// per request than at 100 (DNS, a few hundred bytes a query, showed
	// no difference). The policy switches on the activity trimInterval
	// sees: a start (etcd's restore, the first listings: hundreds of MB
	// allocated within a second or two for 100,000 users) and any load
	// run at busyGCPercent. The GOGC environment variable, when set, wins
	// at all times (and GOMEMLIMIT applies as usual).
	quietGCPercent = 50
	busyGCPercent  = 100

	// After a burst, the heap it grew stays with the process until GC
	// cycles shrink the goal, and Go's scavenger keeps about 10% over
	// that goal. trimIdle has a GC free it and returns it to the OS once
	// the process is quiet: checking every trimInterval, when less than
	// trimQuiet bytes were allocated since the last check and the heap
	// holds at least trimMin bytes beyond what the last GC found live
	// (garbage, free spans). Under load (more allocations per interval)
	// it does nothing: the memory is about to be used again, and a forced
	// GC would only add work. Quiet after a burst, it costs one GC.
	trimInterval = time.Second
	trimQuiet    = 1 << 20
	trimMin      = 4 << 20

	// execReleaseEvery spaces the releases of the executable's pages
	// (releaseExecPages): the first when the process goes quiet after its
	// start, the next ones when it goes quiet after a busy spell, at most
	// this often. Each one costs reading back, a page at a time, the code
	// the process goes on running (~11 MiB idle); between them, what a
	// burst ran (an import, a renewal) stays resident.
	execReleaseEvery = time.Hour
)

// gcPolicy sets the GC percent for quiet or busy spells, unless the
// operator set GOGC; it calls debug.SetGCPercent only on a change.
type gcPolicy struct {
	operator bool // GOGC is set: never touch it
	current  int
}

func newGCPolicy() *gcPolicy {
	return &gcPolicy{operator: os.Getenv("GOGC") != "", current: busyGCPercent}
}

func (g *gcPolicy) set(quiet bool) {
	want := busyGCPercent
	if quiet {
		want = quietGCPercent
	}
	if g.operator || want == g.current {
		return
	}
	debug.SetGCPercent(want)
	g.current = want
}

// memoryPolicy applies the heap policy until ctx ends: quietGCPercent
// while the process is quiet and busyGCPercent while it works, and unused
// heap returned to the OS whenever it is quiet (see trimInterval).
func memoryPolicy(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(trimInterval)
	defer t.Stop()
	tr := &trimmer{free: debug.FreeOSMemory}
	tr.check() // the baseline
	gc := newGCPolicy()
	ex := &execRelease{release: releaseExecPages}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, quiet := tr.check()
			if n > 0 {
				log.Debug("quiet: returned unused heap to the OS", "bytes", n)
			}
			gc.set(quiet)
			ex.check(quiet, now, log)
		}
	}
}

// execRelease decides when to release the executable's pages: on the first
// quiet check after a busy one (a start is busy), then again after a busy
// spell once execReleaseEvery has passed since the last release; never
// again after one failed (a kernel without MADV_PAGEOUT).
type execRelease struct {
	release func() (uintptr, error) // releaseExecPages; tests replace it
	busy    bool                    // a busy check since the last release
	last    time.Time
	failed  bool
}

func (e *execRelease) check(quiet bool, now time.Time, log *slog.Logger) {
	if !quiet {
		e.busy = true
		return
	}
	if e.failed || !e.busy || (!e.last.IsZero() && now.Sub(e.last) < execReleaseEvery) {
		return
	}
	e.busy, e.last = false, now
	n, err := e.release()
	if err != nil {
		e.failed = true
		log.Debug("quiet: the executable's pages stay resident", "error", err.Error())
		return
	}
	log.Debug("quiet: released the executable's pages", "bytes", n)
}

// trimmer decides on each check whether to return heap memory.
type trimmer struct {
	free    func() // debug.FreeOSMemory; tests replace it
	samples []metrics.Sample
	allocs  uint64 // cumulative bytes allocated at the last check
	started bool
	// floor is the excess the last trim could not return (space unused
	// inside spans still in use: fragmentation): the next trim waits for
	// trimMin more than that, or a fragmented heap would get a forced GC
	// every quiet second, forever.
	floor uint64
}

// check reports whether the process was quiet since the last check, and
// the number of heap bytes held beyond the live heap that it then had a GC
// free and returned to the OS (0: none).
func (t *trimmer) check() (returned uint64, quiet bool) {
	if t.samples == nil {
		for _, name := range []string{
			"/gc/heap/allocs:bytes",              // cumulative
			"/memory/classes/heap/objects:bytes", // live objects and dead ones not yet swept
			"/memory/classes/heap/unused:bytes",  // in spans, unused
			"/memory/classes/heap/free:bytes",    // free, not yet returned
			"/gc/heap/live:bytes",                // live after the last GC
		} {
			t.samples = append(t.samples, metrics.Sample{Name: name})
		}
	}
	metrics.Read(t.samples)
	v := func(i int) uint64 { return t.samples[i].Value.Uint64() }
	allocs := v(0)
	held := v(1) + v(2) + v(3)
	excess := held - min(held, v(4))
	quiet = t.started && allocs-t.allocs < trimQuiet
	t.started = true
	t.allocs = allocs
	if !quiet || excess < t.floor+trimMin {
		return 0, quiet
	}
	t.free()
	metrics.Read(t.samples)
	t.allocs = v(0) // what the trim allocated is not activity
	held = v(1) + v(2) + v(3)
	t.floor = held - min(held, v(4))
	return excess - min(excess, t.floor), true
}
