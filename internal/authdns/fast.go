package authdns

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// packedSet is a group's A or AAAA RRset in wire form, packed once when the
// zone is built, each record owned by a compression pointer to the question
// (offset 12): what an answer for any member carries, whatever the name or
// its spelling. Packed here, not by miekg/dns's PackRR (which writes the
// Rdlength into the shared record).
type packedSet struct {
	n    uint16 // records
	wire []byte
	// The set's content digest in a SigCache (the key of its signatures
	// there), kept for the last cache asked: a zone's snapshots share one.
	sum atomic.Pointer[setDigest]
}

type setDigest struct {
	cache *SigCache
	sum   uint64
}

// digest is the SigCache digest of g's set of qtype, which p packs.
func (p *packedSet) digest(c *SigCache, g *node, qtype uint16) uint64 {
	if d := p.sum.Load(); d != nil && d.cache == c {
		return d.sum
	}
	d := &setDigest{cache: c, sum: c.digest(g.get(qtype).rrs)}
	p.sum.Store(d)
	return d.sum
}

// packGroupSet packs s (a group's A or AAAA set, no glue) for fastAnswer;
// nil for any other set.
func packGroupSet(s *rrset) *packedSet {
	if len(s.glue) != 0 || len(s.rrs) == 0 || len(s.rrs) > 64 {
		return nil
	}
	p := &packedSet{n: uint16(len(s.rrs))} //nolint:gosec // G115: at most 64 (checked above)
	for _, rr := range s.rrs {
		var rdata []byte
		switch r := rr.(type) {
		case *dns.A:
			if len(r.A) != 4 && len(r.A) != 16 {
				return nil
			}
			if rdata = r.A.To4(); rdata == nil {
				return nil
			}
		case *dns.AAAA:
			if rdata = r.AAAA; len(rdata) != 16 {
				return nil
			}
		default:
			return nil
		}
		h := rr.Header()
		p.wire = append(p.wire, 0xC0, 12)
		p.wire = binary.BigEndian.AppendUint16(p.wire, h.Rrtype)
		p.wire = binary.BigEndian.AppendUint16(p.wire, h.Class)
		p.wire = binary.BigEndian.AppendUint32(p.wire, h.Ttl)
		p.wire = binary.BigEndian.AppendUint16(p.wire, uint16(len(rdata))) //nolint:gosec // G115: 4 or 16 bytes (checked above)
		p.wire = append(p.wire, rdata...)
	}
	return p
}

// packGroups packs every group's A and AAAA sets (addMembers).
func (z *Zone) packGroups() {
	for _, g := range z.groups {
		if g == nil || g.cname != nil {
			continue
		}
		if s := g.get(dns.TypeA); s != nil {
			g.packedA = packGroupSet(s)
		}
		if s := g.get(dns.TypeAAAA); s != nil {
			g.packedAAAA = packGroupSet(s)
		}
	}
}

// fastAnswer writes into out (its storage, never grown) the response to
// pkt when it is the common query a member's name gets — one question, A or
// AAAA, class IN, opcode QUERY, no other section but an OPT with no
// option but cookies or padding (DO only in an unsigned zone) — and that name is a member with
// the set packed: the header is made, the question copied as sent (its case
// echoed: the answer's owners point at it) and the packed set appended,
// with the OPT. It is byte for byte what answer and Pack make (a test
// checks this over random queries), with no unpacking, no message and no
// compression map. ok false: pkt takes the general path; nothing is counted.
func (z *Zone) fastAnswer(pkt, out []byte, maxUDP int) (resp []byte, qtype uint16, ok bool) {
	if z == nil || len(z.members) == 0 || len(pkt) < 12+1+4 {
		return nil, 0, false
	}
	flags := binary.BigEndian.Uint16(pkt[2:])
	// QR 0 and opcode QUERY; the other request bits are not looked at by
	// answer but RD and CD, copied.
	if flags&0xF800 != 0 ||
		binary.BigEndian.Uint16(pkt[4:]) != 1 || binary.BigEndian.Uint16(pkt[6:]) != 0 ||
		binary.BigEndian.Uint16(pkt[8:]) != 0 {
		return nil, 0, false
	}
	arcount := binary.BigEndian.Uint16(pkt[10:])
	if arcount > 1 {
		return nil, 0, false
	}
	// The name: plain labels only (a pointer, an escaped byte: general path),
	// lower-cased into lc for the lookups.
	var lc [255]byte
	off, first := 12, 0
	for {
		if off >= len(pkt) {
			return nil, 0, false
		}
		l := int(pkt[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 || off+1+l >= len(pkt) || off-12+1+l > 254 {
			return nil, 0, false
		}
		if !lowerLabel(pkt[off+1:off+1+l], lc[off-12:]) {
			return nil, 0, false
		}
		if first == 0 {
			first = l
		}
		lc[off-12+l] = '.'
		off += 1 + l
	}
	text := lc[:off-13] // presentation form: "label.label." is as long as the wire form minus one
	if len(text) == 0 {
		return nil, 0, false
	}
	if off+4 > len(pkt) {
		return nil, 0, false
	}
	qend := off + 4
	qtype = binary.BigEndian.Uint16(pkt[off:])
	if binary.BigEndian.Uint16(pkt[off+2:]) != dns.ClassINET || (qtype != dns.TypeA && qtype != dns.TypeAAAA) {
		return nil, 0, false
	}
	// One label below the origin.
	if len(text) != first+1+len(z.origin) || string(text[first+1:]) != z.origin {
		return nil, 0, false
	}
	limit := minUDPSize
	var optFlags uint16
	if arcount == 1 {
		// OPT: root owner, version 0, no options but cookies and padding
		// (which answer ignores, as miekg/dns's Unpack never refuses them).
		if len(pkt) < qend+11 || pkt[qend] != 0 || binary.BigEndian.Uint16(pkt[qend+1:]) != dns.TypeOPT ||
			pkt[qend+6] != 0 || len(pkt) != qend+11+int(binary.BigEndian.Uint16(pkt[qend+9:])) ||
			!ignoredOptions(pkt[qend+11:]) {
			return nil, 0, false
		}
		optFlags = binary.BigEndian.Uint16(pkt[qend+7:]) & 0x8000 // DO; the other flags are not copied
		limit = min(maxUDP, max(int(binary.BigEndian.Uint16(pkt[qend+3:])), minUDPSize))
	} else if len(pkt) != qend {
		return nil, 0, false
	}
	if _, shadowed := z.names[string(text)]; shadowed {
		return nil, 0, false
	}
	gi, member := z.members[string(text[:first])]
	if !member {
		return nil, 0, false
	}
	g := z.group(gi)
	if g == nil {
		return nil, 0, false
	}
	p := g.packedA
	if qtype == dns.TypeAAAA {
		p = g.packedAAAA
	}
	if p == nil {
		return nil, 0, false
	}
	var (
		sigs  []byte
		nsigs int
	)
	if optFlags != 0 && z.sig != nil {
		// Signed as the member's name, canonical (signSets): the cache's
		// entry, made by the general path on the name's first query.
		if sigs, nsigs = z.sig.peek(text, qtype, p.digest(z.sig.cache, g, qtype), time.Now().Unix()); sigs == nil {
			return nil, 0, false
		}
	}
	size := qend + len(p.wire) + len(sigs)
	if arcount == 1 {
		size += 11
	}
	if size > limit || size > cap(out) {
		return nil, 0, false
	}
	resp = out[:size]
	copy(resp, pkt[:qend])
	// QR, AA, RD copied; CD copied; RA, Z, AD clear; RCODE NOERROR.
	binary.BigEndian.PutUint16(resp[2:], 0x8400|flags&0x0100|flags&0x0010)
	binary.BigEndian.PutUint16(resp[6:], p.n+uint16(nsigs))
	binary.BigEndian.PutUint16(resp[10:], arcount)
	w := qend + copy(resp[qend:], p.wire)
	w += copy(resp[w:], sigs)
	if arcount == 1 {
		resp[w] = 0
		binary.BigEndian.PutUint16(resp[w+1:], dns.TypeOPT)
		binary.BigEndian.PutUint16(resp[w+3:], uint16(maxUDP)) //nolint:gosec // G115: the server clamps it to 512..65535 (NewServer)
		binary.BigEndian.PutUint32(resp[w+5:], uint32(optFlags))
		binary.BigEndian.PutUint16(resp[w+9:], 0)
	}
	return resp, qtype, true
}

// lowerLabel writes l lower-cased into dst, reporting false when l holds
// a byte that is not a letter, digit, '-' or '_' (the general path then
// handles the escaping miekg/dns does).
func lowerLabel(l, dst []byte) bool {
	for i, c := range l {
		switch {
		case 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_':
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		default:
			return false
		}
		dst[i] = c
	}
	return true
}

// ignoredOptions reports whether the OPT rdata b holds only whole COOKIE
// and PADDING options.
func ignoredOptions(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 4 {
			return false
		}
		code, l := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if code != dns.EDNS0COOKIE && code != dns.EDNS0PADDING || len(b) < 4+l {
			return false
		}
		b = b[4+l:]
	}
	return true
}
