package authdns

import (
	"crypto"
	"encoding/base64"
	"encoding/binary"
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
	// keepFor is how long Sign's signatures must stay usable: past the
	// next daily rebuild, so the zone's own answers never fall back to
	// the cache path in between.
	keepFor = 25 * time.Hour
	// sigCacheSlots bounds the signatures a SigCache keeps: 2-way
	// set-associative, lock-free. 2^17 slots hold the signed answers of
	// about 100,000 names with few evictions (about 300 bytes each).
	sigCacheSlots = 1 << 17
)

// SigCache keeps the RRSIGs (and NSEC records) made for a zone across its
// snapshots: an entry is found again by owner name, type, the RRset's
// content and the signing keys, so a rebuild of the zone (a user added)
// does not make the other names' signatures again. Lookups and stores are
// lock-free (atomic pointers); two queries may make the same signature at
// once, and the last one stored wins (both are valid). Safe for
// concurrent use.
type SigCache struct {
	seed  maphash.Seed
	slots []atomic.Pointer[sigEntry]
	signs atomic.Uint64 // signatures made (tests, benchmarks)
}

// NewSigCache returns an empty cache (about 1 MB of slots).
func NewSigCache() *SigCache {
	return &SigCache{seed: maphash.MakeSeed(), slots: make([]atomic.Pointer[sigEntry], sigCacheSlots)}
}

// Signs is the number of signatures made through the cache so far.
func (c *SigCache) Signs() uint64 { return c.signs.Load() }

// signer signs a zone's answers: the RRSIGs of the zone's own RRsets are
// looked up (or made) by Sign, every other on answer, all through the
// SigCache.
type signer struct {
	keys    []signingKey
	keysSum uint64 // digest of the signing keys' tags: a rollover misses every entry
	origin  string
	refresh int64 // unix time after which Sign's signatures are looked up again
	cache   *SigCache
	// negSOA's signatures (its TTL is the negative one).
	negSOASigs []dns.RR
}

type signingKey struct {
	tag    uint16
	alg    uint8
	signer crypto.Signer
}

type sigEntry struct {
	owner   string
	rrtype  uint16
	digest  uint64 // the RRset's content (or the NSEC's bitmap)
	keys    uint64
	refresh int64
	rrs     []dns.RR // the RRSIGs; for an NSEC, the NSEC first
	// wire is rrs in wire form owned by a pointer to the question
	// (fastAnswer), for the RRSIGs of an A or AAAA set; else nil.
	wire []byte
}

// Sign makes z a signed zone: answers to queries with the DO bit get the
// RRSIGs of every key with a Signer, and denials get NSEC records (see the
// package documentation). It must be called before z is shared (given to
// Server.Swap): it is part of building the zone. The zone's DNSKEY RRset
// must be among its records already. now is the signatures' time; cache
// (nil: a new one) is where they are kept, shared by the zone's
// successive snapshots.
func (z *Zone) Sign(keys []Key, now time.Time, cache *SigCache) error {
	if cache == nil {
		cache = NewSigCache()
	}
	s := &signer{origin: z.origin, cache: cache}
	for _, k := range keys {
		if k.Signer == nil {
			continue
		}
		if k.DNSKEY == nil {
			return errors.New("dnssec: a signing key without its DNSKEY")
		}
		tag := k.DNSKEY.KeyTag()
		s.keys = append(s.keys, signingKey{tag: tag, alg: k.DNSKEY.Algorithm, signer: k.Signer})
		s.keysSum = s.keysSum*65599 + uint64(tag)<<8 + uint64(k.DNSKEY.Algorithm)
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
			sigs, refresh := s.lookup(set.rrs, now, keepFor)
			if sigs == nil {
				return fmt.Errorf("dnssec: signing %s %s failed", n.name, dns.TypeToString[set.rrtype])
			}
			set.sigs = sigs
			s.refresh = min(s.refresh, refresh)
		}
	}
	sigs, refresh := s.lookup(z.negSOA, now, keepFor)
	if sigs == nil {
		return errors.New("dnssec: signing the SOA failed")
	}
	s.negSOASigs, s.refresh = sigs, min(s.refresh, refresh)
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
			// RFC 4034 section 3.1.5: the times are seconds since the
			// epoch modulo 2^32 (serial arithmetic): truncating is the rule.
			Inception:  uint32(now.Add(-sigBackdate).Unix()), //nolint:gosec // G115: modulo 2^32 on purpose (above)
			Expiration: uint32(now.Add(sigValidity).Unix()),  //nolint:gosec // G115: modulo 2^32 on purpose (above)
		}
		if err := sig.Sign(k.signer, rrset); err != nil {
			return nil, err
		}
		out = append(out, sig)
	}
	return out, nil
}

// lookup returns the RRSIGs of rrset from the cache, made if needed, and
// when they are to be made again.
func (s *signer) lookup(rrset []dns.RR, now time.Time, left time.Duration) ([]dns.RR, int64) {
	h := rrset[0].Header()
	return s.cached(sigKey{h.Name, h.Rrtype, s.cache.digest(rrset)}, now, left, func() ([]dns.RR, error) { return s.sign(rrset, now) })
}

// sigKey is what the signature cache keeps an entry for, with the keys.
type sigKey struct {
	owner  string
	rrtype uint16
	digest uint64 // the RRset's content (or the NSEC's bitmap)
}

// cached returns what the cache keeps for k under the signer's keys, if
// usable for left more, or makes it with mk and keeps it; nil when mk fails
// (the answer then goes unsigned: a validator treats it as bogus and asks
// again).
func (s *signer) cached(k sigKey, now time.Time, left time.Duration, mk func() ([]dns.RR, error)) ([]dns.RR, int64) {
	owner, rrtype, digest := k.owner, k.rrtype, k.digest
	c := s.cache
	h := maphash.String(c.seed, owner) ^ (uint64(rrtype) * 0x9E3779B97F4A7C15) ^ digest ^ s.keysSum
	i := h & (sigCacheSlots - 1)
	pair := [2]*atomic.Pointer[sigEntry]{&c.slots[i], &c.slots[i^1]}
	unix := now.Add(left).Unix()
	for _, slot := range pair {
		if e := slot.Load(); e != nil && e.owner == owner && e.rrtype == rrtype && e.digest == digest && e.keys == s.keysSum && unix < e.refresh {
			return e.rrs, e.refresh
		}
	}
	rrs, err := mk()
	if err != nil {
		return nil, 0
	}
	c.signs.Add(1)
	e := &sigEntry{owner: owner, rrtype: rrtype, digest: digest, keys: s.keysSum, refresh: now.Add(sigRefresh).Unix(), rrs: rrs}
	if rrtype == dns.TypeA || rrtype == dns.TypeAAAA {
		e.wire = packSigs(rrs)
	}
	victim := pair[(h>>40)&1]
	if pair[0].Load() == nil {
		victim = pair[0]
	} else if pair[1].Load() == nil {
		victim = pair[1]
	}
	victim.Store(e)
	return rrs, e.refresh
}

// peek returns the cached RRSIGs, in wire form (and how many), of the RRset of rrtype
// owned by owner (canonical) with content digest, if usable now; it never
// signs (fastAnswer: a miss takes the general path, which signs).
func (s *signer) peek(owner []byte, rrtype uint16, digest uint64, now int64) (wire []byte, n int) {
	c := s.cache
	h := maphash.Bytes(c.seed, owner) ^ (uint64(rrtype) * 0x9E3779B97F4A7C15) ^ digest ^ s.keysSum
	i := h & (sigCacheSlots - 1)
	for _, j := range [2]uint64{i, i ^ 1} {
		if e := c.slots[j].Load(); e != nil && e.wire != nil && e.rrtype == rrtype && e.digest == digest &&
			e.keys == s.keysSum && now < e.refresh && e.owner == string(owner) {
			return e.wire, len(e.rrs)
		}
	}
	return nil, 0
}

// packSigs packs RRSIGs as an answer carries them after their RRset when
// its owner is the question's name: the owner a pointer to the question,
// the signer's name uncompressed (RFC 4034 §3.1.7); nil if one cannot be.
func packSigs(rrs []dns.RR) []byte {
	var out []byte
	for _, rr := range rrs {
		sig, ok := rr.(*dns.RRSIG)
		if !ok {
			return nil
		}
		raw, err := base64.StdEncoding.DecodeString(sig.Signature)
		if err != nil {
			return nil
		}
		signer := make([]byte, 256)
		n, err := dns.PackDomainName(dns.CanonicalName(sig.SignerName), signer, 0, nil, false)
		if err != nil {
			return nil
		}
		out = append(out, 0xC0, 12)
		out = binary.BigEndian.AppendUint16(out, dns.TypeRRSIG)
		out = binary.BigEndian.AppendUint16(out, sig.Hdr.Class)
		out = binary.BigEndian.AppendUint32(out, sig.Hdr.Ttl)
		out = binary.BigEndian.AppendUint16(out, uint16(18+n+len(raw))) //nolint:gosec // G115: 18 + a name (at most 255) + one signature (512 bytes for RSA-4096, the largest)
		out = binary.BigEndian.AppendUint16(out, sig.TypeCovered)
		out = append(out, sig.Algorithm, sig.Labels)
		out = binary.BigEndian.AppendUint32(out, sig.OrigTtl)
		out = binary.BigEndian.AppendUint32(out, sig.Expiration)
		out = binary.BigEndian.AppendUint32(out, sig.Inception)
		out = binary.BigEndian.AppendUint16(out, sig.KeyTag)
		out = append(append(out, signer[:n]...), raw...)
	}
	return out
}

// digest hashes an RRset's content (TTL and rdata; the owner is compared
// whole): cheap for the addresses users answer with.
func (c *SigCache) digest(rrs []dns.RR) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	var b [8]byte
	for _, rr := range rrs {
		hd := rr.Header()
		binary.BigEndian.PutUint32(b[:4], hd.Ttl)
		binary.BigEndian.PutUint16(b[4:6], hd.Rrtype)
		_, _ = h.Write(b[:6])
		switch v := rr.(type) {
		case *dns.A:
			_, _ = h.Write(v.A)
		case *dns.AAAA:
			_, _ = h.Write(v.AAAA)
		case *dns.CNAME:
			_, _ = h.WriteString(v.Target)
		default:
			_, _ = h.WriteString(rr.String())
		}
		_ = h.WriteByte(0)
	}
	return h.Sum64()
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
	sigs, _ := s.lookup(rrs, now, 0)
	return sigs
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
			ns = append(ns, z.nsec(cut, n, z.negSOA[0].Header().Ttl, now)...)
		}
		m.Ns = ns
	case len(m.Ns) > 0 && m.Ns[0].Header().Rrtype == dns.TypeSOA:
		ns := make([]dns.RR, 0, 2+2*len(z.sig.keys))
		ns = append(ns, m.Ns...)
		if ttl := m.Ns[0].Header().Ttl; ttl != z.negSOA[0].Header().Ttl {
			// A shortened negative TTL (an absent looked-up user): its
			// RRSIGs say the same (copies; the signature is unchanged).
			for _, sig := range z.sig.negSOASigs {
				c := *sig.(*dns.RRSIG)
				c.Hdr.Ttl = ttl
				ns = append(ns, &c)
			}
		} else {
			ns = append(ns, z.sig.negSOASigs...)
		}
		if d != nil && d.name != "" {
			// The NSEC lives as long as the SOA served with it: an absent
			// looked-up user's denial is short (negSOAFor), and a resolver
			// caching the NSEC (RFC 8198) must not keep it longer.
			ns = append(ns, z.nsec(d.name, d.node, m.Ns[0].Header().Ttl, now)...)
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
func (z *Zone) nsec(name string, n *node, ttl uint32, now time.Time) []dns.RR {
	var buf [16]uint16
	types := append(buf[:0], dns.TypeRRSIG, dns.TypeNSEC)
	if n == nil {
		types = append(types, dns.TypeNXNAME)
	} else {
		for _, s := range n.sets {
			types = append(types, s.rrtype)
		}
	}
	slices.Sort(types)
	types = slices.Compact(types)
	var bits = uint64(ttl) + 1
	for _, t := range types {
		bits = bits*1000003 + uint64(t)
	}
	rrs, _ := z.sig.cached(sigKey{name, dns.TypeNSEC, bits}, now, 0, func() ([]dns.RR, error) {
		rr := &dns.NSEC{
			Hdr:        dns.RR_Header{Name: name, Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: ttl},
			NextDomain: "\\000." + name,
			TypeBitMap: slices.Clone(types),
		}
		sigs, err := z.sig.sign([]dns.RR{rr}, now)
		if err != nil {
			return nil, err
		}
		return append([]dns.RR{rr}, sigs...), nil
	})
	return rrs
}
