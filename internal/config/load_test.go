package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSpecSnippetsLoad(t *testing.T) {
	c, err := Load("testdata/spec-single-core.yml")
	if err != nil {
		t.Fatalf("single-core snippet: %v", err)
	}
	if !c.LetsEncrypt.Enabled || !c.LetsEncrypt.CertRenewer || !c.DNSLess.IsActive {
		t.Errorf("snippet booleans not loaded: %+v", c)
	}
	// The hook snippet is an override layered on a full config.
	c, err = Load("testdata/spec-single-core.yml", "testdata/spec-on-rotate.yml")
	if err != nil {
		t.Fatalf("onRotateScript snippet: %v", err)
	}
	if got := c.LetsEncrypt.OnRotateScript; got != "/etc/pryv/hooks/reload-nginx.sh" {
		t.Errorf("onRotateScript = %q", got)
	}
	if c.LetsEncrypt.Email != "ops@your-domain.com" {
		t.Errorf("the override lost letsEncrypt.email: %q", c.LetsEncrypt.Email)
	}
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		name, yml string
		want      []string
	}{
		{"suggestion", "letsEncrypt:\n  emial: ops@example.com\n",
			[]string{`cfg.yml:2: letsEncrypt.emial: unknown key (did you mean "email"?)`}},
		{"no suggestion", "letsEncrypt:\n  foo: 1\n",
			[]string{`cfg.yml:2: letsEncrypt.foo: unknown key`}},
		{"top level", "htp:\n  port: 80\n",
			[]string{`cfg.yml:1: htp: unknown key (did you mean "http"?)`}},
		{"case only", "dnsless:\n  isActive: false\n",
			[]string{`cfg.yml:1: dnsless: unknown key (did you mean "dnsLess"?)`}},
		{"nested", "http:\n  ssl:\n    keyfile: /k\n",
			[]string{`cfg.yml:3: http.ssl.keyfile: unknown key (did you mean "keyFile"?)`}},
		{"short key never matches everything", "core:\n  x: 1\n",
			[]string{`cfg.yml:2: core.x: unknown key`}},
		{"list item", "dns:\n  staticEntries:\n    - subdomain: a\n    - subdomain: b\n    - subdomian: c\n",
			[]string{
				`cfg.yml:5: dns.staticEntries[2].subdomian: unknown key (did you mean "subdomain"?)`,
				`dns.staticEntries[2].subdomain: required`,
			}},
		{"duplicate key", "http:\n  port: 80\n  port: 81\n",
			[]string{`cfg.yml:3: http.port: duplicate key (first set on line 2)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assertProblems(t, tt.yml, tt.want) })
	}
}

func TestUnknownKeyFromFile(t *testing.T) {
	_, err := Load("testdata/typo.yml")
	want := []string{`testdata/typo.yml:2: letsEncrypt.emial: unknown key (did you mean "email"?)`}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestWrongTypes(t *testing.T) {
	tests := []struct {
		name, yml, want string
	}{
		{"integer", "http:\n  port: abc\n", `cfg.yml:2: http.port: expected an integer, got "abc"`},
		{"float is not an integer", "http:\n  port: 443.5\n", `cfg.yml:2: http.port: expected an integer, got "443.5"`},
		{"quoted integer", "dns:\n  port: \"53\"\n", `cfg.yml:2: dns.port: expected an integer, got "53"`},
		{"bool", "letsEncrypt:\n  staging: maybe\n", `cfg.yml:2: letsEncrypt.staging: expected true or false, got "maybe"`},
		{"string", "core:\n  url: [a, b]\n", `cfg.yml:2: core.url: expected a string, got a list`},
		{"list", "dns:\n  staticEntries: www\n", `cfg.yml:2: dns.staticEntries: expected a list, got "www"`},
		{"mapping", "http: 443\n", `cfg.yml:1: http: expected a mapping, got "443"`},
		{"duration", "letsEncrypt:\n  dns01:\n    propagationTimeout: 120\n",
			`cfg.yml:3: letsEncrypt.dns01.propagationTimeout: expected a duration such as 90s or 2m, got "120"`},
		{"list item", "dns:\n  records:\n    root:\n      a: [192.0.2.1, {x: 1}]\n",
			`cfg.yml:4: dns.records.root.a[1]: expected a string, got a mapping`},
		{"secret one level too high", "auth: hunter2-secret\n", `cfg.yml:1: auth: expected a mapping, got a scalar value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assertProblems(t, tt.yml, []string{tt.want}) })
	}
}

func TestDurations(t *testing.T) {
	for yml, want := range map[string]string{"90s": "1m30s", "2m": "2m0s"} {
		c := mustLoad(t, "letsEncrypt:\n  dns01:\n    propagationTimeout: "+yml+"\n")
		if got := c.LetsEncrypt.DNS01.PropagationTimeout.String(); got != want {
			t.Errorf("%s decoded as %s, want %s", yml, got, want)
		}
	}
	var d Duration
	if err := d.UnmarshalText([]byte("soon")); err == nil || !strings.Contains(err.Error(), `"soon"`) {
		t.Errorf("error %v does not name the value", err)
	}
}

func TestFileProblems(t *testing.T) {
	_, err := Load("testdata/missing.yml")
	want := "reading config testdata/missing.yml: open testdata/missing.yml: no such file or directory"
	if got := problems(t, err); len(got) != 1 || got[0] != want {
		t.Errorf("got %q, want %q", got, want)
	}

	_, err = LoadBytes("cfg.yml", []byte("http:\n  port: [1\n"))
	if got := problems(t, err); len(got) != 1 || !strings.HasPrefix(got[0], "parsing config cfg.yml: yaml: ") {
		t.Errorf("syntax error: got %q", got)
	}

	for _, yml := range []string{"- a\n- b\n", "just a string\n"} {
		assertProblems(t, yml, []string{"cfg.yml:1: expected a mapping at the top level"})
	}
	for _, yml := range []string{"", "# only a comment\n", "~\n", "---\n"} {
		assertProblems(t, yml, nil)
	}
	assertProblems(t, "http:\n  port: 80\n---\nhttp:\n  port: 81\n",
		[]string{`cfg.yml:4: only one YAML document per file is supported; remove the extra "---" document or split it into another file`})
}

func TestManyProblemsAtOnce(t *testing.T) {
	yml := `http:
  port: abc
  ip: 1.2.3
letsEncrypt:
  enabled: true
  emial: ops@example.com
  atRestKey: 'c2hvcnQ='
dns:
  port: 70000
`
	assertProblems(t, yml, []string{
		`cfg.yml:2: http.port: expected an integer, got "abc"`,
		`cfg.yml:6: letsEncrypt.emial: unknown key (did you mean "email"?)`,
		`http.ip: "1.2.3" is not an IP address`,
		`dns.port: must be between 1 and 65535, got 70000`,
		`letsEncrypt.email: required when letsEncrypt.enabled is true (the ACME CA sends expiry notices there)`,
		`letsEncrypt.atRestKey: must be the base64 of exactly 32 random bytes (got 5 bytes); generate one with: pryv-tls keygen`,
		NoHostnameError,
	})
}

func TestDecodeErrorsInFileOrder(t *testing.T) {
	_, err := LoadSources(
		Source{Name: "z.yml", Data: []byte("\n\nhttp:\n  prot: 1\n")},
		Source{Name: "a.yml", Data: []byte("core:\n  ip: [1]\n")},
	)
	want := []string{
		`z.yml:4: http.prot: unknown key (did you mean "port"?)`,
		`a.yml:2: core.ip: expected a string, got a list`,
	}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestLayering(t *testing.T) {
	c, err := Load("testdata/base.yml", "testdata/override.yml")
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.SSL.CertFile != "/etc/ssl/override.crt" {
		t.Errorf("overridden key: certFile = %q", c.HTTP.SSL.CertFile)
	}
	if c.HTTP.SSL.KeyFile != "/etc/ssl/base.key" || c.HTTP.Port != 8443 || c.HTTP.IP != "127.0.0.1" {
		t.Errorf("siblings from the first file lost: %+v", c.HTTP)
	}
	if got := c.DNS.StaticEntries; len(got) != 1 || got[0].Subdomain != "api" || got[0].Records.A != nil {
		t.Errorf("list not replaced whole: %+v", got)
	}
	if c.DNS.Domain != "mc.example.com" {
		t.Errorf("dns.domain = %q", c.DNS.Domain)
	}
	if c.Core.ID != "core1" || c.Core.IP != "192.0.2.10" {
		t.Errorf("null overrode: core = %+v", c.Core)
	}

	// An explicit empty string is a value, the way to clear a key.
	c, err = LoadSources(
		Source{Name: "a.yml", Data: []byte("core:\n  url: https://core1.example.org\n")},
		Source{Name: "b.yml", Data: []byte("core:\n  url: \"\"\n")},
	)
	if err != nil || c.Core.URL != "" {
		t.Errorf("empty string did not clear: %q, %v", c.Core.URL, err)
	}
}

func TestMergeKeysAndAliases(t *testing.T) {
	c := mustLoad(t, `core:
  id: &id core7
  url: https://core7.example.org
dns:
  records:
    root: &root
      a: [192.0.2.7]
  staticEntries:
    - subdomain: *id
      records:
        <<: *root
        txt: ["hello"]
`)
	e := c.DNS.StaticEntries[0]
	if e.Subdomain != "core7" || !slices.Equal(e.Records.A, []string{"192.0.2.7"}) || !slices.Equal(e.Records.TXT, []string{"hello"}) {
		t.Errorf("aliases / merge keys not applied: %+v", e)
	}
}

func TestDefaults(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	c := mustLoad(t, "core:\n  ip: 192.0.2.10\n")
	checks := []struct {
		key       string
		got, want any
	}{
		{"http.ip", c.HTTP.IP, "0.0.0.0"},
		{"http.port", c.HTTP.Port, 80},
		{"letsEncrypt.renewBeforeDays", c.LetsEncrypt.RenewBeforeDays, 30},
		{"letsEncrypt.tlsDir", c.LetsEncrypt.TLSDir, filepath.Join(wd, "var-pryv/tls")},
		{"letsEncrypt.http01Port", c.LetsEncrypt.HTTP01Port, 80},
		{"letsEncrypt.keyType", c.LetsEncrypt.KeyType, "ec256"},
		{"letsEncrypt.dns01.propagationTimeout", c.LetsEncrypt.DNS01.PropagationTimeout.String(), "2m0s"},
		{"dns.ip", c.DNS.IP, "0.0.0.0"},
		{"dns.port", c.DNS.Port, 5353},
		{"dns.defaultTTL", c.DNS.DefaultTTL, 300},
		{"dns.publicIp", c.DNS.PublicIP, "192.0.2.10"},
		{"upstreams.api", c.Upstreams.API, "http://127.0.0.1:3000"},
		{"upstreams.hfs", c.Upstreams.HFS, "http://127.0.0.1:4000"},
		{"platformDB.dataDir", c.PlatformDB.DataDir, filepath.Join(wd, "var-pryv/platformdb")},
		{"platformDB.peerAddress", c.PlatformDB.PeerAddress, "127.0.0.1:2380"},
		{"platformDB.clientAddress", c.PlatformDB.ClientAddress, "127.0.0.1:2379"},
		{"cluster.ca.path", c.Cluster.CA.Path, "/etc/pryv/ca"},
		{"ListenAddr", c.ListenAddr(), "0.0.0.0:80"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.key, ck.got, ck.want)
		}
	}

	if c := mustLoad(t, leBlock+"dns:\n  domain: mc.example.com\n"); c.HTTP.Port != 443 {
		t.Errorf("letsEncrypt on: http.port = %d, want 443", c.HTTP.Port)
	}
	if c := mustLoad(t, "http:\n  ssl:\n    certFile: /c\n    keyFile: /k\n"); c.HTTP.Port != 443 {
		t.Errorf("http.ssl set: http.port = %d, want 443", c.HTTP.Port)
	}
	if c := mustLoad(t, "dns:\n  publicIp: 192.0.2.99\ncore:\n  ip: 192.0.2.10\n"); c.DNS.PublicIP != "192.0.2.99" {
		t.Errorf("dns.publicIp overridden by default: %q", c.DNS.PublicIP)
	}
	if c := mustLoad(t, "dns:\n  domain: MC.Example.COM.\n"); c.DNS.Domain != "mc.example.com" {
		t.Errorf("dns.domain not normalized: %q", c.DNS.Domain)
	}
}

func TestRelativePathsBecomeAbsolute(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load("testdata/spec-single-core.yml")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, "var-pryv/tls/your-domain.com/privkey.pem"); c.HTTP.SSL.KeyFile != want {
		t.Errorf("keyFile = %q, want %q", c.HTTP.SSL.KeyFile, want)
	}
	if want := filepath.Join(wd, "var-pryv/tls/your-domain.com/fullchain.pem"); c.HTTP.SSL.CertFile != want {
		t.Errorf("certFile = %q, want %q", c.HTTP.SSL.CertFile, want)
	}
	c = mustLoad(t, `http:
  ssl:
    certFile: c.pem
    keyFile: ./k.pem
    caFile: ../ca.pem
letsEncrypt:
  tlsDir: tls
  directoryCaFile: pebble.pem
platformDB:
  dataDir: db
cluster:
  ca:
    path: ca
`)
	for key, got := range map[string]string{
		"http.ssl.certFile":           c.HTTP.SSL.CertFile,
		"http.ssl.keyFile":            c.HTTP.SSL.KeyFile,
		"http.ssl.caFile":             c.HTTP.SSL.CAFile,
		"letsEncrypt.tlsDir":          c.LetsEncrypt.TLSDir,
		"letsEncrypt.directoryCaFile": c.LetsEncrypt.DirectoryCAFile,
		"platformDB.dataDir":          c.PlatformDB.DataDir,
		"cluster.ca.path":             c.Cluster.CA.Path,
	} {
		if !filepath.IsAbs(got) || filepath.Clean(got) != got {
			t.Errorf("%s = %q, want a clean absolute path", key, got)
		}
	}
	if want := filepath.Join(filepath.Dir(wd), "ca.pem"); c.HTTP.SSL.CAFile != want {
		t.Errorf("caFile = %q, want %q", c.HTTP.SSL.CAFile, want)
	}
}

func TestAliasExpansionIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("x0: &a0 {ip: 192.0.2.1}\n")
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&b, "x%d: &a%d {<<: [", i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]}\n")
	}
	b.WriteString("core: *a12\n")
	_, err := LoadBytes("cfg.yml", []byte(b.String()))
	got := problems(t, err)
	if len(got) == 0 || !strings.Contains(err.Error(), "too many nodes once aliases are expanded") {
		t.Errorf("got %d problems: %.500s", len(got), err)
	}
}

func TestMergedAnchorProblemReportedOnce(t *testing.T) {
	assertProblems(t, "x: &a {idd: 1}\ncore:\n  <<: [*a, *a]\n", []string{
		`cfg.yml:1: x: unknown key`,
		`cfg.yml:1: core.idd: unknown key (did you mean "id"?)`,
	})
}

func TestNewKeyDefaults(t *testing.T) {
	c := mustLoad(t, "")
	if u := c.DNS.UserLookup; u.Source != "api" || u.Timeout.Std() != time.Second || u.MaxPerSecond != 50 {
		t.Errorf("dns.userLookup defaults: %+v", u)
	}
	if p := c.Platform; p.PIIMode != "hashed" || p.PIIAlgorithm != "hmac-sha256" || p.PIIHmacKey != "" {
		t.Errorf("platform defaults: %+v", p)
	}
	if u := c.Storages.Engines.RQLite.URL; u != "http://localhost:4001" {
		t.Errorf("storages.engines.rqlite.url default: %q", u)
	}
	if !c.Core.IsAvailable() || mustLoad(t, "core:\n  available: false\n").Core.IsAvailable() {
		t.Error("core.available: unset must mean true, false must mean false")
	}
}
