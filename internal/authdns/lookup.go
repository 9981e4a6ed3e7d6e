package authdns

import (
	"context"
	"errors"
	"fmt"

	"github.com/miekg/dns"
)

// Users is how the server learns which core hosts a user the zone does not
// hold: a name one label below the origin (a member label, see
// IsMemberLabel) that no record, member or wildcard of the zone answers.
// The zone always wins: a user written to it is never looked up.
type Users interface {
	UserCache
	// Resolve finds out where label is, waiting at most its own bound
	// (dns.userLookup.timeout) or until ctx ends. It returns LookupFound or
	// LookupAbsent, or an error: one wrapping context.DeadlineExceeded when
	// the bound passed (the lookup may go on in the background and fill
	// the cache), ErrLookupLimited when the lookup was refused to keep the
	// upstream's load bounded, anything else when the upstream failed.
	Resolve(ctx context.Context, label string) (UserHost, Lookup, error)
}

// UserCache is what an answer needs of Users: what is known of label now.
// Cached is called on the query path: it must not block, lock, do I/O or
// allocate. It returns LookupMiss, LookupFound or LookupAbsent.
type UserCache interface {
	Cached(label string) (UserHost, Lookup)
}

// Lookup is what is known of a user the zone does not hold.
type Lookup uint8

const (
	// NotLookedUp: the answer came from the zone (or the query was no
	// user's), no lookup was consulted.
	NotLookedUp Lookup = iota
	// LookupMiss: nothing known; the answer waits for Resolve.
	LookupMiss
	// LookupFound: the user exists; UserHost says what it answers.
	LookupFound
	// LookupAbsent: no such user (NXDOMAIN).
	LookupAbsent
)

// ErrLookupLimited is Resolve's error when a lookup is refused to bound the
// upstream's load (dns.userLookup.maxPerSecond).
var ErrLookupLimited = errors.New("user lookup refused: over the rate limit")

// UserHost is what a looked-up user answers: the records of a name of the
// zone (its core's), or records of its own, owned by the query's name; or,
// for an absent user, the TTL of the negative answer. Build it with UserAt,
// UserWith or UserAbsent; it is immutable and shared by every answer.
type UserHost struct {
	name   string // canonical, fully qualified: answer as this name of the zone answers
	own    *node  // else these records
	negTTL uint32 // LookupAbsent: the SOA's TTL in the answer (0: the zone's)
}

// UserAt answers as name (absolute, in any case) answers in the zone, with
// the user's name as owner: name is a core's name ("core2.mc.example.com"),
// so the user follows that core's A/AAAA or CNAME in every zone to come.
// The name is not checked against a zone: one that does not exist when a
// query comes gets SERVFAIL.
func UserAt(name string) (UserHost, error) {
	b := &builder{buf: make([]byte, 256)}
	n, err := b.canonicalName(name)
	if err != nil {
		return UserHost{}, fmt.Errorf("dns: user host %q: %w", name, err)
	}
	return UserHost{name: n}, nil
}

// UserWith answers with rrs (A, AAAA or one CNAME; owners ignored), checked
// as a Members group's records are: for a core the zone does not know.
func UserWith(rrs []dns.RR) (UserHost, error) {
	if len(rrs) == 0 {
		return UserHost{}, errors.New("dns: user host: no record")
	}
	b := &builder{buf: make([]byte, dns.MaxMsgSize)}
	n, err := groupNode(b, ".", rrs)
	if err != nil {
		return UserHost{}, fmt.Errorf("dns: user host: %w", err)
	}
	return UserHost{own: n}, nil
}

// UserAbsent is the UserHost of an absent user whose NXDOMAIN carries the
// zone's negative SOA with its TTL lowered to ttl (when lower): a resolver
// then asks again no later than the lookup's own negative cache expires.
func UserAbsent(ttl uint32) UserHost { return UserHost{negTTL: ttl} }

// String names what h answers, for tests and logs.
func (h UserHost) String() string {
	switch {
	case h.name != "":
		return "as " + h.name
	case h.own != nil:
		var s string
		for _, set := range h.own.sets {
			for _, rr := range set.rrs {
				if s != "" {
					s += ", "
				}
				s += dns.TypeToString[rr.Header().Rrtype] + " " + rr.String()[len(rr.Header().String()):]
			}
		}
		return "with " + s
	}
	return fmt.Sprintf("absent (negative TTL %d)", h.negTTL)
}

// AnswerUsers is Answer with users consulted for a name the zone does not
// hold. It returns what was known (NotLookedUp when no lookup was
// consulted); with LookupMiss the response is nil: the query must wait for
// Users.Resolve and be answered again with what it returned (see Resolved).
// users may be nil (Answer). The cost of an answer from the cache is that
// of a member's answer plus Cached.
func (z *Zone) AnswerUsers(req *dns.Msg, maxUDP int, tcp bool, users UserCache) (*dns.Msg, Lookup) {
	return z.answer(req, maxUDP, tcp, users)
}

// Resolved is a UserCache that knows one answer: what Resolve returned,
// for answering the query that waited for it.
type Resolved struct {
	Host   UserHost
	Lookup Lookup
}

// Cached returns r's answer for any label.
func (r *Resolved) Cached(string) (UserHost, Lookup) { return r.Host, r.Lookup }

// lookupLabel returns the label of qname (canonical, inside the zone) when
// it is one a lookup may answer: one member label below the origin.
func (z *Zone) lookupLabel(qname string) (string, bool) {
	l := len(qname) - len(z.origin) - 1
	if l <= 0 || qname[l] != '.' {
		return "", false
	}
	label := qname[:l]
	return label, IsMemberLabel(label)
}

// userNode returns what h answers in z, or nil (its name is not in z).
func (z *Zone) userNode(h UserHost) *node {
	if h.own != nil {
		return h.own
	}
	if h.name == "" || !inZone(h.name, z.origin) {
		return nil
	}
	n, _ := z.find(h.name)
	return n
}

// negSOAFor is the negative SOA with its TTL lowered to ttl; the copy is
// made once per zone and TTL (a zone is immutable but for this memo).
func (z *Zone) negSOAFor(ttl uint32) []dns.RR {
	if ttl == 0 || ttl >= z.negSOA[0].Header().Ttl {
		return z.negSOA
	}
	if m := z.negShort.Load(); m != nil && m.ttl == ttl {
		return m.rrs
	}
	soa := dns.Copy(z.negSOA[0])
	soa.Header().Ttl = ttl
	m := &negMemo{ttl: ttl, rrs: []dns.RR{soa}}
	z.negShort.Store(m)
	return m.rrs
}

type negMemo struct {
	ttl uint32
	rrs []dns.RR
}
