// Package authdns is pryv-tls's authoritative DNS server for the platform domain
// (dns.domain, e.g. "mc.example.com"): per-user names, per-core names, static
// records and the _acme-challenge TXT records of ACME DNS-01.
//
// The package owns three things:
//
//   - Zone, an immutable, indexed snapshot of one zone, built by NewZone from
//     the apex SOA and every other record. Whoever builds the zone's content
//     (config + PlatformDB) builds a new Zone on every change and hands it to
//     Server.Swap; a Zone is never modified after NewZone returns, so any
//     number of goroutines may read it.
//   - Answer, the pure function that turns a query into a response for a Zone.
//     It takes no lock, does no I/O and shares the Zone's precomputed record
//     slices with the response (read-only), so an ordinary positive answer
//     costs one or two small allocations.
//   - Server, which serves Answer over UDP and TCP (miekg/dns does all wire
//     parsing and packing) and swaps zones with an atomic.Pointer.
//
// # Building a zone (NewZone)
//
// NewZone(origin, soa, rrs): origin is the zone's apex in any case, with or
// without the trailing dot, and must not be the root. soa is the apex SOA (the
// caller sets its Serial); its owner may be empty (it then becomes the
// origin) or must equal the origin. rrs are all the other records, owner names
// absolute and in any case. NewZone copies every record (the caller may reuse
// or change its records afterwards), canonicalises owner names (lower case,
// miekg's presentation form) and rejects, naming the record:
//
//   - a record whose owner is outside the origin ("evilmc.example.com." is not
//     inside "mc.example.com."; names are compared on label boundaries);
//   - a CNAME at the apex, a CNAME next to any other data at the same name
//     (RFC 1034 §3.6.2; RRSIG and NSEC are the only exceptions) and two
//     different CNAMEs at one name;
//   - an SOA among rrs (the apex SOA is the soa argument), DNAME (no DNAME
//     synthesis is implemented), meta types (OPT, TSIG, TKEY, AXFR, IXFR,
//     ANY, MAILA, MAILB, type 0), a class other than IN (class 0 is taken as
//     IN), a record whose Go type does not match its header's Rrtype and a
//     record whose rdata cannot be packed.
//
// NewZoneMembers(origin, soa, rrs, members) also takes Members: names one
// label below the origin that own the records of their group (the users of
// a core, which all answer with its addresses). A member answers exactly as
// if its group's records were in rrs with its name as owner, but costs the
// zone nothing of its own: the zone keeps the caller's label -> group map
// (which the caller must not change afterwards) and one copy of each
// group's records, whose owner becomes the query's canonical name when
// answered; building it takes time in proportion to the other names, not
// to the members. A name of rrs holding records shadows a member of the
// same name; one that is only an empty non-terminal gets the member's
// records. A label that is not lower-case a-z, 0-9, '-' and '_' is never
// answered, nor is a member of a group without records; a group's records
// may not be NS, MX or SRV, and a CNAME must be alone in its group.
//
// Identical records are kept once, and all records of one RRset get the
// lowest TTL found among them (RFC 2181 §5.2). Records keep the caller's order
// inside an RRset. Everything a query needs is precomputed: per name, one
// slice per type; the set of existing names including every empty
// non-terminal between a record and the apex (RFC 8020); the SOA used in
// negative answers (TTL = min(SOA TTL, SOA MINIMUM), RFC 2308 §3); glue (the
// in-zone A and AAAA records of NS, MX and SRV targets); wildcard owners; and
// delegations.
//
// # Answering (Answer)
//
// Answer(z, req, maxUDP, tcp) returns the response to req, or nil when req
// must be dropped (it is itself a response: QR set). In order:
//
//   - More than one OPT record -> FORMERR (no OPT). An OPT whose owner is not
//     the root -> FORMERR. EDNS version > 0 -> BADVERS with an OPT of version 0.
//   - Opcode other than QUERY -> NOTIMP (question echoed when there is exactly
//     one).
//   - Zero or several questions, or a question name that is not fully
//     qualified -> FORMERR with no question section.
//   - Records in the answer section (a query has none) -> FORMERR.
//   - Class other than IN and ANY -> REFUSED.
//   - No zone yet (z == nil: the server started before the first snapshot)
//     -> SERVFAIL, so resolvers try another core.
//   - A name outside the zone -> REFUSED, without AA. Names match without
//     regard to ASCII case and on label boundaries: for "mc.example.com.",
//     "mc.example.com." and "x.mc.example.com." are inside; "evilmc.example.com.",
//     "evil\.mc.example.com." (one label holding a dot) and "example.com." are
//     not.
//   - QTYPE AXFR or IXFR -> REFUSED: zone transfers are not offered (every
//     core builds its own zone from the shared store).
//   - Otherwise the answer is authoritative (AA):
//   - name below a delegation (NS records at a name under the apex; DS at the
//     cut itself excepted) -> a referral: NOERROR without AA, the NS RRset in
//     the authority section and glue in the additional section;
//   - QTYPE ANY at an existing name that holds records -> one synthesised
//     HINFO "RFC8482" "" record (RFC 8482) at the name, TTL 3600, over
//     UDP and TCP alike: never the full set of RRsets;
//   - name with a CNAME and QTYPE not CNAME -> the CNAME, followed inside the
//     zone: each in-zone target's CNAME is added too, up to 8 CNAMEs (a loop or
//     a longer chain stops there, NOERROR), then the final target's RRset of
//     QTYPE. A target outside the zone (or below a delegation) ends the chain
//     with just the CNAMEs. A final target that does not exist gives NXDOMAIN
//     and one without data of QTYPE gives NODATA (RFC 6604), both with the
//     CNAMEs in the answer and the SOA in the authority section;
//   - existing name with an RRset of QTYPE -> that RRset; for NS, MX and SRV
//     RRsets (the apex NS set included) the A and AAAA records of every target
//     inside the zone go to the additional section;
//   - existing name without data of QTYPE, including an empty non-terminal
//     (the zone has b.a.mc.example.com., the query is for a.mc.example.com.)
//     -> NOERROR/NODATA with the negative SOA in the authority section;
//   - a name that does not exist -> NXDOMAIN with the negative SOA in the
//     authority section, unless a wildcard applies (RFC 4592: "*.<closest
//     encloser>" exists), in which case its records are synthesised with the
//     query name as owner.
//
// # Users the zone does not hold (Users)
//
// With ServerOptions.Users set, a name one label below the origin that is a
// member label (IsMemberLabel) and that nothing in the zone answers — no
// record, member, empty non-terminal, wildcard or delegation — is asked of
// Users instead of being NXDOMAIN: the platform's users that live in the
// core's own PlatformDB. Users.Cached (memory only, no lock) answers most:
// found, the user answers as a name of the zone (its core's: UserAt) or with
// records of its own (UserWith), owned by the query's name, exactly as a
// member does (SERVFAIL if that name is not in the zone); absent, NXDOMAIN
// whose SOA's TTL is lowered to the lookup's negative lifetime. A miss waits
// for Users.Resolve: over UDP in a goroutine of its own, so the batch reader
// goes on, which then sends the reply itself (from the address the query
// was sent to on a 0.0.0.0 socket); over TCP in the connection's goroutine.
// At most ServerOptions.LookupWorkers queries wait at once; one over that,
// or one whose lookup fails, times out or is refused by the rate limit, gets
// SERVFAIL (a resolver then tries another server). Stats.Lookups counts
// them by result. AnswerUsers is Answer with Users consulted.
//
// Every response carries the query's ID, opcode, question (as sent, case
// included), RD and CD; RA and AD are never set. An answer record owned by
// the query's name is spelled as the query spelled it (0x20 resolvers check
// it; the zone's records are copied for that, never changed); other owner
// names are the zone's canonical (lower-case) names.
//
// EDNS0 (RFC 6891): when the query has an OPT, the response has one too,
// advertising our own buffer size (maxUDP, whatever the client's, as knot
// does); no EDNS option is echoed; DO is copied from the query (RFC 3225
// §3). The size limit of a response is 65535 over TCP, min(client's UDP
// size, maxUDP) (never less than 512) over UDP with EDNS, and 512 over UDP
// without. A response that does not fit is first stripped of
// its additional records (glue is optional in an authoritative answer; not in
// a referral); if it still does not fit, TC is set and the answer, authority
// and additional sections are emptied (the question and OPT stay), so the
// client retries over TCP, where the full answer fits. Every response is
// compressed (RFC 1035 §4.1.4), so an answer's owner is a pointer to the
// question.
//
// # DNSSEC (Zone.Sign)
//
// A zone signed with Sign (keys: DNSKEY records the caller put at the apex,
// and the private keys of those that sign) answers a query with DO as
// above plus, in order: after each RRset of the answer section its RRSIGs
// (one per signing key; users, members and wildcard answers are signed as
// the query's name, so no wildcard proof is needed); for a denial the
// negative SOA's RRSIGs and one NSEC at the denied name (the query's, or
// the last CNAME's target) with its RRSIGs: compact denial of existence
// (RFC 9824), next name "\000.<name>", bitmap the name's types plus RRSIG
// and NSEC, or RRSIG NSEC NXNAME for a name that does not exist, which is
// then answered NOERROR instead of NXDOMAIN (a "black lie"); in a referral
// the DS RRset and its RRSIGs, or an NSEC at the cut proving there is
// none. Glue and other additional records are not signed. Without DO a
// signed zone answers exactly as an unsigned one.
//
// Signatures (valid 7 days from an hour ago) come from a SigCache, which
// the caller keeps across the zone's snapshots: those of the zone's own
// RRsets are looked up or made by Sign, the others on answer, keyed by
// owner, type, the RRset's content and the keys. The cache is a table of
// atomic pointers: an answer takes no lock; a miss signs (ECDSA P-256)
// and stores one pointer. An entry is made again after 3 days.
//
// # Serving (Server)
//
// Server serves UDP and TCP on any number of addresses. Queries read the
// current Zone from an atomic.Pointer: no lock and no I/O on the query path.
// TCP is served by miekg/dns's Server (through ServeDNS); UDP by a fixed set
// of readers per socket, each reusing its read buffers, request message and
// pack buffers, so no goroutine is started per packet (udp.go): on Linux one
// reader blocked in recvmmsg on the socket taken out of the netpoller,
// replying with sendmmsg to the raw addresses it received (udp_raw_linux.go,
// decision 0032); elsewhere GOMAXPROCS readers (at least 2) through the
// netpoller. Both follow the same rules: a packet shorter than a
// header is dropped, an unparsable body gets FORMERR; responses (QR set) are
// dropped before parsing; everything else goes through Answer. A panic in the
// handler is recovered, logged and answered with SERVFAIL.
//
// Over UDP the common query — a member's A or AAAA, plain labels, at most an
// OPT with cookies or padding — skips Unpack, Answer and Pack: the group's
// set was packed once with the zone (owners pointing at the question), and
// with DO in a signed zone the cached RRSIGs were packed once with their
// cache entry; the response is the header, the question as sent, those
// bytes and the OPT (fast.go, decision 0030). Its bytes are the general
// path's (a property test compares them); anything else, or a signature not
// made yet, takes the general path.
package authdns
