package authdns

import (
	"strings"
	"time"

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
	deny  denial // what a negative answer denies (for its NSEC)
}

// synthResponse is a response with room for one synthesised A and one AAAA
// record: the answer for a group member owns copies of the
// shared records with the query name as owner, and in the common case (one
// address) they cost no allocation of their own. It is allocated instead of
// a plain response only when the query may need it (synthesisable), so
// other answers do not carry (and zero, and have the GC sweep) its bytes.
type synthResponse struct {
	response
	syn synth
}

// into is where resolve and chase write an answer: the response, and the
// room for synthesised records (nil: they are allocated).
type into struct {
	r   *response
	syn *synth
}

// question is the query's name (canonical, inside the zone) and type.
type question struct {
	name  string
	qtype uint16
}

type synth struct {
	a    dns.A
	aaaa dns.AAAA
	rrs  [2]dns.RR // rrs[0] is &a once used, rrs[1] &aaaa
}

// withOwner returns rrs owned by name: in s when rrs is one A or AAAA record
// and its slot is free, else as allocated copies (s may be nil). The
// records' rdata is shared, read-only.
func (s *synth) withOwner(rrs []dns.RR, name string) []dns.RR {
	if s != nil && len(rrs) == 1 {
		switch rr := rrs[0].(type) {
		case *dns.A:
			if s.rrs[0] == nil {
				s.a = *rr
				s.a.Hdr.Name = name
				s.rrs[0] = &s.a
				return s.rrs[0:1:1]
			}
		case *dns.AAAA:
			if s.rrs[1] == nil {
				s.aaaa = *rr
				s.aaaa.Hdr.Name = name
				s.rrs[1] = &s.aaaa
				return s.rrs[1:2:2]
			}
		}
	}
	return withOwner(rrs, name)
}

// synthesisable reports, cheaply and before any lookup, whether the answer
// to req may be a group member's or a looked-up user's: the question is one
// label below the origin (in any case) and the zone has members or users
// are looked up. (Wildcard answers, rarer, allocate their records.)
func (z *Zone) synthesisable(req *dns.Msg, lookups bool) bool {
	if (len(z.members) == 0 && !lookups) || len(req.Question) != 1 {
		return false
	}
	name := req.Question[0].Name
	l := len(name) - len(z.origin) - 1
	return l > 0 && name[l] == '.' && strings.EqualFold(name[l+1:], z.origin) &&
		strings.IndexByte(name[:l], '.') < 0
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
	m, _ := z.answer(req, maxUDP, tcp, nil)
	return m
}

// answer is Answer consulting users (may be nil) for the names the zone
// does not hold; see AnswerUsers.
// z may be nil (no zone loaded yet: SERVFAIL).
func (z *Zone) answer(req *dns.Msg, maxUDP int, tcp bool, users UserCache) (*dns.Msg, Lookup) {
	if req == nil || req.Response {
		return nil, NotLookedUp
	}
	var (
		r   *response
		syn *synth
	)
	if z != nil && z.synthesisable(req, users != nil) {
		sr := &synthResponse{}
		r, syn = &sr.response, &sr.syn
	} else {
		r = &response{}
	}
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
		return m, NotLookedUp
	}
	var opt *dns.OPT
	if reqOPT != nil {
		// We advertise our own buffer size (RFC 6891 §6.2.5: what we can
		// receive); what we send is bounded by the client's.
		opt = &r.opt
		opt.Hdr = dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: uint16(maxUDP)}
		if reqOPT.Do() {
			opt.SetDo() // RFC 3225 §3: copied into the response
		}
		if !tcp {
			limit = min(maxUDP, max(int(reqOPT.UDPSize()), minUDPSize))
		}
		r.extra[0] = opt
		if reqOPT.Version() != 0 {
			m.Rcode = dns.RcodeBadVers // Pack puts the upper bits into the OPT
			return finish(m, r, limit, false), NotLookedUp
		}
	}

	if req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return finish(m, r, limit, false), NotLookedUp
	}
	if !one || !dns.IsFqdn(req.Question[0].Name) {
		m.Question = nil
		m.Rcode = dns.RcodeFormatError
		return finish(m, r, limit, false), NotLookedUp
	}
	if len(req.Answer) > 0 {
		// A query carries no answer (RFC 1035 §4.1.1); knot and BIND say
		// FORMERR too.
		m.Rcode = dns.RcodeFormatError
		return finish(m, r, limit, false), NotLookedUp
	}
	q := &req.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		return finish(m, r, limit, false), NotLookedUp
	}
	if z == nil {
		m.Rcode = dns.RcodeServerFailure
		return finish(m, r, limit, false), NotLookedUp
	}
	qname := asciiLower(q.Name)
	if !inZone(qname, z.origin) {
		m.Rcode = dns.RcodeRefused
		return finish(m, r, limit, false), NotLookedUp
	}
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		m.Rcode = dns.RcodeRefused
		return finish(m, r, limit, false), NotLookedUp
	}
	m.Authoritative = true
	referral, lk := z.resolve(into{r, syn}, question{qname, q.Qtype}, users)
	if lk == LookupMiss {
		return nil, LookupMiss
	}
	if z.sig != nil && reqOPT != nil && reqOPT.Do() && m.Rcode != dns.RcodeServerFailure {
		z.signResponse(m, &r.deny, referral, time.Now())
	}
	if q.Name != qname {
		// Owners as the query spelled them (0x20 resolvers compare them,
		// and compression then points at the question).
		m.Answer = echoCase(m.Answer, qname, q.Name)
	}
	return finish(m, r, limit, referral), lk
}

// finish adds the OPT record, if any, and makes the response fit limit.
// Every response is sent compressed (as knot and BIND send them); its
// uncompressed length, which costs no compression map, is tried first.
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
		m.Compress = true
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
// reports whether it is a referral, and what users knew (NotLookedUp when
// they were not consulted; LookupMiss: m is not filled in).
// Synthesised records go to syn (nil: allocated).
func (z *Zone) resolve(w into, q question, users UserCache) (referral bool, lk Lookup) {
	r, syn, qname, qtype := w.r, w.syn, q.name, q.qtype
	m := &r.msg
	if z.hasCuts {
		if cut := z.cutAbove(qname, qtype == dns.TypeDS); cut != nil {
			m.Authoritative = false
			m.Ns = cut.rrs
			m.Extra = cut.glue
			return true, NotLookedUp
		}
	}
	n, synth := z.find(qname)
	if n == nil && users != nil {
		if label, ok := z.lookupLabel(qname); ok {
			var h UserHost
			h, lk = users.Cached(label)
			switch lk {
			case LookupMiss:
				return false, lk
			case LookupFound:
				if n, synth = z.userNode(h), true; n == nil {
					// Its core is not (or no longer) in the zone.
					m.Authoritative = false
					m.Rcode = dns.RcodeServerFailure
					return false, lk
				}
			case LookupAbsent:
				m.Rcode = dns.RcodeNameError
				m.Ns = z.negSOAFor(h.negTTL)
				r.deny = denial{name: qname}
				return false, lk
			default:
				lk = NotLookedUp
			}
		}
	}
	if n == nil && z.incomplete {
		m.Authoritative = false
		m.Rcode = dns.RcodeServerFailure
		return false, lk
	}
	if n == nil {
		m.Rcode = dns.RcodeNameError
		m.Ns = z.negSOA
		r.deny = denial{name: qname}
		return false, lk
	}
	if qtype == dns.TypeANY {
		if len(n.sets) == 0 {
			m.Ns = z.negSOA
			r.deny = denial{name: qname, node: n}
			return false, lk
		}
		m.Answer = []dns.RR{&dns.HINFO{
			Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: anyTTL},
			Cpu: "RFC8482",
		}}
		return false, lk
	}
	if n.cname != nil && qtype != dns.TypeCNAME {
		z.chase(w, q, n, synth)
		return false, lk
	}
	s := n.get(qtype)
	if s == nil {
		m.Ns = z.negSOA
		r.deny = denial{name: qname, node: n}
		return false, lk
	}
	if synth {
		m.Answer = syn.withOwner(s.rrs, qname)
	} else {
		m.Answer = s.rrs
	}
	m.Extra = s.glue
	return false, lk
}

// find returns the node for name (canonical, inside the zone), or the
// records of the group it is a member of or of the wildcard that matches it
// (synth true: the records get name as owner), or nil if name does not
// exist.
func (z *Zone) find(name string) (n *node, synth bool) {
	if n := z.names[name]; n != nil {
		return n, false
	}
	if g := z.memberOf(name); g != nil {
		return g, true
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
		if z.memberOf(name[off:]) != nil {
			return nil, false // the closest encloser is a member: it has no wildcard child
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
func (z *Zone) chase(w into, q question, n *node, synth bool) {
	r, syn, qname, qtype := w.r, w.syn, q.name, q.qtype
	m := &r.msg
	ans := make([]dns.RR, 0, 4)
	var seen [maxCNAMEChain]string
	owner := qname
	for i := 0; ; i++ {
		if synth {
			ans = append(ans, syn.withOwner(n.get(dns.TypeCNAME).rrs, owner)...)
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
			r.deny = denial{name: target}
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
			r.deny = denial{name: target, node: next}
			break
		}
		if s {
			ans = append(ans, syn.withOwner(set.rrs, target)...)
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

// echoCase returns rrs with the owner qname (canonical) spelled as the
// query's name; the zone's records are copied, never changed.
func echoCase(rrs []dns.RR, qname, name string) []dns.RR {
	var out []dns.RR
	for i, rr := range rrs {
		if rr.Header().Name != qname {
			continue
		}
		if out == nil {
			out = append(make([]dns.RR, 0, len(rrs)), rrs...)
		}
		out[i] = dns.Copy(rr)
		out[i].Header().Name = name
	}
	if out == nil {
		return rrs
	}
	return out
}
