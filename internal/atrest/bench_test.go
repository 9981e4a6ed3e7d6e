package atrest

import "testing"

func BenchmarkSeal(b *testing.B) {
	k := mustNew(b, testMaster(1))
	pt := make([]byte, 256)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Seal(PurposeTLSKey, row, pt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	k := mustNew(b, testMaster(1))
	env := mustSeal(b, k, PurposeTLSKey, row, make([]byte, 256))
	b.SetBytes(256)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Open(PurposeTLSKey, row, env); err != nil {
			b.Fatal(err)
		}
	}
}
