package doctor

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/devpki"
)

const (
	testDomain  = "mc.example.com"
	testAccount = "https://ca.test/acme/acct/42"
)

// zoneServer is an authoritative DNS server over UDP and TCP answering
// from a table of RRsets, signing them (DO bit) when it has a key.
type zoneServer struct {
	mu   sync.Mutex
	rrs  map[rrKey][]dns.RR
	key  *dns.DNSKEY
	priv crypto.Signer
	// inception, expiration of the signatures it makes.
	inception, expiration time.Time
	// silent: it reads queries and answers none (a filtered port);
	// rcode, when set, is its answer to everything (an interceptor).
	silent bool
	rcode  int
}

type rrKey struct {
	name  string
	qtype uint16
}

func (z *zoneServer) set(rrs ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		k := rrKey{strings.ToLower(rr.Header().Name), rr.Header().Rrtype}
		z.rrs[k] = append(z.rrs[k], rr)
	}
}

// with changes z under its lock (the server reads it meanwhile).
func (z *zoneServer) with(f func(*zoneServer)) {
	z.mu.Lock()
	defer z.mu.Unlock()
	f(z)
}

func (z *zoneServer) drop(name string, qtype uint16) {
	z.mu.Lock()
	defer z.mu.Unlock()
	delete(z.rrs, rrKey{dns.Fqdn(name), qtype})
}

func (z *zoneServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.silent {
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	q := req.Question[0]
	rrs, ok := z.rrs[rrKey{strings.ToLower(q.Name), q.Qtype}]
	switch {
	case z.rcode != 0:
		m.Rcode = z.rcode
		_ = w.WriteMsg(m)
		return
	case !ok && !dns.IsSubDomain(dns.Fqdn(testDomain), q.Name):
		m.Rcode = dns.RcodeRefused
		_ = w.WriteMsg(m)
		return
	}
	m.Answer = append(m.Answer, rrs...)
	if opt := req.IsEdns0(); opt != nil && opt.Do() && z.key != nil && len(m.Answer) > 0 {
		sig := &dns.RRSIG{
			Hdr:        dns.RR_Header{Name: m.Answer[0].Header().Name, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: 300},
			KeyTag:     z.key.KeyTag(),
			SignerName: z.key.Hdr.Name,
			Algorithm:  dns.ECDSAP256SHA256,
			Inception:  uint32(z.inception.Unix()), Expiration: uint32(z.expiration.Unix()),
		}
		if err := sig.Sign(z.priv, m.Answer); err != nil {
			panic(err)
		}
		m.Answer = append(m.Answer, sig)
		m.SetEdns0(4096, true)
	}
	_ = w.WriteMsg(m)
}

// sign gives z a key: DNSKEY at the apex, signatures on every answer.
func (z *zoneServer) sign(t *testing.T, key *dns.DNSKEY, priv crypto.Signer) {
	t.Helper()
	z.mu.Lock()
	z.key, z.priv = key, priv
	z.inception, z.expiration = time.Now().Add(-time.Hour), time.Now().Add(7*24*time.Hour)
	z.rrs[rrKey{key.Hdr.Name, dns.TypeDNSKEY}] = []dns.RR{key}
	z.mu.Unlock()
}

func newKey(t *testing.T) (*dns.DNSKEY, crypto.Signer) {
	t.Helper()
	k := &dns.DNSKEY{Hdr: dns.RR_Header{Name: dns.Fqdn(testDomain), Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 300},
		Flags: 257, Protocol: 3, Algorithm: dns.ECDSAP256SHA256}
	priv, err := k.Generate(256)
	if err != nil {
		t.Fatal(err)
	}
	return k, priv.(crypto.Signer)
}

// sameListeners binds network on port 0 of the first IP, then the same
// port on the others, so that every core has one port as in a cluster.
func sameListeners(t *testing.T, ips []string, listen func(addr string) (func(), error)) int {
	t.Helper()
	for try := 0; try < 20; try++ {
		l, err := net.ListenPacket("udp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.LocalAddr().(*net.UDPAddr).Port
		l.Close()
		var closers []func()
		ok := true
		for _, ip := range ips {
			c, err := listen(fmt.Sprintf("%s:%d", ip, port))
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, c)
		}
		if ok {
			t.Cleanup(func() {
				for _, c := range closers {
					c()
				}
			})
			return port
		}
		for _, c := range closers {
			c()
		}
	}
	t.Fatal("no port free on every address")
	return 0
}

// startDNS serves zs[i] on ips[i], UDP and TCP, on one port.
func startDNS(t *testing.T, ips []string, zs []*zoneServer) int {
	t.Helper()
	i := 0
	return sameListeners(t, ips, func(addr string) (func(), error) {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			pc.Close()
			return nil, err
		}
		z := zs[i%len(zs)]
		i++
		u := &dns.Server{PacketConn: pc, Handler: z}
		tc := &dns.Server{Listener: ln, Handler: z}
		// Both end with the Shutdowns returned.
		go func() { _ = u.ActivateAndServe() }()
		go func() { _ = tc.ActivateAndServe() }()
		return func() { _ = u.Shutdown(); _ = tc.Shutdown() }, nil
	})
}

// startHTTPS serves h with TLS (certificate from get) on every ip, one port.
func startHTTPS(t *testing.T, ips []string, get func(*tls.ClientHelloInfo) (*tls.Certificate, error), h http.Handler) int {
	t.Helper()
	return sameListeners(t, ips, func(addr string) (func(), error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		s := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0), TLSConfig: &tls.Config{GetCertificate: get}}
		go func() { _ = s.ServeTLS(ln, "", "") }() // ends with the Close returned
		return func() { _ = s.Close() }, nil
	})
}

// startHTTP serves h in plain HTTP on every ip, one port.
func startHTTP(t *testing.T, ips []string, h http.Handler) int {
	t.Helper()
	return sameListeners(t, ips, func(addr string) (func(), error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		s := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
		go func() { _ = s.Serve(ln) }() // ends with the Close returned
		return func() { _ = s.Close() }, nil
	})
}

// acmeDirectory is an ACME directory over TLS (its own CA) naming
// caaIdentities.
func acmeDirectory(t *testing.T, caaIdentities ...string) (string, *x509.CertPool) {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := "https://" + r.Host
		_ = json.NewEncoder(w).Encode(map[string]any{
			"newNonce": base + "/nonce", "newAccount": base + "/acct", "newOrder": base + "/order",
			"meta": map[string]any{"caaIdentities": caaIdentities},
		})
	}))
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	return s.URL + "/dir", pool
}

func issue(t *testing.T, ca *devpki.CA, l devpki.Leaf) *tls.Certificate {
	t.Helper()
	is, err := ca.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(is.FullChain, is.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}
