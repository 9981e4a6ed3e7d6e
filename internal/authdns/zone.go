package authdns

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/miekg/dns"
)

// maxCNAMEChain is the longest CNAME chain Answer follows inside the zone.
const maxCNAMEChain = 8

// Zone is an immutable, indexed snapshot of one zone. Build it with NewZone;
// it is safe for concurrent use and never changes afterwards.
type Zone struct {
	origin string // canonical: lower case, fully qualified
	serial uint32
	nrr    int

	names  map[string]*node // every existing name, empty non-terminals included, members excepted
	order  []*node          // names in creation order (deterministic checks); nil after NewZone
	apex   *node
	negSOA []dns.RR // {SOA with TTL = min(TTL, MINIMUM)}, for negative answers
	// negShort memoises negSOA with a lower TTL, for absent looked-up
	// users (negSOAFor): the zone's one field written after NewZone.
	negShort atomic.Pointer[negMemo]

	// Members (see Members): label -> index in groups, the caller's map,
	// never written here. A member costs the zone nothing of its own (no
	// node, no records): a 100,000-user zone is the caller's map of
	// 100,000 labels plus one node per group.
	members map[string]uint32
	groups  []*node // each group's records (owner names replaced by the member's when answered); nil: none

	hasCuts     bool // some name below the apex has NS records
	hasWildcard bool // some name's first label is "*"

	sig *signer // set by Sign; nil: unsigned

	// incomplete: built before the rows it is made from could be read
	// (PlatformDB not loaded yet): a name it does not hold may exist.
	incomplete bool
}

// SetIncomplete marks a zone built without its PlatformDB rows: a name it
// does not hold is answered SERVFAIL (a resolver asks again or another
// core) rather than NXDOMAIN, which resolvers would cache. Call it before
// the zone is served: a served zone is never written.
func (z *Zone) SetIncomplete() { z.incomplete = true }

// node is one existing name of the zone.
type node struct {
	name   string  // canonical owner name
	sets   []rrset // one per type, in first-seen order; empty for an empty non-terminal
	cname  dns.RR  // the CNAME record, if any
	target string  // its canonical target
	wild   *node   // the "*.<name>" child, if any
	cut    *rrset  // the NS set when this name is a delegation point
	// A group's A and AAAA sets in wire form (fastAnswer); nil elsewhere.
	packedA, packedAAAA *packedSet
}

// rrset is one RRset and what goes with it in an answer.
type rrset struct {
	rrtype uint16
	rrs    []dns.RR // len == cap: appending to it always copies
	glue   []dns.RR // A/AAAA of in-zone NS/MX/SRV targets; len == cap
	sigs   []dns.RR // its RRSIGs, in a signed zone (Sign)
}

func (n *node) get(t uint16) *rrset {
	for i := range n.sets {
		if n.sets[i].rrtype == t {
			return &n.sets[i]
		}
	}
	return nil
}

// Origin returns the zone's apex, canonical (lower case, fully qualified).
func (z *Zone) Origin() string { return z.origin }

// Serial returns the serial of the zone's SOA.
func (z *Zone) Serial() uint32 { return z.serial }

// Len returns the number of records served, the SOA included (identical
// records counted once).
//
// With members it walks them (see Names).
func (z *Zone) Len() int {
	_, n := z.countMembers()
	return z.nrr + n
}

// Names returns the number of existing names, empty non-terminals and
// members included. With members it walks them: it is for tests and tools,
// not for a query path.
func (z *Zone) Names() int {
	n, _ := z.countMembers()
	return len(z.names) + n
}

// Members are names one label below the origin that own the records of
// their group: the users of a core, which all answer with that core's
// addresses. A member answers as if its group's records were in rrs with
// its name as owner, but costs the zone nothing of its own (its records get
// the query's name as owner when answered), and the labels are a map the
// zone keeps rather than copies: a zone of 100,000 users holds the caller's
// map and one set of records per core, and is built in time proportional
// to its other names, not to its members.
type Members struct {
	// Labels maps a member's label, relative to the origin, to its group
	// (an index in Groups). The zone keeps the map: the caller must never
	// change it afterwards (copy it to change it). A label that cannot be
	// the first label of a canonical query name (upper case, a dot, an
	// escape: see IsMemberLabel) is never answered; so is one whose group
	// is out of range or has no records.
	Labels map[string]uint32
	// Groups are the records of each group; their owner names are
	// ignored. No NS (a member cannot be a delegation), MX or SRV (no
	// glue is computed for members), nor any type NewZone refuses in rrs.
	Groups [][]dns.RR
}

// NewZone builds a zone snapshot from the apex SOA and the other records.
// See the package documentation for the contract.
func NewZone(origin string, soa *dns.SOA, rrs []dns.RR) (*Zone, error) {
	return NewZoneMembers(origin, soa, rrs, Members{})
}

// NewZoneMembers is NewZone with members. A name of rrs that holds records
// shadows the member of the same name (rrs win); a name of rrs that is only
// an empty non-terminal (names below it exist) gets the member's records.
func NewZoneMembers(origin string, soa *dns.SOA, rrs []dns.RR, m Members) (*Zone, error) {
	b := &builder{buf: make([]byte, dns.MaxMsgSize)}
	o, err := b.canonicalName(origin)
	if err != nil {
		return nil, fmt.Errorf("dns zone: origin %q: %w", origin, err)
	}
	if o == "." {
		return nil, fmt.Errorf("dns zone: origin must not be the root")
	}
	z := &Zone{origin: o, names: make(map[string]*node, len(rrs)+len(rrs)/8+8)}

	if soa == nil {
		return nil, fmt.Errorf("dns zone %s: no SOA", o)
	}
	s := *soa
	if s.Hdr.Name == "" {
		s.Hdr.Name = o
	}
	s.Hdr.Rrtype = dns.TypeSOA
	cp, err := b.copyRR(&s)
	if err != nil {
		return nil, fmt.Errorf("dns zone %s: SOA %s: %w", o, soa.String(), err)
	}
	if cp.Header().Name != o {
		return nil, fmt.Errorf("dns zone %s: SOA owner %s is not the origin", o, soa.Hdr.Name)
	}
	apexSOA := cp.(*dns.SOA)
	z.serial = apexSOA.Serial
	z.apex = &node{name: o, sets: []rrset{{rrtype: dns.TypeSOA, rrs: []dns.RR{apexSOA}}}}
	z.names[o] = z.apex
	z.order = append(z.order, z.apex)
	z.nrr = 1

	neg := dns.Copy(apexSOA).(*dns.SOA)
	neg.Hdr.Ttl = min(neg.Hdr.Ttl, neg.Minttl)
	z.negSOA = []dns.RR{neg}

	for _, rr := range rrs {
		if err := z.add(b, rr); err != nil {
			return nil, fmt.Errorf("dns zone %s: %w", o, err)
		}
	}
	if err := z.addMembers(b, m); err != nil {
		return nil, fmt.Errorf("dns zone %s: %w", o, err)
	}
	if err := z.finish(); err != nil {
		return nil, fmt.Errorf("dns zone %s: %w", o, err)
	}
	return z, nil
}

// builder holds NewZone's scratch state.
type builder struct {
	buf []byte
	msg dns.Msg
}

// copyRR returns an independent, canonical copy of rr: packed and unpacked
// again (which validates the rdata and gives the name miekg's presentation
// form), with its owner in lower case. rr itself is not modified.
func (b *builder) copyRR(rr dns.RR) (dns.RR, error) {
	h := rr.Header()
	if h.Rrtype == 0 {
		return nil, errors.New("no type in its header")
	}
	switch h.Class {
	case 0:
		// Taken as IN: a struct literal often leaves it out. Pack a copy
		// with the class set so the caller's record is left alone.
		rr = dns.Copy(rr)
		rr.Header().Class = dns.ClassINET
	case dns.ClassINET:
	default:
		return nil, fmt.Errorf("class %s is not IN", dns.Class(h.Class))
	}
	b.msg.Answer = append(b.msg.Answer[:0], rr)
	wire, err := b.msg.PackBuffer(b.buf)
	b.msg.Answer[0] = nil
	if err != nil {
		return nil, err
	}
	cp, _, err := dns.UnpackRR(wire, 12)
	if err != nil {
		return nil, err
	}
	if reflect.TypeOf(cp) != reflect.TypeOf(rr) {
		return nil, fmt.Errorf("its Go type %T does not match its header type %s", rr, dns.Type(h.Rrtype))
	}
	cp.Header().Name = asciiLower(cp.Header().Name)
	return cp, nil
}

func (b *builder) canonicalName(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty name")
	}
	off, err := dns.PackDomainName(dns.Fqdn(s), b.buf, 0, nil, false)
	if err != nil {
		return "", err
	}
	n, _, err := dns.UnpackDomainName(b.buf[:off], 0)
	if err != nil {
		return "", err
	}
	return asciiLower(n), nil
}

func (z *Zone) add(b *builder, rr dns.RR) error {
	if rr == nil {
		return errors.New("nil record")
	}
	switch t := rr.Header().Rrtype; t {
	case dns.TypeSOA:
		return fmt.Errorf("record %s: the apex SOA is the soa argument, no SOA may be among the records", rr)
	case dns.TypeDNAME:
		return fmt.Errorf("record %s: DNAME is not supported", rr)
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, dns.TypeAXFR, dns.TypeIXFR,
		dns.TypeANY, dns.TypeMAILA, dns.TypeMAILB, dns.TypeNone:
		return fmt.Errorf("record %s: type %s cannot be served", rr, dns.Type(t))
	}
	cp, err := b.copyRR(rr)
	if err != nil {
		return fmt.Errorf("record %s: %w", rr, err)
	}
	name := cp.Header().Name
	if !inZone(name, z.origin) {
		return fmt.Errorf("record %s: %s is not inside the zone", rr, name)
	}
	n := z.names[name]
	if n == nil {
		n = &node{name: name}
		z.names[name] = n
		z.order = append(z.order, n)
		z.addAncestors(name)
	}
	if n.put(cp) {
		z.nrr++
	}
	return nil
}

// put adds the canonical record cp to n's RRset of its type and reports
// whether it was new (not a duplicate of one already there).
func (n *node) put(cp dns.RR) bool {
	t := cp.Header().Rrtype
	set := n.get(t)
	if set == nil {
		n.sets = append(n.sets, rrset{rrtype: t})
		set = &n.sets[len(n.sets)-1]
	}
	for _, have := range set.rrs {
		if dns.IsDuplicate(have, cp) {
			set.rrs = adjustTTL(set.rrs, cp.Header().Ttl)
			return false
		}
	}
	set.rrs = append(set.rrs, cp)
	set.rrs = adjustTTL(set.rrs, cp.Header().Ttl)
	return true
}

// addMembers takes the members once every record of rrs is in: each
// group's records are checked and copied once, and an empty non-terminal of
// rrs that is a member gets a copy of its group's records (it is found in
// names, before members are looked at). It iterates the names and groups,
// never the members, but to count them (for Names and Len: a map walk with
// no allocation).
func (z *Zone) addMembers(b *builder, m Members) error {
	if len(m.Labels) == 0 {
		return nil
	}
	z.members = m.Labels
	z.groups = make([]*node, len(m.Groups))
	for gi, rrs := range m.Groups {
		if len(rrs) == 0 {
			continue
		}
		tn, err := groupNode(b, z.origin, rrs)
		if err != nil {
			return fmt.Errorf("group %d: %w", gi, err)
		}
		z.groups[gi] = tn
	}
	z.packGroups()
	for _, n := range z.order {
		if len(n.sets) != 0 {
			continue // shadows a member of the same name, if any
		}
		g := z.memberOf(n.name)
		if g == nil {
			continue
		}
		for _, s := range g.sets {
			for _, rr := range s.rrs {
				cp := dns.Copy(rr)
				cp.Header().Name = n.name
				if n.put(cp) {
					z.nrr++
				}
			}
		}
	}
	return nil
}

// countMembers returns the number of members answered (not shadowed by a
// name of rrs, group not empty) and of their records: a walk of the map.
func (z *Zone) countMembers() (names, records int) {
	key := make([]byte, 0, 64+len(z.origin))
	for l, gi := range z.members {
		g := z.group(gi)
		if g == nil || !IsMemberLabel(l) || len(l)+1+len(z.origin) > 254 {
			continue
		}
		key = append(append(append(key[:0], l...), '.'), z.origin...)
		if _, shadowed := z.names[string(key)]; shadowed {
			continue
		}
		names++
		for _, s := range g.sets {
			records += len(s.rrs)
		}
	}
	return names, records
}

// groupNode checks and copies a group's records into a node whose name is
// owner (a placeholder: answers give them the member's name).
func groupNode(b *builder, owner string, rrs []dns.RR) (*node, error) {
	tn := &node{name: owner}
	for _, rr := range rrs {
		if rr == nil {
			return nil, errors.New("nil record")
		}
		switch t := rr.Header().Rrtype; t {
		case dns.TypeSOA, dns.TypeNS, dns.TypeMX, dns.TypeSRV, dns.TypeDNAME,
			dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, dns.TypeAXFR, dns.TypeIXFR,
			dns.TypeANY, dns.TypeMAILA, dns.TypeMAILB, dns.TypeNone:
			return nil, fmt.Errorf("record %s: type %s cannot be a group's", rr, dns.Type(t))
		}
		// Owned by owner while it is checked and copied: the caller's
		// owner may be anything, even outside the zone.
		c := dns.Copy(rr)
		c.Header().Name = owner
		cp, err := b.copyRR(c)
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", rr, err)
		}
		tn.put(cp)
	}
	for i := range tn.sets {
		tn.sets[i].rrs = slices.Clip(tn.sets[i].rrs)
	}
	if c := tn.get(dns.TypeCNAME); c != nil {
		if len(c.rrs) > 1 {
			return nil, fmt.Errorf("records %s and %s: two CNAMEs", c.rrs[0], c.rrs[1])
		}
		if len(tn.sets) > 1 {
			return nil, fmt.Errorf("record %s: a CNAME cannot coexist with other data", c.rrs[0])
		}
		tn.cname = c.rrs[0]
		tn.target = asciiLower(c.rrs[0].(*dns.CNAME).Target)
	}
	return tn, nil
}

// IsMemberLabel reports whether l can be a Group member: one canonical
// label that needs no escaping in presentation form (1 to 63 bytes of a-z,
// 0-9, '-' and '_').
func IsMemberLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// group returns the records of group gi, or nil (out of range, or none).
func (z *Zone) group(gi uint32) *node {
	if int(gi) < len(z.groups) {
		return z.groups[gi]
	}
	return nil
}

// memberOf returns the records of name (canonical, inside the zone) when it
// is a member's name, else nil. A name of rrs that holds records shadows
// it: callers look in names first.
func (z *Zone) memberOf(name string) *node {
	if len(z.members) == 0 || len(name) <= len(z.origin)+1 {
		return nil
	}
	l := name[:len(name)-len(z.origin)-1]
	if strings.IndexByte(l, '.') >= 0 {
		return nil // more than one label (or an escaped dot): never a member
	}
	if gi, ok := z.members[l]; ok {
		return z.group(gi)
	}
	return nil
}

// adjustTTL gives every record of an RRset the lowest TTL (RFC 2181 §5.2).
func adjustTTL(rrs []dns.RR, ttl uint32) []dns.RR {
	low := ttl
	for _, r := range rrs {
		low = min(low, r.Header().Ttl)
	}
	for _, r := range rrs {
		r.Header().Ttl = low
	}
	return rrs
}

// addAncestors creates the empty non-terminals between name and the apex.
func (z *Zone) addAncestors(name string) {
	off := 0
	for {
		next, end := dns.NextLabel(name, off)
		if end {
			return
		}
		off = next
		parent := name[off:]
		if len(parent) <= len(z.origin) {
			return
		}
		if z.names[parent] != nil {
			return // its own ancestors exist already
		}
		p := &node{name: parent}
		z.names[parent] = p
		z.order = append(z.order, p)
	}
}

// finish checks the CNAME rules and precomputes wildcards, delegations and
// glue once every record is in.
func (z *Zone) finish() error {
	defer func() { z.order = nil }()
	for _, n := range z.order {
		name := n.name
		for i := range n.sets {
			n.sets[i].rrs = slices.Clip(n.sets[i].rrs)
		}
		if c := n.get(dns.TypeCNAME); c != nil {
			if n == z.apex {
				return fmt.Errorf("record %s: a CNAME cannot be at the apex", c.rrs[0])
			}
			if len(c.rrs) > 1 {
				return fmt.Errorf("records %s and %s: two CNAMEs at %s", c.rrs[0], c.rrs[1], name)
			}
			for _, s := range n.sets {
				switch s.rrtype {
				case dns.TypeCNAME, dns.TypeRRSIG, dns.TypeNSEC:
				default:
					return fmt.Errorf("record %s: a CNAME cannot coexist with other data at %s (%s)",
						c.rrs[0], name, s.rrs[0])
				}
			}
			n.cname = c.rrs[0]
			n.target = asciiLower(c.rrs[0].(*dns.CNAME).Target)
		}
		if strings.HasPrefix(name, "*.") {
			if parent := z.names[name[2:]]; parent != nil {
				parent.wild = n
				z.hasWildcard = true
			}
		}
		if n != z.apex {
			if ns := n.get(dns.TypeNS); ns != nil {
				n.cut = ns
				z.hasCuts = true
			}
		}
	}
	for _, n := range z.order {
		for i := range n.sets {
			s := &n.sets[i]
			switch s.rrtype {
			case dns.TypeNS, dns.TypeMX, dns.TypeSRV:
				s.glue = z.glue(s.rrs)
			}
		}
	}
	return nil
}

// glue returns the A and AAAA records of the in-zone targets of rrs.
func (z *Zone) glue(rrs []dns.RR) []dns.RR {
	var out []dns.RR
	var seen []string
	for _, rr := range rrs {
		var target string
		switch r := rr.(type) {
		case *dns.NS:
			target = r.Ns
		case *dns.MX:
			target = r.Mx
		case *dns.SRV:
			target = r.Target
		}
		target = asciiLower(target)
		if !inZone(target, z.origin) || slices.Contains(seen, target) {
			continue
		}
		seen = append(seen, target)
		n, synth := z.names[target], false
		if n == nil {
			n, synth = z.memberOf(target), true
		}
		if n == nil {
			continue
		}
		for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
			if s := n.get(t); s != nil && synth {
				out = append(out, withOwner(s.rrs, target)...)
			} else if s != nil {
				out = append(out, s.rrs...)
			}
		}
	}
	return slices.Clip(out)
}

// inZone reports whether the canonical name is origin or below it, on a
// label boundary. An escaped dot ("evil\.mc.example.com.") is not a boundary.
func inZone(name, origin string) bool {
	if len(name) == len(origin) {
		return name == origin
	}
	if len(name) < len(origin)+2 || name[len(name)-len(origin):] != origin {
		return false
	}
	dot := len(name) - len(origin) - 1
	if name[dot] != '.' {
		return false
	}
	j := dot - 1
	for j >= 0 && name[j] == '\\' {
		j--
	}
	return (dot-1-j)%2 == 0 // an even number of backslashes: the dot is not escaped
}

// asciiLower lowers ASCII letters only (DNS case-insensitivity, RFC 4343);
// it returns s itself, without allocating, when s has no upper-case letter.
func asciiLower(s string) string {
	i := 0
	for ; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			break
		}
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if c := b[i]; 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
