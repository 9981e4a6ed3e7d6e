package authdns

import (
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestNewZoneAccessors(t *testing.T) {
	z := testZone(t)
	if z.Origin() != testOrigin {
		t.Errorf("Origin = %q", z.Origin())
	}
	if z.Serial() != 2026112701 {
		t.Errorf("Serial = %d", z.Serial())
	}
	// testRecords has 30 lines + 60 TXT + 12 CNAME + 1 A, plus the SOA.
	if z.Len() != 30+60+12+1+1 {
		t.Errorf("Len = %d", z.Len())
	}
	for _, ent := range []string{"a.mc.example.com.", "wild.mc.example.com.", "wc.mc.example.com.", "_tcp.mc.example.com."} {
		n := z.names[ent]
		if n == nil || len(n.sets) != 0 {
			t.Errorf("%s is not an empty non-terminal", ent)
		}
	}
	for name := range z.names {
		if name != strings.ToLower(name) {
			t.Errorf("name %q is not canonical", name)
		}
		if !inZone(name, z.origin) {
			t.Errorf("name %q outside the zone", name)
		}
	}
	if z.Names() != len(z.names) {
		t.Errorf("Names = %d", z.Names())
	}
}

func TestNewZoneOriginForms(t *testing.T) {
	for _, o := range []string{"mc.example.com", "mc.example.com.", "MC.Example.Com", "Mc.example.COM."} {
		z, err := NewZone(o, testSOA(t), nil)
		if err != nil {
			t.Fatalf("%q: %v", o, err)
		}
		if z.Origin() != testOrigin || z.Len() != 1 {
			t.Fatalf("%q: origin %q, len %d", o, z.Origin(), z.Len())
		}
	}
	// An SOA without owner gets the origin.
	soa := testSOA(t)
	soa.Hdr.Name = ""
	if _, err := NewZone(testOrigin, soa, nil); err != nil {
		t.Fatal(err)
	}
}

func TestNewZoneErrors(t *testing.T) {
	for _, c := range []struct {
		name   string
		origin string
		soa    func(*dns.SOA) *dns.SOA
		rrs    []string
		rr     dns.RR
		want   string // in the error
	}{
		{name: "outside the origin", rrs: []string{"evilmc.example.com. 300 IN A 192.0.2.1"}, want: "evilmc.example.com."},
		{name: "parent of the origin", rrs: []string{"example.com. 300 IN A 192.0.2.1"}, want: "not inside the zone"},
		{name: "escaped dot", rrs: []string{`evil\.mc.example.com. 300 IN A 192.0.2.1`}, want: "not inside the zone"},
		{name: "CNAME and A", rrs: []string{"x.mc.example.com. 300 IN A 192.0.2.1", "x.mc.example.com. 300 IN CNAME y.mc.example.com."},
			want: "x.mc.example.com.\t300\tIN\tCNAME\ty.mc.example.com."},
		{name: "A after CNAME, other case", rrs: []string{"x.mc.example.com. 300 IN CNAME y.mc.example.com.", "X.MC.example.com. 300 IN TXT \"t\""},
			want: "cannot coexist"},
		{name: "CNAME at the apex", rrs: []string{"mc.example.com. 300 IN CNAME y.example.org."}, want: "apex"},
		{name: "two CNAMEs", rrs: []string{"x.mc.example.com. 300 IN CNAME y.mc.example.com.", "x.mc.example.com. 300 IN CNAME z.mc.example.com."},
			want: "two CNAMEs"},
		{name: "SOA among the records", rrs: []string{"mc.example.com. 3600 IN SOA a. b. 1 2 3 4 5"}, want: "SOA"},
		{name: "DNAME", rrs: []string{"d.mc.example.com. 300 IN DNAME example.org."}, want: "DNAME"},
		{name: "class CH", rrs: []string{"x.mc.example.com. 300 CH TXT \"t\""}, want: "class"},
		{name: "OPT", rr: &dns.OPT{Hdr: dns.RR_Header{Name: testOrigin, Rrtype: dns.TypeOPT}}, want: "cannot be served"},
		{name: "nil record", rr: nil, want: "nil record"},
		{name: "type mismatch", rr: &dns.A{Hdr: dns.RR_Header{Name: "x.mc.example.com.", Rrtype: dns.TypeAAAA, Class: dns.ClassINET}, A: net.IPv4(192, 0, 2, 1)},
			want: "overflow"},
		{name: "type mismatch, same rdata", rr: &dns.TXT{Hdr: dns.RR_Header{Name: "x.mc.example.com.", Rrtype: dns.TypeSPF, Class: dns.ClassINET}, Txt: []string{"v=spf1"}},
			want: "does not match"},
		{name: "no type", rr: &dns.A{Hdr: dns.RR_Header{Name: "x.mc.example.com."}, A: net.IPv4(192, 0, 2, 1)}, want: "cannot be served"},
		{name: "unpackable rdata", rr: &dns.TXT{Hdr: dns.RR_Header{Name: "x.mc.example.com.", Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{strings.Repeat("x", 300)}},
			want: "255"},
		{name: "root origin", origin: ".", want: "root"},
		{name: "bad origin", origin: "a..b", want: "origin"},
		{name: "no SOA", soa: func(*dns.SOA) *dns.SOA { return nil }, want: "no SOA"},
		{name: "SOA elsewhere", soa: func(s *dns.SOA) *dns.SOA { s.Hdr.Name = "example.org."; return s }, want: "not the origin"},
	} {
		t.Run(c.name, func(t *testing.T) {
			origin := testOrigin
			if c.origin != "" {
				origin = c.origin
			}
			soa := testSOA(t)
			if c.soa != nil {
				soa = c.soa(soa)
			}
			var rrs []dns.RR
			for _, s := range c.rrs {
				rrs = append(rrs, mustRR(t, s))
			}
			if c.rrs == nil {
				rrs = []dns.RR{c.rr}
			}
			if c.origin != "" || c.soa != nil {
				rrs = nil
			}
			z, err := NewZone(origin, soa, rrs)
			if err == nil {
				t.Fatalf("no error; zone has %d records", z.Len())
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestNewZoneCanonicalises(t *testing.T) {
	a := &dns.A{Hdr: dns.RR_Header{Name: "User1.MC.Example.com.", Rrtype: dns.TypeA, Ttl: 300}, A: net.IPv4(192, 0, 2, 1)} // class 0: IN
	dup := &dns.A{Hdr: dns.RR_Header{Name: "user1.mc.example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}
	other := &dns.A{Hdr: dns.RR_Header{Name: "user1.mc.example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 600}, A: net.IPv4(192, 0, 2, 2)}
	z, err := NewZone(testOrigin, testSOA(t), []dns.RR{a, dup, other})
	if err != nil {
		t.Fatal(err)
	}
	if z.Len() != 3 {
		t.Fatalf("Len = %d, want 3 (duplicate kept once)", z.Len())
	}
	// The caller's records are neither modified nor shared.
	if a.Hdr.Name != "User1.MC.Example.com." || a.Hdr.Class != 0 || a.Hdr.Ttl != 300 || other.Hdr.Ttl != 600 {
		t.Fatalf("caller's record modified: %v / %v", a, other)
	}
	a.A = net.IPv4(203, 0, 113, 9)
	other.Hdr.Ttl = 1

	resp := Answer(z, query("USER1.mc.example.com.", dns.TypeA), 1232, false)
	got := texts(resp.Answer)
	want := []string{"USER1.mc.example.com. 60 IN A 192.0.2.1", "USER1.mc.example.com. 60 IN A 192.0.2.2"} // the query's case
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("answer %q, want %q (one TTL per RRset, lowest wins)", got, want)
	}
}

func TestNegativeTTL(t *testing.T) {
	for _, c := range []struct{ ttl, minimum, want uint32 }{{3600, 60, 60}, {30, 300, 30}} {
		soa := testSOA(t)
		soa.Hdr.Ttl, soa.Minttl = c.ttl, c.minimum
		z, err := NewZone(testOrigin, soa, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp := Answer(z, query("nobody.mc.example.com.", dns.TypeA), 1232, false)
		if len(resp.Ns) != 1 || resp.Ns[0].Header().Ttl != c.want {
			t.Fatalf("SOA TTL %d MINIMUM %d: authority %v", c.ttl, c.minimum, resp.Ns)
		}
		resp = Answer(z, query(testOrigin, dns.TypeSOA), 1232, false)
		if resp.Answer[0].Header().Ttl != c.ttl {
			t.Fatalf("apex SOA TTL %d, want %d", resp.Answer[0].Header().Ttl, c.ttl)
		}
	}
}

func TestInZone(t *testing.T) {
	for _, c := range []struct {
		name string
		want bool
	}{
		{"mc.example.com.", true},
		{"a.mc.example.com.", true},
		{"a.b.mc.example.com.", true},
		{`a\\.mc.example.com.`, true}, // label "a\" then a real dot
		{`a\.mc.example.com.`, false}, // one label "a.mc"
		{`a\\\.mc.example.com.`, false},
		{"evilmc.example.com.", false},
		{"example.com.", false},
		{"c.example.com.", false},
		{".mc.example.com.", false},
		{"com.", false},
		{".", false},
		{"", false},
	} {
		if got := inZone(c.name, testOrigin); got != c.want {
			t.Errorf("inZone(%q) = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestAsciiLower(t *testing.T) {
	for in, want := range map[string]string{"": "", "abc.": "abc.", "AbC.": "abc.", `A\065.`: `a\065.`, "ÄB": "Äb"} {
		if got := asciiLower(in); got != want {
			t.Errorf("asciiLower(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = asciiLower("alice.mc.example.com.") }); n != 0 {
		t.Errorf("asciiLower allocates %v times on a lower-case name", n)
	}
}
