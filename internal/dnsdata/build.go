package dnsdata

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/authdns"
)

// ReservedNames answer with every available core's addresses.
var ReservedNames = []string{"lsc", "reg", "access", "mfa"}

// Static is the part of the zone that comes from configuration.
type Static struct {
	Domain string // dns.domain, lower case, no trailing dot
	TTL    uint32 // dns.defaultTTL
	// Apex records (dns.records.root); SOA in presentation format without
	// the serial's meaning (the serial is replaced). Empty: a default SOA.
	Root    Records
	RootSOA string
	// The apex NS host core.{domain} (unless Root.NS names others):
	// dns.publicIp, and this core's IPv6.
	NSHostIP, NSHostIPv6 string
	Entries              []Entry // dns.staticEntries
	// CAA is published at the apex unless Root has CAA records of its own
	// (the operator's win).
	CAA CAA
	// DNSSEC, when set, signs the zone with the keys of the DNSSEC key
	// rows, opened with it (dns.dnssec; the keyring of atRestKey). Until
	// a key row exists the zone is served unsigned. The Watcher sets it
	// from Watcher.Keys.
	DNSSEC Opener
	// Sigs keeps the signatures across rebuilds (the Watcher's; nil: a
	// new cache per Build).
	Sigs *authdns.SigCache
}

// rows is the in-memory copy of the DNS rows the zone is built from.
type rows struct {
	// users maps the name of a user row that is a member label (what
	// CheckUsername writes: one lower-case label) to its core, an index in
	// coreIDs. The zone built last keeps this very map (dns.Members):
	// once it is shared, a change first replaces it with a copy (own), so
	// a zone never sees it change. With 100,000 users it is the one
	// per-user structure here (the zone holds no other).
	users   map[string]uint32
	shared  bool
	coreIdx map[string]uint32 // core id -> index in coreIDs
	coreIDs []string          // every core id seen in a user row: one string per core, not one per user
	// odd are the other user rows (upper case, several labels, odd
	// characters: never written by CheckUsername): name -> core id. They
	// get records of their own.
	odd   map[string]string
	cores map[string]CoreInfo // id -> info
	// coresChanged: cores changed since Watcher.Cores was last given them
	// (a new rows is all changed).
	coresChanged bool
	records      map[string]Records           // subdomain -> records
	challenges   map[string]map[string]string // fqdn (no trailing dot) -> row key -> value
	accounts     map[string]account           // ACME account row key -> account
	dnssec       map[string]KeyRow            // DNSSEC key row key -> key
}

func newRows() *rows {
	return &rows{
		users:        map[string]uint32{},
		coreIdx:      map[string]uint32{},
		odd:          map[string]string{},
		cores:        map[string]CoreInfo{},
		coresChanged: true,
		records:      map[string]Records{},
		challenges:   map[string]map[string]string{},
		accounts:     map[string]account{},
		dnssec:       map[string]KeyRow{},
	}
}

// setUser records that user name is on core id.
func (r *rows) setUser(name, id string) {
	i, ok := r.coreIdx[id]
	if !ok {
		i = uint32(len(r.coreIDs)) //nolint:gosec // G115: cores of one platform, far below 2^32
		r.coreIDs = append(r.coreIDs, id)
		r.coreIdx[id] = i
	}
	if !authdns.IsMemberLabel(name) {
		r.odd[name] = r.coreIDs[i]
		return
	}
	if have, ok := r.users[name]; ok && have == i {
		return
	}
	r.own()
	// A copy of the name: it is a piece of the row's key, which it would
	// keep whole (a map assignment stores the key it is given).
	r.users[strings.Clone(name)] = i
}

// deleteUser forgets user name.
func (r *rows) deleteUser(name string) {
	if !authdns.IsMemberLabel(name) {
		delete(r.odd, name)
		return
	}
	if _, ok := r.users[name]; ok {
		r.own()
		delete(r.users, name)
	}
}

// own makes users the rows' own before a change: a copy when the last zone
// holds it (a copy of the map's tables, no rehashing: about a millisecond
// for 100,000 users, once per rebuild during a burst of changes).
func (r *rows) own() {
	if r.shared {
		r.users = maps.Clone(r.users)
		r.shared = false
	}
}

// user returns user name's core id (tests).
func (r *rows) user(name string) (string, bool) {
	if i, ok := r.users[name]; ok {
		return r.coreIDs[i], true
	}
	id, ok := r.odd[name]
	return id, ok
}

// Build makes the zone: static entries first, then runtime records (a name
// both define keeps the static one, and a warning says so), the reserved
// names and per-core names, then users, then ACME TXT values.
func Build(st Static, r *rows, serial uint32) (*authdns.Zone, []string, error) {
	b := &zoneBuilder{st: st, r: r, origin: dns.Fqdn(st.Domain), ttl: st.TTL, taken: map[string]string{}}
	// The order is the precedence: a name claimed by an earlier phase
	// shadows the later ones.
	if err := b.apex(); err != nil {
		return nil, nil, err
	}
	b.caa()
	b.dnssecKeys()
	b.staticEntries()
	b.runtimeRecords()
	b.nsHost()
	b.cores()
	b.oddUsers()
	b.challenges()
	return b.zone(serial)
}

// zoneBuilder is one Build in progress: the records made so far, the names
// they claimed and what was skipped.
type zoneBuilder struct {
	st       Static
	r        *rows
	origin   string // st.Domain, fully qualified
	ttl      uint32
	all      []dns.RR
	taken    map[string]string // relative name -> what claimed it
	warnings []string
	keys     []authdns.Key // the DNSSEC signing keys, if any
	groups   [][]dns.RR    // the records of each core of r.coreIDs, for its users
}

// claim takes name for by, unless an earlier phase has it (a warning says
// so, except for a user: a username equal to another name is simply not
// answered as a user).
func (b *zoneBuilder) claim(name, by string) bool {
	if prev, ok := b.taken[name]; ok {
		if by != "user" {
			b.warn("%s.%s: defined by %s and %s; keeping %s", name, b.st.Domain, prev, by, prev)
		}
		return false
	}
	b.taken[name] = by
	return true
}

// claimAndAdd adds recs at name if name is free.
func (b *zoneBuilder) claimAndAdd(name string, recs Records, by string) {
	if b.claim(name, by) {
		b.add(name, recs, by)
	}
}

// add makes the records of name, or skips them with a warning: one bad
// entry must not keep the whole zone from being built, so what NewZone
// would refuse is refused here.
func (b *zoneBuilder) add(name string, recs Records, by string) {
	rrs, err := buildRRs(name+"."+b.origin, b.ttl, recs)
	if err == nil && recs.CNAME != "" && len(rrs) > 1 {
		err = fmt.Errorf("a name with a CNAME can hold no other record")
	}
	for _, rr := range rrs {
		if err == nil && !dns.IsSubDomain(b.origin, rr.Header().Name) {
			err = fmt.Errorf("%s is not inside the zone", rr.Header().Name)
		}
	}
	if err != nil {
		b.warn("%s.%s (%s): %v; skipped", name, b.st.Domain, by, err)
		return
	}
	b.all = append(b.all, rrs...)
}

func (b *zoneBuilder) warn(format string, args ...any) {
	b.warnings = append(b.warnings, fmt.Sprintf(format, args...))
}

// apex adds dns.records.root, with the NS core.{domain} unless it names
// its own; a bad apex is the one error that stops the build.
func (b *zoneBuilder) apex() error {
	root := b.st.Root
	if len(root.NS) == 0 {
		root.NS = []string{"core." + b.origin}
	}
	rrs, err := buildRRs(b.origin, b.ttl, root)
	if err != nil {
		return fmt.Errorf("dns.records.root: %w", err)
	}
	b.all = append(b.all, rrs...)
	return nil
}

// caa adds the ACME accounts' CAA records at the apex, unless
// dns.records.root has CAA records of its own.
func (b *zoneBuilder) caa() {
	if len(b.st.Root.CAA) > 0 {
		return
	}
	rrs, warn := b.st.CAA.records(b.origin, b.ttl, b.r.accounts)
	b.all = append(b.all, rrs...)
	b.warnings = append(b.warnings, warn...)
}

// dnssecKeys opens the DNSSEC key rows (when DNSSEC is on) and adds their
// DNSKEYs at the apex; zone signs with them.
func (b *zoneBuilder) dnssecKeys() {
	if b.st.DNSSEC == nil {
		return
	}
	keys, warn := signingKeys(b.st.DNSSEC, b.origin, b.ttl, b.r.dnssec)
	b.warnings = append(b.warnings, warn...)
	for _, k := range keys {
		b.all = append(b.all, k.DNSKEY)
	}
	b.keys = keys
}

// staticEntries adds dns.staticEntries: they win over every runtime name.
func (b *zoneBuilder) staticEntries() {
	for _, e := range b.st.Entries {
		b.claimAndAdd(strings.ToLower(e.Subdomain), e.Records, "dns.staticEntries")
	}
}

// runtimeRecords adds the dns-record rows, in a stable order (the first of
// two rows differing only in case wins).
func (b *zoneBuilder) runtimeRecords() {
	for _, sub := range slices.Sorted(maps.Keys(b.r.records)) {
		b.claimAndAdd(strings.ToLower(sub), b.r.records[sub], "dns-record row")
	}
}

// nsHost adds core.{domain}, the apex's default NS host: dns.publicIp and
// this core's IPv6.
func (b *zoneBuilder) nsHost() {
	if b.st.NSHostIP != "" || b.st.NSHostIPv6 != "" {
		b.claimAndAdd("core", addrRecords(b.st.NSHostIP, b.st.NSHostIPv6), "dns.publicIp")
	}
}

// cores adds each core's own name, the reserved names with every available
// core's addresses, and the records each core's users answer with.
func (b *zoneBuilder) cores() {
	var everyCore Records
	for _, id := range slices.Sorted(maps.Keys(b.r.cores)) {
		c := b.r.cores[id]
		recs := coreRecords(c)
		if recs.Empty() {
			continue
		}
		b.claimAndAdd(strings.ToLower(id), recs, "core-info row")
		// A core whose addresses do not parse must not take the reserved
		// names of every other core down with it.
		if _, err := buildRRs(b.origin, b.ttl, recs); c.Available && err == nil {
			everyCore.A = append(everyCore.A, recs.A...)
			everyCore.AAAA = append(everyCore.AAAA, recs.AAAA...)
		}
	}
	if !everyCore.Empty() {
		for _, n := range ReservedNames {
			b.claimAndAdd(n, everyCore, "reserved name")
		}
	}
	// Users: the bulk of a big zone, handed to the zone as dns.Members:
	// the rows' own map of users (kept by the zone, not copied) and the
	// records of each core. Nothing here is done per user: a rebuild costs
	// the other names only.
	b.groups = make([][]dns.RR, len(b.r.coreIDs))
	for i, id := range b.r.coreIDs {
		if c, ok := b.r.cores[id]; ok {
			if rrs, err := buildRRs("x."+b.origin, b.ttl, coreRecords(c)); err == nil {
				b.groups[i] = rrs
			}
		}
	}
}

// oddUsers adds the user rows not written through CheckUsername: their own
// records, as any other name (skipped with a warning if they cannot be
// made), unless the user row of that name in lower case exists. A name made
// before (configuration, runtime records, cores, reserved names) shadows a
// user of that name.
func (b *zoneBuilder) oddUsers() {
	for user, id := range b.r.odd {
		label := strings.ToLower(user)
		c, ok := b.r.cores[id]
		if _, member := b.r.users[label]; member || !ok || coreRecords(c).Empty() {
			continue
		}
		if b.claim(label, "user") {
			b.add(label, coreRecords(c), "user-core row")
		}
	}
}

// memberRecords returns the records of the user whose name is owner (lower
// case, fully qualified), if it is a member the zone answers.
func (b *zoneBuilder) memberRecords(owner string) []dns.RR {
	l, ok := strings.CutSuffix(owner, "."+b.origin)
	if !ok || strings.IndexByte(l, '.') >= 0 {
		return nil
	}
	if _, shadowed := b.taken[l]; shadowed {
		return nil
	}
	if i, ok := b.r.users[l]; ok {
		return b.groups[i]
	}
	return nil
}

// challenges adds the ACME DNS-01 values inside the zone, except at a name
// holding a CNAME (a TXT beside it would make the zone unbuildable).
func (b *zoneBuilder) challenges() {
	cnames := map[string]bool{}
	for _, rr := range b.all {
		if rr.Header().Rrtype == dns.TypeCNAME {
			cnames[strings.ToLower(rr.Header().Name)] = true
		}
	}
	for fqdn, values := range b.r.challenges {
		owner := dns.Fqdn(fqdn)
		if !dns.IsSubDomain(b.origin, owner) {
			continue
		}
		lower := strings.ToLower(owner)
		user := b.memberRecords(lower)
		if cnames[lower] || (len(user) > 0 && user[0].Header().Rrtype == dns.TypeCNAME) {
			b.warn("%s: holds a CNAME; the DNS-01 value published there is not served", fqdn)
			continue
		}
		// A value at a user's own name: the name holds both (a name of
		// rrs with records would shadow the member).
		for _, rr := range user {
			c := dns.Copy(rr)
			c.Header().Name = owner
			b.all = append(b.all, c)
		}
		for _, v := range values {
			b.all = append(b.all, &dns.TXT{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{v}})
		}
	}
}

// zone makes the zone of what was added, with the users as members, and
// signs it when there are keys. The rows' users are the zone's from now on
// (r.shared: the next change copies them).
func (b *zoneBuilder) zone(serial uint32) (*authdns.Zone, []string, error) {
	soa, err := makeSOA(b.origin, b.ttl, b.st.RootSOA, serial)
	if err != nil {
		return nil, nil, err
	}
	z, err := authdns.NewZoneMembers(b.origin, soa, b.all, authdns.Members{Labels: b.r.users, Groups: b.groups})
	if err != nil {
		return nil, b.warnings, err
	}
	if len(b.keys) > 0 {
		if err := z.Sign(b.keys, time.Now(), b.st.Sigs); err != nil {
			return nil, b.warnings, err
		}
	}
	b.r.shared = true
	return z, b.warnings, nil
}

func coreRecords(c CoreInfo) Records {
	if c.IP == "" && c.IPv6 == "" && c.CNAME != "" {
		return Records{CNAME: dns.Fqdn(c.CNAME)}
	}
	return addrRecords(c.IP, c.IPv6)
}

func addrRecords(ip, ipv6 string) Records {
	var r Records
	if ip != "" {
		r.A = []string{ip}
	}
	if ipv6 != "" {
		r.AAAA = []string{ipv6}
	}
	return r
}

func makeSOA(origin string, ttl uint32, text string, serial uint32) (*dns.SOA, error) {
	if text == "" {
		text = fmt.Sprintf("core.%s hostmaster.%s 1 3600 600 1209600 %d", origin, origin, ttl)
	}
	rr, err := dns.NewRR(fmt.Sprintf("%s %d IN SOA %s", origin, ttl, text))
	if err == nil && rr == nil {
		err = errors.New("empty")
	}
	if err != nil {
		return nil, fmt.Errorf("dns.records.root.soa: %q is not an SOA (mname rname serial refresh retry expire minimum): %w", text, err)
	}
	soa := rr.(*dns.SOA)
	soa.Serial = serial
	return soa, nil
}

// buildRRs turns presentation-format values into records, with the
// library's parser (never our own), in a fixed order of types.
func buildRRs(owner string, ttl uint32, r Records) ([]dns.RR, error) {
	var cname []string
	if r.CNAME != "" {
		cname = []string{r.CNAME}
	}
	var out []dns.RR
	for _, t := range []struct {
		typ    string
		values []string
	}{{"A", r.A}, {"AAAA", r.AAAA}, {"CNAME", cname}, {"NS", r.NS}, {"MX", r.MX}, {"TXT", r.TXT}, {"CAA", r.CAA}} {
		for _, v := range t.values {
			rr, err := parseRR(owner, ttl, t.typ, v)
			if err != nil {
				return nil, err
			}
			out = append(out, rr)
		}
	}
	return out, nil
}

// parseRR makes one record of type typ (upper case) and value v.
func parseRR(owner string, ttl uint32, typ, v string) (dns.RR, error) {
	switch typ {
	case "A":
		if net.ParseIP(v).To4() == nil {
			return nil, fmt.Errorf("a %q: not an IPv4 address", v)
		}
	case "CNAME", "NS":
		v = dns.Fqdn(v)
	case "TXT":
		// A TXT value is taken as the text itself, not zone-file syntax.
		return &dns.TXT{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl}, Txt: splitTXT(v)}, nil
	}
	rr, err := dns.NewRR(fmt.Sprintf("%s %d IN %s %s", owner, ttl, typ, v))
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", strings.ToLower(typ), v, err)
	}
	if rr == nil {
		return nil, fmt.Errorf("%s %q: empty", strings.ToLower(typ), v)
	}
	return rr, nil
}

// splitTXT cuts a long value into the 255-byte strings TXT allows.
func splitTXT(v string) []string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, v[:255])
		v = v[255:]
	}
	return append(parts, v)
}
