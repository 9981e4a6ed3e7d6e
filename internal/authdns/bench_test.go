package authdns

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const benchUsers = 10000

func BenchmarkAnswer(b *testing.B) {
	z := userZone(b, benchUsers, 1)
	for _, c := range []struct {
		name string
		req  *dns.Msg
	}{
		{"A", query("user4242.mc.example.com.", dns.TypeA)},
		{"A-EDNS", ednsQuery("user4242.mc.example.com.", dns.TypeA, 4096)},
		{"A-0x20", query("uSeR4242.Mc.ExAmPlE.cOm.", dns.TypeA)},
		{"NXDOMAIN", query("nobody.mc.example.com.", dns.TypeA)},
		{"NODATA", query("user4242.mc.example.com.", dns.TypeAAAA)},
		{"TXT", query("_acme-challenge.mc.example.com.", dns.TypeTXT)},
		{"NS-glue-EDNS", ednsQuery("mc.example.com.", dns.TypeNS, 1232)},
		{"REFUSED", query("example.org.", dns.TypeA)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if Answer(z, c.req, DefaultMaxUDPSize, false) == nil {
					b.Fatal("no answer")
				}
			}
		})
	}
	// Answer plus the packing the server does for every response.
	b.Run("A+Pack", func(b *testing.B) {
		req := query("user4242.mc.example.com.", dns.TypeA)
		buf := make([]byte, 512)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Answer(z, req, DefaultMaxUDPSize, false).PackBuffer(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The same queries on a zone whose users are Members of one group (what
	// dnsdata builds): the records are synthesised with the query name.
	gz := memberZone(b, benchUsers)
	for _, c := range []struct {
		name string
		req  *dns.Msg
	}{
		{"member-A", query("user4242.mc.example.com.", dns.TypeA)},
		{"member-A-0x20", query("uSeR4242.Mc.ExAmPlE.cOm.", dns.TypeA)},
		{"member-NXDOMAIN", query("nobody.mc.example.com.", dns.TypeA)},
		{"member-NODATA", query("user4242.mc.example.com.", dns.TypeTXT)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if Answer(gz, c.req, DefaultMaxUDPSize, false) == nil {
					b.Fatal("no answer")
				}
			}
		})
	}
	b.Run("member-A+Pack", func(b *testing.B) {
		req := query("user4242.mc.example.com.", dns.TypeA)
		buf := make([]byte, 512)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Answer(gz, req, DefaultMaxUDPSize, false).PackBuffer(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CNAME", func(b *testing.B) {
		z := testZone(b)
		req := query("www.mc.example.com.", dns.TypeA)
		b.ReportAllocs()
		for b.Loop() {
			Answer(z, req, DefaultMaxUDPSize, false)
		}
	})
	b.Run("TXT60-truncated", func(b *testing.B) {
		z := testZone(b)
		req := query("big.mc.example.com.", dns.TypeTXT)
		b.ReportAllocs()
		for b.Loop() {
			Answer(z, req, DefaultMaxUDPSize, false)
		}
	})
}

func BenchmarkNewZone(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		userZone(b, benchUsers, 1)
	}
}

// BenchmarkNewZoneMembers is BenchmarkNewZone with the users as Members
// of one group.
func BenchmarkNewZoneMembers(b *testing.B) {
	labels := memberLabels(benchUsers)
	b.ReportAllocs()
	for b.Loop() {
		memberZoneOf(b, labels)
	}
}

func memberLabels(n int) map[string]uint32 {
	labels := make(map[string]uint32, n)
	for i := range n {
		labels[fmt.Sprintf("user%d", i)] = 0
	}
	return labels
}

// memberZone is userZone's zone with the n users Members of one group (one
// address).
func memberZone(b *testing.B, n int) *Zone { return memberZoneOf(b, memberLabels(n)) }

func memberZoneOf(b *testing.B, labels map[string]uint32) *Zone {
	b.Helper()
	z0 := userZone(b, 0, 1)
	var rrs []dns.RR
	for _, n := range z0.names {
		for _, s := range n.sets {
			if s.rrtype != dns.TypeSOA {
				rrs = append(rrs, s.rrs...)
			}
		}
	}
	a := &dns.A{Hdr: dns.RR_Header{Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(10, 0, 0, 1)}
	z, err := NewZoneMembers(testOrigin, z0.apex.sets[0].rrs[0].(*dns.SOA), rrs, Members{Labels: labels, Groups: [][]dns.RR{{a}}})
	if err != nil {
		b.Fatal(err)
	}
	return z
}

// BenchmarkServeUDP measures queries through a real UDP socket on loopback:
// each client goroutine sends one query and waits for its answer.
func BenchmarkServeUDP(b *testing.B) {
	s := startServer(b, userZone(b, benchUsers, 1), ServerOptions{})
	serveUDP(b, s, false)
}

// BenchmarkServeUDPSigned is BenchmarkServeUDP with DNSSEC: the zone of
// users as members (what dnsdata builds) signed, the same queries with
// DO, against the same zone unsigned. The first query for each user makes
// its signature; the loop asks benchUsers names over and over, so the
// steady state is what is measured.
func BenchmarkServeUDPSigned(b *testing.B) {
	labels := memberLabels(benchUsers)
	for _, c := range []struct {
		name string
		z    *Zone
	}{{"unsigned", memberZoneOf(b, labels)}, {"signed", signedMemberZone(b, labels, []Key{testKey(b)})}} {
		// Warm up: every user's signature made (as after the first
		// minutes of traffic), so the loop measures the steady state.
		for i := range benchUsers {
			Answer(c.z, doQuery(fmt.Sprintf("user%d.mc.example.com.", i), dns.TypeA), DefaultMaxUDPSize, false)
		}
		b.Run(c.name, func(b *testing.B) {
			s := startServer(b, c.z, ServerOptions{})
			serveUDP(b, s, true)
		})
	}
}

func serveUDP(b *testing.B, s *Server, do bool) {
	udp, _ := serverAddr(b, s)
	for _, clients := range []int{1, 8} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(clients) // × GOMAXPROCS goroutines
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				conn, err := net.Dial("udp", udp)
				if err != nil {
					b.Error(err)
					return
				}
				defer conn.Close()
				buf := make([]byte, 1500)
				for pb.Next() {
					i := next.Add(1)
					q := query(fmt.Sprintf("user%d.mc.example.com.", i%benchUsers), dns.TypeA)
					if do {
						q.SetEdns0(1232, true)
					}
					q.Id = uint16(i)
					wire, _ := q.Pack()
					if _, err := conn.Write(wire); err != nil {
						b.Error(err)
						return
					}
					_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
					n, err := conn.Read(buf)
					if err != nil {
						b.Error(err)
						return
					}
					if n < 12 || buf[0] != wire[0] || buf[1] != wire[1] || buf[3]&0xF != 0 {
						b.Errorf("bad response (%d bytes)", n)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "queries/s")
		})
	}
}

// BenchmarkSigned compares, per query (answer and pack), a signed zone's
// answer to a DO query with the unsigned zone's answer to the same query:
// the steady state, every signature made already (target: at most 1.5x).
func BenchmarkSigned(b *testing.B) {
	keys := []Key{testKey(b)}
	labels := memberLabels(benchUsers)
	plain := memberZoneOf(b, labels)
	signed := signedMemberZone(b, labels, keys)
	for _, c := range []struct {
		name string
		req  *dns.Msg
	}{
		{"member-A", doQuery("user4242.mc.example.com.", dns.TypeA)},
		{"static-TXT", doQuery("_acme-challenge.mc.example.com.", dns.TypeTXT)},
		{"NXDOMAIN", doQuery("nobody.mc.example.com.", dns.TypeA)},
		{"NODATA", doQuery("user4242.mc.example.com.", dns.TypeTXT)},
	} {
		for _, z := range []struct {
			name string
			z    *Zone
		}{{"unsigned", plain}, {"signed", signed}} {
			b.Run(c.name+"/"+z.name, func(b *testing.B) {
				buf := make([]byte, 4096)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Answer(z.z, c.req, DefaultMaxUDPSize, false).PackBuffer(buf); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func signedMemberZone(b *testing.B, labels map[string]uint32, keys []Key) *Zone {
	b.Helper()
	z0 := userZone(b, 0, 1)
	var rrs []dns.RR
	for _, n := range z0.names {
		for _, s := range n.sets {
			if s.rrtype != dns.TypeSOA {
				rrs = append(rrs, s.rrs...)
			}
		}
	}
	for _, k := range keys {
		rrs = append(rrs, k.DNSKEY)
	}
	a := &dns.A{Hdr: dns.RR_Header{Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(10, 0, 0, 1)}
	z, err := NewZoneMembers(testOrigin, z0.apex.sets[0].rrs[0].(*dns.SOA), rrs, Members{Labels: labels, Groups: [][]dns.RR{{a}}})
	if err != nil {
		b.Fatal(err)
	}
	if err := z.Sign(keys, time.Now(), nil); err != nil {
		b.Fatal(err)
	}
	return z
}

// BenchmarkHandleUDP is the server's work for one UDP packet (parse,
// answer, pack into the reader's buffer; no socket), a member's A query
// with EDNS as dnsperf sends it (and with DO, the zone signed), through
// fastAnswer and, with the group's sets not packed, through the general
// path.
func BenchmarkHandleUDP(b *testing.B) {
	for _, c := range []struct {
		name   string
		packed bool
		signed bool
	}{{"fast", true, false}, {"general", false, false}, {"signed-fast", true, true}, {"signed-general", false, true}} {
		b.Run(c.name, func(b *testing.B) {
			z := memberZone(b, benchUsers)
			if c.signed {
				z = signedMemberZone(b, memberLabels(benchUsers), []Key{testKey(b)})
			}
			if !c.packed {
				for _, g := range z.groups {
					g.packedA, g.packedAAAA = nil, nil
				}
			}
			s := NewServer(ServerOptions{})
			s.Swap(z)
			q := ednsQuery("user4242.mc.example.com.", dns.TypeA, 1232)
			if c.signed {
				q = doQuery("user4242.mc.example.com.", dns.TypeA)
			}
			q.Id = 7
			pkt, _ := q.Pack()
			w := &udpWorker{out: make([]byte, s.maxUDP)}
			s.handleUDP(w, pkt) // a signed answer's first query signs it
			b.ReportAllocs()
			for b.Loop() {
				if out, _ := s.handleUDP(w, pkt); len(out) == 0 {
					b.Fatal("no answer")
				}
			}
		})
	}
}
