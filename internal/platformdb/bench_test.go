package platformdb

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkPut: one durable write (raft commit + fsync) through the
// in-process client of an embedded one-member cluster.
func BenchmarkPut(b *testing.B) { benchPut(b, openEtcd(b, "")) }

// BenchmarkPutTLS: the same with mutual TLS on the client connection.
func BenchmarkPutTLS(b *testing.B) { benchPut(b, openEtcdTLS(b, "", newTestPKI(b).node)) }

func benchPut(b *testing.B, e *Etcd) {
	ctx := context.Background()
	value := make([]byte, 2048) // about a certificate
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	i := 0
	for b.Loop() {
		if _, err := e.Put(ctx, fmt.Sprintf("bench/%d", i%1000), value); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkGet: one linearizable read.
func BenchmarkGet(b *testing.B) { benchGet(b, openEtcd(b, "")) }

// BenchmarkGetTLS: the same with mutual TLS on the client connection.
func BenchmarkGetTLS(b *testing.B) { benchGet(b, openEtcdTLS(b, "", newTestPKI(b).node)) }

func benchGet(b *testing.B, e *Etcd) {
	ctx := context.Background()
	if _, err := e.Put(ctx, "bench/k", make([]byte, 2048)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Get(ctx, "bench/k"); err != nil {
			b.Fatal(err)
		}
	}
}
