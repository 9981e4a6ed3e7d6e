package dns

import (
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// groupRecords are the records a group of this file's zones shares.
func groupRecords(t testing.TB, lines ...string) []dns.RR {
	var out []dns.RR
	for _, l := range lines {
		out = append(out, mustRR(t, l))
	}
	return out
}

// equivalentZones builds the same zone twice: once with every member's
// records written out in rrs, once with groups.
func equivalentZones(t testing.TB) (explicit, grouped *Zone) {
	t.Helper()
	base := []string{
		"mc.example.com. 3600 IN NS ns1.mc.example.com.",
		"mc.example.com. 300 IN MX 10 user3.mc.example.com.", // glue from a member
		"ns1.mc.example.com. 300 IN A 192.0.2.11",
		"*.mc.example.com. 300 IN TXT \"wildcard\"",
		"_acme-challenge.user2.mc.example.com. 60 IN TXT \"token\"", // user2 has a child
		"user4.mc.example.com. 60 IN TXT \"own record\"",            // user4 has a record of its own
		"alias.mc.example.com. 300 IN CNAME user5.mc.example.com.",
	}
	groups := []Group{
		{Labels: []string{"user1", "user2", "user3", "user4"},
			Records: groupRecords(t, "x.example.org. 300 IN A 192.0.2.101", "x.example.org. 300 IN AAAA 2001:db8::101")},
		{Labels: []string{"user5", "user6", "user1"}, // user1 is the first group's
			Records: groupRecords(t, "ignored. 300 IN A 192.0.2.102")},
		{Labels: []string{"user7", "user8"},
			Records: groupRecords(t, "x. 300 IN CNAME user5.mc.example.com.")},
		{Labels: []string{"user9"},
			Records: groupRecords(t, "x. 300 IN CNAME www.example.org.")},
	}
	var rrs []dns.RR
	for _, l := range base {
		rrs = append(rrs, mustRR(t, l))
	}
	var err error
	grouped, err = NewZone(testOrigin, testSOA(t), rrs, groups...)
	if err != nil {
		t.Fatalf("NewZone with groups: %v", err)
	}
	seen := map[string]bool{}
	for _, g := range groups {
		for _, l := range g.Labels {
			if seen[l] {
				continue
			}
			seen[l] = true
			for _, rr := range g.Records {
				c := dns.Copy(rr)
				c.Header().Name = l + "." + testOrigin
				rrs = append(rrs, c)
			}
		}
	}
	explicit, err = NewZone(testOrigin, testSOA(t), rrs)
	if err != nil {
		t.Fatalf("NewZone: %v", err)
	}
	return explicit, grouped
}

// TestGroupsAnswerAsExplicitRecords: a zone with groups answers every query
// exactly as the same zone with each member's records written out.
func TestGroupsAnswerAsExplicitRecords(t *testing.T) {
	explicit, grouped := equivalentZones(t)
	if explicit.Len() != grouped.Len() || explicit.Names() != grouped.Names() {
		t.Errorf("grouped zone: %d records, %d names; explicit: %d, %d",
			grouped.Len(), grouped.Names(), explicit.Len(), explicit.Names())
	}
	if len(grouped.members) != 7 { // user2 and user4 are nodes
		t.Errorf("%d members held compactly, want 7", len(grouped.members))
	}
	var names []string
	for i := range 11 {
		names = append(names, fmt.Sprintf("user%d.mc.example.com.", i), fmt.Sprintf("USER%d.Mc.Example.Com.", i),
			fmt.Sprintf("sub.user%d.mc.example.com.", i), fmt.Sprintf("_acme-challenge.user%d.mc.example.com.", i))
	}
	names = append(names, "mc.example.com.", "alias.mc.example.com.", "nobody.mc.example.com.", "a.b.mc.example.com.")
	for _, name := range names {
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeTXT, dns.TypeMX, dns.TypeANY, dns.TypeNS} {
			for _, edns := range []bool{false, true} {
				q := query(name, qt)
				if edns {
					q = ednsQuery(name, qt, 1232)
				}
				want := packs(t, Answer(explicit, q, DefaultMaxUDPSize, false)).String()
				got := packs(t, Answer(grouped, q, DefaultMaxUDPSize, false)).String()
				if got != want {
					t.Errorf("%s %s: grouped zone answers\n%s\nexplicit zone answers\n%s", name, dns.Type(qt), got, want)
				}
			}
		}
	}
}

func TestGroupMemberAnswer(t *testing.T) {
	_, z := equivalentZones(t)
	r := Answer(z, query("UsEr6.mc.example.com.", dns.TypeA), DefaultMaxUDPSize, false)
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 1 {
		t.Fatalf("member A: %v", r)
	}
	if a := r.Answer[0].(*dns.A); a.Hdr.Name != "user6.mc.example.com." || a.A.String() != "192.0.2.102" || a.Hdr.Ttl != 300 {
		t.Errorf("member A: %v", a)
	}
	// The group's own records are left alone by answers.
	if got := z.groups[1].sets[0].rrs[0].Header().Name; got != testOrigin {
		t.Errorf("the group's record now has owner %q", got)
	}
	// A chain from one member to another, each record with its own owner.
	r = Answer(z, query("user7.mc.example.com.", dns.TypeA), DefaultMaxUDPSize, false)
	if len(r.Answer) != 2 || r.Answer[0].Header().Name != "user7.mc.example.com." ||
		r.Answer[1].Header().Name != "user5.mc.example.com." || r.Answer[1].(*dns.A).A.String() != "192.0.2.102" {
		t.Errorf("member CNAME chain: %v", r)
	}
	// One allocation, as for an explicit name.
	q := query("user6.mc.example.com.", dns.TypeA)
	if n := testing.AllocsPerRun(100, func() { Answer(z, q, DefaultMaxUDPSize, false) }); n != 1 {
		t.Errorf("a member's A answer costs %v allocations, want 1", n)
	}
}

func TestGroupErrors(t *testing.T) {
	a := func() []dns.RR { return groupRecords(t, "x. 300 IN A 192.0.2.1") }
	for _, c := range []struct {
		name  string
		rrs   []string
		group Group
		want  string
	}{
		{name: "upper case", group: Group{Labels: []string{"Alice"}, Records: a()}, want: `"Alice"`},
		{name: "two labels", group: Group{Labels: []string{"a.b"}, Records: a()}, want: `"a.b"`},
		{name: "empty label", group: Group{Labels: []string{""}, Records: a()}, want: `label ""`},
		{name: "64 bytes", group: Group{Labels: []string{strings.Repeat("a", 64)}, Records: a()}, want: "63 bytes"},
		{name: "escape", group: Group{Labels: []string{`a\032b`}, Records: a()}, want: "label"},
		{name: "NS", group: Group{Labels: []string{"a"}, Records: groupRecords(t, "x. 300 IN NS ns.example.org.")}, want: "NS"},
		{name: "MX", group: Group{Labels: []string{"a"}, Records: groupRecords(t, "x. 300 IN MX 10 mx.example.org.")}, want: "MX"},
		{name: "CNAME and A", group: Group{Labels: []string{"a"},
			Records: groupRecords(t, "x. 300 IN CNAME y.example.org.", "x. 300 IN A 192.0.2.1")}, want: "cannot coexist"},
		{name: "CNAME member with a record of its own", rrs: []string{"a.mc.example.com. 60 IN TXT \"t\""},
			group: Group{Labels: []string{"a"}, Records: groupRecords(t, "x. 300 IN CNAME y.example.org.")}, want: "cannot coexist"},
		{name: "nil record", group: Group{Labels: []string{"a"}, Records: []dns.RR{nil}}, want: "nil record"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var rrs []dns.RR
			for _, l := range c.rrs {
				rrs = append(rrs, mustRR(t, l))
			}
			_, err := NewZone(testOrigin, testSOA(t), rrs, c.group)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

// A long origin leaves less room for labels: the whole name must fit in 255
// bytes.
func TestGroupNameLength(t *testing.T) {
	origin := strings.Repeat(strings.Repeat("o", 60)+".", 3) + "example.com." // 196 bytes in wire form
	soa := mustRR(t, origin+" 3600 IN SOA ns1.example.com. h.example.com. 1 2 3 4 5").(*dns.SOA)
	g := Group{Labels: []string{strings.Repeat("a", 58)}, Records: groupRecords(t, "x. 300 IN A 192.0.2.1")}
	if _, err := NewZone(origin, soa, nil, g); err != nil {
		t.Fatalf("255 bytes: %v", err)
	}
	g.Labels[0] += "a"
	if _, err := NewZone(origin, soa, nil, g); err == nil || !strings.Contains(err.Error(), "255") {
		t.Fatalf("256 bytes: err = %v", err)
	}
}

// FuzzGroups: for any query, a zone with groups answers exactly as the same
// zone with the members' records written out.
func FuzzGroups(f *testing.F) {
	explicit, grouped := equivalentZones(f)
	for _, name := range []string{"user1.mc.example.com.", "UsEr7.mc.example.com.", "x.user2.mc.example.com.", "alias.mc.example.com."} {
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeANY} {
			b, err := query(name, qt).Pack()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b, false)
			f.Add(b, true)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, tcp bool) {
		req := new(dns.Msg)
		if err := req.Unpack(data); err != nil {
			return
		}
		want, got := Answer(explicit, req, DefaultMaxUDPSize, tcp), Answer(grouped, req, DefaultMaxUDPSize, tcp)
		if (want == nil) != (got == nil) {
			t.Fatalf("explicit zone: %v; grouped zone: %v", want, got)
		}
		if want != nil && want.String() != got.String() {
			t.Fatalf("grouped zone answers\n%s\nexplicit zone answers\n%s", got, want)
		}
	})
}
