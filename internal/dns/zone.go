package dns

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

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

	names  map[string]*node // every existing name, empty non-terminals included, group members excepted
	order  []*node          // names in creation order (deterministic checks); nil after NewZone
	apex   *node
	negSOA []dns.RR // {SOA with TTL = min(TTL, MINIMUM)}, for negative answers

	// The members of the Groups: label -> index in groups. A member costs
	// one map entry (its label's string is the caller's, not copied), not
	// a node with its own records: a 100,000-user zone is a map of 100,000
	// small entries, not 100,000 nodes, RRsets and records (see Group).
	// Members also listed in rrs are not here but nodes in names, holding
	// a copy of their group's records.
	members map[string]uint32
	groups  []*node // each group's records, owner names to be replaced by the member's name

	hasCuts     bool // some name below the apex has NS records
	hasWildcard bool // some name's first label is "*"
}

// node is one existing name of the zone.
type node struct {
	name   string  // canonical owner name
	sets   []rrset // one per type, in first-seen order; empty for an empty non-terminal
	cname  dns.RR  // the CNAME record, if any
	target string  // its canonical target
	wild   *node   // the "*.<name>" child, if any
	cut    *rrset  // the NS set when this name is a delegation point
}

// rrset is one RRset and what goes with it in an answer.
type rrset struct {
	rrtype uint16
	rrs    []dns.RR // len == cap: appending to it always copies
	glue   []dns.RR // A/AAAA of in-zone NS/MX/SRV targets; len == cap
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
func (z *Zone) Len() int { return z.nrr }

// Names returns the number of existing names, empty non-terminals and group
// members included.
func (z *Zone) Names() int { return len(z.names) + len(z.members) }

// Group is a set of names directly below the origin that own the same
// records: the users of one core, which all answer with that core's
// addresses. A member is stored as one map entry pointing at the group's
// records, which get the member's name as owner when answered, instead of
// a node and records of its own: what keeps a zone of 100,000 users small
// and quick to build.
type Group struct {
	// Labels are the members, one DNS label each, relative to the origin:
	// 1 to 63 bytes of a-z, 0-9, '-' and '_' (lower case: the canonical
	// form). The strings are kept, not copied. A label listed twice (in
	// one group or two) keeps its first group.
	Labels []string
	// Records are what every member owns; their owner names are ignored.
	// No NS (a member cannot be a delegation), MX or SRV (no glue is
	// computed for members), nor any type NewZone refuses in rrs.
	Records []dns.RR
}

// NewZone builds a zone snapshot from the apex SOA, the other records, and
// groups of names sharing their records. See the package documentation for
// the contract.
func NewZone(origin string, soa *dns.SOA, rrs []dns.RR, groups ...Group) (*Zone, error) {
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
	if err := z.addGroups(b, groups); err != nil {
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

// materialised marks, in members, a label whose name is a node in names.
const materialised = ^uint32(0)

// addGroups adds the groups' members once every record of rrs is in: a
// member whose name exists already (records of its own, or an empty
// non-terminal above some) becomes an ordinary node holding a copy of its
// group's records besides its own; the others are entries of members.
func (z *Zone) addGroups(b *builder, groups []Group) error {
	if len(groups) == 0 {
		return nil
	}
	originLen, err := dns.PackDomainName(z.origin, b.buf, 0, nil, false)
	if err != nil {
		return err
	}
	total := 0
	for _, g := range groups {
		total += len(g.Labels)
	}
	z.members = make(map[string]uint32, total)
	key := make([]byte, 0, 64+len(z.origin))
	for gi, g := range groups {
		tn, err := z.groupNode(b, g.Records)
		if err != nil {
			return fmt.Errorf("group %d: %w", gi, err)
		}
		nrr := 0
		for _, s := range tn.sets {
			nrr += len(s.rrs)
		}
		z.groups = append(z.groups, tn)
		for _, l := range g.Labels {
			if !IsMemberLabel(l) {
				return fmt.Errorf("group %d: label %q: want 1 to 63 bytes of a-z, 0-9, '-' and '_'", gi, l)
			}
			if originLen+1+len(l) > 255 {
				return fmt.Errorf("group %d: label %q: the name is longer than 255 bytes", gi, l)
			}
			if _, dup := z.members[l]; dup {
				continue
			}
			key = append(append(append(key[:0], l...), '.'), z.origin...)
			n := z.names[string(key)] // no allocation for the lookup
			if n == nil {
				z.members[l] = uint32(gi)
				z.nrr += nrr
				continue
			}
			z.members[l] = materialised
			for _, s := range tn.sets {
				for _, rr := range s.rrs {
					cp := dns.Copy(rr)
					cp.Header().Name = n.name
					if n.put(cp) {
						z.nrr++
					}
				}
			}
		}
	}
	// The materialised ones are found in names: drop them, so that members
	// only holds what find must look up there.
	for l, gi := range z.members {
		if gi == materialised {
			delete(z.members, l)
		}
	}
	return nil
}

// groupNode checks and copies a group's records into a node whose name is
// the origin's (a placeholder: answers give them the member's name).
func (z *Zone) groupNode(b *builder, rrs []dns.RR) (*node, error) {
	tn := &node{name: z.origin}
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
		// Owned by the origin while it is checked and copied: the caller's
		// owner may be anything, even outside the zone.
		c := dns.Copy(rr)
		c.Header().Name = z.origin
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

// member returns the records of name (canonical, inside the zone) when it
// is a group member held in members, else nil.
func (z *Zone) member(name string) *node {
	if len(z.members) == 0 || len(name) <= len(z.origin)+1 {
		return nil
	}
	l := name[:len(name)-len(z.origin)-1]
	if strings.IndexByte(l, '.') >= 0 {
		return nil // more than one label (or an escaped dot): never a member
	}
	if gi, ok := z.members[l]; ok {
		return z.groups[gi]
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
			n, synth = z.member(target), true
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
