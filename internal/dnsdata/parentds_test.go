package dnsdata

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// parentResolver is a resolver on 127.0.0.1 (real DNS over UDP and TCP)
// answering the DS question with answer (may be nil), authority and rcode;
// it counts the DS queries it gets.
func parentResolver(t *testing.T, rcode int, truncate bool, answer, authority []dns.RR) (addr string, queries *atomic.Int64) {
	t.Helper()
	queries = new(atomic.Int64)
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Rcode = rcode
		if len(req.Question) == 1 && req.Question[0].Qtype == dns.TypeDS {
			queries.Add(1)
			_, udp := w.RemoteAddr().(*net.UDPAddr)
			if truncate && udp {
				m.Truncated = true
			} else {
				m.Answer, m.Ns = answer, authority
			}
		}
		_ = w.WriteMsg(m)
	})
	// UDP and TCP on one port: a port free for UDP may be taken for TCP.
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 50 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		_ = pc.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		go func() { _ = s.ActivateAndServe() }()
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return pc.LocalAddr().String(), queries
}

func testDNSKEY(t *testing.T) *dns.DNSKEY {
	t.Helper()
	k := &dns.DNSKEY{Hdr: dns.RR_Header{Name: testDomain + ".", Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 300},
		Flags: 257, Protocol: 3, Algorithm: dns.ECDSAP256SHA256}
	priv, err := k.Generate(256)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := priv.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("key %T", priv)
	}
	return k
}

// TestParentDS judges a parent's answer against the zone's key, through a
// real resolver on loopback: a matching DS (either digest) is fine; a DS of
// another key, or of ours with another digest, is a mismatch; the parent's
// NODATA is "absent"; every answer that tells nothing (an empty NOERROR
// without the parent's SOA, NXDOMAIN, SERVFAIL, no answer) is "cannot be
// checked", with no warning, within the bound.
func TestParentDS(t *testing.T) {
	key := testDNSKEY(t)
	other := testDNSKEY(t)
	ds256, ds384 := key.ToDS(dns.SHA256), key.ToDS(dns.SHA384)
	badDigest := *ds256
	badDigest.Digest = strings.Repeat("AB", 32)
	parentSOA := mustRRp(t, "example.com. 900 IN SOA ns.example.com. h.example.com. 1 2 3 4 300")
	ownSOA := mustRRp(t, testDomain+". 900 IN SOA ns.example.com. h.example.com. 1 2 3 4 300")
	for _, tc := range []struct {
		name      string
		rcode     int
		truncate  bool
		answer    []dns.RR
		authority []dns.RR
		want      ParentDSState
		detail    string
	}{
		{"our DS", 0, false, []dns.RR{ds256}, nil, DSMatches, "matches key"},
		{"our DS, SHA-384", 0, false, []dns.RR{ds384}, nil, DSMatches, "matches key"},
		{"ours among others", 0, false, []dns.RR{other.ToDS(dns.SHA256), ds256}, nil, DSMatches, "matches key"},
		{"our DS over TCP after a truncated answer", 0, true, []dns.RR{ds256}, nil, DSMatches, "matches key"},
		{"another key's DS", 0, false, []dns.RR{other.ToDS(dns.SHA256)}, nil, DSMismatch, "matches none of the zone's keys"},
		{"our key tag, another digest", 0, false, []dns.RR{&badDigest}, nil, DSMismatch, "matches none of the zone's keys"},
		{"the parent's NODATA", 0, false, nil, []dns.RR{parentSOA}, DSAbsent, "the parent zone example.com. publishes no DS"},
		{"an empty answer with the zone's own SOA", 0, false, nil, []dns.RR{ownSOA}, DSUnchecked, "no parent zone's SOA"},
		{"an empty answer", 0, false, nil, nil, DSUnchecked, "no parent zone's SOA"},
		{"NXDOMAIN", dns.RcodeNameError, false, nil, nil, DSUnchecked, "answered NXDOMAIN"},
		{"SERVFAIL", dns.RcodeServerFailure, false, nil, nil, DSUnchecked, "answered SERVFAIL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := parentResolver(t, tc.rcode, tc.truncate, tc.answer, tc.authority)
			c := &ParentDSChecker{Domain: testDomain, Resolver: addr, Keys: keysOf(key)}
			d := c.Check(context.Background())
			if d.State != tc.want || !strings.Contains(d.Detail, tc.detail) {
				t.Fatalf("got %s: %s; want %s: ...%s...", d.State, d.Detail, tc.want, tc.detail)
			}
			w := d.Warning()
			if (w != "") != (tc.want == DSMismatch || tc.want == DSAbsent) {
				t.Fatalf("warning %q for %s", w, d.State)
			}
		})
	}
	t.Run("no answer", func(t *testing.T) {
		c := &ParentDSChecker{Domain: testDomain, Resolver: silentUDP(t), Keys: keysOf(key)}
		start := time.Now()
		d := c.Check(context.Background())
		if d.State != DSUnchecked || !strings.Contains(d.Detail, "no answer within 2s") || d.Warning() != "" {
			t.Fatalf("got %s: %s (warning %q)", d.State, d.Detail, d.Warning())
		}
		if el := time.Since(start); el > ParentDSTimeout+time.Second {
			t.Fatalf("took %s, bound %s", el, ParentDSTimeout)
		}
	})
	t.Run("keys not read", func(t *testing.T) {
		c := &ParentDSChecker{Domain: testDomain, Resolver: silentUDP(t),
			Keys: func(context.Context) ([]KeyInfo, error) { return nil, errors.New("no quorum") }}
		if d := c.Check(context.Background()); d.State != DSUnchecked || !strings.Contains(d.Detail, "no quorum") {
			t.Fatalf("got %s: %s", d.State, d.Detail)
		}
	})
}

// TestParentDSKept: a result is reused for a few minutes, then asked again.
func TestParentDSKept(t *testing.T) {
	key := testDNSKEY(t)
	addr, queries := parentResolver(t, 0, false, []dns.RR{key.ToDS(dns.SHA256)}, nil)
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	c := &ParentDSChecker{Domain: testDomain, Resolver: addr, Keys: keysOf(key), Now: func() time.Time { return now }}
	for range 3 {
		if d := c.Check(context.Background()); d.State != DSMatches {
			t.Fatalf("got %s: %s", d.State, d.Detail)
		}
	}
	if n := queries.Load(); n != 1 {
		t.Fatalf("%d DS queries for 3 checks within a minute, want 1", n)
	}
	now = now.Add(parentDSKeep + time.Second)
	c.Check(context.Background())
	if n := queries.Load(); n != 2 {
		t.Fatalf("%d DS queries after the result aged, want 2", n)
	}
}

func keysOf(keys ...*dns.DNSKEY) func(context.Context) ([]KeyInfo, error) {
	return func(context.Context) ([]KeyInfo, error) {
		var out []KeyInfo
		for _, k := range keys {
			out = append(out, KeyInfo{KeyTag: k.KeyTag(), DNSKEY: k.String()})
		}
		return out, nil
	}
}

func mustRRp(t *testing.T, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}
