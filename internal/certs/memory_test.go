package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/devpki"
)

// pairsPEM mints n leaf+intermediate chains for one key (minting a key per
// pair would take minutes for RSA; parsing still makes one key object each).
func pairsPEM(tb testing.TB, n int, key crypto.Signer) (chains [][]byte, keyPEMs []byte) {
	tb.Helper()
	root := newCA(tb, "memory root")
	inter, err := root.NewIntermediate("memory intermediate")
	if err != nil {
		tb.Fatal(err)
	}
	interPEM := devpki.EncodeCert(inter.Cert)
	for i := range n {
		leafPEM, _ := issueWithKey(tb, inter, key, int64(i+1), devpki.Leaf{Names: []string{fmt.Sprintf("h%d.example.com", i)}})
		chains = append(chains, append(leafPEM, interPEM...))
	}
	return chains, keyPEM(tb, key)
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestPairsShareIntermediates: pairs with the same intermediate hold one
// copy of it, and every pair still carries exactly the chain it was given
// (what tls.X509KeyPair alone would serve). The live heap per pair is logged
// for decision 0029, not asserted.
func TestPairsShareIntermediates(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		name string
		key  crypto.Signer
	}{{"ecdsa-p256", ec}, {"rsa-2048", rk}} {
		const n = 500
		chains, kp := pairsPEM(t, n, k.key)
		before := liveHeap()
		held := make([]*tls.Certificate, n)
		for i := range n {
			c, err := ParsePair(chains[i], kp, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			held[i] = c
		}
		after := liveHeap()
		t.Logf("%s: %d B live per parsed pair (leaf + intermediate)", k.name, (after-before)/n)
		for i, c := range held {
			eager, err := tls.X509KeyPair(chains[i], kp)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Certificate) != 2 || !bytes.Equal(c.Certificate[0], eager.Certificate[0]) || !bytes.Equal(c.Certificate[1], eager.Certificate[1]) {
				t.Fatalf("%s: pair %d serves another chain than it was given", k.name, i)
			}
			if &c.Certificate[1][0] != &held[0].Certificate[1][0] {
				t.Fatalf("%s: pair %d holds its own copy of the intermediate", k.name, i)
			}
			if &c.Certificate[0][0] == &held[0].Certificate[0][0] && i > 0 {
				t.Fatalf("%s: pair %d shares its leaf", k.name, i)
			}
		}
	}
}
