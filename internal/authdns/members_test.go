package authdns

import (
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// groupRecords are the records of a group of this file's zones.
func groupRecords(t testing.TB, lines ...string) []dns.RR {
	var out []dns.RR
	for _, l := range lines {
		out = append(out, mustRR(t, l))
	}
	return out
}

// equivalentZones builds the same zone twice: once with every member's
// records written out in rrs, once with Members.
func equivalentZones(t testing.TB) (explicit, grouped *Zone) {
	t.Helper()
	base := []string{
		"mc.example.com. 3600 IN NS ns1.mc.example.com.",
		"mc.example.com. 300 IN MX 10 user3.mc.example.com.", // glue from a member
		"ns1.mc.example.com. 300 IN A 192.0.2.11",
		"*.mc.example.com. 300 IN TXT \"wildcard\"",
		"_acme-challenge.user2.mc.example.com. 60 IN TXT \"token\"", // user2 is an empty non-terminal of rrs
		"user4.mc.example.com. 60 IN TXT \"own record\"",            // user4 is shadowed
		"alias.mc.example.com. 300 IN CNAME user5.mc.example.com.",
	}
	m := Members{
		Labels: map[string]uint32{
			"user1": 0, "user2": 0, "user3": 0, "user4": 0,
			"user5": 1, "user6": 1,
			"user7": 2, "user8": 2,
			"user9":  3,
			"user10": 4,                  // a group without records
			"user11": 9,                  // no such group
			"Upper":  0, "a.b": 0, "": 0, // never answered
		},
		Groups: [][]dns.RR{
			groupRecords(t, "x.example.org. 300 IN A 192.0.2.101", "x.example.org. 300 IN AAAA 2001:db8::101"),
			groupRecords(t, "ignored. 300 IN A 192.0.2.102"),
			groupRecords(t, "x. 300 IN CNAME user5.mc.example.com."),
			groupRecords(t, "x. 300 IN CNAME www.example.org."),
			nil,
		},
	}
	var rrs []dns.RR
	for _, l := range base {
		rrs = append(rrs, mustRR(t, l))
	}
	var err error
	grouped, err = NewZoneMembers(testOrigin, testSOA(t), rrs, m)
	if err != nil {
		t.Fatalf("NewZoneMembers: %v", err)
	}
	for l, gi := range m.Labels {
		if !IsMemberLabel(l) || int(gi) >= len(m.Groups) || l == "user4" {
			continue
		}
		for _, rr := range m.Groups[gi] {
			c := dns.Copy(rr)
			c.Header().Name = l + "." + testOrigin
			rrs = append(rrs, c)
		}
	}
	explicit, err = NewZone(testOrigin, testSOA(t), rrs)
	if err != nil {
		t.Fatalf("NewZone: %v", err)
	}
	return explicit, grouped
}

// TestMembersAnswerAsExplicitRecords: a zone with members answers every
// query exactly as the same zone with each member's records written out.
func TestMembersAnswerAsExplicitRecords(t *testing.T) {
	explicit, grouped := equivalentZones(t)
	if explicit.Len() != grouped.Len() || explicit.Names() != grouped.Names() {
		t.Errorf("grouped zone: %d records, %d names; explicit: %d, %d",
			grouped.Len(), grouped.Names(), explicit.Len(), explicit.Names())
	}
	var names []string
	for i := range 13 {
		names = append(names, fmt.Sprintf("user%d.mc.example.com.", i), fmt.Sprintf("USER%d.Mc.Example.Com.", i),
			fmt.Sprintf("sub.user%d.mc.example.com.", i), fmt.Sprintf("_acme-challenge.user%d.mc.example.com.", i))
	}
	names = append(names, "mc.example.com.", "alias.mc.example.com.", "nobody.mc.example.com.", "a.b.mc.example.com.",
		"upper.mc.example.com.", "Upper.mc.example.com.")
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

func TestMemberAnswer(t *testing.T) {
	_, z := equivalentZones(t)
	r := Answer(z, query("UsEr6.mc.example.com.", dns.TypeA), DefaultMaxUDPSize, false)
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 1 {
		t.Fatalf("member A: %v", r)
	}
	if a := r.Answer[0].(*dns.A); a.Hdr.Name != "UsEr6.mc.example.com." || a.A.String() != "192.0.2.102" || a.Hdr.Ttl != 300 {
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

func TestMembersErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		rrs  []dns.RR
		want string
	}{
		{name: "NS", rrs: groupRecords(t, "x. 300 IN NS ns.example.org."), want: "NS"},
		{name: "MX", rrs: groupRecords(t, "x. 300 IN MX 10 mx.example.org."), want: "MX"},
		{name: "CNAME and A", rrs: groupRecords(t, "x. 300 IN CNAME y.example.org.", "x. 300 IN A 192.0.2.1"), want: "cannot coexist"},
		{name: "two CNAMEs", rrs: groupRecords(t, "x. 300 IN CNAME y.example.org.", "x. 300 IN CNAME z.example.org."), want: "two CNAMEs"},
		{name: "nil record", rrs: []dns.RR{nil}, want: "nil record"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := Members{Labels: map[string]uint32{"a": 1}, Groups: [][]dns.RR{nil, c.rrs}}
			_, err := NewZoneMembers(testOrigin, testSOA(t), nil, m)
			if err == nil || !strings.Contains(err.Error(), "group 1") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to name group 1 and contain %q", err, c.want)
			}
		})
	}
}

// A member whose group holds a CNAME: a name of rrs with records shadows
// it (no CNAME-and-other-data conflict), an empty non-terminal takes it.
func TestMembersCNAMEAndNamesOfRRs(t *testing.T) {
	rrs := []dns.RR{mustRR(t, "a.mc.example.com. 60 IN TXT \"own\""), mustRR(t, "x.b.mc.example.com. 60 IN TXT \"below\"")}
	m := Members{Labels: map[string]uint32{"a": 0, "b": 0, "c": 0}, Groups: [][]dns.RR{groupRecords(t, "x. 300 IN CNAME t.example.org.")}}
	z, err := NewZoneMembers(testOrigin, testSOA(t), rrs, m)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a": "TXT", "b": "CNAME", "c": "CNAME"} {
		r := Answer(z, query(name+".mc.example.com.", dns.TypeANY), DefaultMaxUDPSize, false)
		r2 := Answer(z, query(name+".mc.example.com.", dns.TypeCNAME), DefaultMaxUDPSize, false)
		got := "TXT"
		if len(r2.Answer) == 1 {
			got = "CNAME"
		}
		if r.Rcode != dns.RcodeSuccess || got != want {
			t.Errorf("%s: %s (CNAME query: %v), want %s", name, dns.RcodeToString[r.Rcode], r2.Answer, want)
		}
	}
	if n := z.Names(); n != 5 { // the apex, a, b, x.b and c
		t.Errorf("%d names, want 5", n)
	}
}

// The zone keeps the caller's map: building it does not walk the members.
func TestMembersMapKept(t *testing.T) {
	labels := map[string]uint32{"user1": 0}
	z, err := NewZoneMembers(testOrigin, testSOA(t), nil, Members{Labels: labels, Groups: [][]dns.RR{groupRecords(t, "x. 300 IN A 192.0.2.1")}})
	if err != nil {
		t.Fatal(err)
	}
	labels["user2"] = 0 // what a caller must not do: shows that the map is shared
	if r := Answer(z, query("user2.mc.example.com.", dns.TypeA), DefaultMaxUDPSize, false); len(r.Answer) != 1 {
		t.Errorf("the zone does not use the caller's map: %v", r)
	}
}

// FuzzMembers: for any query, a zone with members answers exactly as the
// same zone with the members' records written out.
func FuzzMembers(f *testing.F) {
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
