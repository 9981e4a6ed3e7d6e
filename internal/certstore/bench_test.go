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
	out := make(chan platformdb.Event)
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
// certs.Store, with each of them on disk as after two rotations (a link,
// the current and the previous version directory), and two records for
// one of the hostnames to rotate between.
type rotationBench struct {
	kv      *feedKV
	store   *certs.Store
	host    string
	records [2]platformdb.Entry
	next    int // the record to put next
	rotated chan struct{}
	served  chan time.Time // when Serve returned, for every Serve after the start
}

func newRotationBench(b *testing.B, n int) *rotationBench {
	b.Helper()
	ca := newCA(b)
	keys := testKeys(b, 1)
	tlsDir := b.TempDir()
	now := time.Now()
	rb := &rotationBench{
		store:   certs.NewStore(),
		host:    fmt.Sprintf("h%05d.example.com", n/2),
		rotated: make(chan struct{}, 1),
		served:  make(chan time.Time, 1),
	}
	list := make([]platformdb.Entry, 0, n)
	for i := range n {
		host := fmt.Sprintf("h%05d.example.com", i)
		iss := issueFor(b, ca, host)
		r, _, err := NewRecord(keys, host, SourceImport, iss.FullChain, iss.KeyPEM, now)
		if err != nil {
			b.Fatal(err)
		}
		data, err := r.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		list = append(list, platformdb.Entry{Key: RowKey(host), Value: data})
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
	for i := range rb.records {
		iss := issueFor(b, ca, rb.host)
		r, _, err := NewRecord(keys, rb.host, SourceACME, iss.FullChain, iss.KeyPEM, now)
		if err != nil {
			b.Fatal(err)
		}
		data, err := r.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		rb.records[i] = platformdb.Entry{Key: RowKey(rb.host), Value: data}
	}
	rb.kv = newFeedKV(list)
	var started bool
	m := &Materialiser{
		Catalog: &Catalog{KV: rb.kv, Keys: keys},
		TLSDir:  tlsDir,
		Serve: func(l []*tls.Certificate) {
			rb.store.Replace(certs.SourceStore, l...)
			if started {
				rb.served <- time.Now()
			}
		},
		OnRotate: func(string, string, string) { rb.rotated <- struct{}{} },
		Logger:   quietLogger(),
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

// rotate puts the other record and waits until it is served and its files
// are written and pruned (OnRotate). It returns the time until it was served.
func (rb *rotationBench) rotate(b *testing.B) time.Duration {
	start := time.Now()
	rb.kv.events <- platformdb.Event{Type: platformdb.EventPut, Entry: rb.records[rb.next%2]}
	rb.next++
	var servedAt time.Time
	select {
	case servedAt = <-rb.served:
	case <-time.After(waitTimeout):
		b.Fatal("rotation not served")
	}
	select {
	case <-rb.rotated:
	case <-time.After(waitTimeout):
		b.Fatal("rotation hook not run")
	}
	return servedAt.Sub(start)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchmarkRotateOne: one record changes among n, end to end through the
// watch: opened, served (served-ns/op: until the SNI set has it), written
// with its fsyncs, pruned, hooks run (ns/op). cpu-ns/op is the process's
// CPU time, which the fsync waits are not.
func benchmarkRotateOne(b *testing.B, n int) {
	rb := newRotationBench(b, n)
	b.Run("rotate", func(b *testing.B) {
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
	})
}

func BenchmarkRotateOneOf1(b *testing.B)     { benchmarkRotateOne(b, 1) }
func BenchmarkRotateOneOf10000(b *testing.B) { benchmarkRotateOne(b, 10_000) }
