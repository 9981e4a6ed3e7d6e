package authdns

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const testOrigin = "mc.example.com."

func mustRR(t testing.TB, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("NewRR(%q): %v", s, err)
	}
	return rr
}

func testSOA(t testing.TB) *dns.SOA {
	return mustRR(t, "mc.example.com. 3600 IN SOA ns1.mc.example.com. hostmaster.mc.example.com. 2026112701 7200 900 1209600 60").(*dns.SOA)
}

// testRecords is the zone most tests use. Owner names are in mixed case on
// purpose.
func testRecords(t testing.TB) []dns.RR {
	lines := []string{
		"mc.example.com. 3600 IN NS ns1.mc.example.com.",
		"mc.example.com. 3600 IN NS NS2.mc.example.com.",
		"mc.example.com. 300 IN A 192.0.2.1",
		"mc.example.com. 300 IN MX 10 mail.mc.example.com.",
		"mc.example.com. 300 IN MX 20 mx.example.org.",
		"ns1.mc.example.com. 300 IN A 192.0.2.11",
		"ns1.mc.example.com. 300 IN AAAA 2001:db8::11",
		"ns2.mc.example.com. 300 IN A 192.0.2.12",
		"mail.mc.example.com. 300 IN A 192.0.2.25",
		"ALICE.MC.Example.COM. 300 IN A 192.0.2.101",
		"alice.mc.example.com. 300 IN AAAA 2001:db8::101",
		"bob.mc.example.com. 300 IN A 192.0.2.102",
		"_acme-challenge.mc.example.com. 60 IN TXT \"token-one\"",
		"_acme-challenge.mc.example.com. 60 IN TXT \"token-two\"",
		"b.a.mc.example.com. 300 IN A 192.0.2.50", // a.mc.example.com. is an empty non-terminal
		"www.mc.example.com. 300 IN CNAME alice.mc.example.com.",
		"ext.mc.example.com. 300 IN CNAME www.example.org.",
		"c1.mc.example.com. 300 IN CNAME c2.mc.example.com.",
		"c2.mc.example.com. 300 IN CNAME WWW.mc.example.com.",
		"loop1.mc.example.com. 300 IN CNAME loop2.mc.example.com.",
		"loop2.mc.example.com. 300 IN CNAME loop1.mc.example.com.",
		"dangling.mc.example.com. 300 IN CNAME nothere.mc.example.com.",
		"*.wild.mc.example.com. 300 IN A 192.0.2.77",
		"*.wild.mc.example.com. 300 IN TXT \"wildcard\"",
		"*.wc.mc.example.com. 300 IN CNAME bob.mc.example.com.",
		"sub.mc.example.com. 300 IN NS ns.sub.mc.example.com.",
		"sub.mc.example.com. 300 IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",
		"ns.sub.mc.example.com. 300 IN A 192.0.2.53",
		"_sip._tcp.mc.example.com. 300 IN SRV 0 5 5060 alice.mc.example.com.",
		"Core-1.mc.example.com. 300 IN A 192.0.2.201",
	}
	var rrs []dns.RR
	for _, l := range lines {
		rrs = append(rrs, mustRR(t, l))
	}
	for i := range 60 {
		rrs = append(rrs, mustRR(t, fmt.Sprintf("big.mc.example.com. 300 IN TXT \"record number %02d, long enough to need many bytes\"", i)))
	}
	for i := range 12 {
		rrs = append(rrs, mustRR(t, fmt.Sprintf("ch%d.mc.example.com. 300 IN CNAME ch%d.mc.example.com.", i, i+1)))
	}
	rrs = append(rrs, mustRR(t, "ch12.mc.example.com. 300 IN A 192.0.2.12"))
	return rrs
}

func testZone(t testing.TB) *Zone {
	t.Helper()
	z, err := NewZone("MC.example.com", testSOA(t), testRecords(t))
	if err != nil {
		t.Fatalf("NewZone: %v", err)
	}
	return z
}

// userZone is a zone of n users, each with one A record 10.gen.hi.lo.
func userZone(t testing.TB, n int, gen int) *Zone {
	t.Helper()
	z, err := buildUserZone(n, gen)
	if err != nil {
		t.Fatalf("NewZone: %v", err)
	}
	return z
}

// buildUserZone is userZone for goroutines other than the test's.
func buildUserZone(n int, gen int) (*Zone, error) {
	soa, err := dns.NewRR("mc.example.com. 3600 IN SOA ns1.mc.example.com. hostmaster.mc.example.com. 1 7200 900 1209600 60")
	if err != nil {
		return nil, err
	}
	soa.(*dns.SOA).Serial = uint32(gen)
	rrs := make([]dns.RR, 0, n+4)
	for _, s := range []string{
		"mc.example.com. 3600 IN NS ns1.mc.example.com.",
		"ns1.mc.example.com. 300 IN A 192.0.2.11",
		"_acme-challenge.mc.example.com. 60 IN TXT \"token-one\"",
		"_acme-challenge.mc.example.com. 60 IN TXT \"token-two\"",
	} {
		rr, err := dns.NewRR(s)
		if err != nil {
			return nil, err
		}
		rrs = append(rrs, rr)
	}
	for i := range n {
		rrs = append(rrs, &dns.A{
			Hdr: dns.RR_Header{Name: fmt.Sprintf("user%d.mc.example.com.", i), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
			A:   net.IPv4(10, byte(gen), byte(i>>8), byte(i)),
		})
	}
	return NewZone(testOrigin, soa.(*dns.SOA), rrs)
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func ednsQuery(name string, qtype uint16, size uint16) *dns.Msg {
	m := query(name, qtype)
	m.SetEdns0(size, false)
	return m
}

// startServer runs a server on 127.0.0.1:0 serving z until the test ends.
func startServer(t testing.TB, z *Zone, opts ServerOptions) *Server {
	t.Helper()
	s := NewServer(opts)
	s.Swap(z)
	if err := s.ListenAndServe("127.0.0.1:0"); err != nil {
		t.Fatalf("ListenAndServe: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

func serverAddr(t testing.TB, s *Server) (udp, tcp string) {
	t.Helper()
	u, c := s.Addrs()
	if len(u) == 0 || len(c) == 0 {
		t.Fatal("server has no address")
	}
	return u[0].String(), c[0].String()
}

// exchange sends m over netw ("udp" or "tcp") and returns the response.
func exchange(t testing.TB, netw, addr string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: netw, Timeout: 5 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s exchange %s %s: %v", netw, m.Question[0].Name, dns.Type(m.Question[0].Qtype), err)
	}
	return r
}

// packs checks that the response packs and that the packed response is
// what a client would read.
func packs(t testing.TB, m *dns.Msg) *dns.Msg {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("response does not pack: %v\n%s", err, m)
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		t.Fatalf("packed response does not unpack: %v", err)
	}
	return r
}
