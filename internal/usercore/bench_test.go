package usercore

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/authdns"
	"github.com/pryv/pryv-tls/internal/usercore/usercoretest"
)

// benchZone is what dnsdata builds for a platform: core1 and its 10,000
// users (Members of one group), the apex and its NS.
func benchZone(b *testing.B) *authdns.Zone {
	b.Helper()
	soa, _ := dns.NewRR("mc.example.com. 300 IN SOA core.mc.example.com. hostmaster.mc.example.com. 1 3600 600 1209600 300")
	var rrs []dns.RR
	for _, s := range []string{
		"mc.example.com. 300 IN NS core.mc.example.com.",
		"core.mc.example.com. 300 IN A 192.0.2.1",
		"core1.mc.example.com. 300 IN A 192.0.2.1",
		"core2.mc.example.com. 300 IN A 192.0.2.2",
	} {
		rr, err := dns.NewRR(s)
		if err != nil {
			b.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	labels := map[string]uint32{}
	for i := range 10000 {
		labels[fmt.Sprintf("user%d", i)] = 0
	}
	a, _ := dns.NewRR("x. 300 IN A 192.0.2.1")
	z, err := authdns.NewZoneMembers("mc.example.com.", soa.(*dns.SOA), rrs, authdns.Members{Labels: labels, Groups: [][]dns.RR{{a}}})
	if err != nil {
		b.Fatal(err)
	}
	return z
}

// BenchmarkAnswer: an in-zone user (today's answer), a user answered from
// the lookup cache, an unknown user answered from the negative cache.
func BenchmarkAnswer(b *testing.B) {
	z := benchZone(b)
	src := newFake(map[string]fakeAnswer{"remote4242": {w: Where{CoreID: "core2"}}})
	r, err := New(Options{Domain: "mc.example.com", SelfName: "core1", Source: src})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	r.SetCores([]Core{{ID: "core1"}, {ID: "core2"}})
	for _, l := range []string{"remote4242", "nobody42"} {
		if _, _, err := r.Resolve(context.Background(), l); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name, qname string
		users       authdns.UserCache
		want        authdns.Lookup
		rcode       int
	}{
		{"in-zone", "user4242.mc.example.com.", nil, authdns.NotLookedUp, dns.RcodeSuccess},
		{"in-zone-with-lookups", "user4242.mc.example.com.", r, authdns.NotLookedUp, dns.RcodeSuccess},
		{"cache-hit", "remote4242.mc.example.com.", r, authdns.LookupFound, dns.RcodeSuccess},
		{"negative-hit", "nobody42.mc.example.com.", r, authdns.LookupAbsent, dns.RcodeNameError},
		{"in-zone-NXDOMAIN", "nobody42.mc.example.com.", nil, authdns.NotLookedUp, dns.RcodeNameError},
	} {
		req := new(dns.Msg)
		req.SetQuestion(c.qname, dns.TypeA)
		m, lk := z.AnswerUsers(req, authdns.DefaultMaxUDPSize, false, c.users)
		if m == nil || lk != c.want || m.Rcode != c.rcode {
			b.Fatalf("%s: %v %v", c.name, m, lk)
		}
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 512)
			b.ReportAllocs()
			for b.Loop() {
				m, _ := z.AnswerUsers(req, authdns.DefaultMaxUDPSize, false, c.users)
				if _, err := m.PackBuffer(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkColdMiss is a lookup no cache answers: one GET /reg/cores to a
// stand-in core on loopback and the answer mapped to a core (the keep-alive
// connection reused, as it is under load).
func BenchmarkColdMiss(b *testing.B) {
	api := usercoretest.Start(b, usercoretest.Options{Domain: "mc.example.com"})
	src, err := NewAPI(api.URL)
	if err != nil {
		b.Fatal(err)
	}
	r, err := New(Options{Domain: "mc.example.com", SelfName: "core1", Source: src, MaxPerSecond: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	r.SetCores([]Core{{ID: "core1"}, {ID: "core2"}})
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		name := fmt.Sprintf("user%d", i)
		api.SetUser(name, "core2")
		if _, lk, err := r.Resolve(context.Background(), name); err != nil || lk != authdns.LookupFound {
			b.Fatal(lk, err)
		}
	}
}

// BenchmarkColdMissUDP is the whole path: a UDP query for a user only the
// stand-in core knows, through the DNS server, to its answer.
func BenchmarkColdMissUDP(b *testing.B) {
	api := usercoretest.Start(b, usercoretest.Options{Domain: "mc.example.com"})
	src, _ := NewAPI(api.URL)
	r, _ := New(Options{Domain: "mc.example.com", SelfName: "core1", Source: src, MaxPerSecond: 1 << 30})
	defer r.Close()
	r.SetCores([]Core{{ID: "core1"}, {ID: "core2"}})
	s := authdns.NewServer(authdns.ServerOptions{Users: r})
	s.Swap(benchZone(b))
	if err := s.ListenAndServe("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Shutdown(context.Background()) }()
	udp, _ := s.Addrs()
	conn, err := net.Dial("udp", udp[0].String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 1500)
	i := 0
	for b.Loop() {
		i++
		name := fmt.Sprintf("user-%d", i)
		api.SetUser(name, "core2")
		q := new(dns.Msg)
		q.SetQuestion(name+".mc.example.com.", dns.TypeA)
		wire, _ := q.Pack()
		if _, err := conn.Write(wire); err != nil {
			b.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil || len(m.Answer) != 1 {
			b.Fatalf("%v %v", m, err)
		}
	}
}
