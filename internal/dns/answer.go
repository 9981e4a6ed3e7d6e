package dns

import (
	"github.com/miekg/dns"
)

const (
	// minUDPSize is the DNS limit without EDNS and the lowest EDNS payload
	// size honoured (RFC 6891 §6.2.3).
	minUDPSize = dns.MinMsgSize
	// DefaultMaxUDPSize is the largest UDP response sent by default: the
	// DNS Flag Day 2020 value, which avoids IP fragmentation.
	DefaultMaxUDPSize = 1232
	// anyTTL is the TTL of the HINFO record answering QTYPE ANY (RFC 8482).
	anyTTL = 3600
)

// response is one allocation holding everything most answers need.
type response struct {
	msg   dns.Msg
	opt   dns.OPT
	extra [1]dns.RR
}

// Answer returns the response to req from zone z, or nil when req must be
// dropped (it has QR set). maxUDP is the largest UDP response the server
// sends (clamped to 512..65535); tcp tells whether req came over TCP. z may be
// nil (no zone yet): every valid query then gets SERVFAIL.
//
// Answer never locks, does no I/O and does not modify req or z; the response
// shares the zone's records and req's question, so it must be treated as
// read-only (packing it is fine). See the package documentation for the
// semantics.
func Answer(z *Zone, req *dns.Msg, maxUDP int, tcp bool) *dns.Msg {
	if req == nil || req.Response {
		return nil
	}
	r := &response{}
	m := &r.msg
	m.Id = req.Id
	m.Response = true
	m.Opcode = req.Opcode
	m.RecursionDesired = req.RecursionDesired
	m.CheckingDisabled = req.CheckingDisabled

	maxUDP = min(max(maxUDP, minUDPSize), dns.MaxMsgSize)
	limit := minUDPSize
	if tcp {
		limit = dns.MaxMsgSize
	}
	one := len(req.Question) == 1
	if one {
		m.Question = req.Question[:1:1]
	}

	// EDNS0 (RFC 6891 §6.1.1: at most one OPT, owned by the root).
	var reqOPT *dns.OPT
	nopt := 0
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			reqOPT = o
			nopt++
		}
	}
	if nopt > 1 || (reqOPT != nil && reqOPT.Hdr.Name != ".") {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	var opt *dns.OPT
	if reqOPT != nil {
		size := maxUDP
		if c := int(reqOPT.UDPSize()); c < size {
			size = max(c, minUDPSize)
		}
		opt = &r.opt
		opt.Hdr = dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: uint16(size)}
		if !tcp {
			limit = size
		}
		r.extra[0] = opt
		if reqOPT.Version() != 0 {
			m.Rcode = dns.RcodeBadVers // Pack puts the upper bits into the OPT
			return finish(m, r, limit, false)
		}
	}

	if req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return finish(m, r, limit, false)
	}
	if !one || !dns.IsFqdn(req.Question[0].Name) {
		m.Question = nil
		m.Rcode = dns.RcodeFormatError
		return finish(m, r, limit, false)
	}
	q := &req.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		return finish(m, r, limit, false)
	}
	if z == nil {
		m.Rcode = dns.RcodeServerFailure
		return finish(m, r, limit, false)
	}
	qname := asciiLower(q.Name)
	if !inZone(qname, z.origin) {
		m.Rcode = dns.RcodeRefused
		return finish(m, r, limit, false)
	}
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		m.Rcode = dns.RcodeRefused
		return finish(m, r, limit, false)
	}
	m.Authoritative = true
	referral := z.resolve(m, qname, q.Qtype)
	return finish(m, r, limit, referral)
}

// finish adds the OPT record, if any, and makes the response fit limit.
func finish(m *dns.Msg, r *response, limit int, referral bool) *dns.Msg {
	var optOnly []dns.RR
	if r.extra[0] != nil {
		optOnly = r.extra[:]
		if len(m.Extra) == 0 {
			m.Extra = optOnly
		} else {
			// m.Extra is the zone's glue (len == cap): append copies it.
			m.Extra = append(m.Extra, r.extra[0])
		}
	}
	if m.Len() <= limit {
		return m
	}
	m.Compress = true
	if m.Len() <= limit {
		return m
	}
	if !referral && len(m.Extra) > len(optOnly) {
		// Glue is optional in an authoritative answer.
		m.Extra = optOnly
		if m.Len() <= limit {
			return m
		}
	}
	m.Truncated = true
	m.Answer, m.Ns, m.Extra = nil, nil, optOnly
	return m
}

// resolve fills in the answer for qname (canonical, inside the zone) and
// reports whether it is a referral.
func (z *Zone) resolve(m *dns.Msg, qname string, qtype uint16) (referral bool) {
	if z.hasCuts {
		if cut := z.cutAbove(qname, qtype == dns.TypeDS); cut != nil {
			m.Authoritative = false
			m.Ns = cut.rrs
			m.Extra = cut.glue
			return true
		}
	}
	n, synth := z.find(qname)
	if n == nil {
		m.Rcode = dns.RcodeNameError
		m.Ns = z.negSOA
		return false
	}
	if qtype == dns.TypeANY {
		if len(n.sets) == 0 {
			m.Ns = z.negSOA
			return false
		}
		m.Answer = []dns.RR{&dns.HINFO{
			Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: anyTTL},
			Cpu: "RFC8482",
		}}
		return false
	}
	if n.cname != nil && qtype != dns.TypeCNAME {
		z.chase(m, qname, n, synth, qtype)
		return false
	}
	s := n.get(qtype)
	if s == nil {
		m.Ns = z.negSOA
		return false
	}
	if synth {
		m.Answer = withOwner(s.rrs, qname)
	} else {
		m.Answer = s.rrs
	}
	m.Extra = s.glue
	return false
}

// find returns the node for name (canonical, inside the zone), or the
// wildcard node that matches it (synth true), or nil if name does not exist.
func (z *Zone) find(name string) (n *node, synth bool) {
	if n := z.names[name]; n != nil {
		return n, false
	}
	if !z.hasWildcard {
		return nil, false
	}
	// The closest encloser is the longest existing ancestor (RFC 4592 §3.3.1);
	// the apex always exists, so the walk ends there at the latest.
	off := 0
	for {
		next, end := dns.NextLabel(name, off)
		if end || len(name)-next < len(z.origin) {
			return nil, false
		}
		off = next
		if ce := z.names[name[off:]]; ce != nil {
			if ce.wild != nil {
				return ce.wild, true
			}
			return nil, false
		}
	}
}

// cutAbove returns the NS set of the topmost delegation point at or above
// name (below the apex), or nil. With ds, name itself does not count as a cut
// (DS lives on the parent side).
func (z *Zone) cutAbove(name string, ds bool) *rrset {
	var cut *rrset
	off := 0
	for len(name)-off > len(z.origin) {
		if n := z.names[name[off:]]; n != nil && n.cut != nil && !(ds && off == 0) {
			cut = n.cut
		}
		next, end := dns.NextLabel(name, off)
		if end {
			break
		}
		off = next
	}
	return cut
}

// chase answers for a name holding a CNAME (RFC 1034 §4.3.2, RFC 6604).
func (z *Zone) chase(m *dns.Msg, qname string, n *node, synth bool, qtype uint16) {
	ans := make([]dns.RR, 0, 4)
	var seen [maxCNAMEChain]string
	owner := qname
	for i := 0; ; i++ {
		if synth {
			ans = append(ans, withOwner([]dns.RR{n.cname}, owner)...)
		} else {
			ans = append(ans, n.cname)
		}
		seen[i] = owner
		target := n.target
		if !inZone(target, z.origin) ||
			(z.hasCuts && z.cutAbove(target, qtype == dns.TypeDS) != nil) {
			break
		}
		next, s := z.find(target)
		if next == nil {
			m.Rcode = dns.RcodeNameError
			m.Ns = z.negSOA
			break
		}
		if next.cname != nil {
			if i+1 == maxCNAMEChain {
				break // the chain is too long: stop with the CNAMEs so far
			}
			loop := false
			for _, o := range seen[:i+1] {
				loop = loop || o == target
			}
			if loop {
				break
			}
			n, synth, owner = next, s, target
			continue
		}
		set := next.get(qtype)
		if set == nil {
			m.Ns = z.negSOA
			break
		}
		if s {
			ans = append(ans, withOwner(set.rrs, target)...)
		} else {
			ans = append(ans, set.rrs...)
		}
		m.Extra = set.glue
		break
	}
	m.Answer = ans
}

// withOwner returns copies of rrs owned by name (wildcard synthesis).
func withOwner(rrs []dns.RR, name string) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
		out[i].Header().Name = name
	}
	return out
}
