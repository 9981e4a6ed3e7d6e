package dnsdata

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"

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
}

// rows is the in-memory copy of the DNS rows the zone is built from.
type rows struct {
	users      map[string]string            // username -> core id
	cores      map[string]CoreInfo          // id -> info
	records    map[string]Records           // subdomain -> records
	challenges map[string]map[string]string // fqdn (no trailing dot) -> row key -> value
	ids        map[string]string            // core ids seen in user rows: one string per core, not one per user
}

func newRows() *rows {
	return &rows{
		ids:        map[string]string{},
		users:      map[string]string{},
		cores:      map[string]CoreInfo{},
		records:    map[string]Records{},
		challenges: map[string]map[string]string{},
	}
}

// intern returns the stored copy of a core id.
func (r *rows) intern(id string) string {
	if s, ok := r.ids[id]; ok {
		return s
	}
	r.ids[id] = id
	return id
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

	// Users: the bulk of a big zone. The users of one core are a dns.Group
	// sharing the core's records: a user costs the zone one map entry (its
	// label is the row's string, not a copy), not records of its own, and
	// nothing here is made per user but that label's place in a slice.
	groups := map[string]*dns.Group{} // core id -> its users
	for id, c := range r.cores {
		if rrs, err := buildRRs("x."+origin, ttl, coreRecords(c)); err == nil && len(rrs) > 0 {
			groups[id] = &dns.Group{Records: rrs}
		}
	}
	counts := map[string]int{} // the labels slices are made at their size: growing them would allocate several times it
	for _, coreID := range r.users {
		counts[coreID]++
	}
	for id, g := range groups {
		g.Labels = make([]string, 0, counts[id])
	}
	for user, coreID := range r.users {
		g := groups[coreID]
		if g == nil {
			continue
		}
		label := strings.ToLower(user) // the row itself when already lower case
		if _, ok := taken[label]; ok {
			continue // a configured or runtime name, or a core's, wins over a user
		}
		if dns.IsMemberLabel(label) {
			g.Labels = append(g.Labels, label) // the zone keeps the first of duplicates
			continue
		}
		// A row not written through CheckUsername (several labels, odd
		// characters): its own records, as any other name (skipped with a
		// warning if they cannot be made).
		if claim(label, "user") {
			add(label, coreRecords(r.cores[coreID]), "user-core row")
		}
	}

	cnames := map[string]bool{} // a TXT value next to a CNAME would make the zone unbuildable
	for _, rr := range all {
		if rr.Header().Rrtype == mdns.TypeCNAME {
			cnames[strings.ToLower(rr.Header().Name)] = true
		}
	}
	// Users of a core known by its CNAME hold one too; listed only when a
	// DNS-01 value is published, and only those users.
	var cnameUsers map[string]bool
	isCNAMEUser := func(owner string) bool {
		if cnameUsers == nil {
			cnameUsers = map[string]bool{}
			for _, g := range groups {
				if g.Records[0].Header().Rrtype == mdns.TypeCNAME {
					for _, l := range g.Labels {
						cnameUsers[l+"."+origin] = true
					}
				}
			}
		}
		return cnameUsers[owner]
	}
	for fqdn, values := range r.challenges {
		owner := mdns.Fqdn(fqdn)
		if !mdns.IsSubDomain(origin, owner) {
			continue
		}
		if lower := strings.ToLower(owner); cnames[lower] || isCNAMEUser(lower) {
			warnings = append(warnings, fmt.Sprintf("%s: holds a CNAME; the DNS-01 value published there is not served", fqdn))
			continue
		}
		for _, v := range values {
			all = append(all, &mdns.TXT{Hdr: mdns.RR_Header{Name: owner, Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: 60}, Txt: []string{v}})
		}
	}

	soa, err := makeSOA(origin, ttl, st.RootSOA, serial)
	if err != nil {
		return nil, nil, err
	}
	gs := make([]dns.Group, 0, len(groups))
	for _, id := range slices.Sorted(maps.Keys(groups)) { // a stable order: the first group keeps a duplicate
		gs = append(gs, *groups[id])
	}
	z, err := dns.NewZone(origin, soa, all, gs...)
	if err != nil {
		return nil, warnings, err
	}
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
