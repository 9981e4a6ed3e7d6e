package config

import (
	"os"
	"slices"
	"strings"
	"testing"
)

const (
	coreDefault  = "testdata/core/default-config.yml" // open-pryv.io's, verbatim
	coreOverride = "testdata/core/override-config.yml"
	coreOwn      = "testdata/core/pryv-tls.yml"
)

func TestLoadWithCoreFiles(t *testing.T) {
	c, err := LoadWithCore([]string{coreDefault, coreOverride}, []string{coreOwn})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	checks := []struct {
		key       string
		got, want any
	}{
		{"core.id", c.Core.ID, "core-a"},
		{"core.ip", c.Core.IP, "198.51.100.10"},
		{"core.hosting", c.Core.Hosting, "europe-1"},
		{"core.available", c.Core.Available != nil && *c.Core.Available, true},
		{"dnsLess.isActive", c.DNSLess.IsActive, false},
		{"dns.domain", c.DNS.Domain, "pryv.example.com"},
		{"dns.publicIp", c.DNS.PublicIP, "198.51.100.10"},
		{"cluster.ca.path", c.Cluster.CA.Path, "/etc/pryv/cluster-ca"},
		{"auth.adminAccessKey", c.Auth.AdminAccessKey.Reveal(), "core-admin-key-4c1d9e"},
		{"platform.piiHmacKey", c.Platform.PIIHmacKey.Reveal(), "GC7BAkJ0lsqe50IsM8rBvtLQkR9AREmjVfRO5MmdLVM="},
		{"storages.engines.rqlite.url", c.Storages.Engines.RQLite.URL, "http://localhost:4001"},
		// pryv-tls's own file wins over a shared key.
		{"dns.defaultTTL", c.DNS.DefaultTTL, 60},
		// The core's own listeners are not pryv-tls's.
		{"dns.port", c.DNS.Port, 5353},
		{"dns.ip", c.DNS.IP, "127.0.0.1"},
		{"http.port", c.HTTP.Port, 8443},
		{"http.ip", c.HTTP.IP, DefaultHTTPIP},
		{"dns.active (only from pryv-tls's file)", c.DNS.Active, true},
		{"root soa", c.DNS.Records.Root.SOA, "core.pryv.example.com. hostmaster.pryv.example.com. 1700000000 3600 600 604800 60"},
		{"root mx", strings.Join(c.DNS.Records.Root.MX, ","), "20 mail.pryv.example.com."},
		{"root caa", strings.Join(c.DNS.Records.Root.CAA, ","), `0 issue "letsencrypt.org"`},
		{"staticEntries", len(c.DNS.StaticEntries), 4},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.key, ck.got, ck.want)
		}
	}
}

// The core's default file alone, verbatim, loads: everything pryv-tls does
// not share is skipped without a word.
func TestLoadCoreDefaultVerbatim(t *testing.T) {
	data, err := os.ReadFile(coreDefault)
	if err != nil {
		t.Fatal(err)
	}
	l := newLoader()
	l.decodeLayer(0, coreDefault, data, true)
	// The core's default is DNS-less: it needs its URL, from pryv-tls's file.
	l.decodeLayer(1, "own.yml", []byte("dnsLess:\n  publicUrl: https://pryv.example.com\n"), false)
	c, err := l.finish()
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if !c.DNSLess.IsActive || c.Core.ID != "single" || c.Cluster.CA.Path != "/etc/pryv/ca" || c.DNS.DefaultTTL != 300 {
		t.Errorf("shared keys not read: %+v %+v %+v", c.DNSLess, c.Core, c.Cluster)
	}
	if c.DNS.Port != DefaultDNSPort || c.HTTP.Port != DefaultHTTPPort {
		t.Errorf("the core's listeners leaked in: dns.port %d, http.port %d", c.DNS.Port, c.HTTP.Port)
	}
}

func TestLoadWithCoreErrors(t *testing.T) {
	tests := []struct {
		name, core string
		want       []string
	}{
		{"shared key of the wrong type names the core file",
			"http:\n  port: x\ndns:\n  defaultTTL: five\n",
			[]string{`core.yml:4: dns.defaultTTL: expected an integer, got "five"`}},
		{"strict below a shared key",
			"dns:\n  records:\n    root:\n      mxx: []\n",
			[]string{`core.yml:4: dns.records.root.mxx: unknown key (did you mean "mx"?)`}},
		{"core object shapes checked",
			"dns:\n  records:\n    root:\n      mx: [{exchange: m.example.com, priority: high}]\n",
			[]string{`core.yml:4: dns.records.root.mx[0].priority: expected an integer, got "high"`}},
		{"everything else skipped", "reporting: {x: 1}\nhttp: 7\ncore: {foo: 1}\ndns: {active: maybe, port: x}\nstorages: {base: 1, engines: {postgresql: {port: x}}}\nplatform: {other: 3}\n", nil},
		{"platform keys shared, checked",
			"platform:\n  piiMode: sometimes\n  piiHmacKey: [1]\n",
			[]string{`core.yml:3: platform.piiHmacKey: expected a string, got a list`, `platform.piiMode: must be one of hashed, cleartext, got "sometimes"`}},
		{"rqlite url shared",
			"storages:\n  engines:\n    rqlite:\n      url: ftp://x\n      raftPort: 4002\n",
			[]string{`storages.engines.rqlite.url: must be an http:// or https:// URL, got "ftp://x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLoader()
			l.decodeLayer(0, "core.yml", []byte(tt.core), true)
			l.decodeLayer(1, "own.yml", []byte("core:\n  id: a\n"), false)
			_, err := l.finish()
			if got := problems(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// In pryv-tls's own files the core's other keys are misplaced: errors.
func TestCoreKeysMisplacedInOwnFile(t *testing.T) {
	assertProblems(t, "http:\n  hfsPort: 4000\ncluster:\n  apiWorkers: 2\n", []string{
		`cfg.yml:2: http.hfsPort: unknown key`,
		`cfg.yml:4: cluster.apiWorkers: unknown key`,
	})
}
