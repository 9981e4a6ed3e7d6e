package config

import (
	"strings"
	"testing"
)

func TestValidation(t *testing.T) {
	const mc = "dns:\n  domain: mc.example.com\n"
	tests := []struct {
		name, yml string
		want      []string
	}{
		{"empty config is valid", "", nil},
		{"full letsEncrypt config is valid", leBlock + mc, nil},

		{"http.port range", "http:\n  port: 70000\n", []string{"http.port: must be between 1 and 65535, got 70000"}},
		{"dns.port range", "dns:\n  port: -1\n", []string{"dns.port: must be between 1 and 65535, got -1"}},
		{"http01Port range", "letsEncrypt:\n  http01Port: 65536\n", []string{"letsEncrypt.http01Port: must be between 1 and 65535, got 65536"}},

		{"dns.active with dnsLess", "dnsLess:\n  isActive: true\n  publicUrl: https://x.example.com\ndns:\n  active: true\n  domain: example.com\n",
			[]string{"dns.active: cannot be true together with dnsLess.isActive: a DNS-less core answers no DNS (set one of them to false)"}},
		{"http.ip", "http:\n  ip: abc\n", []string{`http.ip: "abc" is not an IP address`}},
		{"http.ip may be IPv6", "http:\n  ip: '::'\n", nil},
		{"dns.ip", "dns:\n  ip: 1.2.3.4.5\n", []string{`dns.ip: "1.2.3.4.5" is not an IP address`}},
		{"dns.ip6", "dns:\n  ip6: 192.0.2.1\n", []string{`dns.ip6: "192.0.2.1" is not an IPv6 address`}},
		{"core.ip", "core:\n  ip: '2001:db8::1'\n", []string{`core.ip: "2001:db8::1" is not an IPv4 address`}},
		{"core.ipv6", "core:\n  ipv6: 1.2.3.4\n", []string{`core.ipv6: "1.2.3.4" is not an IPv6 address`}},
		{"dns.publicIp", "dns:\n  publicIp: nope\n", []string{`dns.publicIp: "nope" is not an IP address`}},
		{"record a", "dns:\n  records:\n    root:\n      a: ['::1']\n", []string{`dns.records.root.a[0]: "::1" is not an IPv4 address`}},

		{"ssl certFile alone", "http:\n  ssl:\n    certFile: /c\n",
			[]string{"http.ssl: certFile and keyFile must be set together (certFile is set, keyFile is empty)"}},
		{"ssl keyFile alone", "http:\n  ssl:\n    keyFile: /k\n",
			[]string{"http.ssl: certFile and keyFile must be set together (keyFile is set, certFile is empty)"}},
		{"ssl caFile alone", "http:\n  ssl:\n    caFile: /ca\n",
			[]string{"http.ssl: caFile is set but certFile and keyFile are empty; caFile only extends certFile's chain"}},
		{"ssl full", "http:\n  ssl:\n    certFile: /c\n    keyFile: /k\n    caFile: /ca\n", nil},

		{"hsts max-age", "http:\n  hsts: max-age=31536000\n", nil},
		{"hsts full", "http:\n  hsts: 'max-age=\"63072000\"; includeSubDomains; preload'\n", nil},
		{"hsts case and spaces", "http:\n  hsts: ' MAX-AGE=0 ;includesubdomains; '\n", nil},
		{"hsts no max-age", "http:\n  hsts: includeSubDomains\n",
			[]string{`http.hsts: needs max-age=SECONDS (max-age=31536000 is one year), got "includeSubDomains"`}},
		{"hsts bad max-age", "http:\n  hsts: max-age=1y\n",
			[]string{`http.hsts: max-age must be a number of seconds (max-age=31536000), got "max-age=1y"`}},
		{"hsts negative max-age", "http:\n  hsts: max-age=-1\n",
			[]string{`http.hsts: max-age must be a number of seconds (max-age=31536000), got "max-age=-1"`}},
		{"hsts misspelt", "http:\n  hsts: max-age=600; includeSubdomain\n",
			[]string{`http.hsts: unknown directive "includeSubdomain"; the directives are max-age=SECONDS, includeSubDomains and preload`}},
		{"hsts twice", "http:\n  hsts: max-age=600; max-age=700\n",
			[]string{`http.hsts: directive max-age is given twice in "max-age=600; max-age=700"`}},
		{"hsts value on a flag", "http:\n  hsts: max-age=600; preload=yes\n",
			[]string{`http.hsts: directive preload takes no value, got "preload=yes"`}},
		{"hsts preload short", "http:\n  hsts: max-age=600; includeSubDomains; preload\n",
			[]string{`http.hsts: preload needs includeSubDomains and a max-age of at least 31536000 (the preload list's rules), got "max-age=600; includeSubDomains; preload"`}},
		{"hsts newline", "http:\n  hsts: \"max-age=600\\r\\nSet-Cookie: x=1\"\n",
			[]string{`http.hsts: must be one line of printable ASCII (a header value such as max-age=31536000; includeSubDomains)`}},
		{"upstream timeout", "upstreams:\n  responseHeaderTimeout: 30s\n", nil},
		{"upstream timeout zero", "upstreams:\n  responseHeaderTimeout: 0s\n",
			[]string{"upstreams.responseHeaderTimeout: must be more than 0, got 0s (the default is 5m0s)"}},

		{"atRestKey short", "letsEncrypt:\n  atRestKey: AAECAwQFBgcICQoLDA0ODw==\n",
			[]string{"letsEncrypt.atRestKey: must be the base64 of exactly 32 random bytes (got 16 bytes); generate one with: pryv-tls keygen"}},
		{"atRestKey not base64", "letsEncrypt:\n  atRestKey: '<base64 of 32 random bytes>'\n",
			[]string{"letsEncrypt.atRestKey: not valid base64; generate one with: pryv-tls keygen"}},
		{"atRestKeyPrevious with atRestKey", leBlock + "  atRestKeyPrevious: " + otherAtRestKey + "\n" + mc, nil},
		{"atRestKeyPrevious not base64", leBlock + "  atRestKeyPrevious: 'old key here'\n" + mc,
			[]string{"letsEncrypt.atRestKeyPrevious: not valid base64; it must be the atRestKey being replaced, as it was configured"}},
		{"atRestKeyPrevious short", leBlock + "  atRestKeyPrevious: AAECAwQFBgcICQoLDA0ODw==\n" + mc,
			[]string{"letsEncrypt.atRestKeyPrevious: must be the base64 of exactly 32 random bytes (got 16 bytes); it must be the atRestKey being replaced, as it was configured"}},
		{"atRestKeyPrevious alone", "letsEncrypt:\n  atRestKeyPrevious: " + otherAtRestKey + "\n",
			[]string{"letsEncrypt.atRestKeyPrevious: set without letsEncrypt.atRestKey: put the new key in atRestKey and the one being replaced here"}},
		{"atRestKeyPrevious is atRestKey", leBlock + "  atRestKeyPrevious: '" + strings.TrimRight(testAtRestKey, "=") + "'\n" + mc,
			[]string{"letsEncrypt.atRestKeyPrevious: is the same key as letsEncrypt.atRestKey: remove atRestKeyPrevious, or put the new key in atRestKey"}},
		{"atRestKey required", "letsEncrypt:\n  enabled: true\n  email: ops@example.com\n" + mc,
			[]string{"letsEncrypt.atRestKey: required when letsEncrypt.enabled is true; generate one with: pryv-tls keygen"}},

		{"email", "letsEncrypt:\n  email: x\n", []string{`letsEncrypt.email: "x" is not an email address`}},
		{"email with a name", "letsEncrypt:\n  email: Ops <ops@example.com>\n",
			[]string{`letsEncrypt.email: "Ops <ops@example.com>" is not an email address`}},
		{"email required", "letsEncrypt:\n  enabled: true\n  atRestKey: " + testAtRestKey + "\n" + mc,
			[]string{"letsEncrypt.email: required when letsEncrypt.enabled is true (the ACME CA sends expiry notices there)"}},

		{"onRotateScript", "letsEncrypt:\n  onRotateScript: hooks/x.sh\n",
			[]string{`letsEncrypt.onRotateScript: must be an absolute path, got "hooks/x.sh"`}},
		{"onFailureScript", "letsEncrypt:\n  onFailureScript: hooks/alert.sh\n",
			[]string{`letsEncrypt.onFailureScript: must be an absolute path, got "hooks/alert.sh"`}},
		{"onFailureWebhook scheme", "letsEncrypt:\n  onFailureWebhook: hooks.slack.com/services/T0/B0/s3cr3t\n",
			[]string{"letsEncrypt.onFailureWebhook: must be an http:// or https:// URL with a host (the value is not shown: webhook URLs hold tokens)"}},
		{"onFailureWebhook no host", "letsEncrypt:\n  onFailureWebhook: 'https:///s3cr3t'\n",
			[]string{"letsEncrypt.onFailureWebhook: must be an http:// or https:// URL with a host (the value is not shown: webhook URLs hold tokens)"}},
		{"onFailureWebhook ok", "letsEncrypt:\n  onFailureScript: /etc/pryv/hooks/alert.sh\n  onFailureWebhook: http://127.0.0.1:9093/hook\n", nil},

		{"publicUrl scheme", "dnsLess:\n  publicUrl: ftp://x\n", []string{`dnsLess.publicUrl: must be an https:// URL, got "ftp://x"`}},
		{"publicUrl bare host", "dnsLess:\n  publicUrl: your-domain.com\n",
			[]string{`dnsLess.publicUrl: must be an https:// URL, got "your-domain.com"`}},
		{"core.url no host", "core:\n  url: 'https:///x'\n", []string{`core.url: must name a host, got "https:///x"`}},
		{"directoryUrl", "letsEncrypt:\n  directoryUrl: http://pebble:14000/dir\n",
			[]string{`letsEncrypt.directoryUrl: must be an https:// URL, got "http://pebble:14000/dir"`}},
		{"upstream https", "upstreams:\n  api: https://127.0.0.1:3000\n",
			[]string{`upstreams.api: must be an http:// URL (TLS is terminated here), got "https://127.0.0.1:3000"`}},
		{"upstream no host", "upstreams:\n  hfs: 'http://'\n", []string{`upstreams.hfs: must name a host, got "http://"`}},

		{"renewBeforeDays explicit 0", "letsEncrypt:\n  renewBeforeDays: 0\n",
			[]string{"letsEncrypt.renewBeforeDays: must be between 1 and 89, got 0"}},
		{"renewBeforeDays 90", "letsEncrypt:\n  renewBeforeDays: 90\n",
			[]string{"letsEncrypt.renewBeforeDays: must be between 1 and 89, got 90"}},
		{"renewBeforeDays null means default", "letsEncrypt:\n  renewBeforeDays:\n", nil},

		{"keyType", "letsEncrypt:\n  keyType: dsa\n",
			[]string{`letsEncrypt.keyType: must be one of ec256, ec384, rsa2048, rsa4096, got "dsa"`}},
		{"challenge", "letsEncrypt:\n  challenge: http01\n",
			[]string{`letsEncrypt.challenge: must be one of http-01, tls-alpn-01, got "http01"`}},
		{"tls-alpn-01 with dns.domain", leBlock + "  challenge: tls-alpn-01\n" + mc,
			[]string{"letsEncrypt.challenge: tls-alpn-01 cannot prove the wildcard *.mc.example.com that dns.domain calls for (RFC 8737 has no wildcards; it is proved by DNS-01 from the embedded DNS server): remove letsEncrypt.challenge, or set it to http-01"}},
		{"tls-alpn-01 with core.url", leBlock + "  challenge: tls-alpn-01\ncore:\n  url: https://core1.example.org\n", nil},
		{"fallback without a directory", "letsEncrypt:\n  fallback:\n    - eab: {kid: k1}\n",
			[]string{"letsEncrypt.fallback[0].directoryUrl: required: the https:// ACME directory of the fallback CA", "letsEncrypt.fallback[0].eab: kid and hmacKey must be set together"}},
		{"fallback http", "letsEncrypt:\n  fallback:\n    - directoryUrl: https://ok.example/dir\n    - directoryUrl: http://ca.example/dir\n",
			[]string{`letsEncrypt.fallback[1].directoryUrl: must be an https:// URL, got "http://ca.example/dir"`}},
		{"eab kid alone", "letsEncrypt:\n  eab:\n    kid: k1\n", []string{"letsEncrypt.eab: kid and hmacKey must be set together"}},
		{"eab hmacKey alone", "letsEncrypt:\n  eab:\n    hmacKey: " + testHMACKey + "\n",
			[]string{"letsEncrypt.eab: kid and hmacKey must be set together"}},
		{"eab hmacKey not base64url", "letsEncrypt:\n  eab:\n    kid: k1\n    hmacKey: 'a+b/c=='\n",
			[]string{"letsEncrypt.eab.hmacKey: not valid base64url; paste it exactly as the CA gave it"}},
		{"eab padded", "letsEncrypt:\n  eab:\n    kid: k1\n    hmacKey: 'YWJj'\n", nil},
		{"propagationTimeout", "letsEncrypt:\n  dns01:\n    propagationTimeout: -5s\n",
			[]string{"letsEncrypt.dns01.propagationTimeout: must be positive, got -5s"}},

		{"publicUrl required", "dnsLess:\n  isActive: true\n", []string{"dnsLess.publicUrl: required when dnsLess.isActive is true"}},

		{"domain with a space", "dns:\n  domain: ex ample\n", []string{`dns.domain: "ex ample" is not a valid domain name`}},
		{"domain label hyphen", "dns:\n  domain: -bad.example.com\n", []string{`dns.domain: "-bad.example.com" is not a valid domain name`}},
		{"domain empty label", "dns:\n  domain: a..b\n", []string{`dns.domain: "a..b" is not a valid domain name`}},
		{"domain long label", "dns:\n  domain: " + strings.Repeat("a", 64) + ".com\n",
			[]string{`dns.domain: "` + strings.Repeat("a", 64) + `.com" is not a valid domain name`}},
		{"domain required", "dns:\n  active: true\n", []string{"dns.domain: required when dns.active is true"}},
		{"defaultTTL", "dns:\n  defaultTTL: -3\n", []string{"dns.defaultTTL: must be a positive number of seconds, got -3"}},
		{"defaultTTL wraps", "dns:\n  defaultTTL: 4294967596\n", []string{"dns.defaultTTL: must be at most 2147483647 seconds (RFC 2181), got 4294967596"}},

		{"static entry subdomain", "dns:\n  staticEntries:\n    - subdomain: www\n    - records:\n        a: [192.0.2.1]\n",
			[]string{"dns.staticEntries[1].subdomain: required"}},
		{"static entry duplicate", "dns:\n  staticEntries:\n    - subdomain: www\n    - subdomain: mail\n    - subdomain: WWW\n",
			[]string{`dns.staticEntries[2].subdomain: "WWW" is already used by dns.staticEntries[0]; merge the two entries`}},
		{"static entry wildcards and odd labels", "dns:\n  staticEntries:\n    - subdomain: '*.wild'\n    - subdomain: '*'\n    - subdomain: _dmarc\n    - subdomain: 'a b'\n    - subdomain: 'x.*'\n    - subdomain: '@'\n",
			[]string{
				`dns.staticEntries[3].subdomain: "a b" has the label "a b" (letters, digits, '_', '-' not at either end; 1-63 characters; '*' only as the first label): write one or more DNS labels under the domain (e.g. "www", "_dmarc" or "*.wild")`,
				`dns.staticEntries[4].subdomain: "x.*" has the label "*" (letters, digits, '_', '-' not at either end; 1-63 characters; '*' only as the first label): write one or more DNS labels under the domain (e.g. "www", "_dmarc" or "*.wild")`,
				`dns.staticEntries[5].subdomain: "@" is the apex (set its records in dns.records.root): write one or more DNS labels under the domain (e.g. "www", "_dmarc" or "*.wild")`,
			}},

		{"dnssec without the DNS", "dns:\n  dnssec: true\n", []string{"dns.dnssec: needs dns.active: true (the embedded DNS server signs the zone)"}},
		{"dnssec without atRestKey", "dns:\n  active: true\n  domain: mc.example.com\n  dnssec: true\n",
			[]string{"dns.dnssec: needs letsEncrypt.atRestKey: the zone's signing key is sealed with it in PlatformDB, so every core signs with the same key; " + keygenHint}},
		{"caaIdentity", "letsEncrypt:\n  caaIdentity: 'not a domain'\n",
			[]string{`letsEncrypt.caaIdentity: "not a domain" is not a domain name: the CA's issuer domain, as in its CAA instructions (e.g. letsencrypt.org)`}},
		{"no topology", leBlock, []string{NoHostnameError}},
		{"publicUrl without isActive is no topology", leBlock + "dnsLess:\n  publicUrl: https://your-domain.com\n",
			[]string{NoHostnameError}},

		{"front proxies to itself", "http:\n  port: 3000\n",
			[]string{"upstreams.api: points at this front's own listen address 0.0.0.0:3000; the front would proxy to itself"}},
		{"front proxies to itself by localhost", "http:\n  ip: 127.0.0.1\n  port: 8080\nupstreams:\n  hfs: http://localhost:8080\n",
			[]string{"upstreams.hfs: points at this front's own listen address 127.0.0.1:8080; the front would proxy to itself"}},
		{"other loopback address is fine", "http:\n  ip: 127.0.0.2\n  port: 3000\n", nil},

		{"platformDB address", "platformDB:\n  peerAddress: nowhere\n",
			[]string{`platformDB.peerAddress: must be host:port such as 127.0.0.1:2379, got "nowhere"`}},
		{"metrics listen", "metrics:\n  listen: ':9090'\n", nil},

		{"userLookup source", "dns:\n  userLookup:\n    source: etcd\n", []string{`dns.userLookup.source: must be one of api, rqlite, off, got "etcd"`}},
		{"userLookup timeout zero", "dns:\n  userLookup:\n    timeout: 0s\n", []string{"dns.userLookup.timeout: must be more than 0 and at most 5s, got 0s"}},
		{"userLookup timeout long", "dns:\n  userLookup:\n    timeout: 6s\n", []string{"dns.userLookup.timeout: must be more than 0 and at most 5s, got 6s"}},
		{"userLookup timeout 5s", "dns:\n  userLookup:\n    timeout: 5s\n", nil},
		{"userLookup rate zero", "dns:\n  userLookup:\n    maxPerSecond: 0\n", []string{"dns.userLookup.maxPerSecond: must be at least 1, got 0"}},
		{"piiMode", "platform:\n  piiMode: plain\n", []string{`platform.piiMode: must be one of hashed, cleartext, got "plain"`}},
		{"piiAlgorithm", "platform:\n  piiAlgorithm: sha1\n", []string{`platform.piiAlgorithm: must be hmac-sha256 (the only algorithm the core has), got "sha1"`}},
		{"piiHmacKey needed for rqlite lookups", mc + "  active: true\n  userLookup:\n    source: rqlite\n",
			[]string{"platform.piiHmacKey: required when dns.userLookup.source is rqlite and platform.piiMode is hashed; set it to " + piiKeyHint}},
		{"piiHmacKey not needed in cleartext", mc + "  active: true\n  userLookup:\n    source: rqlite\nplatform:\n  piiMode: cleartext\n", nil},
		{"piiHmacKey not needed for api lookups", mc + "  active: true\n", nil},
		{"piiHmacKey given", mc + "  active: true\n  userLookup:\n    source: rqlite\nplatform:\n  piiHmacKey: " + testAtRestKey + "\n", nil},
		{"piiHmacKey short", "platform:\n  piiHmacKey: AAECAwQFBgcICQoLDA0ODw==\n",
			[]string{"platform.piiHmacKey: must be the base64 of exactly 32 random bytes (got 16 bytes); " + piiKeyHint}},
		{"piiHmacKey unread in cleartext", "platform:\n  piiMode: cleartext\n  piiHmacKey: REPLACE ME\n", nil},
		{"rqlite url", "storages:\n  engines:\n    rqlite:\n      url: localhost:4001\n", []string{`storages.engines.rqlite.url: must be an http:// or https:// URL, got "localhost:4001"`}},
		{"rqlite url password not echoed", "storages:\n  engines:\n    rqlite:\n      url: ftp://admin:s3cret@db:4001\n", []string{`storages.engines.rqlite.url: must be an http:// or https:// URL, got "ftp://xxxxx@db:4001"`}},
		{"rqlite url unparsable password not echoed", "storages:\n  engines:\n    rqlite:\n      url: \"http://admin:s3cret@db:4001/%zz\"\n", []string{`storages.engines.rqlite.url: must be an http:// or https:// URL, got "http://xxxxx@db:4001/%zz"`}},
		{"rqlite url no scheme password not echoed", "storages:\n  engines:\n    rqlite:\n      url: admin:s3cret@db:4001\n", []string{`storages.engines.rqlite.url: must be an http:// or https:// URL, got "xxxxx@db:4001"`}},
		{"rqlite url https", "storages:\n  engines:\n    rqlite:\n      url: https://rqlite.internal:4001\n", nil},
		{"misplaced core storage key", "storages:\n  base:\n    engine: postgresql\n", []string{"cfg.yml:2: storages.base: unknown key"}},
		{"core keys accepted", "core:\n  cname: core-a.example.net\n  available: false\n  nonVoter: true\n", nil},
		{"core.cname", "core:\n  cname: 'not a name'\n", []string{`core.cname: "not a name" is not a valid host name`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assertProblems(t, tt.yml, tt.want) })
	}
}

func TestLoudErrorExactText(t *testing.T) {
	want := "letsEncrypt.enabled is true but no hostname can be derived from the topology: set dnsLess.isActive: true with dnsLess.publicUrl (single core), dns.domain (multi-core with embedded DNS: wildcard *.{domain} by DNS-01), or core.url (multi-core with DNSless overrides); there is intentionally no letsEncrypt.hostnames key"
	if NoHostnameError != want {
		t.Errorf("NoHostnameError = %q", NoHostnameError)
	}
}
