package config

import (
	"github.com/miekg/dns"
	"slices"
	"testing"
)

func TestCoreShapesLoad(t *testing.T) {
	c := mustLoad(t, `core:
  id: single
  cname: null
  available: false
  nonVoter: true
dns:
  staticEntries:
    sw: { a: ['198.51.100.1', '198.51.100.2'] }
    mail: { a: 198.51.100.3, aaaa: '2001:db8::3', txt: v=spf1 -all }
    www: { cname: sw.example.com }
    _dmarc: { txt: ['v=DMARC1; p=none', 'second'] }
  records:
    root:
      mx:
        - { exchange: mail.example.com, priority: 20 }
        - { exchange: mx2.example.com. }
        - "30 mx3.example.com."
      caa:
        - { flags: 128, tag: issue, value: letsencrypt.org }
        - { tag: iodef, value: 'mailto:"ops"@example.com' }
        - 0 issuewild ";"
      soa:
        primary: core.example.com
        admin: hostmaster@example.com
        serial: 1700000000
        refresh: 3600
        retry: 600
        expiration: 604800
        minimum: 60
`)
	if c.Core.Available == nil || *c.Core.Available || !c.Core.NonVoter {
		t.Errorf("core.available/nonVoter = %v/%v", c.Core.Available, c.Core.NonVoter)
	}
	want := []StaticEntry{
		{Subdomain: "sw", Records: RecordSet{A: []string{"198.51.100.1", "198.51.100.2"}}},
		{Subdomain: "mail", Records: RecordSet{A: []string{"198.51.100.3"}, AAAA: []string{"2001:db8::3"}, TXT: []string{"v=spf1 -all"}}},
		{Subdomain: "www", Records: RecordSet{CNAME: "sw.example.com"}},
		{Subdomain: "_dmarc", Records: RecordSet{TXT: []string{"v=DMARC1; p=none", "second"}}},
	}
	got := c.DNS.StaticEntries
	if len(got) != len(want) {
		t.Fatalf("staticEntries = %+v", got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Subdomain != w.Subdomain || g.Records.CNAME != w.Records.CNAME ||
			!slices.Equal(g.Records.A, w.Records.A) || !slices.Equal(g.Records.AAAA, w.Records.AAAA) || !slices.Equal(g.Records.TXT, w.Records.TXT) {
			t.Errorf("staticEntries[%d] = %+v, want %+v", i, g, w)
		}
	}
	r := c.DNS.Records.Root
	if w := []string{"20 mail.example.com.", "10 mx2.example.com.", "30 mx3.example.com."}; !slices.Equal(r.MX, w) {
		t.Errorf("mx = %q, want %q", r.MX, w)
	}
	if w := []string{`128 issue "letsencrypt.org"`, `0 iodef "mailto:\"ops\"@example.com"`, `0 issuewild ";"`}; !slices.Equal(r.CAA, w) {
		t.Errorf("caa = %q, want %q", r.CAA, w)
	}
	if w := "core.example.com. hostmaster.example.com. 1700000000 3600 600 604800 60"; r.SOA != w {
		t.Errorf("soa = %q, want %q", r.SOA, w)
	}
}

// The core's empty defaults (staticEntries: {}, soa: null) load as unset.
func TestCoreShapesEmptyDefaults(t *testing.T) {
	c := mustLoad(t, "dns:\n  staticEntries: {}\n  records:\n    root:\n      a: []\n      mx: []\n      caa: []\n      soa: null\n")
	if len(c.DNS.StaticEntries) != 0 || c.DNS.Records.Root.SOA != "" || len(c.DNS.Records.Root.MX) != 0 {
		t.Errorf("got %+v", c.DNS)
	}
}

// A later file's map replaces an earlier file's list, as a list does.
func TestCoreShapesLayering(t *testing.T) {
	c, err := LoadSources(
		Source{Name: "a.yml", Data: []byte("dns:\n  staticEntries:\n    - subdomain: old\n      records: {a: [198.51.100.9]}\n")},
		Source{Name: "b.yml", Data: []byte("dns:\n  staticEntries:\n    new: {a: 198.51.100.1}\n")},
	)
	if err != nil {
		t.Fatal(err)
	}
	if e := c.DNS.StaticEntries; len(e) != 1 || e[0].Subdomain != "new" {
		t.Errorf("staticEntries = %+v, want only new", e)
	}
}

func TestCoreShapesErrors(t *testing.T) {
	tests := []struct {
		name, yml string
		want      []string
	}{
		{"mx priority", "dns:\n  records:\n    root:\n      mx:\n        - exchange: mail.example.com\n          priority: high\n",
			[]string{`cfg.yml:6: dns.records.root.mx[0].priority: expected an integer, got "high"`}},
		{"mx exchange missing", "dns:\n  records:\n    root:\n      mx:\n        - priority: 10\n",
			[]string{`cfg.yml:5: dns.records.root.mx[0].exchange: required`}},
		{"mx unknown key", "dns:\n  records:\n    root:\n      mx:\n        - {exchange: m.example.com, priorty: 5}\n",
			[]string{`cfg.yml:5: dns.records.root.mx[0].priorty: unknown key (did you mean "priority"?)`}},
		{"caa flags", "dns:\n  records:\n    root:\n      caa:\n        - {flags: x, tag: issue, value: letsencrypt.org}\n",
			[]string{`cfg.yml:5: dns.records.root.caa[0].flags: expected an integer, got "x"`}},
		{"caa value missing", "dns:\n  records:\n    root:\n      caa:\n        - {tag: issue}\n",
			[]string{`cfg.yml:5: dns.records.root.caa[0].value: required`}},
		{"soa refresh", "dns:\n  records:\n    root:\n      soa:\n        primary: ns.example.com\n        admin: h.example.com\n        refresh: 1h\n        retry: 600\n        expiration: 604800\n        minimum: 60\n",
			[]string{`cfg.yml:7: dns.records.root.soa.refresh: expected an integer, got "1h"`}},
		{"soa missing fields", "dns:\n  records:\n    root:\n      soa:\n        primary: ns.example.com\n        admin: h.example.com\n",
			[]string{
				`cfg.yml:5: dns.records.root.soa.refresh: required`,
				`cfg.yml:5: dns.records.root.soa.retry: required`,
				`cfg.yml:5: dns.records.root.soa.expiration: required`,
				`cfg.yml:5: dns.records.root.soa.minimum: required`,
			}},
		{"soa unknown key", "dns:\n  records:\n    root:\n      soa: {primary: a.example.com, admin: b.example.com, refresh: 1, retry: 1, expiration: 1, minimum: 1, minimun: 1}\n",
			[]string{`cfg.yml:4: dns.records.root.soa.minimun: unknown key (did you mean "minimum"?)`}},
		{"static entry unknown key", "dns:\n  staticEntries:\n    sw:\n      aa: 198.51.100.1\n",
			[]string{`cfg.yml:4: dns.staticEntries.sw.aa: unknown key (did you mean "a"?)`}},
		{"static entry ns not in the core's shape", "dns:\n  staticEntries:\n    sw:\n      ns: [ns.example.com]\n",
			[]string{`cfg.yml:4: dns.staticEntries.sw.ns: unknown key`}},
		{"static entry not a mapping", "dns:\n  staticEntries:\n    sw: 198.51.100.1\n",
			[]string{`cfg.yml:3: dns.staticEntries.sw: expected a mapping of a, aaaa, cname, txt, got "198.51.100.1"`}},
		{"static entry a is a mapping", "dns:\n  staticEntries:\n    sw:\n      a: {x: 1}\n",
			[]string{`cfg.yml:4: dns.staticEntries.sw.a: expected a list, got a mapping`}},
		{"static entry cname list", "dns:\n  staticEntries:\n    sw:\n      cname: [a, b]\n",
			[]string{`cfg.yml:4: dns.staticEntries.sw.cname: expected a string, got a list`}},
		{"static entry duplicate", "dns:\n  staticEntries:\n    sw: {a: 198.51.100.1}\n    sw: {a: 198.51.100.2}\n",
			[]string{`cfg.yml:4: dns.staticEntries.sw: duplicate key (first set on line 3)`}},
		{"core available", "core:\n  available: sometimes\n",
			[]string{`cfg.yml:2: core.available: expected true or false, got "sometimes"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assertProblems(t, tt.yml, tt.want) })
	}
}

// The normalised strings must parse the way internal/dnsdata parses them
// (miekg/dns's presentation-format parser), and keep the core's values.
func TestCoreShapesParseAsRecords(t *testing.T) {
	c := mustLoad(t, "dns:\n  records:\n    root:\n"+
		"      mx: [{exchange: mail.example.com, priority: 0}, {exchange: mx2.example.com}]\n"+
		"      caa: [{tag: issue, value: 'letsencrypt.org; validationmethods=dns-01'}]\n"+
		"      soa: {primary: core.example.com., admin: hostmaster.example.com., refresh: 3600, retry: 600, expiration: 604800, minimum: 60}\n")
	r := c.DNS.Records.Root
	var prefs []uint16
	for _, v := range r.MX {
		rr, err := dns.NewRR("example.com. 300 IN MX " + v)
		if err != nil {
			t.Fatalf("mx %q: %v", v, err)
		}
		prefs = append(prefs, rr.(*dns.MX).Preference)
	}
	if !slices.Equal(prefs, []uint16{0, 10}) {
		t.Errorf("mx preferences = %v", prefs)
	}
	rr, err := dns.NewRR("example.com. 300 IN CAA " + r.CAA[0])
	if err != nil {
		t.Fatalf("caa %q: %v", r.CAA[0], err)
	}
	if caa := rr.(*dns.CAA); caa.Flag != 0 || caa.Tag != "issue" || caa.Value != "letsencrypt.org; validationmethods=dns-01" {
		t.Errorf("caa = %+v", caa)
	}
	rr, err = dns.NewRR("example.com. 300 IN SOA " + r.SOA)
	if err != nil {
		t.Fatalf("soa %q: %v", r.SOA, err)
	}
	if soa := rr.(*dns.SOA); soa.Ns != "core.example.com." || soa.Mbox != "hostmaster.example.com." || soa.Refresh != 3600 || soa.Retry != 600 || soa.Expire != 604800 || soa.Minttl != 60 {
		t.Errorf("soa = %+v", soa)
	}
}
