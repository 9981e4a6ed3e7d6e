package dnsdata

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	legochallenge "github.com/go-acme/lego/v5/challenge"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/platformdb/platformdbtest"
	"github.com/pryv/pryv-tls/internal/testutil"
)

// lego drives DNS01 through these interfaces.
var _ legochallenge.ProviderTimeout = (*DNS01)(nil)

// rfc8555Value is the TXT value of RFC 8555 §8.4, computed here
// independently: base64url(SHA-256(keyAuthorization)), no padding.
func rfc8555Value(keyAuth string) string {
	sum := sha256.Sum256([]byte(keyAuth))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestDNS01Value(t *testing.T) {
	t.Setenv("LEGO_DISABLE_CNAME_SUPPORT", "true") // no lookups in lego's GetChallengeInfo
	for _, c := range []struct{ domain, fqdn string }{
		{"mc.example.com", "_acme-challenge.mc.example.com"},
		{"*.mc.example.com", "_acme-challenge.mc.example.com"},
		{"App.MC.example.com", "_acme-challenge.app.mc.example.com"},
	} {
		ka := "tok-" + c.domain + ".thumbprint"
		fqdn, value := challenge(c.domain, ka)
		if fqdn != c.fqdn {
			t.Errorf("%s: fqdn %q, want %q", c.domain, fqdn, c.fqdn)
		}
		want := rfc8555Value(ka)
		if value != want || len(value) != 43 || strings.ContainsAny(value, "=+/") {
			t.Errorf("%s: value %q, want %q (43 base64url characters, no padding)", c.domain, value, want)
		}
		info := dns01.GetChallengeInfo(context.Background(), strings.TrimPrefix(c.domain, "*."), ka)
		if info.Value != value || !strings.EqualFold(info.FQDN, c.fqdn+".") {
			t.Errorf("%s: lego says %q at %q, we %q at %q", c.domain, info.Value, info.FQDN, value, fqdn)
		}
	}
	// One row per value: distinct values never share a key.
	_, v1 := challenge("mc.example.com", "a")
	_, v2 := challenge("mc.example.com", "b")
	if challengeRow("_acme-challenge.mc.example.com", v1) == challengeRow("_acme-challenge.mc.example.com", v2) {
		t.Error("two values, one row key")
	}
}

func TestDNS01Timeout(t *testing.T) {
	timeout, interval := (&DNS01{}).Timeout()
	if timeout != 2*time.Minute || interval <= 0 || interval > time.Second {
		t.Errorf("default Timeout() = %v, %v", timeout, interval)
	}
	if timeout, _ := (&DNS01{PropagationTimeout: 30 * time.Second}).Timeout(); timeout != 30*time.Second {
		t.Errorf("Timeout() = %v, want the configured 30 s", timeout)
	}
}

// TestDNS01EndToEnd publishes through PlatformDB, the watcher and a real
// DNS server, as lego does for an order of mc.example.com and
// *.mc.example.com (two authorisations, one name, two values).
func TestDNS01EndToEnd(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	h := newHarness(t, db, staticConfig())
	h.run()

	var servers []string
	p := &DNS01{KV: db, Servers: func() []string { return slices.Clone(servers) }}
	const name = "_acme-challenge.mc.example.com"
	kaApex, kaWild := "token-apex.thumbprint", "token-wild.thumbprint"
	vApex, vWild := rfc8555Value(kaApex), rfc8555Value(kaWild)

	txtAt := func(netw, addr, qname string) []string {
		resp, err := query(netw, addr, qname, dns.TypeTXT)
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		if resp.Rcode != dns.RcodeSuccess {
			return []string{dns.RcodeToString[resp.Rcode]}
		}
		return txtValues(resp.Answer)
	}
	waitTXT := func(qname string, want ...string) {
		t.Helper()
		slices.Sort(want)
		for _, netw := range []string{"udp", "tcp"} {
			testutil.Eventually(t, 10*time.Second, netw+" TXT "+qname, func() (bool, string) {
				got := txtAt(netw, h.addr, qname)
				return slices.Equal(got, want), strings.Join(got, " ")
			})
		}
	}
	propagated := func(value string) bool {
		t.Helper()
		ok, err := p.Propagated(ctx, name+".", value)
		if err != nil {
			t.Fatalf("Propagated: %v", err)
		}
		return ok
	}

	servers = []string{h.addr}
	if propagated(vApex) {
		t.Fatal("Propagated before Present")
	}

	t.Run("apex and wildcard values side by side", func(t *testing.T) {
		// lego passes the identifier without "*." for the wildcard's authorisation.
		if err := p.Present(ctx, "mc.example.com", "token-apex", kaApex); err != nil {
			t.Fatal(err)
		}
		if err := p.Present(ctx, "mc.example.com", "token-wild", kaWild); err != nil {
			t.Fatal(err)
		}
		// Presenting again is harmless.
		if err := p.Present(ctx, "mc.example.com", "token-apex", kaApex); err != nil {
			t.Fatal(err)
		}
		waitTXT(name, vApex, vWild)
		resp := mustQuery(t, "udp", h.addr, name, dns.TypeTXT)
		if !resp.Authoritative || len(resp.Answer) != 2 {
			t.Errorf("answer %v", resp)
		}
		for _, rr := range resp.Answer {
			if rr.Header().Ttl != 60 {
				t.Errorf("TTL %d, want 60", rr.Header().Ttl)
			}
		}
		entries, _, err := db.List(ctx, ChallengePrefix)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 2 {
			t.Fatalf("%d challenge rows, want 2 (one per value): %v", len(entries), entries)
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Key, ChallengePrefix+name+"/") {
				t.Errorf("row %s", e.Key)
			}
		}
		if !propagated(vApex) || !propagated(vWild) {
			t.Error("Propagated false for values answered by the only server")
		}
		if propagated(rfc8555Value("some.other")) {
			t.Error("Propagated true for a value never published")
		}
	})

	// A second core whose watcher has not caught up yet: static zone only.
	// (Made here: it must outlive the subtest.)
	h2 := newHarness(t, db, staticConfig())
	silent := silentUDP(t)

	t.Run("every server must answer", func(t *testing.T) {
		servers = []string{h.addr, h2.addr}
		if propagated(vApex) {
			t.Fatal("Propagated true while the second server does not answer the value")
		}
		h2.run()
		testutil.Eventually(t, 10*time.Second, "propagated to both servers", func() (bool, string) {
			return propagated(vApex), strings.Join(txtAt("udp", h2.addr, name), " ")
		})

		// A server that never answers: false, within the bounded wait.
		servers = []string{h.addr, silent}
		begin := time.Now()
		bctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		ok, err := p.Propagated(bctx, name, vApex)
		cancel()
		if ok || err != nil {
			t.Errorf("silent server (ctx 300 ms): %v, %v", ok, err)
		}
		if d := time.Since(begin); d > 2*time.Second {
			t.Errorf("silent server: Propagated took %v under a 300 ms context", d)
		}
		begin = time.Now()
		if ok, err := p.Propagated(context.Background(), name, vApex); ok || err != nil {
			t.Errorf("silent server: %v, %v", ok, err)
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("silent server: Propagated took %v without a context deadline", d)
		}
		// A port nobody listens on.
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := pc.LocalAddr().String()
		_ = pc.Close()
		servers = []string{closed, h.addr}
		if propagated(vApex) {
			t.Error("Propagated true with a server that is not there")
		}

		// Skipping the check trusts the write: true at once.
		skip := &DNS01{KV: db, SkipPropagationCheck: true, Servers: func() []string { return []string{silent} }}
		begin = time.Now()
		if ok, err := skip.Propagated(ctx, name, "never-published"); !ok || err != nil {
			t.Errorf("SkipPropagationCheck: %v, %v", ok, err)
		}
		if d := time.Since(begin); d > 100*time.Millisecond {
			t.Errorf("SkipPropagationCheck took %v", d)
		}
		servers = []string{h.addr, h2.addr}
	})

	// A third core that lags: it answers its zone, loaded from a store
	// that never got the value (made here: it outlives the subtest). A core
	// that never loaded any rows answers SERVFAIL, and is skipped as down.
	h3 := newHarness(t, platformdbtest.Open(t), staticConfig())
	h3.run()
	h3.waitA("udp", "nobody."+testDomain, "NXDOMAIN") // loaded

	t.Run("a dead core is skipped, a majority answers", func(t *testing.T) {
		// Three cores, one down (issue 18: one dead core broke every
		// wildcard order): the two that answer carry the value.
		var logs bytes.Buffer
		p.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		defer func() { p.Logger = nil }()
		servers = []string{h.addr, h2.addr, silent}
		begin := time.Now()
		if !propagated(vApex) {
			t.Fatal("Propagated false with 2 of 3 servers answering the value and the third down")
		}
		if d := time.Since(begin); d > 3*time.Second {
			t.Errorf("took %v: the servers are not asked in parallel", d)
		}
		if !strings.Contains(logs.String(), "skipped") || !strings.Contains(logs.String(), silent) {
			t.Errorf("the skipped server is not logged: %q", logs.String())
		}
		// Down counts against the majority: 1 of 3 is not enough.
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := pc.LocalAddr().String()
		_ = pc.Close()
		servers = []string{h.addr, closed, silent}
		if propagated(vApex) {
			t.Error("Propagated true with 1 of 3 servers answering")
		}
		// A core that answers without the value is waited for, even when
		// a majority has it: the CA could ask it.
		servers = []string{h.addr, h2.addr, h3.addr}
		if propagated(vApex) {
			t.Error("Propagated true while a live server answers without the value")
		}
		servers = []string{h.addr, h2.addr}
	})

	t.Run("cleanup removes exactly one value", func(t *testing.T) {
		if err := p.CleanUp(ctx, "mc.example.com", "token-wild", kaWild); err != nil {
			t.Fatal(err)
		}
		waitTXT(name, vApex)
		testutil.Eventually(t, 10*time.Second, "wildcard value gone everywhere", func() (bool, string) {
			return !propagated(vWild), ""
		})
		if !propagated(vApex) {
			t.Error("the apex value is no longer answered after cleaning up the wildcard's")
		}
		if err := p.CleanUp(ctx, "mc.example.com", "token-apex", kaApex); err != nil {
			t.Fatal(err)
		}
		waitTXT(name, "NXDOMAIN")
		// Cleaning up again (lego does after a failure) is not an error.
		if err := p.CleanUp(ctx, "mc.example.com", "token-apex", kaApex); err != nil {
			t.Errorf("second CleanUp: %v", err)
		}
		if entries, _, err := db.List(ctx, ChallengePrefix); err != nil || len(entries) != 0 {
			t.Errorf("rows left: %v %v", entries, err)
		}
	})

	t.Run("other names", func(t *testing.T) {
		kaSub, kaOut := "token-sub.thumbprint", "token-out.thumbprint"
		if err := p.Present(ctx, "App.MC.Example.com", "token-sub", kaSub); err != nil {
			t.Fatal(err)
		}
		// Outside the platform domain: stored, never served, harmless.
		if err := p.Present(ctx, "other.example.org", "token-out", kaOut); err != nil {
			t.Fatal(err)
		}
		waitTXT("_acme-challenge.app."+testDomain, rfc8555Value(kaSub))
		if got := txtAt("udp", h.addr, "_acme-challenge.other.example.org"); !slices.Equal(got, []string{"REFUSED"}) {
			t.Errorf("outside the zone: %q", got)
		}
		testutil.Eventually(t, 10*time.Second, "sub value propagated to both servers", func() (bool, string) {
			ok, err := p.Propagated(ctx, "_acme-challenge.app.mc.example.com.", rfc8555Value(kaSub))
			return ok && err == nil, strings.Join(txtAt("udp", h2.addr, "_acme-challenge.app."+testDomain), " ")
		})
		for _, c := range [][3]string{{"app.mc.example.com", "token-sub", kaSub}, {"other.example.org", "token-out", kaOut}} {
			if err := p.CleanUp(ctx, c[0], c[1], c[2]); err != nil {
				t.Error(err)
			}
		}
		waitTXT("_acme-challenge.app."+testDomain, "NXDOMAIN")
	})
}
