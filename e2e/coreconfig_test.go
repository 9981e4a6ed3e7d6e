package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// coreDefaultConfig is open-pryv.io's config/default-config.yml, verbatim.
const coreDefaultConfig = "../internal/config/testdata/core/default-config.yml"

// coreConfigFiles writes an open-pryv.io override-config.yml in the core's
// own shapes (map staticEntries, mx/caa/soa objects, its own listeners on
// ports pryv-tls must not take) and pryv-tls's own file, and returns the
// flags that load them.
func coreConfigFiles(t *testing.T, dir, domain string, dnsPort, frontPort int) []string {
	t.Helper()
	override := filepath.Join(dir, "override-config.yml")
	writeFile(t, override, yamlConfig(
		"http: {ip: 127.0.0.1, port: 3000, hfsPort: 4000}",
		"core: {id: core1, ip: 127.0.0.1, cname: null, available: true, nonVoter: false}",
		"dnsLess: {isActive: false}",
		"dns:",
		"  domain: "+domain,
		"  active: true",
		"  port: 53",
		"  ip: 0.0.0.0",
		"  publicIp: 127.0.0.1",
		"  defaultTTL: 120",
		"  staticEntries:",
		"    sw: { a: ['127.0.0.10', '127.0.0.11'] }",
		"    mail: { a: 127.0.0.20 }",
		"    www: { cname: sw."+domain+" }",
		"    _dmarc: { txt: 'v=DMARC1; p=none' }",
		"  records:",
		"    root:",
		"      mx: [{exchange: mail."+domain+", priority: 20}, {exchange: backup-mx.example.net}]",
		"      caa: [{flags: 0, tag: issue, value: letsencrypt.org}, {tag: iodef, value: 'mailto:ops@example.com'}]",
		"      soa:",
		"        primary: core."+domain+".",
		"        admin: hostmaster."+domain+".",
		"        serial: 1700000000",
		"        refresh: 3601",
		"        retry: 601",
		"        expiration: 604801",
		"        minimum: 61",
		"letsEncrypt: {enabled: false}",
		"cluster: {apiWorkers: 2, ca: {path: "+filepath.Join(dir, "ca")+"}, tokens: {path: /var/lib/pryv/t.json}}",
		"storages: {base: {engine: sqlite}, engines: {rqlite: {url: 'http://localhost:4001'}}}",
		"platform: {piiMode: hashed, piiHmacKey: ''}",
		"services: {email: {method: microservice}}",
	), 0o644)
	own := filepath.Join(dir, "pryv-tls.yml")
	writeFile(t, own, yamlConfig(
		"http: {ip: 127.0.0.1, port: "+itoa(frontPort)+"}",
		"dns: {active: true, ip: 127.0.0.1, port: "+itoa(dnsPort)+"}",
		"platformDB: {dataDir: "+filepath.Join(dir, "platformdb")+", peerAddress: '127.0.0.1:"+itoa(freePort(t))+"', clientAddress: '127.0.0.1:"+itoa(freePort(t))+"'}",
		"control: {socket: "+filepath.Join(dir, "run", "pryv-tls.sock")+"}",
	), 0o644)
	def, err := filepath.Abs(coreDefaultConfig) // serve runs in dir
	if err != nil {
		t.Fatal(err)
	}
	return []string{"--core-config", def, "--core-config", override, "--config", own}
}

// TestCoreConfigFiles is pryv-tls next to a real core's configuration: the
// binary loads open-pryv.io's default + override files (only the keys both
// share) under its own, and its DNS server answers the core's records.
func TestCoreConfigFiles(t *testing.T) {
	const domain = "cc.example.com"
	dir := t.TempDir()
	dnsPort := freeUDPTCPPort(t)
	port := freePort(t)
	args := coreConfigFiles(t, dir, domain, dnsPort, port)

	t.Run("config check", func(t *testing.T) {
		out, err := run(t, 30*time.Second, binary, append([]string{"config", "check"}, args...)...)
		if err != nil {
			t.Fatalf("config check: %v\n%s", err, out)
		}
		for _, want := range []string{
			"- 20 mail." + domain + ".",
			"- 10 backup-mx.example.net.",
			`- 0 issue "letsencrypt.org"`,
			"soa: core." + domain + ". hostmaster." + domain + ". 1700000000 3601 601 604801 61",
			"subdomain: sw",
			fmt.Sprintf("port: %d", dnsPort), // pryv-tls's, not the core's 53
			"configuration OK",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("config check output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "port: 53\n") || strings.Contains(out, "port: 3000") {
			t.Errorf("the core's own listeners leaked into pryv-tls's configuration:\n%s", out)
		}
	})

	t.Run("a wrong shared key names the core's file", func(t *testing.T) {
		bad := filepath.Join(dir, "bad-override.yml")
		writeFile(t, bad, yamlConfig("dns:", "  records:", "    root:", "      mx: [{exchange: m.example.com, priority: high}]"), 0o644)
		out, err := run(t, 30*time.Second, binary, "config", "check", "--core-config", bad, "--config", filepath.Join(dir, "pryv-tls.yml"))
		if err == nil || !strings.Contains(out, bad+`:4: dns.records.root.mx[0].priority: expected an integer, got "high"`) {
			t.Fatalf("config check with a bad core file: %v\n%s", err, out)
		}
	})

	c := startCoreIn(t, dir, fmt.Sprintf("127.0.0.1:%d", port), append([]string{"--log-format", "json"}, args...)...)
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", dnsPort)
	q := func(name string, qtype uint16, nw string) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		r, _, err := (&dns.Client{Net: nw, Timeout: 2 * time.Second}).Exchange(m, dnsAddr)
		if err != nil {
			t.Fatalf("%s %s over %s: %v\n%s", name, dns.TypeToString[qtype], nw, err, c.logs.String())
		}
		return r
	}
	for _, nw := range []string{"udp", "tcp"} {
		r := q("sw."+domain, dns.TypeA, nw)
		var as []string
		for _, rr := range r.Answer {
			as = append(as, rr.(*dns.A).A.String())
		}
		if strings.Join(as, ",") != "127.0.0.10,127.0.0.11" || r.Answer[0].Header().Ttl != 120 {
			t.Errorf("sw A over %s: %v", nw, r)
		}
		r = q("_dmarc."+domain, dns.TypeTXT, nw)
		if len(r.Answer) != 1 || strings.Join(r.Answer[0].(*dns.TXT).Txt, "") != "v=DMARC1; p=none" {
			t.Errorf("_dmarc TXT over %s: %v", nw, r)
		}
		r = q("www."+domain, dns.TypeCNAME, nw)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.CNAME).Target != "sw."+domain+"." {
			t.Errorf("www CNAME over %s: %v", nw, r)
		}
		r = q(domain, dns.TypeMX, nw)
		mx := map[string]uint16{}
		for _, rr := range r.Answer {
			mx[rr.(*dns.MX).Mx] = rr.(*dns.MX).Preference
		}
		if len(mx) != 2 || mx["mail."+domain+"."] != 20 || mx["backup-mx.example.net."] != 10 {
			t.Errorf("apex MX over %s: %v", nw, r)
		}
		r = q(domain, dns.TypeCAA, nw)
		caa := map[string]string{}
		for _, rr := range r.Answer {
			c := rr.(*dns.CAA)
			caa[c.Tag] = fmt.Sprintf("%d %s", c.Flag, c.Value)
		}
		if len(caa) != 2 || caa["issue"] != "0 letsencrypt.org" || caa["iodef"] != "0 mailto:ops@example.com" {
			t.Errorf("apex CAA over %s: %v", nw, r)
		}
		r = q(domain, dns.TypeSOA, nw)
		if len(r.Answer) != 1 {
			t.Fatalf("apex SOA over %s: %v", nw, r)
		}
		soa := r.Answer[0].(*dns.SOA)
		if soa.Ns != "core."+domain+"." || soa.Mbox != "hostmaster."+domain+"." ||
			soa.Refresh != 3601 || soa.Retry != 601 || soa.Expire != 604801 || soa.Minttl != 61 {
			t.Errorf("apex SOA over %s: %v", nw, soa)
		}
	}
}
