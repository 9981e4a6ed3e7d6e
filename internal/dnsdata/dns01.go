package dnsdata

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/platformdb"
)

// DNS01 is lego's challenge.Provider for DNS-01 through the embedded DNS:
// each value is its own row (acme-dns01/<fqdn>/<hash of value>), so the two
// values a wildcard + apex order publishes at the same name live side by
// side, and cleaning one up never removes the other.
type DNS01 struct {
	KV interface {
		Put(ctx context.Context, key string, value []byte) (int64, error)
		Delete(ctx context.Context, key string) error
		List(ctx context.Context, prefix string) ([]platformdb.Entry, int64, error)
	}
	// Servers are the DNS servers (host:port) that must answer a value
	// before the CA is told to look: this core's, and the other cores'.
	Servers func() []string
	// PropagationTimeout bounds the wait (letsEncrypt.dns01.propagationTimeout);
	// SkipPropagationCheck trusts the write alone (skipPropagationCheck).
	PropagationTimeout   time.Duration
	SkipPropagationCheck bool
	// Logger says which servers a propagation check skipped (nil: silent).
	Logger *slog.Logger
}

// challenge is RFC 8555 §8.4: the record name and the value for a key authorisation.
func challenge(domain, keyAuth string) (fqdn, value string) {
	sum := sha256.Sum256([]byte(keyAuth))
	return "_acme-challenge." + strings.ToLower(strings.TrimPrefix(domain, "*.")), base64.RawURLEncoding.EncodeToString(sum[:])
}

func challengeRow(fqdn, value string) string {
	sum := sha256.Sum256([]byte(value))
	return ChallengePrefix + fqdn + "/" + hex.EncodeToString(sum[:8])
}

// Present publishes the value.
func (p *DNS01) Present(ctx context.Context, domain, token, keyAuth string) error {
	fqdn, value := challenge(domain, keyAuth)
	if _, err := p.KV.Put(ctx, challengeRow(fqdn, value), []byte(value)); err != nil {
		return fmt.Errorf("publishing the DNS-01 value for %s: %w", domain, err)
	}
	return nil
}

// CleanUp removes exactly that value.
func (p *DNS01) CleanUp(ctx context.Context, domain, token, keyAuth string) error {
	fqdn, value := challenge(domain, keyAuth)
	if err := p.KV.Delete(ctx, challengeRow(fqdn, value)); err != nil {
		return fmt.Errorf("removing the DNS-01 value for %s: %w", domain, err)
	}
	return nil
}

// Sweep removes every published value and says how many it removed: the
// renewer calls it, holding its lock, when it starts and before an order, so
// values left by a renewer killed mid-order do not linger in the zone.
func (p *DNS01) Sweep(ctx context.Context) int {
	entries, _, err := p.KV.List(ctx, ChallengePrefix)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		if p.KV.Delete(ctx, e.Key) == nil {
			n++
		}
	}
	return n
}

// Timeout tells lego how long to wait for Propagated, and how often to ask.
func (p *DNS01) Timeout() (timeout, interval time.Duration) {
	t := p.PropagationTimeout
	if t <= 0 {
		t = 2 * time.Minute
	}
	return t, 200 * time.Millisecond
}

// Propagated reports whether the value is visible where the CA will look:
// a strict majority of the servers answer it, and none answers without it
// (a core whose zone has not caught up yet would send the CA a wrong
// answer: wait for it). A server that does not answer at all (a core down,
// SERVFAIL) is skipped — the CA's resolvers, finding it silent, ask the
// other name servers — so one dead core of three no longer stops every
// DNS-01 order. The servers are asked in parallel.
func (p *DNS01) Propagated(ctx context.Context, fqdn, value string) (bool, error) {
	if p.SkipPropagationCheck || p.Servers == nil {
		return true, nil
	}
	servers := p.Servers()
	seen := make([]answer, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		wg.Go(func() { seen[i] = askTXT(ctx, srv, fqdn, value) })
	}
	wg.Wait()
	var have int
	var silent []string
	for i, a := range seen {
		switch a {
		case answered:
			have++
		case lacking:
			return false, nil
		case silentServer:
			silent = append(silent, servers[i])
		}
	}
	if have*2 <= len(servers) {
		return false, nil
	}
	if len(silent) > 0 && p.Logger != nil {
		p.Logger.Warn("DNS-01 value visible on a majority of the cores' DNS servers; skipped the ones not answering",
			"name", fqdn, "answered", have, "skipped", silent)
	}
	return true, nil
}

// answer is what one server said about a value.
type answer int

const (
	silentServer answer = iota // no answer, or a server failure
	lacking                    // an answer without the value
	answered                   // the value
)

func askTXT(ctx context.Context, srv, fqdn, value string) answer {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(strings.ToLower(fqdn)), dns.TypeTXT)
	q.RecursionDesired = false
	c := &dns.Client{Timeout: 2 * time.Second}
	resp, _, err := c.ExchangeContext(ctx, q, srv)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, q, srv)
	}
	switch {
	case err != nil, resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError:
		return silentServer
	case hasTXT(resp, value):
		return answered
	}
	return lacking
}

func hasTXT(m *dns.Msg, value string) bool {
	for _, rr := range m.Answer {
		if t, ok := rr.(*dns.TXT); ok && strings.Join(t.Txt, "") == value {
			return true
		}
	}
	return false
}
