package dnsdata

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// fuzzRecords makes Records from one string per field, values split on "\n".
func fuzzRecords(a, aaaa, cname, ns, mx, txt, caa string) Records {
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}
	return Records{A: split(a), AAAA: split(aaaa), CNAME: cname, NS: split(ns), MX: split(mx), TXT: split(txt), CAA: split(caa)}
}

// checkBuildSurvives builds a known zone plus rec placed by where (0: a
// dns-record row, 1: a static entry, 2: a core's addresses, 3: the records
// of an existing user's name) and checks that Build neither panics nor
// fails, and that everything else is still answered: a bad value is
// skipped with a warning, never a zone that cannot be built.
func checkBuildSurvives(t *testing.T, where byte, sub string, rec Records) {
	t.Helper()
	st := Static{Domain: testDomain, TTL: 60, NSHostIP: "192.0.2.53",
		Entries: []Entry{{Subdomain: "fixed", Records: Records{A: []string{"192.0.2.2"}}}}}
	r := newRows()
	r.cores["core1"] = CoreInfo{ID: "core1", IP: "192.0.2.10", Available: true}
	r.setUser("alice", "core1")
	r.records["app"] = Records{A: []string{"192.0.2.81"}}
	r.challenges["_acme-challenge."+testDomain] = map[string]string{"k": "value"}
	switch where % 4 {
	case 0:
		r.records[sub] = rec
	case 1:
		st.Entries = append(st.Entries, Entry{Subdomain: sub, Records: rec})
	case 2:
		var ip, ip6 string
		if len(rec.A) > 0 {
			ip = rec.A[0]
		}
		if len(rec.AAAA) > 0 {
			ip6 = rec.AAAA[0]
		}
		r.cores[sub] = CoreInfo{ID: sub, IP: ip, IPv6: ip6, CNAME: rec.CNAME, Available: true}
		r.setUser("bob", sub)
	case 3:
		r.records["alice"] = rec // a record row at a user's name: the row wins
	}

	var (
		warnings []string
		err      error
	)
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("Build panicked on %q %+v (where %d): %v", sub, rec, where%4, p)
			}
		}()
		_, warnings, err = Build(st, r, 3)
	}()
	if err != nil {
		t.Fatalf("Build failed on %q %+v (where %d): %v", sub, rec, where%4, err)
	}
	z, _ := mustBuild(t, st, r, 3)
	if z.Serial() != 3 {
		t.Fatalf("serial %d", z.Serial())
	}
	wantA := map[string]string{"fixed": "192.0.2.2", "app": "192.0.2.81", "core1": "192.0.2.10", "core": "192.0.2.53"}
	if where%4 != 3 && (where%4 != 2 || sub != "core1") { // the fuzzed core replaces alice's
		wantA["alice"] = "192.0.2.10"
	}
	for n, want := range wantA {
		if strings.EqualFold(n, sub) && where%4 != 3 {
			continue // the fuzzed entry may legitimately take or lose to that name
		}
		resp := ask(z, n+"."+testDomain, dns.TypeA)
		if got := rdata(resp.Answer, dns.TypeA); !slices.Equal(got, []string{want}) {
			t.Fatalf("%s A %q, want %s, after %q %+v (where %d); warnings %q", n, got, want, sub, rec, where%4, warnings)
		}
	}
	if got := txtValues(ask(z, "_acme-challenge."+testDomain, dns.TypeTXT).Answer); !slices.Equal(got, []string{"value"}) && !strings.EqualFold(sub, "_acme-challenge") {
		t.Fatalf("challenge %q after %q %+v", got, sub, rec)
	}
}

// recordSeeds are values that are wrong in every way the parser knows of.
var recordSeeds = []struct {
	sub                              string
	a, aaaa, cname, ns, mx, txt, caa string
}{
	{"www", "192.0.2.1", "2001:db8::1", "", "", "10 mail.example.org.", "hello", `0 issue "letsencrypt.org"`},
	{"www", "192.0.2.1", "", "target.example.org", "", "", "", ""}, // CNAME with other data
	{"cn", "", "", "target.example.org", "", "", "", ""},           // CNAME alone
	{"mx", "", "", "", "", "nonsense", "", ""},                     // unparsable MX
	{"mx2", "", "", "", "", "10", "", ""},                          // MX without a host
	{"mx3", "", "", "", "", "70000 mail.example.org.", "", ""},     // preference too large
	{"ip", "300.1.1.1\n1.2.3", "192.0.2.1\n::ffff:1.2.3.4", "", "", "", "", ""},
	{"ip2", "::1", "zz::1", "", "", "", "", ""},
	{"ns", "", "", "", "bad name..\n", "", "", ""},
	{"caa", "", "", "", "", "", "", "0 issue\n256 issue \"x\"\nnot a caa"},
	{"txt", "", "", "", "", "", strings.Repeat("x", 1000) + "\n\"quoted\" \\ and ; comment\n\x00\xff", ""},
	{"txt2", "", "", "", "", "", "\n\n", ""},
	{"inject", "192.0.2.1\nx 60 IN A 192.0.2.2", "", "", "", "10 a.example.org.\nfoo. 60 IN SOA a. b. 1 2 3 4 5", "", ""},
	{"inject2", "", "", "a.example.org. 60 IN DNAME b.example.org.", "", "", "", ""},
	{"cname-self", "", "", "cname-self.mc.example.com", "", "", "", ""},
	{"cname-apex", "", "", ".", "", "", "", ""},
	{"ns-sub", "", "", "", "ns.ns-sub.mc.example.com", "", "", ""},
	{"", "192.0.2.1", "", "", "", "", "", ""},
	{"@", "192.0.2.1", "", "", "", "", "", ""},
	{"x\\", "192.0.2.1", "", "", "", "", "", ""},
	{"a..b", "192.0.2.1", "", "", "", "", "", ""},
	{"Core1", "192.0.2.99", "", "", "", "", "", ""},
	{"FIXED", "", "", "elsewhere.example.net", "", "", "", ""}, // same name as a static entry, other case
	{"APP", "192.0.2.1", "", "", "", "", "", ""},
	{"reg", "192.0.2.99", "", "", "", "", "", ""},
	{"_acme-challenge", "", "", "elsewhere.example.net", "", "", "", ""},
	{strings.Repeat("a", 64), "192.0.2.1", "", "", "", "", "", ""},
	{strings.Repeat("a.", 130), "192.0.2.1", "", "", "", "", "", ""},
	{"empty", "", "", "", "", "", "", ""},
	{"wild", "", "", "", "", "", "", ""},
	{"*", "192.0.2.1", "", "", "", "", "", ""},
}

func FuzzBuildRecords(f *testing.F) {
	for i, s := range recordSeeds {
		for where := range byte(4) {
			f.Add(where+byte(i)*4, s.sub, s.a, s.aaaa, s.cname, s.ns, s.mx, s.txt, s.caa)
		}
	}
	f.Fuzz(func(t *testing.T, where byte, sub, a, aaaa, cname, ns, mx, txt, caa string) {
		checkBuildSurvives(t, where, sub, fuzzRecords(a, aaaa, cname, ns, mx, txt, caa))
	})
}

// TestBuildRandomRecords runs the fuzz property on pseudo-random mixes of
// good and bad values (deterministic, so a failure reproduces), beyond the
// seed corpus that plain "go test" runs.
func TestBuildRandomRecords(t *testing.T) {
	pool := map[string][]string{
		"a":     {"192.0.2.1", "300.1.1.1", "::1", "", "1.2.3", "0.0.0.0"},
		"aaaa":  {"2001:db8::1", "192.0.2.1", "::ffff:1.2.3.4", "zz::", ""},
		"cname": {"", "", "t.example.org", "alice.mc.example.com", "bad..name", "."},
		"ns":    {"ns.example.org", "", "x..y"},
		"mx":    {"10 mail.example.org.", "nonsense", "10", ""},
		"txt":   {"hello", strings.Repeat("y", 600), "", "a\"b"},
		"caa":   {`0 issue "letsencrypt.org"`, "0 issue", "x"},
		"sub":   {"www", "app", "APP", "Fixed", "alice", "core1", "reg", "_acme-challenge", "x\\", "a..b", "", "deep.er.name", "*"},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(k string) string {
		var parts []string
		for range rng.IntN(3) {
			parts = append(parts, pool[k][rng.IntN(len(pool[k]))])
		}
		return strings.Join(parts, "\n")
	}
	for i := range 400 {
		sub := pool["sub"][rng.IntN(len(pool["sub"]))]
		cname := pool["cname"][rng.IntN(len(pool["cname"]))]
		rec := fuzzRecords(pick("a"), pick("aaaa"), cname, pick("ns"), pick("mx"), pick("txt"), pick("caa"))
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkBuildSurvives(t, byte(i), sub, rec) })
	}
}
