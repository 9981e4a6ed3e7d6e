package dnsdata

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/dns"
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
	Sigs *dns.SigCache
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
		i = uint32(len(r.coreIDs))
		r.coreIDs = append(r.coreIDs, id)
		r.coreIdx[id] = i
	}
	if !dns.IsMemberLabel(name) {
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
	if !dns.IsMemberLabel(name) {
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
func Build(st Static, r *rows, serial uint32) (*dns.Zone, []string, error) {
	origin := mdns.Fqdn(st.Domain)
	ttl := st.TTL
	var warnings []string
	var all []mdns.RR
	taken := map[string]string{} // relative name -> what claimed it

	claim := func(name, by string) bool {
		if prev, ok := taken[name]; ok {
			if by != "user" {
				warnings = append(warnings, fmt.Sprintf("%s.%s: defined by %s and %s; keeping %s", name, st.Domain, prev, by, prev))
			}
			return false
		}
		taken[name] = by
		return true
	}
	add := func(name string, recs Records, by string) {
		rrs, err := buildRRs(name+"."+origin, ttl, recs)
		// What NewZone would refuse must be skipped here: one bad entry
		// must not keep the whole zone from being built.
		if err == nil && recs.CNAME != "" && len(rrs) > 1 {
			err = fmt.Errorf("a name with a CNAME can hold no other record")
		}
		for _, rr := range rrs {
			if err == nil && !mdns.IsSubDomain(origin, rr.Header().Name) {
				err = fmt.Errorf("%s is not inside the zone", rr.Header().Name)
			}
		}
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("%s.%s (%s): %v; skipped", name, st.Domain, by, err))
			return
		}
		all = append(all, rrs...)
	}

	// Apex.
	root := st.Root
	nsHost := "core." + origin
	if len(root.NS) == 0 {
		root.NS = []string{nsHost}
	}
	apex, err := buildRRs(origin, ttl, root)
	if err != nil {
		return nil, nil, fmt.Errorf("dns.records.root: %w", err)
	}
	all = append(all, apex...)
	if len(root.CAA) == 0 {
		caa, warn := st.CAA.records(origin, ttl, r.accounts)
		all = append(all, caa...)
		warnings = append(warnings, warn...)
	}
	var keys []dns.Key
	if st.DNSSEC != nil {
		var warn []string
		keys, warn = signingKeys(st.DNSSEC, origin, ttl, r.dnssec)
		warnings = append(warnings, warn...)
		for _, k := range keys {
			all = append(all, k.DNSKEY)
		}
	}

	for _, e := range st.Entries {
		if claim(strings.ToLower(e.Subdomain), "dns.staticEntries") {
			add(strings.ToLower(e.Subdomain), e.Records, "dns.staticEntries")
		}
	}
	for _, sub := range slices.Sorted(maps.Keys(r.records)) {
		if name := strings.ToLower(sub); claim(name, "dns-record row") {
			add(name, r.records[sub], "dns-record row")
		}
	}
	if st.NSHostIP != "" || st.NSHostIPv6 != "" {
		if claim("core", "dns.publicIp") {
			add("core", addrRecords(st.NSHostIP, st.NSHostIPv6), "dns.publicIp")
		}
	}

	var everyCore Records
	for _, id := range slices.Sorted(maps.Keys(r.cores)) {
		c := r.cores[id]
		recs := coreRecords(c)
		if recs.Empty() {
			continue
		}
		if claim(strings.ToLower(id), "core-info row") {
			add(strings.ToLower(id), recs, "core-info row")
		}
		// A core whose addresses do not parse must not take the reserved
		// names of every other core down with it.
		if _, err := buildRRs(origin, ttl, recs); c.Available && err == nil {
			everyCore.A = append(everyCore.A, recs.A...)
			everyCore.AAAA = append(everyCore.AAAA, recs.AAAA...)
		}
	}
	if !everyCore.Empty() {
		for _, n := range ReservedNames {
			if claim(n, "reserved name") {
				add(n, everyCore, "reserved name")
			}
		}
	}

	// Users: the bulk of a big zone, handed to the zone as dns.Members:
	// the rows' own map of users (kept by the zone, not copied) and the
	// records of each core. Nothing here is done per user: a rebuild costs
	// the other names only. A name made above (configuration, runtime
	// records, cores, reserved names) shadows a user of that name.
	groups := make([][]mdns.RR, len(r.coreIDs))
	for i, id := range r.coreIDs {
		if c, ok := r.cores[id]; ok {
			if rrs, err := buildRRs("x."+origin, ttl, coreRecords(c)); err == nil {
				groups[i] = rrs
			}
		}
	}
	for user, id := range r.odd {
		// A row not written through CheckUsername: its own records, as
		// any other name (skipped with a warning if they cannot be made),
		// unless the user row of that name in lower case exists.
		label := strings.ToLower(user)
		c, ok := r.cores[id]
		if _, member := r.users[label]; member || !ok || coreRecords(c).Empty() {
			continue
		}
		if claim(label, "user") {
			add(label, coreRecords(c), "user-core row")
		}
	}
	// memberRecords returns the records of the user whose name is owner
	// (lower case, fully qualified), if it is a member the zone answers.
	memberRecords := func(owner string) []mdns.RR {
		l, ok := strings.CutSuffix(owner, "."+origin)
		if !ok || strings.IndexByte(l, '.') >= 0 {
			return nil
		}
		if _, shadowed := taken[l]; shadowed {
			return nil
		}
		if i, ok := r.users[l]; ok {
			return groups[i]
		}
		return nil
	}

	cnames := map[string]bool{} // a TXT value next to a CNAME would make the zone unbuildable
	for _, rr := range all {
		if rr.Header().Rrtype == mdns.TypeCNAME {
			cnames[strings.ToLower(rr.Header().Name)] = true
		}
	}
	for fqdn, values := range r.challenges {
		owner := mdns.Fqdn(fqdn)
		if !mdns.IsSubDomain(origin, owner) {
			continue
		}
		lower := strings.ToLower(owner)
		user := memberRecords(lower)
		if cnames[lower] || (len(user) > 0 && user[0].Header().Rrtype == mdns.TypeCNAME) {
			warnings = append(warnings, fmt.Sprintf("%s: holds a CNAME; the DNS-01 value published there is not served", fqdn))
			continue
		}
		// A value at a user's own name: the name holds both (a name of
		// rrs with records would shadow the member).
		for _, rr := range user {
			c := mdns.Copy(rr)
			c.Header().Name = owner
			all = append(all, c)
		}
		for _, v := range values {
			all = append(all, &mdns.TXT{Hdr: mdns.RR_Header{Name: owner, Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: 60}, Txt: []string{v}})
		}
	}

	soa, err := makeSOA(origin, ttl, st.RootSOA, serial)
	if err != nil {
		return nil, nil, err
	}
	z, err := dns.NewZoneMembers(origin, soa, all, dns.Members{Labels: r.users, Groups: groups})
	if err != nil {
		return nil, warnings, err
	}
	if len(keys) > 0 {
		if err := z.Sign(keys, time.Now(), st.Sigs); err != nil {
			return nil, warnings, err
		}
	}
	r.shared = true
	return z, warnings, nil
}

func coreRecords(c CoreInfo) Records {
	if c.IP == "" && c.IPv6 == "" && c.CNAME != "" {
		return Records{CNAME: mdns.Fqdn(c.CNAME)}
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

func makeSOA(origin string, ttl uint32, text string, serial uint32) (*mdns.SOA, error) {
	if text == "" {
		text = fmt.Sprintf("core.%s hostmaster.%s 1 3600 600 1209600 %d", origin, origin, ttl)
	}
	rr, err := mdns.NewRR(fmt.Sprintf("%s %d IN SOA %s", origin, ttl, text))
	if err != nil || rr == nil {
		return nil, fmt.Errorf("dns.records.root.soa: %q is not an SOA (mname rname serial refresh retry expire minimum): %v", text, err)
	}
	soa := rr.(*mdns.SOA)
	soa.Serial = serial
	return soa, nil
}

// buildRRs turns presentation-format values into records, with the
// library's parser (never our own).
func buildRRs(owner string, ttl uint32, r Records) ([]mdns.RR, error) {
	var out []mdns.RR
	one := func(typ, v string) error {
		rr, err := mdns.NewRR(fmt.Sprintf("%s %d IN %s %s", owner, ttl, typ, v))
		if err != nil {
			return fmt.Errorf("%s %q: %v", strings.ToLower(typ), v, err)
		}
		if rr == nil {
			return fmt.Errorf("%s %q: empty", strings.ToLower(typ), v)
		}
		out = append(out, rr)
		return nil
	}
	for _, v := range r.A {
		if net.ParseIP(v).To4() == nil {
			return nil, fmt.Errorf("a %q: not an IPv4 address", v)
		}
		if err := one("A", v); err != nil {
			return nil, err
		}
	}
	for _, v := range r.AAAA {
		if err := one("AAAA", v); err != nil {
			return nil, err
		}
	}
	if r.CNAME != "" {
		if err := one("CNAME", mdns.Fqdn(r.CNAME)); err != nil {
			return nil, err
		}
	}
	for _, v := range r.NS {
		if err := one("NS", mdns.Fqdn(v)); err != nil {
			return nil, err
		}
	}
	for _, v := range r.MX {
		if err := one("MX", v); err != nil {
			return nil, err
		}
	}
	for _, v := range r.TXT {
		// A TXT value is taken as the text itself, not zone-file syntax.
		out = append(out, &mdns.TXT{Hdr: mdns.RR_Header{Name: owner, Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: ttl}, Txt: splitTXT(v)})
	}
	for _, v := range r.CAA {
		if err := one("CAA", v); err != nil {
			return nil, err
		}
	}
	return out, nil
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
