package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/front"
)

var testIPs = []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}

// platform is three cores as doctor sees them: each an authoritative DNS
// for the zone (signed with one key), a TLS front and an HTTP-01 port, and
// an ACME directory.
type platform struct {
	zones []*zoneServer
	key   *dns.DNSKEY
	ca    *devpki.CA

	mu    sync.Mutex
	certs map[string]*tls.Certificate // by core IP
	skew  map[string]time.Duration    // each front's clock, off the real one

	o Options
}

func newPlatform(t *testing.T) *platform {
	t.Helper()
	p := &platform{certs: map[string]*tls.Certificate{}, skew: map[string]time.Duration{}}
	key, priv := newKey(t)
	p.key = key
	for i, ip := range testIPs {
		z := &zoneServer{rrs: map[rrKey][]dns.RR{}}
		z.set(
			testDomain+". 300 IN SOA core."+testDomain+". hostmaster."+testDomain+". 7 3600 600 86400 300",
			testDomain+". 300 IN NS core."+testDomain+".",
			"core."+testDomain+". 300 IN A "+ip, // each core names itself
			testDomain+`. 300 IN CAA 0 issue "ca.test; accounturi=`+testAccount+`; validationmethods=dns-01"`,
			testDomain+`. 300 IN CAA 0 issuewild "ca.test; accounturi=`+testAccount+`; validationmethods=dns-01"`,
		)
		z.sign(t, key, priv)
		p.zones = append(p.zones, z)
		_ = i
	}
	dnsPort := startDNS(t, testIPs, p.zones)
	ca, err := devpki.NewCA("doctor test CA")
	if err != nil {
		t.Fatal(err)
	}
	p.ca = ca
	cert := issue(t, ca, devpki.Leaf{Names: []string{"*." + testDomain, testDomain}})
	for _, ip := range testIPs {
		p.certs[ip] = cert
	}
	get := func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		ip, _, _ := net.SplitHostPort(h.Conn.LocalAddr().String())
		return p.certs[ip], nil
	}
	front := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		ip, _, _ := net.SplitHostPort(r.Context().Value(http.LocalAddrContextKey).(net.Addr).String())
		skew := p.skew[ip]
		p.mu.Unlock()
		w.Header().Set("Date", time.Now().Add(skew).UTC().Format(http.TimeFormat))
		http.Error(w, "no upstream", http.StatusBadGateway)
	})
	frontPort := startHTTPS(t, testIPs, get, front)
	http01 := startHTTP(t, testIPs, http.NotFoundHandler())
	dir, dirRoots := acmeDirectory(t, "ca.test")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	ds := key.ToDS(dns.SHA256)
	p.o = Options{
		Domain: testDomain, DNSPort: dnsPort,
		Cores:  []Core{{"core1", testIPs[0]}, {"core2", testIPs[1]}, {"core3", testIPs[2]}},
		DNSSEC: true, DS: []string{ds.String()},
		CAA:       &CAAWant{AccountURI: testAccount, Methods: []string{"dns-01"}, WildMethods: []string{"dns-01"}},
		FrontPort: frontPort, FrontTLS: true, Names: []string{testDomain}, Roots: roots,
		HTTP01Port: http01, HTTP01Name: "core1.other.example",
		PlatformDB: &PlatformDBState{SelfID: "core1", Up: true, Leader: true,
			Members: []Member{{"core1", true}, {"core2", true}, {"core3", true}}},
		Directory: dir, DirectoryRoots: dirRoots,
		Timeout: 2 * time.Second,
	}
	return p
}

func (p *platform) setCert(ip string, c *tls.Certificate) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.certs[ip] = c
}

func (p *platform) run(t *testing.T) []Result {
	t.Helper()
	// No bound on the wall time here: a check that is not answered is
	// reported by bounded (TestBounded), and a Run that waited for one would
	// hang the test, not slow it.
	return Run(context.Background(), p.o)
}

func dump(rs []Result) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "  %s %s: %s (fix: %s)\n", r.Check, r.Status, r.Detail, r.Fix)
	}
	return b.String()
}

// TestHealthyPlatform: every check passes on three healthy cores (the
// public one is not asked), and each per-core check names every core.
func TestHealthyPlatform(t *testing.T) {
	p := newPlatform(t)
	rs := p.run(t)
	seen := map[string]int{}
	for _, r := range rs {
		seen[r.Check]++
		want := Pass
		if r.Check == "public dns" || r.Check == "tls-alpn-01" {
			want = Skip // not asked; no name uses it
		}
		if r.Status != want {
			t.Errorf("%s: %s, want %s:\n%s", r.Check, r.Status, want, dump(rs))
		}
	}
	if Failed(rs) {
		t.Error("Failed on a healthy platform")
	}
	for _, c := range []string{"dns", "dnssec", "http-01 port", "tls", "clock"} {
		if seen[c] != 3 {
			t.Errorf("%s: %d results, want one per core:\n%s", c, seen[c], dump(rs))
		}
	}
	for _, c := range checks {
		if seen[c.name] == 0 {
			t.Errorf("check %s gave no result", c.name)
		}
	}
}

// TestFaults: each fault fails its check, naming what is wrong, while the
// platform is otherwise healthy.
func TestFaults(t *testing.T) {
	cases := []struct {
		name  string
		fault func(t *testing.T, p *platform)
		check string
		want  string // in the failed result's detail
	}{
		{"a core's DNS silent", func(t *testing.T, p *platform) { p.zones[1].with(func(z *zoneServer) { z.silent = true }) },
			"dns", "core core2 (127.0.0.2): its DNS at 127.0.0.2:"},
		{"a serial behind", func(t *testing.T, p *platform) {
			p.zones[2].drop(testDomain, dns.TypeSOA)
			p.zones[2].set(testDomain + ". 300 IN SOA core." + testDomain + ". hostmaster." + testDomain + ". 5 3600 600 86400 300")
		}, "dns", "SOA serials differ across cores: 5 on core3; 7 on core1, core2"},
		{"NS at a stranger", func(t *testing.T, p *platform) {
			p.zones[0].drop("core."+testDomain, dns.TypeA)
			p.zones[0].set("core." + testDomain + ". 300 IN A 192.0.2.9")
		}, "ns", "resolves on core core1 (127.0.0.1) to 192.0.2.9, which is not a core's address"},
		{"CAA for another account", func(t *testing.T, p *platform) { p.o.CAA.AccountURI = "https://ca.test/acme/acct/43" },
			"caa", "is for another account (ours: https://ca.test/acme/acct/43)"},
		{"CAA for another CA", func(t *testing.T, p *platform) { p.o.CAA.Issuers = []string{"letsencrypt.org"} },
			"caa", `names issuer "ca.test", not letsencrypt.org`},
		{"CAA without our method", func(t *testing.T, p *platform) { p.o.CAA.Methods = []string{"http-01"} },
			"caa", "does not allow http-01"},
		{"DS of another key", func(t *testing.T, p *platform) {
			other, _ := newKey(t)
			p.o.DS = []string{other.ToDS(dns.SHA256).String()}
		}, "dnssec", "no DNSKEY matches the DS"},
		{"a core unsigned", func(t *testing.T, p *platform) {
			p.zones[2].with(func(z *zoneServer) { z.key = nil })
			p.zones[2].drop(testDomain, dns.TypeDNSKEY)
		}, "dnssec", "core core3 (127.0.0.3) publishes no DNSKEY"},
		{"signatures expired", func(t *testing.T, p *platform) {
			p.zones[1].with(func(z *zoneServer) {
				z.inception, z.expiration = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
			})
		}, "dnssec", "core core2 (127.0.0.2): the DNSKEY signature is valid"},
		{"the placeholder served", func(t *testing.T, p *platform) {
			c, err := certs.Placeholder([]string{testDomain}, time.Hour, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			p.setCert(testIPs[1], c)
		}, "tls", "core core2 (127.0.0.2): serves the self-signed placeholder for " + testDomain},
		{"an expired certificate", func(t *testing.T, p *platform) {
			p.setCert(testIPs[2], issue(t, p.ca, devpki.Leaf{Names: []string{testDomain}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}))
		}, "tls", "core core3 (127.0.0.3): the certificate for " + testDomain + " expired"},
		{"a certificate of other names", func(t *testing.T, p *platform) {
			p.setCert(testIPs[0], issue(t, p.ca, devpki.Leaf{Names: []string{"other.example"}}))
		}, "tls", "the certificate for " + testDomain + " names other.example"},
		{"a skewed clock", func(t *testing.T, p *platform) {
			p.mu.Lock()
			p.skew[testIPs[2]] = -2 * time.Minute
			p.mu.Unlock()
		},
			// The state, not the measured figure: the skew is read from the
			// core's answer, so 2 minutes reads -2m0s or -1m59s.
			"clock", "core core3 (127.0.0.3): its clock is -"},
		{"a PlatformDB member down", func(t *testing.T, p *platform) { p.o.PlatformDB.Members[1].Healthy = false },
			"platformdb", "PlatformDB members down: core2 (2 of 3 answer)"},
		{"no quorum", func(t *testing.T, p *platform) { p.o.PlatformDB.Up = false },
			"platformdb", "this core's PlatformDB member does not answer a quorum read"},
		{"the running core unreachable", func(t *testing.T, p *platform) {
			p.o.PlatformDB, p.o.PlatformDBErr = nil, "cannot reach the running core"
		},
			"platformdb", "cannot reach the running core"},
		{"a directory of an unknown CA", func(t *testing.T, p *platform) { p.o.DirectoryRoots = x509.NewCertPool() },
			"acme directory", "certificate signed by unknown authority"},
		{"no HTTP-01 port", func(t *testing.T, p *platform) { p.o.HTTP01Port = closedPort(t) },
			"http-01 port", "connection refused (nothing listens there)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlatform(t)
			tc.fault(t, p)
			rs := p.run(t)
			if !Failed(rs) {
				t.Fatalf("not failed:\n%s", dump(rs))
			}
			found := false
			for _, r := range rs {
				switch {
				case r.Status != Fail:
				case r.Check == tc.check && strings.Contains(r.Detail, tc.want):
					found = true
					if r.Fix == "" {
						t.Errorf("%s fails without a fix: %s", r.Check, r.Detail)
					}
				case r.Check != tc.check:
					t.Errorf("another check failed too: %s: %s", r.Check, r.Detail)
				}
			}
			if !found {
				t.Fatalf("no %s failure with %q:\n%s", tc.check, tc.want, dump(rs))
			}
		})
	}
}

// closedPort is a TCP port on 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// TestWarnings: what is worth a look but does not stop issuance warns,
// and doctor still passes.
func TestWarnings(t *testing.T) {
	cases := []struct {
		name  string
		fault func(t *testing.T, p *platform)
		check string
		want  string
	}{
		{"CAA not bound to an account", func(t *testing.T, p *platform) {
			for _, z := range p.zones {
				z.drop(testDomain, dns.TypeCAA)
				z.set(testDomain + `. 300 IN CAA 0 issue "ca.test"`)
			}
			p.o.CAA.Operator = true
		}, "caa", `CAA issue "ca.test" allows the CA, but for any account`},
		{"no CAA before the first account", func(t *testing.T, p *platform) {
			for _, z := range p.zones {
				z.drop(testDomain, dns.TypeCAA)
			}
			p.o.CAA.AccountURI = ""
		}, "caa", "no CAA record at " + testDomain + " yet (no ACME account yet)"},
		{"a core no NS leads to", func(t *testing.T, p *platform) {
			p.zones[2].drop("core."+testDomain, dns.TypeA)
			p.zones[2].set("core." + testDomain + ". 300 IN A " + testIPs[0])
		}, "ns", "no NS name leads to core3 (127.0.0.3): resolvers never ask it"},
		{"a certificate of a private CA", func(t *testing.T, p *platform) { p.o.Roots = x509.NewCertPool() },
			"tls", "is not trusted by this machine's roots"},
		{"public resolvers unreachable", func(t *testing.T, p *platform) {
			p.o.Public, p.o.PublicResolvers = true, []string{silentUDP(t), silentUDP(t)}
		}, "public dns", "unreachable from here (no answer in time): what the CA sees is not checked"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlatform(t)
			tc.fault(t, p)
			rs := p.run(t)
			if Failed(rs) {
				t.Fatalf("failed:\n%s", dump(rs))
			}
			found := false
			for _, r := range rs {
				if r.Status == Warn && r.Check == tc.check && strings.Contains(r.Detail, tc.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("no %s warning with %q:\n%s", tc.check, tc.want, dump(rs))
			}
		})
	}
}

// silentUDP is a UDP address that reads and never answers.
func silentUDP(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// TestPublicResolver: a resolver that answers the zone's NS passes; one
// that answers others fails (the delegation is wrong); one that answers
// everything NXDOMAIN, even the root (a network intercepting DNS, as on a
// machine without internet), is a warning. With DNSSEC, the parent's DS
// must match a key of the zone.
func TestPublicResolver(t *testing.T) {
	resolver := func(rcode int, rrs ...string) string {
		z := &zoneServer{rrs: map[rrKey][]dns.RR{}, rcode: rcode}
		z.set(rrs...)
		port := startDNS(t, []string{"127.0.0.4"}, []*zoneServer{z})
		return fmt.Sprintf("127.0.0.4:%d", port)
	}
	const root = ". 300 IN NS a.root-servers.net."
	ns := testDomain + ". 300 IN NS core." + testDomain + "."
	otherDS := testDomain + ". 300 IN DS 1234 13 2 " + strings.Repeat("AB", 32)
	for _, tc := range []struct {
		name     string
		dnssec   bool
		resolver func(p *platform) string
		status   Status
		want     string
	}{
		{"sees the zone's NS", false, func(*platform) string { return resolver(0, root, ns) }, Pass, "NS core." + testDomain + "., as the zone publishes"},
		{"sees another delegation", false, func(*platform) string { return resolver(0, root, testDomain+". 300 IN NS ns1.registrar.example.") },
			Fail, "NS ns1.registrar.example.; the zone publishes core." + testDomain + "."},
		{"sees no delegation", false, func(*platform) string { return resolver(0, root) }, Fail, "NS none; the zone publishes core." + testDomain + "."},
		{"intercepted", false, func(*platform) string { return resolver(dns.RcodeNameError) }, Warn, "it does not resolve the root's NS: the DNS is intercepted"},
		{"no route", false, func(*platform) string { return silentUDP(t) }, Warn, "unreachable from here (no answer in time)"},
		{"sees our DS", true, func(p *platform) string { return resolver(0, root, ns, p.key.ToDS(dns.SHA256).String()) }, Pass, "as the zone publishes"},
		{"sees no DS", true, func(*platform) string { return resolver(0, root, ns) }, Warn, "the parent publishes no DS for " + testDomain},
		{"sees another DS", true, func(*platform) string { return resolver(0, root, ns, otherDS) }, Fail,
			"the parent's DS for " + testDomain + " (1234 2 " + strings.Repeat("AB", 32) + ") matches none of the zone's keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlatform(t)
			p.o.DNSSEC = tc.dnssec
			p.o.Public, p.o.PublicResolvers = true, []string{tc.resolver(p)}
			var got []Result
			for _, r := range p.run(t) {
				if r.Check == "public dns" {
					got = append(got, r)
				}
			}
			if len(got) != 1 || got[0].Status != tc.status || !strings.Contains(got[0].Detail, tc.want) {
				t.Fatalf("got %+v, want %s with %q", got, tc.status, tc.want)
			}
		})
	}
}

// TestBounded: a check that ignores its context is reported once the time
// is up, not waited for.
func TestBounded(t *testing.T) {
	d := &doctor{Options: Options{Timeout: 200 * time.Millisecond}}
	release := make(chan struct{})
	defer close(release)
	entered := make(chan struct{})
	answered := make(chan []Result, 1)
	go func() {
		answered <- bounded(context.Background(), check{"stuck", func(context.Context, *doctor) []Result {
			close(entered)
			<-release // released only when the test ends
			return nil
		}}, d)
	}()
	<-entered
	var rs []Result
	select {
	case rs = <-answered: // the check is still blocked: bounded did not wait for it
	case <-time.After(30 * time.Second): // a hang guard, not a timing target
		t.Fatal("bounded waited for a check that ignores its context")
	}
	if len(rs) != 1 || rs[0].Status != Fail || rs[0].Check != "stuck" || !strings.Contains(rs[0].Detail, "no result within 200ms") {
		t.Fatalf("%+v", rs)
	}
}

func TestParseCAA(t *testing.T) {
	for _, tc := range []struct {
		in     string
		issuer string
		params map[string]string
	}{
		{"letsencrypt.org", "letsencrypt.org", map[string]string{}},
		{"LetsEncrypt.org; accounturi=https://a/b ; validationmethods=dns-01,http-01", "letsencrypt.org",
			map[string]string{"accounturi": "https://a/b", "validationmethods": "dns-01,http-01"}},
		{";", "", map[string]string{}},
	} {
		issuer, params := parseCAA(tc.in)
		if issuer != tc.issuer || fmt.Sprint(params) != fmt.Sprint(tc.params) {
			t.Errorf("parseCAA(%q) = %q %v, want %q %v", tc.in, issuer, params, tc.issuer, tc.params)
		}
	}
}

// TestTLSALPN: the real front with a TLS-ALPN-01 responder that has no
// challenge pending (it refuses, as acme's does) passes on every core; a
// core whose front has none fails, named.
func TestTLSALPN(t *testing.T) {
	p := newPlatform(t)
	cert := issue(t, p.ca, devpki.Leaf{Names: []string{"core.other.example"}})
	noChallenge := func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, fmt.Errorf("no TLS-ALPN-01 challenge for %s", h.ServerName)
	}
	up, _ := url.Parse("http://127.0.0.1:1")
	port := sameListeners(t, testIPs, func(addr string) (func(), error) {
		o := front.Options{Addr: addr, API: up, HFS: up, Logger: slog.New(slog.DiscardHandler),
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }}
		if !strings.HasPrefix(addr, testIPs[1]+":") { // core2 has no responder
			o.ACMETLS = noChallenge
		}
		f, err := front.New(o)
		if err != nil {
			return nil, err
		}
		if err := f.Listen(); err != nil {
			return nil, err
		}
		go func() { _ = f.Serve() }() // ends with the Shutdown below
		return func() { _ = f.Shutdown(context.Background()) }, nil
	})
	p.o.FrontPort, p.o.TLSALPNName, p.o.Names = port, "core.other.example", []string{"core.other.example"}
	got := map[string]Result{}
	for _, r := range p.run(t) {
		if r.Check == "tls-alpn-01" {
			got[strings.Fields(r.Detail)[1]] = r
		}
	}
	for _, id := range []string{"core1", "core3"} {
		if r := got[id]; r.Status != Pass || !strings.Contains(r.Detail, "offers acme-tls/1 (no challenge pending") {
			t.Errorf("%s: %+v", id, r)
		}
	}
	if r := got["core2"]; r.Status != Fail || !strings.Contains(r.Detail, "does not offer acme-tls/1") {
		t.Errorf("core2 (no responder): %+v", r)
	}
}
