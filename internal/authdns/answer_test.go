package authdns

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// qcase is one query and what its response must hold. Records are written
// as "owner TTL CLASS TYPE rdata" with single spaces.
type qcase struct {
	name    string
	qname   string
	qtype   uint16
	qclass  uint16 // default IN
	rcode   int
	aa      bool
	answer  []string
	nanswer int // when answer is nil: expected count (-1: none expected, the default)
	ns      []string
	extra   []string // OPT excluded
}

const (
	negSOA  = "mc.example.com. 60 IN SOA ns1.mc.example.com. hostmaster.mc.example.com. 2026112701 7200 900 1209600 60"
	apexSOA = "mc.example.com. 3600 IN SOA ns1.mc.example.com. hostmaster.mc.example.com. 2026112701 7200 900 1209600 60"
)

func cn(from, to string) string {
	return fmt.Sprintf("%s.mc.example.com. 300 IN CNAME %s.mc.example.com.", from, to)
}

// queryCases hold for Answer with tcp false and no EDNS, and over UDP and
// TCP alike (none of them is truncated).
var queryCases = []qcase{
	{name: "A", qname: "alice.mc.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"alice.mc.example.com. 300 IN A 192.0.2.101"}},
	{name: "A mixed case (0x20)", qname: "aLiCe.Mc.ExAmPlE.cOm.", qtype: dns.TypeA, aa: true,
		answer: []string{"aLiCe.Mc.ExAmPlE.cOm. 300 IN A 192.0.2.101"}}, // the query's case
	{name: "CNAME mixed case", qname: "WWW.mc.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"WWW.mc.example.com. 300 IN CNAME alice.mc.example.com.", "alice.mc.example.com. 300 IN A 192.0.2.101"}},
	{name: "AAAA", qname: "alice.mc.example.com.", qtype: dns.TypeAAAA, aa: true,
		answer: []string{"alice.mc.example.com. 300 IN AAAA 2001:db8::101"}},
	{name: "owner given in upper case", qname: "core-1.mc.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"core-1.mc.example.com. 300 IN A 192.0.2.201"}},
	{name: "apex A", qname: "mc.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"mc.example.com. 300 IN A 192.0.2.1"}},
	{name: "class ANY", qname: "bob.mc.example.com.", qtype: dns.TypeA, qclass: dns.ClassANY, aa: true,
		answer: []string{"bob.mc.example.com. 300 IN A 192.0.2.102"}},
	{name: "NODATA", qname: "alice.mc.example.com.", qtype: dns.TypeTXT, aa: true,
		ns: []string{negSOA}},
	{name: "NXDOMAIN", qname: "nobody.mc.example.com.", qtype: dns.TypeA, rcode: dns.RcodeNameError, aa: true,
		ns: []string{negSOA}},
	{name: "NXDOMAIN below an existing name", qname: "x.alice.mc.example.com.", qtype: dns.TypeA, rcode: dns.RcodeNameError, aa: true,
		ns: []string{negSOA}},
	{name: "empty non-terminal is NODATA", qname: "a.mc.example.com.", qtype: dns.TypeA, aa: true,
		ns: []string{negSOA}},
	{name: "below the empty non-terminal", qname: "B.a.mc.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"B.a.mc.example.com. 300 IN A 192.0.2.50"}},
	{name: "apex SOA", qname: "mc.example.com.", qtype: dns.TypeSOA, aa: true,
		answer: []string{apexSOA}},
	{name: "apex NS with glue", qname: "mc.example.com.", qtype: dns.TypeNS, aa: true,
		answer: []string{"mc.example.com. 3600 IN NS ns1.mc.example.com.", "mc.example.com. 3600 IN NS NS2.mc.example.com."},
		extra:  []string{"ns1.mc.example.com. 300 IN A 192.0.2.11", "ns1.mc.example.com. 300 IN AAAA 2001:db8::11", "ns2.mc.example.com. 300 IN A 192.0.2.12"}},
	{name: "MX with glue for the in-zone target only", qname: "mc.example.com.", qtype: dns.TypeMX, aa: true,
		answer: []string{"mc.example.com. 300 IN MX 10 mail.mc.example.com.", "mc.example.com. 300 IN MX 20 mx.example.org."},
		extra:  []string{"mail.mc.example.com. 300 IN A 192.0.2.25"}},
	{name: "SRV with glue", qname: "_sip._tcp.mc.example.com.", qtype: dns.TypeSRV, aa: true,
		answer: []string{"_sip._tcp.mc.example.com. 300 IN SRV 0 5 5060 alice.mc.example.com."},
		extra:  []string{"alice.mc.example.com. 300 IN A 192.0.2.101", "alice.mc.example.com. 300 IN AAAA 2001:db8::101"}},
	{name: "ACME TXT", qname: "_acme-challenge.mc.example.com.", qtype: dns.TypeTXT, aa: true,
		answer: []string{`_acme-challenge.mc.example.com. 60 IN TXT "token-one"`, `_acme-challenge.mc.example.com. 60 IN TXT "token-two"`}},
	{name: "CNAME to in-zone A", qname: "www.mc.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{cn("www", "alice"), "alice.mc.example.com. 300 IN A 192.0.2.101"}},
	{name: "CNAME to in-zone AAAA", qname: "www.mc.example.com.", qtype: dns.TypeAAAA, aa: true,
		answer: []string{cn("www", "alice"), "alice.mc.example.com. 300 IN AAAA 2001:db8::101"}},
	{name: "CNAME query", qname: "www.mc.example.com.", qtype: dns.TypeCNAME, aa: true,
		answer: []string{cn("www", "alice")}},
	{name: "CNAME then NODATA", qname: "www.mc.example.com.", qtype: dns.TypeTXT, aa: true,
		answer: []string{cn("www", "alice")}, ns: []string{negSOA}},
	{name: "CNAME out of zone", qname: "ext.mc.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"ext.mc.example.com. 300 IN CNAME www.example.org."}},
	{name: "CNAME chain", qname: "c1.mc.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{cn("c1", "c2"), "c2.mc.example.com. 300 IN CNAME WWW.mc.example.com.", cn("www", "alice"), "alice.mc.example.com. 300 IN A 192.0.2.101"}},
	{name: "CNAME loop", qname: "loop1.mc.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{cn("loop1", "loop2"), cn("loop2", "loop1")}},
	{name: "CNAME to a missing name", qname: "dangling.mc.example.com.", qtype: dns.TypeA, rcode: dns.RcodeNameError, aa: true,
		answer: []string{cn("dangling", "nothere")}, ns: []string{negSOA}},
	{name: "CNAME chain stops after 8", qname: "ch0.mc.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{cn("ch0", "ch1"), cn("ch1", "ch2"), cn("ch2", "ch3"), cn("ch3", "ch4"), cn("ch4", "ch5"), cn("ch5", "ch6"), cn("ch6", "ch7"), cn("ch7", "ch8")}},
	{name: "CNAME chain of 8 then data", qname: "ch4.mc.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{cn("ch4", "ch5"), cn("ch5", "ch6"), cn("ch6", "ch7"), cn("ch7", "ch8"), cn("ch8", "ch9"), cn("ch9", "ch10"), cn("ch10", "ch11"), cn("ch11", "ch12"), "ch12.mc.example.com. 300 IN A 192.0.2.12"}},
	{name: "wildcard A", qname: "X.wild.mc.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"X.wild.mc.example.com. 300 IN A 192.0.2.77"}},
	{name: "wildcard two labels deep", qname: "deep.x.wild.mc.example.com.", qtype: dns.TypeTXT, aa: true,
		answer: []string{`deep.x.wild.mc.example.com. 300 IN TXT "wildcard"`}},
	{name: "wildcard NODATA", qname: "x.wild.mc.example.com.", qtype: dns.TypeAAAA, aa: true,
		ns: []string{negSOA}},
	{name: "wildcard parent is an empty non-terminal", qname: "wild.mc.example.com.", qtype: dns.TypeA, aa: true,
		ns: []string{negSOA}},
	{name: "the wildcard name itself", qname: "*.wild.mc.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"*.wild.mc.example.com. 300 IN A 192.0.2.77"}},
	{name: "wildcard CNAME", qname: "q.wc.mc.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"q.wc.mc.example.com. 300 IN CNAME bob.mc.example.com.", "bob.mc.example.com. 300 IN A 192.0.2.102"}},
	{name: "no wildcard next to an existing sibling", qname: "nobody.a.mc.example.com.", qtype: dns.TypeA, rcode: dns.RcodeNameError, aa: true,
		ns: []string{negSOA}},
	{name: "referral at the cut", qname: "sub.mc.example.com.", qtype: dns.TypeA,
		ns:    []string{"sub.mc.example.com. 300 IN NS ns.sub.mc.example.com."},
		extra: []string{"ns.sub.mc.example.com. 300 IN A 192.0.2.53"}},
	{name: "referral below the cut", qname: "deep.sub.mc.example.com.", qtype: dns.TypeA,
		ns:    []string{"sub.mc.example.com. 300 IN NS ns.sub.mc.example.com."},
		extra: []string{"ns.sub.mc.example.com. 300 IN A 192.0.2.53"}},
	{name: "glue is occluded", qname: "ns.sub.mc.example.com.", qtype: dns.TypeA,
		ns:    []string{"sub.mc.example.com. 300 IN NS ns.sub.mc.example.com."},
		extra: []string{"ns.sub.mc.example.com. 300 IN A 192.0.2.53"}},
	{name: "DS at the cut is ours", qname: "sub.mc.example.com.", qtype: dns.TypeDS, aa: true,
		answer: []string{"sub.mc.example.com. 300 IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"}},
	{name: "ANY is answered with HINFO (RFC 8482)", qname: "alice.mc.example.com.", qtype: dns.TypeANY, aa: true,
		answer: []string{`alice.mc.example.com. 3600 IN HINFO "RFC8482" ""`}},
	{name: "ANY at a wildcard", qname: "z.wild.mc.example.com.", qtype: dns.TypeANY, aa: true,
		answer: []string{`z.wild.mc.example.com. 3600 IN HINFO "RFC8482" ""`}},
	{name: "ANY at an empty non-terminal", qname: "a.mc.example.com.", qtype: dns.TypeANY, aa: true,
		ns: []string{negSOA}},
	{name: "ANY at a missing name", qname: "nobody.mc.example.com.", qtype: dns.TypeANY, rcode: dns.RcodeNameError, aa: true,
		ns: []string{negSOA}},
	{name: "unknown type", qname: "alice.mc.example.com.", qtype: 65280, aa: true,
		ns: []string{negSOA}},
	{name: "suffix without label boundary", qname: "evilmc.example.com.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
	{name: "escaped dot is no label boundary", qname: `evil\.mc.example.com.`, qtype: dns.TypeA, rcode: dns.RcodeRefused},
	{name: "parent domain", qname: "example.com.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
	{name: "other domain", qname: "www.example.org.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
	{name: "root", qname: ".", qtype: dns.TypeNS, rcode: dns.RcodeRefused},
	{name: "class CHAOS", qname: "version.bind.", qtype: dns.TypeTXT, qclass: dns.ClassCHAOS, rcode: dns.RcodeRefused},
	{name: "class CHAOS in zone", qname: "alice.mc.example.com.", qtype: dns.TypeA, qclass: dns.ClassCHAOS, rcode: dns.RcodeRefused},
	{name: "AXFR", qname: "mc.example.com.", qtype: dns.TypeAXFR, rcode: dns.RcodeRefused},
	{name: "IXFR", qname: "mc.example.com.", qtype: dns.TypeIXFR, rcode: dns.RcodeRefused},
}

func (c qcase) msg(rd bool) *dns.Msg {
	m := query(c.qname, c.qtype)
	if c.qclass != 0 {
		m.Question[0].Qclass = c.qclass
	}
	m.RecursionDesired = rd
	return m
}

func rrText(rr dns.RR) string { return strings.Join(strings.Fields(rr.String()), " ") }

func texts(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, rrText(rr))
	}
	return out
}

func normalise(ss []string) []string {
	var out []string
	for _, s := range ss {
		out = append(out, strings.Join(strings.Fields(s), " "))
	}
	return out
}

// checkHeader checks what every response to req must hold.
func checkHeader(t *testing.T, req, resp *dns.Msg) {
	t.Helper()
	if resp == nil {
		t.Fatal("no response")
	}
	if resp.Id != req.Id || !resp.Response || resp.Opcode != req.Opcode {
		t.Errorf("header: id %d (want %d), QR %v, opcode %d (want %d)", resp.Id, req.Id, resp.Response, resp.Opcode, req.Opcode)
	}
	if resp.RecursionDesired != req.RecursionDesired {
		t.Errorf("RD = %v, query had %v", resp.RecursionDesired, req.RecursionDesired)
	}
	if resp.RecursionAvailable || resp.AuthenticatedData {
		t.Errorf("RA or AD set")
	}
	if len(req.Question) == 1 && resp.Rcode != dns.RcodeFormatError {
		if len(resp.Question) != 1 || resp.Question[0] != req.Question[0] {
			t.Errorf("question = %v, want %v", resp.Question, req.Question)
		}
	}
}

func (c qcase) check(t *testing.T, req, resp *dns.Msg) {
	t.Helper()
	checkHeader(t, req, resp)
	if resp.Rcode != c.rcode {
		t.Errorf("rcode = %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[c.rcode])
	}
	if resp.Authoritative != c.aa {
		t.Errorf("AA = %v, want %v", resp.Authoritative, c.aa)
	}
	if resp.Truncated {
		t.Errorf("TC set")
	}
	if c.answer != nil || c.nanswer == 0 {
		if got := texts(resp.Answer); !slices.Equal(got, normalise(c.answer)) {
			t.Errorf("answer:\n got  %q\n want %q", got, normalise(c.answer))
		}
	} else if len(resp.Answer) != c.nanswer {
		t.Errorf("answer has %d records, want %d", len(resp.Answer), c.nanswer)
	}
	if got := texts(resp.Ns); !slices.Equal(got, normalise(c.ns)) {
		t.Errorf("authority:\n got  %q\n want %q", got, normalise(c.ns))
	}
	if got := texts(resp.Extra); !slices.Equal(got, normalise(c.extra)) {
		t.Errorf("additional:\n got  %q\n want %q", got, normalise(c.extra))
	}
}

func TestAnswerTable(t *testing.T) {
	z := testZone(t)
	for _, c := range queryCases {
		t.Run(c.name, func(t *testing.T) {
			for _, rd := range []bool{false, true} {
				req := c.msg(rd)
				resp := Answer(z, req, DefaultMaxUDPSize, false)
				c.check(t, req, resp)
				c.check(t, req, packs(t, resp))
				if resp.IsEdns0() != nil {
					t.Errorf("OPT in the response to a query without EDNS")
				}
			}
		})
	}
}

func TestAnswerHeaderRules(t *testing.T) {
	z := testZone(t)
	t.Run("response is dropped", func(t *testing.T) {
		req := query("alice.mc.example.com.", dns.TypeA)
		req.Response = true
		if resp := Answer(z, req, 1232, false); resp != nil {
			t.Fatalf("answered a response: %v", resp)
		}
		if Answer(z, nil, 1232, false) != nil {
			t.Fatal("answered nil")
		}
	})
	for _, op := range []int{dns.OpcodeNotify, dns.OpcodeUpdate, dns.OpcodeIQuery, dns.OpcodeStatus, 15} {
		t.Run("opcode "+dns.OpcodeToString[op], func(t *testing.T) {
			req := query("mc.example.com.", dns.TypeSOA)
			req.Opcode = op
			resp := Answer(z, req, 1232, false)
			checkHeader(t, req, packs(t, resp))
			if resp.Rcode != dns.RcodeNotImplemented || resp.Authoritative || len(resp.Answer) != 0 {
				t.Fatalf("got %v", resp)
			}
		})
	}
	t.Run("no question", func(t *testing.T) {
		req := new(dns.Msg)
		req.Id = 77
		resp := packs(t, Answer(z, req, 1232, false))
		checkHeader(t, req, resp)
		if resp.Rcode != dns.RcodeFormatError || len(resp.Question) != 0 {
			t.Fatalf("got %v", resp)
		}
	})
	t.Run("two questions", func(t *testing.T) {
		req := query("alice.mc.example.com.", dns.TypeA)
		req.Question = append(req.Question, dns.Question{Name: "bob.mc.example.com.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
		resp := packs(t, Answer(z, req, 1232, false))
		checkHeader(t, req, resp)
		if resp.Rcode != dns.RcodeFormatError || len(resp.Question) != 0 || len(resp.Answer) != 0 {
			t.Fatalf("got %v", resp)
		}
	})
	t.Run("name not fully qualified", func(t *testing.T) {
		req := query("alice.mc.example.com.", dns.TypeA)
		req.Question[0].Name = "alice.mc.example.com"
		resp := packs(t, Answer(z, req, 1232, false))
		if resp.Rcode != dns.RcodeFormatError {
			t.Fatalf("got %v", resp)
		}
	})
	t.Run("no zone yet", func(t *testing.T) {
		req := query("alice.mc.example.com.", dns.TypeA)
		resp := packs(t, Answer(nil, req, 1232, false))
		checkHeader(t, req, resp)
		if resp.Rcode != dns.RcodeServerFailure || resp.Authoritative {
			t.Fatalf("got %v", resp)
		}
	})
	t.Run("CD is echoed", func(t *testing.T) {
		req := query("alice.mc.example.com.", dns.TypeA)
		req.CheckingDisabled = true
		if resp := Answer(z, req, 1232, false); !resp.CheckingDisabled {
			t.Fatal("CD not echoed")
		}
	})
}

func TestAnswerEDNS(t *testing.T) {
	z := testZone(t)
	for _, c := range []struct {
		client uint16
		max    int
		want   uint16
	}{
		// Our own size is advertised, whatever the client's (knot does
		// the same); the client's only bounds what we send.
		{4096, 1232, 1232},
		{1232, 1232, 1232},
		{700, 1232, 1232},
		{100, 1232, 1232},
		{0, 1232, 1232},
		{4096, 0, 512}, // maxUDP clamped to 512
		{65535, 65535, 65535},
		{65535, 1 << 20, 65535},
	} {
		t.Run(fmt.Sprintf("client %d server %d", c.client, c.max), func(t *testing.T) {
			req := ednsQuery("alice.mc.example.com.", dns.TypeA, c.client)
			resp := packs(t, Answer(z, req, c.max, false))
			checkHeader(t, req, resp)
			opt := resp.IsEdns0()
			if opt == nil {
				t.Fatal("no OPT in the response")
			}
			if opt.UDPSize() != c.want || opt.Version() != 0 || opt.Do() || len(opt.Option) != 0 {
				t.Fatalf("OPT = %v, want size %d", opt, c.want)
			}
			if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
				t.Fatalf("got %v", resp)
			}
		})
	}
	t.Run("BADVERS", func(t *testing.T) {
		req := ednsQuery("alice.mc.example.com.", dns.TypeA, 1232)
		req.IsEdns0().SetVersion(1)
		resp := packs(t, Answer(z, req, 1232, false))
		checkHeader(t, req, resp)
		opt := resp.IsEdns0()
		if resp.Rcode != dns.RcodeBadVers || opt == nil || opt.Version() != 0 || len(resp.Answer) != 0 {
			t.Fatalf("got rcode %s: %v", dns.RcodeToString[resp.Rcode], resp)
		}
	})
	t.Run("two OPT records", func(t *testing.T) {
		req := ednsQuery("alice.mc.example.com.", dns.TypeA, 1232)
		req.Extra = append(req.Extra, &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 512}})
		resp := packs(t, Answer(z, req, 1232, false))
		if resp.Rcode != dns.RcodeFormatError || resp.IsEdns0() != nil {
			t.Fatalf("got %v", resp)
		}
	})
	t.Run("OPT not at the root", func(t *testing.T) {
		req := ednsQuery("alice.mc.example.com.", dns.TypeA, 1232)
		req.IsEdns0().Hdr.Name = "mc.example.com."
		resp := packs(t, Answer(z, req, 1232, false))
		if resp.Rcode != dns.RcodeFormatError {
			t.Fatalf("got %v", resp)
		}
	})
	t.Run("OPT on REFUSED and NXDOMAIN", func(t *testing.T) {
		for _, name := range []string{"example.org.", "nobody.mc.example.com."} {
			resp := packs(t, Answer(z, ednsQuery(name, dns.TypeA, 4096), 1232, false))
			if resp.IsEdns0() == nil {
				t.Fatalf("%s: no OPT: %v", name, resp)
			}
		}
	})
}

func TestAnswerTruncation(t *testing.T) {
	z := testZone(t)
	const bigName = "big.mc.example.com."
	for _, c := range []struct {
		name   string
		req    *dns.Msg
		maxUDP int
		tcp    bool
		tc     bool
	}{
		{"UDP without EDNS", query(bigName, dns.TypeTXT), 1232, false, true},
		{"UDP EDNS 1232", ednsQuery(bigName, dns.TypeTXT, 1232), 1232, false, true},
		{"UDP EDNS 4096 but server max 1232", ednsQuery(bigName, dns.TypeTXT, 4096), 1232, false, true},
		{"UDP EDNS 4096, server max 4096", ednsQuery(bigName, dns.TypeTXT, 4096), 4096, false, false},
		{"UDP EDNS 65535 but server max 512", ednsQuery(bigName, dns.TypeTXT, 65535), 512, false, true},
		{"TCP without EDNS", query(bigName, dns.TypeTXT), 1232, true, false},
		{"TCP with EDNS 512", ednsQuery(bigName, dns.TypeTXT, 512), 512, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := Answer(z, c.req, c.maxUDP, c.tcp)
			b, err := resp.Pack()
			if err != nil {
				t.Fatal(err)
			}
			limit := 65535
			if !c.tcp {
				limit = 512
				if o := c.req.IsEdns0(); o != nil {
					limit = min(max(int(o.UDPSize()), 512), c.maxUDP)
				}
			}
			if len(b) > limit {
				t.Fatalf("response is %d bytes, limit %d", len(b), limit)
			}
			resp = packs(t, resp)
			checkHeader(t, c.req, resp)
			if resp.Truncated != c.tc {
				t.Fatalf("TC = %v, want %v", resp.Truncated, c.tc)
			}
			if !resp.Authoritative || resp.Rcode != dns.RcodeSuccess {
				t.Fatalf("AA %v rcode %d", resp.Authoritative, resp.Rcode)
			}
			want := 60
			if c.tc {
				want = 0
			}
			if len(resp.Answer) != want || (c.tc && (len(resp.Ns) != 0 || len(texts(resp.Extra)) != 0)) {
				t.Fatalf("answer has %d records (want %d), authority %d, additional %d", len(resp.Answer), want, len(resp.Ns), len(resp.Extra))
			}
			if (c.req.IsEdns0() != nil) != (resp.IsEdns0() != nil) {
				t.Fatal("OPT not echoed")
			}
		})
	}
}

// glueZone has an apex NS set whose answer fits in 512 bytes but whose glue
// does not.
func glueZone(t testing.TB) *Zone {
	var rrs []dns.RR
	for i := range 6 {
		rrs = append(rrs, mustRR(t, fmt.Sprintf("mc.example.com. 3600 IN NS ns%d.mc.example.com.", i)))
		for j := range 4 {
			rrs = append(rrs,
				mustRR(t, fmt.Sprintf("ns%d.mc.example.com. 300 IN A 192.0.%d.%d", i, i, j)),
				mustRR(t, fmt.Sprintf("ns%d.mc.example.com. 300 IN AAAA 2001:db8::%d:%d", i, i, j)))
		}
	}
	z, err := NewZone(testOrigin, testSOA(t), rrs)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func TestAnswerDropsGlueBeforeTruncating(t *testing.T) {
	z := glueZone(t)
	req := query("mc.example.com.", dns.TypeNS)
	udp := packs(t, Answer(z, req, 1232, false))
	if udp.Truncated || len(udp.Answer) != 6 || len(udp.Extra) != 0 {
		t.Fatalf("UDP: TC %v, %d answers, %d additional", udp.Truncated, len(udp.Answer), len(udp.Extra))
	}
	tcp := packs(t, Answer(z, req, 1232, true))
	if tcp.Truncated || len(tcp.Answer) != 6 || len(tcp.Extra) != 48 {
		t.Fatalf("TCP: TC %v, %d answers, %d additional", tcp.Truncated, len(tcp.Answer), len(tcp.Extra))
	}
	edns := packs(t, Answer(z, ednsQuery("mc.example.com.", dns.TypeNS, 4096), 4096, false))
	if edns.Truncated || len(edns.Answer) != 6 || len(edns.Extra) != 49 {
		t.Fatalf("EDNS 4096: TC %v, %d answers, %d additional", edns.Truncated, len(edns.Answer), len(edns.Extra))
	}
}

func TestAnswerDoesNotModifyZone(t *testing.T) {
	z := testZone(t)
	before := zoneText(z)
	for _, c := range queryCases {
		for _, edns := range []bool{false, true} {
			req := c.msg(true)
			if edns {
				req.SetEdns0(1232, true)
			}
			packs(t, Answer(z, req, 1232, false))
		}
	}
	if after := zoneText(z); after != before {
		t.Fatal("answering changed the zone")
	}
}

func zoneText(z *Zone) string {
	var b strings.Builder
	names := make([]string, 0, len(z.names))
	for n := range z.names {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		for _, s := range z.names[n].sets {
			for _, rr := range s.rrs {
				b.WriteString(rr.String() + "\n")
			}
			for _, rr := range s.glue {
				b.WriteString("glue " + rr.String() + "\n")
			}
		}
	}
	for _, rr := range z.negSOA {
		b.WriteString(rr.String())
	}
	return b.String()
}

func TestAnswerRefusesRecordsInAQuery(t *testing.T) {
	s := startServer(t, testZone(t), ServerOptions{})
	udp, tcp := serverAddr(t, s)
	for _, tr := range []struct{ netw, addr string }{{"udp", udp}, {"tcp", tcp}} {
		req := query("alice.mc.example.com.", dns.TypeA)
		req.Answer = []dns.RR{mustRR(t, "alice.mc.example.com. 300 IN A 192.0.2.1")}
		resp := exchange(t, tr.netw, tr.addr, req)
		if resp.Rcode != dns.RcodeFormatError || len(resp.Answer) != 0 || resp.Authoritative {
			t.Errorf("over %s: a query with an answer record got %v, want FORMERR", tr.netw, resp)
		}
		// Without it, the same query is answered.
		req.Answer = nil
		if resp := exchange(t, tr.netw, tr.addr, req); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
			t.Errorf("over %s: %v", tr.netw, resp)
		}
	}
}

func TestAnswerDOBit(t *testing.T) {
	z := testZone(t)
	for _, do := range []bool{false, true} {
		req := query("alice.mc.example.com.", dns.TypeA)
		req.SetEdns0(4096, do)
		opt := packs(t, Answer(z, req, DefaultMaxUDPSize, false)).IsEdns0()
		if opt == nil || opt.Do() != do {
			t.Errorf("query DO %v: response OPT %v", do, opt)
		}
	}
}
