package dnsdata

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/authdns"
)

// fullStatic is a configuration using every part of Static.
func fullStatic() Static {
	return Static{
		Domain: testDomain,
		TTL:    300,
		Root: Records{
			A:    []string{"192.0.2.1"},
			AAAA: []string{"2001:db8::1"},
			MX:   []string{"10 mail.mc.example.com."},
			TXT:  []string{"v=spf1 -all"},
			CAA:  []string{`0 issue "letsencrypt.org"`},
		},
		NSHostIP:   "192.0.2.53",
		NSHostIPv6: "2001:db8::53",
		Entries: []Entry{
			{Subdomain: "mail", Records: Records{A: []string{"192.0.2.25"}}},
			{Subdomain: "www", Records: Records{CNAME: "front.example.net"}},
			{Subdomain: "Static-Name", Records: Records{A: []string{"192.0.2.26"}}},
		},
	}
}

// fullRows holds users on every kind of core, runtime records and ACME values.
func fullRows() *rows {
	r := newRows()
	r.cores["core1"] = CoreInfo{ID: "core1", IP: "192.0.2.10", IPv6: "2001:db8::10", Available: true}
	r.cores["core2"] = CoreInfo{ID: "core2", IP: "192.0.2.20", Available: true}
	r.cores["core3"] = CoreInfo{ID: "core3", CNAME: "edge.example.net", Available: true}
	r.cores["core4"] = CoreInfo{ID: "core4", IP: "192.0.2.40", IPv6: "2001:db8::40", Available: false}
	r.setUser("alice", "core1")
	r.setUser("bob", "core2")
	r.setUser("carol", "core3")
	r.setUser("dave", "no-such-core")
	r.setUser("erin", "core4")
	r.setUser("www", "core1")  // a static name: the static entry stays
	r.setUser("mail", "core2") // idem
	r.records["app"] = Records{A: []string{"192.0.2.81"}}
	r.records["_dmarc"] = Records{TXT: []string{"v=DMARC1; p=none"}}
	r.challenges["_acme-challenge.mc.example.com"] = map[string]string{"k1": "value-one", "k2": "value-two"}
	r.challenges["_acme-challenge.other.example.org"] = map[string]string{"k": "outside"}
	r.challenges["_acme-challenge.evilmc.example.com"] = map[string]string{"k": "outside-too"}
	return r
}

func TestBuildFullZone(t *testing.T) {
	z, warnings := mustBuild(t, fullStatic(), fullRows(), 2026)
	if len(warnings) != 0 {
		// A username equal to a static name is simply not answered as a
		// user: nothing to warn about.
		t.Errorf("warnings: %q, want none", warnings)
	}
	if z.Serial() != 2026 {
		t.Errorf("zone serial %d, want 2026", z.Serial())
	}
	if z.Origin() != "mc.example.com." {
		t.Errorf("origin %q", z.Origin())
	}

	const (
		noerror  = dns.RcodeSuccess
		nxdomain = dns.RcodeNameError
		refused  = dns.RcodeRefused
	)
	cases := []struct {
		name  string
		qtype uint16
		rcode int
		want  []string // rdata of the answer records of qtype (CNAME for a CNAME answer)
		cname []string // rdata of the CNAMEs in the answer
	}{
		// Apex from dns.records.root, default NS core.{domain}, default SOA.
		{"mc.example.com", dns.TypeSOA, noerror, []string{"core.mc.example.com. hostmaster.mc.example.com. 2026 3600 600 1209600 300"}, nil},
		{"mc.example.com", dns.TypeNS, noerror, []string{"core.mc.example.com."}, nil},
		{"MC.Example.COM", dns.TypeA, noerror, []string{"192.0.2.1"}, nil},
		{"mc.example.com", dns.TypeAAAA, noerror, []string{"2001:db8::1"}, nil},
		{"mc.example.com", dns.TypeMX, noerror, []string{"10 mail.mc.example.com."}, nil},
		{"mc.example.com", dns.TypeTXT, noerror, []string{`"v=spf1 -all"`}, nil},
		{"mc.example.com", dns.TypeCAA, noerror, []string{`0 issue "letsencrypt.org"`}, nil},
		// The NS host gets dns.publicIp (and this core's IPv6).
		{"core.mc.example.com", dns.TypeA, noerror, []string{"192.0.2.53"}, nil},
		{"core.mc.example.com", dns.TypeAAAA, noerror, []string{"2001:db8::53"}, nil},
		// Static entries (names lower-cased).
		{"mail.mc.example.com", dns.TypeA, noerror, []string{"192.0.2.25"}, nil},
		{"static-name.mc.example.com", dns.TypeA, noerror, []string{"192.0.2.26"}, nil},
		{"www.mc.example.com", dns.TypeCNAME, noerror, []string{"front.example.net."}, nil},
		{"www.mc.example.com", dns.TypeA, noerror, []string{}, []string{"front.example.net."}},
		// Runtime records.
		{"app.mc.example.com", dns.TypeA, noerror, []string{"192.0.2.81"}, nil},
		{"_dmarc.mc.example.com", dns.TypeTXT, noerror, []string{`"v=DMARC1; p=none"`}, nil},
		// Per-core names, available or not.
		{"core1.mc.example.com", dns.TypeA, noerror, []string{"192.0.2.10"}, nil},
		{"core1.mc.example.com", dns.TypeAAAA, noerror, []string{"2001:db8::10"}, nil},
		{"core3.mc.example.com", dns.TypeCNAME, noerror, []string{"edge.example.net."}, nil},
		{"core4.mc.example.com", dns.TypeA, noerror, []string{"192.0.2.40"}, nil},
		// Users: their core's addresses.
		{"alice.mc.example.com", dns.TypeA, noerror, []string{"192.0.2.10"}, nil},
		{"ALICE.mc.example.com", dns.TypeAAAA, noerror, []string{"2001:db8::10"}, nil},
		{"bob.mc.example.com", dns.TypeA, noerror, []string{"192.0.2.20"}, nil},
		{"bob.mc.example.com", dns.TypeAAAA, noerror, []string{}, nil}, // NODATA: core2 has no IPv6
		// A core with only a CNAME: its users get the CNAME.
		{"carol.mc.example.com", dns.TypeCNAME, noerror, []string{"edge.example.net."}, nil},
		{"carol.mc.example.com", dns.TypeA, noerror, []string{}, []string{"edge.example.net."}},
		// A user whose core is unknown is not in the zone.
		{"dave.mc.example.com", dns.TypeA, nxdomain, []string{}, nil},
		// Availability only steers the reserved names: a user on an
		// unavailable core still resolves to it.
		{"erin.mc.example.com", dns.TypeA, noerror, []string{"192.0.2.40"}, nil},
		// Usernames equal to static names do not override them.
		{"www.mc.example.com", dns.TypeAAAA, noerror, []string{}, []string{"front.example.net."}},
		// Reserved names: every available core (core4 is not), CNAME-only cores have no address.
		{"reg.mc.example.com", dns.TypeA, noerror, []string{"192.0.2.10", "192.0.2.20"}, nil},
		{"lsc.mc.example.com", dns.TypeA, noerror, []string{"192.0.2.10", "192.0.2.20"}, nil},
		{"access.mc.example.com", dns.TypeA, noerror, []string{"192.0.2.10", "192.0.2.20"}, nil},
		{"mfa.mc.example.com", dns.TypeA, noerror, []string{"192.0.2.10", "192.0.2.20"}, nil},
		{"mfa.mc.example.com", dns.TypeAAAA, noerror, []string{"2001:db8::10"}, nil},
		// ACME values: both values at one name.
		{"_acme-challenge.mc.example.com", dns.TypeTXT, noerror, []string{`"value-one"`, `"value-two"`}, nil},
		// Challenges outside the domain are not served.
		{"_acme-challenge.other.example.org", dns.TypeTXT, refused, []string{}, nil},
		{"_acme-challenge.evilmc.example.com", dns.TypeTXT, refused, []string{}, nil},
		{"nothing.mc.example.com", dns.TypeA, nxdomain, []string{}, nil},
	}
	for _, c := range cases {
		t.Run(c.name+"/"+dns.TypeToString[c.qtype], func(t *testing.T) {
			resp := ask(z, c.name, c.qtype)
			if resp.Rcode != c.rcode {
				t.Fatalf("rcode %s, want %s:\n%v", dns.RcodeToString[resp.Rcode], dns.RcodeToString[c.rcode], resp)
			}
			if got := rdata(resp.Answer, c.qtype); !slices.Equal(got, c.want) {
				t.Errorf("answer %q, want %q", got, c.want)
			}
			if c.qtype != dns.TypeCNAME {
				want := c.cname
				if want == nil {
					want = []string{}
				}
				if got := rdata(resp.Answer, dns.TypeCNAME); !slices.Equal(got, want) {
					t.Errorf("CNAMEs %q, want %q", got, want)
				}
			}
			if c.rcode == dns.RcodeNameError && soaOf(resp.Ns) == nil {
				t.Errorf("NXDOMAIN without the SOA in authority:\n%v", resp)
			}
		})
	}

	t.Run("TTLs", func(t *testing.T) {
		for _, n := range []string{"alice", "reg", "app", "mail", "core"} {
			resp := ask(z, n+"."+testDomain, dns.TypeA)
			for _, rr := range resp.Answer {
				if rr.Header().Ttl != 300 {
					t.Errorf("%s: TTL %d, want dns.defaultTTL 300", rr, rr.Header().Ttl)
				}
			}
		}
		resp := ask(z, "_acme-challenge."+testDomain, dns.TypeTXT)
		for _, rr := range resp.Answer {
			if rr.Header().Ttl != 60 {
				t.Errorf("%s: TTL %d, want 60 for a DNS-01 value", rr, rr.Header().Ttl)
			}
		}
	})

	t.Run("NS glue", func(t *testing.T) {
		resp := ask(z, testDomain, dns.TypeNS)
		if got := rdata(resp.Extra, dns.TypeA); !slices.Equal(got, []string{"192.0.2.53"}) {
			t.Errorf("glue A %q, want core.%s's address", got, testDomain)
		}
	})
}

func TestBuildApex(t *testing.T) {
	t.Run("explicit NS replaces the default", func(t *testing.T) {
		st := fullStatic()
		st.Root.NS = []string{"ns1.example.org", "ns2.example.org."}
		z, _ := mustBuild(t, st, newRows(), 1)
		if got := rdata(ask(z, testDomain, dns.TypeNS).Answer, dns.TypeNS); !slices.Equal(got, []string{"ns1.example.org.", "ns2.example.org."}) {
			t.Errorf("NS %q", got)
		}
	})
	t.Run("no public IP: default NS without an address", func(t *testing.T) {
		z, warnings := mustBuild(t, Static{Domain: testDomain, TTL: 60}, newRows(), 7)
		if len(warnings) != 0 {
			t.Errorf("warnings %q", warnings)
		}
		if got := rdata(ask(z, testDomain, dns.TypeNS).Answer, dns.TypeNS); !slices.Equal(got, []string{"core.mc.example.com."}) {
			t.Errorf("NS %q", got)
		}
		if resp := ask(z, "core."+testDomain, dns.TypeA); resp.Rcode != dns.RcodeNameError {
			t.Errorf("core.%s: %s, want NXDOMAIN", testDomain, dns.RcodeToString[resp.Rcode])
		}
		// Only the SOA and the NS.
		if z.Len() != 2 {
			t.Errorf("zone has %d records, want 2 (SOA, NS)", z.Len())
		}
	})
	t.Run("custom SOA text, serial replaced", func(t *testing.T) {
		st := fullStatic()
		st.RootSOA = "ns1.example.org. admin.example.org. 1 7200 900 1209600 120"
		z, _ := mustBuild(t, st, newRows(), 99)
		resp := ask(z, testDomain, dns.TypeSOA)
		soa := soaOf(resp.Answer)
		if soa == nil {
			t.Fatalf("no SOA: %v", resp)
		}
		if soa.Ns != "ns1.example.org." || soa.Mbox != "admin.example.org." || soa.Serial != 99 ||
			soa.Refresh != 7200 || soa.Retry != 900 || soa.Expire != 1209600 || soa.Minttl != 120 || soa.Hdr.Ttl != 300 {
			t.Errorf("SOA %v", soa)
		}
		// Negative answers carry it with TTL min(TTL, MINIMUM) (RFC 2308).
		neg := ask(z, "nothing."+testDomain, dns.TypeA)
		if s := soaOf(neg.Ns); s == nil || s.Serial != 99 || s.Hdr.Ttl != 120 {
			t.Errorf("negative SOA %v", neg.Ns)
		}
	})
	t.Run("serial passed through", func(t *testing.T) {
		for _, serial := range []uint32{0, 1, 2026112701, math.MaxUint32} {
			z, _ := mustBuild(t, fullStatic(), fullRows(), serial)
			if z.Serial() != serial {
				t.Errorf("Serial() %d, want %d", z.Serial(), serial)
			}
			if s := soaOf(ask(z, testDomain, dns.TypeSOA).Answer); s == nil || s.Serial != serial {
				t.Errorf("answered SOA %v, want serial %d", s, serial)
			}
		}
	})
	t.Run("errors in the root are errors", func(t *testing.T) {
		st := fullStatic()
		st.RootSOA = "not an soa"
		if _, _, err := Build(st, newRows(), 1); err == nil || !strings.Contains(err.Error(), "dns.records.root.soa") {
			t.Errorf("bad SOA: %v", err)
		}
		st = fullStatic()
		st.Root.MX = []string{"nonsense"}
		if _, _, err := Build(st, newRows(), 1); err == nil || !strings.Contains(err.Error(), "dns.records.root") {
			t.Errorf("bad root MX: %v", err)
		}
	})
}

func TestBuildConflicts(t *testing.T) {
	t.Run("static entry beats a dns-record row", func(t *testing.T) {
		st := Static{Domain: testDomain, TTL: 60, Entries: []Entry{{Subdomain: "www", Records: Records{A: []string{"192.0.2.80"}}}}}
		r := newRows()
		r.records["www"] = Records{A: []string{"192.0.2.99"}}
		r.records["other"] = Records{A: []string{"192.0.2.98"}}
		z, warnings := mustBuild(t, st, r, 1)
		if got := rdata(ask(z, "www."+testDomain, dns.TypeA).Answer, dns.TypeA); !slices.Equal(got, []string{"192.0.2.80"}) {
			t.Errorf("www A %q, want the static 192.0.2.80 only", got)
		}
		if got := rdata(ask(z, "other."+testDomain, dns.TypeA).Answer, dns.TypeA); !slices.Equal(got, []string{"192.0.2.98"}) {
			t.Errorf("other A %q", got)
		}
		if w := warningWith(warnings, "www.mc.example.com", "dns.staticEntries", "dns-record row"); w == "" {
			t.Errorf("no warning naming www and both sources: %q", warnings)
		}
		if len(warnings) != 1 {
			t.Errorf("warnings %q, want exactly one", warnings)
		}
	})
	t.Run("static entry beats dns.publicIp at core", func(t *testing.T) {
		st := Static{Domain: testDomain, TTL: 60, NSHostIP: "192.0.2.53",
			Entries: []Entry{{Subdomain: "core", Records: Records{A: []string{"192.0.2.54"}}}}}
		z, warnings := mustBuild(t, st, newRows(), 1)
		if got := rdata(ask(z, "core."+testDomain, dns.TypeA).Answer, dns.TypeA); !slices.Equal(got, []string{"192.0.2.54"}) {
			t.Errorf("core A %q", got)
		}
		if warningWith(warnings, "core.mc.example.com", "dns.staticEntries", "dns.publicIp") == "" {
			t.Errorf("warnings %q", warnings)
		}
	})
	t.Run("static entry beats a reserved name", func(t *testing.T) {
		st := Static{Domain: testDomain, TTL: 60, Entries: []Entry{{Subdomain: "reg", Records: Records{A: []string{"192.0.2.70"}}}}}
		r := newRows()
		r.cores["core1"] = CoreInfo{ID: "core1", IP: "192.0.2.10", Available: true}
		z, warnings := mustBuild(t, st, r, 1)
		if got := rdata(ask(z, "reg."+testDomain, dns.TypeA).Answer, dns.TypeA); !slices.Equal(got, []string{"192.0.2.70"}) {
			t.Errorf("reg A %q", got)
		}
		if got := rdata(ask(z, "mfa."+testDomain, dns.TypeA).Answer, dns.TypeA); !slices.Equal(got, []string{"192.0.2.10"}) {
			t.Errorf("mfa A %q", got)
		}
		if warningWith(warnings, "reg.mc.example.com", "reserved name") == "" {
			t.Errorf("warnings %q", warnings)
		}
	})
	t.Run("a row in other case does not merge into a static entry", func(t *testing.T) {
		st := Static{Domain: testDomain, TTL: 60, Entries: []Entry{{Subdomain: "www", Records: Records{A: []string{"192.0.2.80"}}}}}
		r := newRows()
		r.records["WWW"] = Records{CNAME: "elsewhere.example.net"}
		z, warnings := mustBuild(t, st, r, 1)
		if got := rdata(ask(z, "www."+testDomain, dns.TypeA).Answer, dns.TypeA); !slices.Equal(got, []string{"192.0.2.80"}) {
			t.Errorf("www A %q", got)
		}
		if warningWith(warnings, "www.mc.example.com", "dns-record row") == "" {
			t.Errorf("warnings %q", warnings)
		}
	})
	t.Run("a core name is not taken by a user", func(t *testing.T) {
		r := newRows()
		r.cores["core1"] = CoreInfo{ID: "core1", IP: "192.0.2.10", Available: true}
		r.cores["core2"] = CoreInfo{ID: "core2", IP: "192.0.2.20", Available: true}
		r.setUser("core1", "core2")
		z, warnings := mustBuild(t, Static{Domain: testDomain, TTL: 60}, r, 1)
		if got := rdata(ask(z, "core1."+testDomain, dns.TypeA).Answer, dns.TypeA); !slices.Equal(got, []string{"192.0.2.10"}) {
			t.Errorf("core1 A %q", got)
		}
		if len(warnings) != 0 {
			t.Errorf("warnings %q", warnings)
		}
	})
	t.Run("no available core: no reserved names", func(t *testing.T) {
		r := newRows()
		r.cores["core1"] = CoreInfo{ID: "core1", IP: "192.0.2.10", Available: false}
		r.cores["core2"] = CoreInfo{ID: "core2", CNAME: "x.example.net", Available: true}
		z, _ := mustBuild(t, Static{Domain: testDomain, TTL: 60}, r, 1)
		for _, n := range ReservedNames {
			if resp := ask(z, n+"."+testDomain, dns.TypeA); resp.Rcode != dns.RcodeNameError {
				t.Errorf("%s: %s %v, want NXDOMAIN", n, dns.RcodeToString[resp.Rcode], resp.Answer)
			}
		}
	})
}

func TestBuildSkipsBadValues(t *testing.T) {
	st := Static{Domain: testDomain, TTL: 60, Entries: []Entry{
		{Subdomain: "bad-static", Records: Records{CAA: []string{"not a caa"}}},
		{Subdomain: "good-static", Records: Records{A: []string{"192.0.2.5"}}},
	}}
	r := newRows()
	r.records["mail"] = Records{MX: []string{"nonsense"}}
	r.records["badip"] = Records{A: []string{"300.1.1.1"}}
	r.records["v4in6"] = Records{AAAA: []string{"192.0.2.1"}}
	r.records["ok"] = Records{A: []string{"192.0.2.6"}, MX: []string{"10 mail.example.org."}}
	r.records["cname-and-a"] = Records{CNAME: "t.example.org", A: []string{"192.0.2.7"}} // never via SetRecords, but rows are shared
	r.records[`outside\`] = Records{A: []string{"192.0.2.8"}}                            // one label "outside.mc": not in the zone
	// An available core whose address does not parse must not take the
	// reserved names of the other cores down with it.
	r.cores["broken"] = CoreInfo{ID: "broken", IP: "not-an-ip", Available: true}
	r.cores["core1"] = CoreInfo{ID: "core1", IP: "192.0.2.10", Available: true}
	r.setUser("alice", "core1")
	r.setUser("bert", "broken")

	z, warnings := mustBuild(t, st, r, 5)
	for _, want := range [][]string{
		{"mail.mc.example.com", "dns-record row", "mx", "nonsense", "skipped"},
		{"badip.mc.example.com", "300.1.1.1"},
		{"v4in6.mc.example.com", "aaaa"},
		{"bad-static.mc.example.com", "dns.staticEntries", "caa"},
		{"broken.mc.example.com", "core-info row"},
		{"cname-and-a.mc.example.com", "CNAME"},
		{"not inside the zone"},
	} {
		if warningWith(warnings, want...) == "" {
			t.Errorf("no warning with %q in %q", want, warnings)
		}
	}
	for _, n := range []string{"mail", "badip", "v4in6", "bad-static", "broken", "bert", "cname-and-a"} {
		if resp := ask(z, n+"."+testDomain, dns.TypeANY); resp.Rcode != dns.RcodeNameError {
			t.Errorf("%s: %s, want NXDOMAIN (skipped)", n, dns.RcodeToString[resp.Rcode])
		}
	}
	for n, want := range map[string]string{"ok": "192.0.2.6", "good-static": "192.0.2.5", "alice": "192.0.2.10", "reg": "192.0.2.10"} {
		if got := rdata(ask(z, n+"."+testDomain, dns.TypeA).Answer, dns.TypeA); !slices.Equal(got, []string{want}) {
			t.Errorf("%s A %q, want %s", n, got, want)
		}
	}
}

func TestBuildChallenges(t *testing.T) {
	r := newRows()
	r.challenges["_acme-challenge.mc.example.com"] = map[string]string{"a": "v1", "b": "v2"}
	r.challenges["_ACME-Challenge.Sub.MC.example.com"] = map[string]string{"c": "v3"}
	r.challenges["_acme-challenge.example.com"] = map[string]string{"d": "parent"}
	r.challenges["_acme-challenge.mc.example.com.evil.org"] = map[string]string{"e": "suffix"}
	z, warnings := mustBuild(t, Static{Domain: testDomain, TTL: 300}, r, 1)
	if len(warnings) != 0 {
		t.Errorf("warnings %q", warnings)
	}
	if got := txtValues(ask(z, "_acme-challenge."+testDomain, dns.TypeTXT).Answer); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Errorf("apex challenge %q", got)
	}
	if got := txtValues(ask(z, "_acme-challenge.sub."+testDomain, dns.TypeTXT).Answer); !slices.Equal(got, []string{"v3"}) {
		t.Errorf("sub challenge %q", got)
	}
	// SOA, NS, three TXT: nothing of the outside challenges.
	if z.Len() != 5 {
		t.Errorf("zone has %d records, want 5", z.Len())
	}

	t.Run("a CNAME at _acme-challenge keeps the zone buildable", func(t *testing.T) {
		// ACME delegated elsewhere by a static CNAME while a DNS-01 value is
		// published there: the value cannot be served, the zone still must.
		st := Static{Domain: testDomain, TTL: 300, Entries: []Entry{
			{Subdomain: "_acme-challenge", Records: Records{CNAME: "acme.example.net"}},
		}}
		r.setUser("alice", "core1")
		r.cores["core1"] = CoreInfo{ID: "core1", IP: "192.0.2.10"}
		z, warnings := mustBuild(t, st, r, 2)
		if got := rdata(ask(z, "_acme-challenge."+testDomain, dns.TypeCNAME).Answer, dns.TypeCNAME); !slices.Equal(got, []string{"acme.example.net."}) {
			t.Errorf("CNAME %q", got)
		}
		if got := txtValues(ask(z, "_acme-challenge.sub."+testDomain, dns.TypeTXT).Answer); !slices.Equal(got, []string{"v3"}) {
			t.Errorf("sub challenge %q", got)
		}
		if got := rdata(ask(z, "alice."+testDomain, dns.TypeA).Answer, dns.TypeA); !slices.Equal(got, []string{"192.0.2.10"}) {
			t.Errorf("alice %q", got)
		}
		if warningWith(warnings, "_acme-challenge.mc.example.com", "CNAME") == "" {
			t.Errorf("warnings %q", warnings)
		}
	})
}

func TestBuildUserRows(t *testing.T) {
	st := Static{Domain: testDomain, TTL: 60, Entries: []Entry{{Subdomain: "www", Records: Records{A: []string{"192.0.2.80"}}}}}
	r := newRows()
	r.cores["core1"] = CoreInfo{ID: "core1", IP: "192.0.2.10", Available: true}
	r.cores["edge"] = CoreInfo{ID: "edge", CNAME: "edge.example.net", Available: true}
	r.setUser("Upper", "core1") // not written through CheckUsername: lower-cased
	r.setUser("WWW", "core1")   // a static name in another case: the static entry stays
	r.setUser("a.b", "core1")   // several labels: records of its own
	r.setUser("", "core1")      // no name at all: skipped with a warning
	r.setUser("carol", "edge")  // a CNAME core's user...
	r.setUser("dan", "edge")    // ...twice
	r.setUser("frank", "core1") // an ordinary one with a DNS-01 value below it
	r.setUser("gina", "core1")  // and one with a value at its own name
	r.setUser("_under-ok", "core1")
	r.challenges["carol.mc.example.com"] = map[string]string{"k": "next to a CNAME"}
	r.challenges["_acme-challenge.dan.mc.example.com"] = map[string]string{"k": "below a CNAME"}
	r.challenges["_acme-challenge.frank.mc.example.com"] = map[string]string{"k": "frank's"}
	r.challenges["gina.mc.example.com"] = map[string]string{"k": "gina's"}
	z, warnings := mustBuild(t, st, r, 1)

	for name, want := range map[string]string{"upper": "192.0.2.10", "UPPER": "192.0.2.10", "www": "192.0.2.80",
		"a.b": "192.0.2.10", "frank": "192.0.2.10", "gina": "192.0.2.10", "_under-ok": "192.0.2.10"} {
		if got := rdata(ask(z, name+"."+testDomain, dns.TypeA).Answer, dns.TypeA); !slices.Equal(got, []string{want}) {
			t.Errorf("%s A %q, want %s", name, got, want)
		}
	}
	for _, name := range []string{"carol", "dan"} {
		if got := rdata(ask(z, name+"."+testDomain, dns.TypeCNAME).Answer, dns.TypeCNAME); !slices.Equal(got, []string{"edge.example.net."}) {
			t.Errorf("%s CNAME %q", name, got)
		}
	}
	for name, want := range map[string]string{"_acme-challenge.dan": "below a CNAME", "_acme-challenge.frank": "frank's", "gina": "gina's"} {
		if got := txtValues(ask(z, name+"."+testDomain, dns.TypeTXT).Answer); !slices.Equal(got, []string{want}) {
			t.Errorf("%s TXT %q, want %q", name, got, want)
		}
	}
	if resp := ask(z, "carol."+testDomain, dns.TypeTXT); len(txtValues(resp.Answer)) != 0 {
		t.Errorf("carol TXT: %v, want the CNAME only", resp.Answer)
	}
	if warningWith(warnings, "carol.mc.example.com", "CNAME") == "" {
		t.Errorf("no warning for the value next to carol's CNAME: %q", warnings)
	}
	if warningWith(warnings, "user-core row", "skipped") == "" {
		t.Errorf("no warning for the user without a name: %q", warnings)
	}
	if len(warnings) != 2 {
		t.Errorf("warnings %q, want 2", warnings)
	}
}

// TestBuildUserCost: a rebuild costs the zone's other names, not its users
// (about 1 KB per user when each had records of its own, 64 B when the zone
// still copied their labels): the zone keeps the rows' map of users.
func TestBuildUserCost(t *testing.T) {
	const users = 20000
	r := newRows()
	r.cores["core1"] = CoreInfo{ID: "core1", IP: "192.0.2.10", IPv6: "2001:db8::10", Available: true}
	for i := range users {
		r.setUser(fmt.Sprintf("user%d", i), "core1")
	}
	st := Static{Domain: testDomain, TTL: 60}
	mustBuild(t, st, r, 1) // warm-up
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	z, _ := mustBuild(t, st, r, 2)
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 200<<10 {
		t.Errorf("building a zone of %d users allocates %d bytes, want under 200 KiB whatever the number of users", users, n)
	}
	if z.Names() < users {
		t.Errorf("%d names, want at least %d", z.Names(), users)
	}
	if got := rdata(ask(z, "user12345."+testDomain, dns.TypeAAAA).Answer, dns.TypeAAAA); !slices.Equal(got, []string{"2001:db8::10"}) {
		t.Errorf("user12345 AAAA %q", got)
	}
}

// BenchmarkBuildUsers: a rebuild of a 20,000-user zone (what every change
// costs the watcher).
func BenchmarkBuildUsers(b *testing.B) {
	r := newRows()
	r.cores["core1"] = CoreInfo{ID: "core1", IP: "192.0.2.10", IPv6: "2001:db8::10", Available: true}
	for i := range 20000 {
		r.setUser(fmt.Sprintf("user%d", i), "core1")
	}
	st := Static{Domain: testDomain, TTL: 60}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Build(st, r, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildNames: a rebuild of a zone whose cost is its other names
// (every phase of Build: apex, CAA, static entries, runtime rows, cores and
// reserved names, odd user rows, ACME values), not its users.
func BenchmarkBuildNames(b *testing.B) {
	st := fullStatic()
	st.Root.CAA = nil
	st.CAA = CAA{Directories: []string{"https://acme.test/dir"}, Identity: "ca.test", Methods: []string{"dns-01"}, WildMethods: []string{"dns-01"}}
	r := fullRows()
	r.accounts["acme-account/1"] = account{Directory: "https://acme.test/dir", URI: "https://acme.test/acct/1"}
	for i := range 200 {
		r.records[fmt.Sprintf("rec%d", i)] = Records{A: []string{"192.0.2.99"}, TXT: []string{"v"}}
		r.cores[fmt.Sprintf("c%d", i)] = CoreInfo{ID: fmt.Sprintf("c%d", i), IP: "192.0.2.50", Available: true}
		r.setUser(fmt.Sprintf("Odd.User%d", i), "core1")
		r.challenges[fmt.Sprintf("_acme-challenge.u%d.%s", i, testDomain)] = map[string]string{"k": "v"}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Build(st, r, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// A zone keeps the users it was built with while the rows change (they copy
// the map the zone holds before changing it).
func TestBuildZoneKeepsItsUsers(t *testing.T) {
	st := Static{Domain: testDomain, TTL: 60}
	r := newRows()
	r.cores["core1"] = CoreInfo{ID: "core1", IP: "192.0.2.10", Available: true}
	r.cores["core2"] = CoreInfo{ID: "core2", IP: "192.0.2.20", Available: true}
	r.setUser("alice", "core1")
	r.setUser("bob", "core1")
	z1, _ := mustBuild(t, st, r, 1)
	r.setUser("carol", "core1")
	r.deleteUser("alice")
	r.setUser("bob", "core2")
	z2, _ := mustBuild(t, st, r, 2)
	r.deleteUser("carol") // after z2 too
	for _, c := range []struct {
		z    *authdns.Zone
		name string
		want []string
	}{
		{z1, "alice", []string{"192.0.2.10"}}, {z1, "bob", []string{"192.0.2.10"}}, {z1, "carol", []string{}},
		{z2, "alice", []string{}}, {z2, "bob", []string{"192.0.2.20"}}, {z2, "carol", []string{"192.0.2.10"}},
	} {
		if got := rdata(ask(c.z, c.name+"."+testDomain, dns.TypeA).Answer, dns.TypeA); !slices.Equal(got, c.want) {
			t.Errorf("zone %d: %s A %q, want %q", c.z.Serial(), c.name, got, c.want)
		}
	}
	if id, ok := r.user("bob"); !ok || id != "core2" {
		t.Errorf("rows: bob on %q, %v", id, ok)
	}
}

// Zones answer while the rows change and rebuild (go test -race: a map
// written while a zone reads it would be reported, or crash the runtime).
func TestBuildRowsChangeUnderQueries(t *testing.T) {
	st := Static{Domain: testDomain, TTL: 60}
	r := newRows()
	r.cores["core1"] = CoreInfo{ID: "core1", IP: "192.0.2.10", Available: true}
	for i := range 200 {
		r.setUser(fmt.Sprintf("user%d", i), "core1")
	}
	z, _ := mustBuild(t, st, r, 1)
	var current atomic.Pointer[authdns.Zone]
	current.Store(z)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if resp := ask(current.Load(), fmt.Sprintf("user%d.%s", i%200, testDomain), dns.TypeA); resp.Rcode != dns.RcodeSuccess {
					t.Errorf("user%d: %s", i%200, dns.RcodeToString[resp.Rcode])
					return
				}
			}
		})
	}
	for gen := range 50 {
		for i := range 20 {
			r.setUser(fmt.Sprintf("new%d-%d", gen, i), "core1")
			r.deleteUser(fmt.Sprintf("new%d-%d", max(gen-1, 0), i))
		}
		z, _, err := Build(st, r, uint32(gen+2))
		if err != nil {
			t.Fatal(err)
		}
		current.Store(z)
	}
	close(stop)
	wg.Wait()
}
