package authdns

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fastZone is testZone's records with members in four groups: one A and
// one AAAA; two A and an AAAA; a CNAME; a TXT only. Some members are shadowed
// by the zone's own names (alice, www, a: an empty non-terminal, sub: a cut).
func fastZone(t testing.TB, keys []Key) *Zone {
	t.Helper()
	labels := map[string]uint32{"alice": 0, "www": 1, "a": 0, "sub": 1, "ext": 3, "big": 0, "nogroup": 9}
	for i := range 200 {
		labels[fmt.Sprintf("user%d", i)] = uint32(i % 4)
	}
	groups := [][]dns.RR{
		{mustRR(t, "x. 300 IN A 192.0.2.41"), mustRR(t, "x. 300 IN AAAA 2001:db8::41")},
		{mustRR(t, "x. 120 IN A 192.0.2.42"), mustRR(t, "x. 120 IN A 192.0.2.43"), mustRR(t, "x. 120 IN AAAA 2001:db8::42")},
		{mustRR(t, "x. 300 IN CNAME bob.mc.example.com.")},
		{mustRR(t, "x. 300 IN TXT \"only text\"")},
	}
	rrs := testRecords(t)
	for _, k := range keys {
		rrs = append(rrs, k.DNSKEY)
	}
	z, err := NewZoneMembers(testOrigin, testSOA(t), rrs, Members{Labels: labels, Groups: groups})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		if err := z.Sign(keys, time.Now(), NewSigCache()); err != nil {
			t.Fatal(err)
		}
	}
	return z
}

// randomQuery is a query in wire form, mostly the common one (a member's
// A or AAAA, any case, with or without EDNS) and otherwise anything the
// fast path must leave to the general one.
func randomQuery(r *rand.Rand) []byte {
	labels := []string{"user7", "user8", "user9", "user10", "user11", "alice", "www", "a", "sub", "ext", "big", "nogroup", "nobody", "b.a", "x.user7", ""}
	name := labels[r.IntN(len(labels))]
	if r.IntN(2) == 0 {
		name = fmt.Sprintf("user%d", 4*r.IntN(50)+r.IntN(2)) // groups 0 and 1: A and AAAA packed
	}
	origin := testOrigin
	switch r.IntN(12) {
	case 0:
		origin = "example.org."
	case 1:
		origin = "example.com."
	}
	if name != "" {
		name += "."
	}
	name += origin
	b := []byte(name)
	for i := range b {
		if r.IntN(3) == 0 && 'a' <= b[i] && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	name = string(b)
	if r.IntN(40) == 0 {
		name = "us\\.er7." + testOrigin
	}
	m := new(dns.Msg)
	types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeA, dns.TypeAAAA, dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeCNAME, dns.TypeANY, dns.TypeMX}
	m.SetQuestion(name, types[r.IntN(len(types))])
	m.Id = uint16(r.Uint32())
	m.RecursionDesired = r.IntN(2) == 0
	m.CheckingDisabled = r.IntN(4) == 0
	m.AuthenticatedData = r.IntN(4) == 0
	m.Zero = r.IntN(8) == 0
	if r.IntN(10) == 0 {
		m.Question[0].Qclass = []uint16{dns.ClassANY, dns.ClassCHAOS}[r.IntN(2)]
	}
	if r.IntN(20) == 0 {
		m.Opcode = dns.OpcodeNotify
	}
	if r.IntN(2) == 0 {
		sizes := []uint16{0, 100, 512, 600, 1232, 4096, 65535}
		m.SetEdns0(sizes[r.IntN(len(sizes))], r.IntN(2) == 0)
		o := m.IsEdns0()
		if r.IntN(10) == 0 {
			o.SetVersion(1)
		}
		if r.IntN(5) == 0 {
			o.Option = append(o.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"[:2*(1+r.IntN(8))]})
		}
		if r.IntN(10) == 0 {
			o.Option = append(o.Option, &dns.EDNS0_PADDING{Padding: make([]byte, r.IntN(20))})
		}
		if r.IntN(10) == 0 {
			o.Option = append(o.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
		}
		if r.IntN(10) == 0 {
			o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(192, 0, 2, 0)})
		}
		if r.IntN(20) == 0 {
			m.Extra = append(m.Extra, mustRRNoT("x. 1 IN A 192.0.2.1"))
		}
	}
	if r.IntN(30) == 0 {
		m.Ns = append(m.Ns, mustRRNoT("x. 1 IN A 192.0.2.1"))
	}
	if r.IntN(30) == 0 {
		m.Answer = append(m.Answer, mustRRNoT("x. 1 IN A 192.0.2.1"))
	}
	wire, err := m.Pack()
	if err != nil {
		panic(err)
	}
	switch r.IntN(40) {
	case 0:
		wire = append(wire, 0) // trailing byte
	case 1:
		wire = wire[:len(wire)-1-r.IntN(min(len(wire)-1, 8))] // cut short
	case 2:
		wire[2] |= 0x80 // a response
	case 3:
		if len(wire) > 20 {
			wire[len(wire)-3]++ // an OPT's or an option's length off by one
		}
	}
	return wire
}

func mustRRNoT(s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		panic(err)
	}
	return rr
}

// generalPath is what the server sends for pkt without fastAnswer: nil
// when it sends nothing or its answer is not NOERROR from the zone.
func generalPath(z *Zone, pkt []byte, maxUDP int) (wire []byte, unpacked bool) {
	req := new(dns.Msg)
	if len(pkt) < 12 || pkt[2]&0x80 != 0 || req.Unpack(pkt) != nil {
		return nil, false
	}
	m := Answer(z, req, maxUDP, false)
	if m == nil {
		return nil, true
	}
	out, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return out, true
}

// TestFastAnswerIsAnswer: over random queries, whatever fastAnswer answers
// is byte for byte what the general path (Unpack, Answer, Pack) sends, in
// an unsigned and a signed zone and with several server UDP sizes; and the
// fast path does answer the common query.
func TestFastAnswerIsAnswer(t *testing.T) {
	for _, c := range []struct {
		name string
		keys []Key
	}{{"unsigned", nil}, {"signed", []Key{testKey(t)}}} {
		t.Run(c.name, func(t *testing.T) {
			z := fastZone(t, c.keys)
			r := rand.New(rand.NewPCG(1, uint64(len(c.keys))))
			fast, signed, total := 0, 0, 20000
			for range total {
				pkt := randomQuery(r)
				maxUDP := []int{512, 1232, 4096}[r.IntN(3)]
				out := make([]byte, maxUDP)
				got, _, ok := z.fastAnswer(pkt, out, maxUDP)
				want, unpacked := generalPath(z, pkt, maxUDP)
				if !ok {
					continue
				}
				fast++
				if !unpacked {
					t.Fatalf("fastAnswer answered a packet the general path drops or refuses as FORMERR: %x", pkt)
				}
				if !bytes.Equal(got, want) {
					req := new(dns.Msg)
					_ = req.Unpack(pkt)
					g, w := new(dns.Msg), new(dns.Msg)
					_, _ = g.Unpack(got), w.Unpack(want)
					t.Fatalf("query %v\nfast    %x\n%v\ngeneral %x\n%v", req, got, g, want, w)
				}
				req := new(dns.Msg)
				_ = req.Unpack(pkt)
				if o := req.IsEdns0(); c.keys != nil && o != nil && o.Do() {
					signed++
				}
			}
			// About a fifth of the random queries are the common one.
			if fast < total/8 {
				t.Fatalf("fastAnswer answered %d of %d queries: the common query goes the general way", fast, total)
			}
			if c.keys != nil && signed < total/40 {
				t.Fatalf("fastAnswer answered %d signed answers of %d queries: a DO query goes the general way", signed, total)
			}
			t.Logf("fast path: %d of %d (%d signed)", fast, total, signed)
		})
	}
}

// TestFastAnswerCases pins the cases by name: what goes fast, and what must
// not (each with the reason the general path is needed).
func TestFastAnswerCases(t *testing.T) {
	z := fastZone(t, nil)
	for _, c := range []struct {
		name string
		req  *dns.Msg
		fast bool
	}{
		{"member A", query("user0.mc.example.com.", dns.TypeA), true},
		{"member AAAA mixed case, EDNS", ednsQuery("UsEr1.Mc.Example.COM.", dns.TypeAAAA, 1232), true},
		{"member two A", query("user1.mc.example.com.", dns.TypeA), true},
		{"member NODATA", query("user0.mc.example.com.", dns.TypeTXT), false},
		{"member of a TXT group, A", query("user3.mc.example.com.", dns.TypeA), false},
		{"member CNAME group", query("user2.mc.example.com.", dns.TypeA), false},
		{"shadowed by a name", query("alice.mc.example.com.", dns.TypeA), false},
		{"shadowed by an empty non-terminal", query("a.mc.example.com.", dns.TypeA), false},
		{"shadowed by a cut", query("sub.mc.example.com.", dns.TypeA), false},
		{"group out of range", query("nogroup.mc.example.com.", dns.TypeA), false},
		{"not a member", query("nobody.mc.example.com.", dns.TypeA), false},
		{"two labels", query("x.user0.mc.example.com.", dns.TypeA), false},
		{"other zone", query("user0.example.org.", dns.TypeA), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			pkt, err := c.req.Pack()
			if err != nil {
				t.Fatal(err)
			}
			got, _, ok := z.fastAnswer(pkt, make([]byte, 1232), 1232)
			if ok != c.fast {
				t.Fatalf("fast = %v, want %v", ok, c.fast)
			}
			if !ok {
				return
			}
			want, _ := generalPath(z, pkt, 1232)
			if !bytes.Equal(got, want) {
				t.Fatalf("fast %x\ngeneral %x", got, want)
			}
		})
	}
}

// TestFastAnswerOverUDP: a member's answer through a real socket is the
// general path's, counted like it (queries, NOERROR by type).
func TestFastAnswerOverUDP(t *testing.T) {
	z := fastZone(t, nil)
	s := startServer(t, z, ServerOptions{})
	udp, _ := serverAddr(t, s)
	conn, err := net.Dial("udp", udp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q := ednsQuery("USER1.mc.example.com.", dns.TypeA, 1232)
	q.Id = 4242
	pkt, _ := q.Pack()
	if _, err := conn.Write(pkt); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := generalPath(z, pkt, DefaultMaxUDPSize)
	if !bytes.Equal(buf[:n], want) {
		t.Fatalf("got %x\nwant %x", buf[:n], want)
	}
	st := s.Stats()
	if st.ByType[0][dns.RcodeSuccess] != 1 || st.Queries != 1 || st.NoError != 1 {
		t.Fatalf("A NOERROR counted %d times, want 1", st.ByType[0][dns.RcodeSuccess])
	}
}

// FuzzFastAnswer: whatever packet fastAnswer answers, the general path
// answers with the same bytes (and does not drop or refuse it as
// unparsable); fastAnswer never panics nor writes past its buffer.
func FuzzFastAnswer(f *testing.F) {
	z := fastZone(f, []Key{testKey(f)})
	r := rand.New(rand.NewPCG(7, 7))
	for range 64 {
		f.Add(randomQuery(r), uint16(1232))
	}
	f.Fuzz(func(t *testing.T, pkt []byte, maxUDP uint16) {
		m := min(max(int(maxUDP), minUDPSize), dns.MaxMsgSize)
		out := make([]byte, m)
		// The general path first: a signature it makes is then found.
		want, unpacked := generalPath(z, pkt, m)
		got, _, ok := z.fastAnswer(pkt, out, m)
		if !ok {
			return
		}
		if !unpacked || !bytes.Equal(got, want) {
			t.Fatalf("packet %x\nfast    %x\ngeneral %x (unpacked %v)", pkt, got, want, unpacked)
		}
	})
}
