package certstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// feedKV is a KV whose listing is fixed and whose watch is fed by the test:
// the materialiser without etcd, for benchmarks.
type feedKV struct {
	list     []platformdb.Entry
	events   chan platformdb.Event
	watching chan struct{} // closed at the first Watch
	once     sync.Once
}

func newFeedKV(list []platformdb.Entry) *feedKV {
	return &feedKV{list: list, events: make(chan platformdb.Event), watching: make(chan struct{})}
}

func (f *feedKV) Get(context.Context, string) (platformdb.Entry, error) {
	return platformdb.Entry{}, platformdb.ErrNotFound
}
func (f *feedKV) Put(context.Context, string, []byte) (int64, error) {
	return 0, errors.New("read-only")
}
func (f *feedKV) Delete(context.Context, string) error { return errors.New("read-only") }
func (f *feedKV) List(context.Context, string) ([]platformdb.Entry, int64, error) {
	return f.list, 1, nil
}

func (f *feedKV) Watch(ctx context.Context, _ string, _ int64) <-chan platformdb.Event {
	out := make(chan platformdb.Event, 1024) // a burst queues, as in etcd's watch
	go func() {
		defer close(out)
		f.once.Do(func() { close(f.watching) })
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-f.events:
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// rotationBench is a running materialiser serving n certificates into a
// certs.Cache, with each of them on disk as after two rotations (a link,
// the current and the previous version directory), and two records for
// each of the hostnames a rotation changes, to alternate between.
type rotationBench struct {
	kv      *feedKV
	store   *certs.Cache
	records [][2]platformdb.Entry // per hostname rotated
	next    int                   // the record to put next
	rotated chan struct{}
	served  chan time.Time // when the SNI set first had a rotation's records
}

func newRotationBench(b *testing.B, n, burst int, incremental bool) *rotationBench {
	b.Helper()
	ca := newCA(b)
	keys := testKeys(b, 1)
	tlsDir := b.TempDir()
	now := time.Now()
	rb := &rotationBench{
		store:   certs.NewCache(),
		rotated: make(chan struct{}, burst),
		served:  make(chan time.Time, 1),
	}
	record := func(host, source string, iss *devpki.Issued) platformdb.Entry {
		r, _, err := NewRecord(keys, Input{Hostname: host, Source: source, Chain: iss.FullChain, Key: iss.KeyPEM}, now)
		if err != nil {
			b.Fatal(err)
		}
		data, err := r.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		return platformdb.Entry{Key: RowKey(host), Value: data}
	}
	list := make([]platformdb.Entry, 0, n)
	for i := range n {
		host := fmt.Sprintf("h%05d.example.com", i)
		iss := issueFor(b, ca, host)
		list = append(list, record(host, SourceImport, iss))
		// What WritePair leaves after two rotations, without its fsyncs.
		for v := range 2 {
			dir := filepath.Join(tlsDir, fmt.Sprintf(".%s.%d", host, now.UnixNano()+int64(v)))
			if err := os.Mkdir(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "privkey.pem"), iss.KeyPEM, 0o600); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "fullchain.pem"), iss.FullChain, 0o644); err != nil {
				b.Fatal(err)
			}
			if v == 1 {
				if err := os.Symlink(filepath.Base(dir), filepath.Join(tlsDir, host)); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	step := n / burst
	for j := range burst {
		host := fmt.Sprintf("h%05d.example.com", j*step+step/2)
		rb.records = append(rb.records, [2]platformdb.Entry{
			record(host, SourceACME, issueFor(b, ca, host)),
			record(host, SourceACME, issueFor(b, ca, host)),
		})
	}
	rb.kv = newFeedKV(list)
	var started bool
	servedNow := func() {
		if started {
			select {
			case rb.served <- time.Now():
			default: // a burst served in several goes: the first counts
			}
		}
	}
	m := &Materialiser{
		Catalog:  &Catalog{KV: rb.kv, Keys: keys},
		TLSDir:   tlsDir,
		OnRotate: func(string, string, string) { rb.rotated <- struct{}{} },
		Logger:   quietLogger(),
	}
	if incremental {
		m.Update = func(ch []certs.Change) {
			rb.store.Update(certs.SourceStore, ch...)
			servedNow()
		}
	} else {
		m.Serve = func(l []*tls.Certificate) {
			rb.store.Replace(certs.SourceStore, l...)
			servedNow()
		}
	}
	m.LoadDisk()
	if got := rb.store.Current().Len(); got != n {
		b.Fatalf("LoadDisk served %d certificates, want %d", got, n)
	}
	run(b, m)
	select {
	case <-rb.kv.watching:
	case <-time.After(waitTimeout):
		b.Fatal("the materialiser never watched")
	}
	started = true // read by Serve only after an event sent below: no race
	return rb
}

// rotate puts the other record of each rotated hostname and waits until
// they are served and their files written and pruned (OnRotate). It returns
// the time until the first of them was served.
func (rb *rotationBench) rotate(b *testing.B) time.Duration {
	start := time.Now()
	for _, recs := range rb.records {
		rb.kv.events <- platformdb.Event{Type: platformdb.EventPut, Entry: recs[rb.next%2]}
	}
	rb.next++
	for range rb.records {
		select {
		case <-rb.rotated:
		case <-time.After(waitTimeout):
			b.Fatal("rotation hook not run")
		}
	}
	select {
	case servedAt := <-rb.served:
		return servedAt.Sub(start)
	default:
		b.Fatal("rotated but not served")
		return 0
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchmarkRotate: burst records change among n, end to end through the
// watch: opened, served (served-ns/op: until the SNI set has the first),
// written with their fsyncs, pruned, hooks run (ns/op: until the last
// hook). cpu-ns/op is the process's CPU time, which the fsync waits are
// not. "serve" hands the SNI set the whole list (Materialiser.Serve into
// certs.Cache.Replace, as internal/daemon does), "update" the changes
// (Materialiser.Update into certs.Cache.Update).
func benchmarkRotate(b *testing.B, n, burst int, modes ...bool) {
	for _, incremental := range modes {
		name := "serve"
		if incremental {
			name = "update"
		}
		rb := newRotationBench(b, n, burst, incremental)
		b.Run(name, func(b *testing.B) { rb.run(b) })
	}
}

func (rb *rotationBench) run(b *testing.B) {
	b.ReportAllocs()
	var served time.Duration
	cpu := cpuTime()
	b.ResetTimer()
	for range b.N {
		served += rb.rotate(b)
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(served.Nanoseconds())/float64(b.N), "served-ns/op")
}

func BenchmarkRotateOneOf1(b *testing.B)     { benchmarkRotate(b, 1, 1, false, true) }
func BenchmarkRotateOneOf10000(b *testing.B) { benchmarkRotate(b, 10_000, 1, false, true) }

// BenchmarkRotate100Of10000: a burst (a bulk import, a renewal run).
func BenchmarkRotate100Of10000(b *testing.B) { benchmarkRotate(b, 10_000, 100, true) }
