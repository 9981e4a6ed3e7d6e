package dns

import (
	"crypto"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Key is one DNSSEC key of the zone: its DNSKEY record (published at the
// apex by whoever builds the zone: Sign does not add it) and, when it signs,
// its private key.
type Key struct {
	DNSKEY *dns.DNSKEY
	// Signer signs with the key (an *ecdsa.PrivateKey for algorithm 13);
	// nil: the key is published only.
	Signer crypto.Signer
}

const (
	// sigValidity is how long an RRSIG is valid; sigRefresh how long one
	// is used before it is made again (the watcher rebuilds a signed zone
	// daily, well within).
	sigValidity = 7 * 24 * time.Hour
	sigRefresh  = 3 * 24 * time.Hour
	// sigBackdate covers resolvers whose clocks are behind ours.
	sigBackdate = time.Hour
	// sigCacheSlots bounds the signatures made on answer that a zone
	// keeps (names whose records are not the zone's own: users, members,
	// wildcard answers, denials): a direct-mapped table, lock-free.
	sigCacheSlots = 1 << 14
)

// signer signs a zone's answers: the RRSIGs of the zone's own RRsets are
// made by Sign, every other on answer and kept in a lock-free table for the
// life of the zone snapshot.
type signer struct {
	keys    []signingKey
	origin  string
	refresh int64 // unix time after which Sign's signatures are made again
	seed    maphash.Seed
	cache   []atomic.Pointer[sigEntry]
	// negSOA's signatures (its TTL is the negative one).
	negSOASigs []dns.RR
	signs      atomic.Uint64 // signatures made on answer (tests, benchmarks)
}

type signingKey struct {
	tag    uint16
	alg    uint8
	signer crypto.Signer
}

type sigEntry struct {
	owner   string
	rrtype  uint16
	bits    uint64 // NSEC: the types' digest, so two bitmaps never share an entry
	refresh int64
	rrs     []dns.RR // the RRSIGs; for an NSEC, the NSEC first
}

// Sign makes z a signed zone: answers to queries with the DO bit get the
// RRSIGs of every key with a Signer, and denials get NSEC records (see the
// package documentation). It must be called before z is shared (given to
// Server.Swap): it is part of building the zone. The zone's DNSKEY RRset
// must be among its records already. now is the signatures' time.
func (z *Zone) Sign(keys []Key, now time.Time) error {
	s := &signer{origin: z.origin, seed: maphash.MakeSeed(), cache: make([]atomic.Pointer[sigEntry], sigCacheSlots)}
	for _, k := range keys {
		if k.Signer == nil {
			continue
		}
		if k.DNSKEY == nil {
			return errors.New("dnssec: a signing key without its DNSKEY")
		}
		s.keys = append(s.keys, signingKey{tag: k.DNSKEY.KeyTag(), alg: k.DNSKEY.Algorithm, signer: k.Signer})
	}
	if len(s.keys) == 0 {
		return errors.New("dnssec: no signing key")
	}
	if z.apex.get(dns.TypeDNSKEY) == nil {
		return errors.New("dnssec: the zone publishes no DNSKEY")
	}
	s.refresh = now.Add(sigRefresh).Unix()
	for _, n := range z.names {
		for i := range n.sets {
			set := &n.sets[i]
			sigs, err := s.sign(set.rrs, now)
			if err != nil {
				return fmt.Errorf("dnssec: signing %s %s: %w", n.name, dns.TypeToString[set.rrtype], err)
			}
			set.sigs = sigs
		}
	}
	var err error
	if s.negSOASigs, err = s.sign(z.negSOA, now); err != nil {
		return fmt.Errorf("dnssec: signing the SOA: %w", err)
	}
	z.sig = s
	return nil
}

// Signed reports whether the zone was signed (Sign).
func (z *Zone) Signed() bool { return z.sig != nil }

// sign returns one RRSIG per key over rrset.
func (s *signer) sign(rrset []dns.RR, now time.Time) ([]dns.RR, error) {
	out := make([]dns.RR, 0, len(s.keys))
	h := rrset[0].Header()
	for _, k := range s.keys {
		sig := &dns.RRSIG{
			Hdr:        dns.RR_Header{Ttl: h.Ttl},
			Algorithm:  k.alg,
			KeyTag:     k.tag,
			SignerName: s.origin,
			Inception:  uint32(now.Add(-sigBackdate).Unix()),
			Expiration: uint32(now.Add(sigValidity).Unix()),
		}
		if err := sig.Sign(k.signer, rrset); err != nil {
			return nil, err
		}
		out = append(out, sig)
	}
	return out, nil
}

// cached returns the RRSIGs (and NSEC) kept for (owner, rrtype, bits), or
// makes them with mk and keeps them. Two queries may make the same
// signatures at once; the last one kept wins, both are valid.
func (s *signer) cached(owner string, rrtype uint16, bits uint64, now time.Time, mk func() ([]dns.RR, error)) []dns.RR {
	h := maphash.String(s.seed, owner) ^ (uint64(rrtype) * 0x9E3779B97F4A7C15) ^ bits
	slot := &s.cache[h&(sigCacheSlots-1)]
	unix := now.Unix()
	if e := slot.Load(); e != nil && e.owner == owner && e.rrtype == rrtype && e.bits == bits && unix < e.refresh {
		return e.rrs
	}
	rrs, err := mk()
	if err != nil {
		return nil // answered unsigned: the resolver treats it as bogus and asks again
	}
	s.signs.Add(1)
	slot.Store(&sigEntry{owner: owner, rrtype: rrtype, bits: bits, refresh: now.Add(sigRefresh).Unix(), rrs: rrs})
	return rrs
}

// sigsFor returns the RRSIGs of rrs, one RRset of the answer: the zone's
// own when rrs is the zone's RRset, else made on answer.
func (z *Zone) sigsFor(rrs []dns.RR, now time.Time) []dns.RR {
	s := z.sig
	h := rrs[0].Header()
	if now.Unix() < s.refresh {
		if n := z.names[h.Name]; n != nil {
			if set := n.get(h.Rrtype); set != nil && len(set.rrs) == len(rrs) && set.rrs[0] == rrs[0] {
				return set.sigs
			}
		}
	}
	return s.cached(h.Name, h.Rrtype, 0, now, func() ([]dns.RR, error) { return s.sign(rrs, now) })
}

// denial is what a negative answer denies: a name that does not exist
// (node nil) or has no data of the query's type.
type denial struct {
	name string
	node *node
}

// signResponse adds the RRSIGs and NSEC records of a response to a query
// with DO: after each RRset of the answer its RRSIGs; for a denial the
// SOA's RRSIGs and an NSEC at the denied name with its RRSIGs. Denials are
// "black lies" (RFC 9824, compact denial of existence): a name that does
// not exist is answered NODATA with an NSEC whose next name is its
// immediate successor and whose bitmap is RRSIG NSEC NXNAME, so a single
// signature made on answer proves it and no other name is revealed (no zone
// walking). A referral gets the DS RRset and its RRSIGs, or an NSEC proving
// there is none.
func (z *Zone) signResponse(m *dns.Msg, d *denial, referral bool, now time.Time) {
	if len(m.Answer) > 0 {
		m.Answer = z.signSets(m.Answer, now)
	}
	switch {
	case referral:
		cut := m.Ns[0].Header().Name
		n := z.names[cut]
		if n == nil {
			return
		}
		ns := append(make([]dns.RR, 0, len(m.Ns)+4), m.Ns...)
		if ds := n.get(dns.TypeDS); ds != nil {
			ns = append(append(ns, ds.rrs...), z.sigsFor(ds.rrs, now)...)
		} else {
			ns = append(ns, z.nsec(cut, n, now)...)
		}
		m.Ns = ns
	case len(m.Ns) > 0 && m.Ns[0].Header().Rrtype == dns.TypeSOA:
		ns := make([]dns.RR, 0, 2+2*len(z.sig.keys))
		ns = append(append(ns, m.Ns...), z.sig.negSOASigs...)
		if d != nil && d.name != "" {
			ns = append(ns, z.nsec(d.name, d.node, now)...)
		}
		m.Ns = ns
		if m.Rcode == dns.RcodeNameError {
			m.Rcode = dns.RcodeSuccess
		}
	}
}

// signSets returns rrs with the RRSIGs of each RRset after it.
func (z *Zone) signSets(rrs []dns.RR, now time.Time) []dns.RR {
	out := make([]dns.RR, 0, len(rrs)+2*len(z.sig.keys))
	for i := 0; i < len(rrs); {
		h := rrs[i].Header()
		j := i + 1
		for j < len(rrs) && rrs[j].Header().Rrtype == h.Rrtype && rrs[j].Header().Name == h.Name {
			j++
		}
		out = append(append(out, rrs[i:j]...), z.sigsFor(rrs[i:j], now)...)
		i = j
	}
	return out
}

// nsec returns the NSEC at name (whose node is n, or nil when the name does
// not exist) with its RRSIGs.
func (z *Zone) nsec(name string, n *node, now time.Time) []dns.RR {
	types := []uint16{dns.TypeRRSIG, dns.TypeNSEC}
	if n == nil {
		types = append(types, dns.TypeNXNAME)
	} else {
		for _, s := range n.sets {
			types = append(types, s.rrtype)
		}
	}
	slices.Sort(types)
	types = slices.Compact(types)
	var bits uint64 = 1
	for _, t := range types {
		bits = bits*1000003 + uint64(t)
	}
	rrs := z.sig.cached(name, dns.TypeNSEC, bits, now, func() ([]dns.RR, error) {
		rr := &dns.NSEC{
			Hdr:        dns.RR_Header{Name: name, Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: z.negSOA[0].Header().Ttl},
			NextDomain: "\\000." + name,
			TypeBitMap: types,
		}
		sigs, err := z.sig.sign([]dns.RR{rr}, now)
		if err != nil {
			return nil, err
		}
		return append([]dns.RR{rr}, sigs...), nil
	})
	return rrs
}
