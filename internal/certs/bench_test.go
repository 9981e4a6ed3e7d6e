package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/devpki"
)

// benchStore builds a store of n certificates, each naming h<i>.example.com
// and *.h<i>.example.com. They share one ECDSA key so that 10,000 of them
// take a fraction of a second to make.
func benchStore(b *testing.B, n int) *Cache {
	b.Helper()
	ca := newCA(b, "bench CA")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	certs := make([]*tls.Certificate, n)
	for i := range n {
		host := fmt.Sprintf("h%d.example.com", i)
		_, leaf := issueWithKey(b, ca, key, int64(i+1), devpki.Leaf{Names: []string{host, "*." + host}})
		certs[i] = &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	}
	s := NewCache()
	s.Replace(SourceStore, certs...)
	if s.Current().Len() != n {
		b.Fatalf("set has %d certificates, want %d", s.Current().Len(), n)
	}
	return s
}

func BenchmarkGetCertificate(b *testing.B) {
	for _, n := range []int{1, 10_000} {
		b.Run(fmt.Sprintf("certs=%d", n), func(b *testing.B) {
			s := benchStore(b, n) // built once; the sub-benchmarks below reuse it
			mid := n / 2
			for _, hit := range []struct{ name, sni string }{
				{"exact", fmt.Sprintf("h%d.example.com", mid)},
				{"wildcard", fmt.Sprintf("api.h%d.example.com", mid)},
			} {
				b.Run(hit.name, func(b *testing.B) {
					hello := &tls.ClientHelloInfo{ServerName: hit.sni}
					want := s.Current().Lookup(hit.sni)
					if want == nil || want.Leaf.DNSNames[0] != fmt.Sprintf("h%d.example.com", mid) {
						b.Fatalf("%q does not hit its own certificate", hit.sni)
					}
					b.ReportAllocs()
					b.ResetTimer()
					for range b.N {
						c, err := s.GetCertificate(hello)
						if c != want || err != nil {
							b.Fatal("wrong certificate")
						}
					}
				})
			}
		})
	}
}

// BenchmarkHandshake measures full TLS 1.3 handshakes (ECDSA P-256, no
// resumption: a fresh client config without session cache every time) over
// loopback against the store. Client and server share the machine, so the
// figure includes the client's work, its chain verification included.
func BenchmarkHandshake(b *testing.B) {
	ca := newCA(b, "handshake CA")
	iss := mustIssue(b, ca, devpki.Leaf{Names: []string{hostName}, KeyType: "ec256"})
	c, err := ParsePair(iss.FullChain, iss.KeyPEM, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	store := NewCache()
	store.Replace(SourceFiles, c)
	addr := serveTLS(b, &tls.Config{GetCertificate: store.GetCertificate, MinVersion: tls.VersionTLS13})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	dialer := &net.Dialer{Timeout: 2 * time.Second}

	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		cfg := &tls.Config{
			RootCAs:            roots,
			ServerName:         hostName,
			MinVersion:         tls.VersionTLS13,
			MaxVersion:         tls.VersionTLS13,
			ClientSessionCache: nil, // no resumption
		}
		conn, err := tls.DialWithDialer(dialer, "tcp", addr, cfg)
		if err != nil {
			b.Fatal(err)
		}
		st := conn.ConnectionState()
		if st.DidResume || st.Version != tls.VersionTLS13 {
			b.Fatalf("resumed=%v version=%x", st.DidResume, st.Version)
		}
		conn.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}

// BenchmarkRotateOneOf10000: one certificate of 10,000 in the store source
// is replaced, then a lookup sees the new set: "replace" hands over the
// whole list with one entry new (Replace), "update" the one change, keyed
// by hostname (Update, the materialiser's way).
func BenchmarkRotateOneOf10000(b *testing.B) {
	const n = 10_000
	s := benchStore(b, n)
	list := slices.Clone(s.Current().Certificates())
	mid := n / 2
	old := list[mid]
	fresh := *old // another pointer: a new certificate for the store
	alt := [2]*tls.Certificate{&fresh, old}
	sni := fmt.Sprintf("h%d.example.com", mid)
	b.Run("replace", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			c := alt[i%2]
			list[mid] = c
			s.Replace(SourceStore, list...)
			if s.Current().Lookup(sni) != c {
				b.Fatal("the new certificate is not served")
			}
		}
	})
	keyed := NewCache()
	changes := make([]Change, len(list))
	for i, c := range list {
		changes[i] = Change{Key: fmt.Sprintf("h%d.example.com", i), Cert: c}
	}
	keyed.Update(SourceStore, changes...)
	b.Run("update", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			c := alt[i%2]
			keyed.Update(SourceStore, Change{Key: sni, Cert: c})
			if keyed.Current().Lookup(sni) != c {
				b.Fatal("the new certificate is not served")
			}
		}
	})
}
