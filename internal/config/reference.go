package config

import (
	"fmt"
	"reflect"
	"strings"
)

// The configuration reference, docs/configuration.md, is generated from the
// Config type (key paths and kinds), the defaults of defaults.go and the
// descriptions below; TestReferenceIsCurrent fails when the page, the types
// and this file disagree. To rewrite the page:
//
//	go test ./internal/config -run TestReferenceIsCurrent -update
//
//go:generate go test -run ^TestReferenceIsCurrent$ -update .

// ReferenceFile is the generated page, relative to the module root.
const ReferenceFile = "docs/configuration.md"

// keyDoc describes one key of the reference.
type keyDoc struct {
	by   string // the feature (issue) that reads the key
	text string // what it does, in one line
	// def is the value applyDefaults gives an unset key (a constant of
	// defaults.go, or false); nil means none. TestReferenceDefaults checks
	// it against a loaded empty configuration.
	def any
	// defNote replaces def where the default is not one value.
	defNote string
}

// Features, as named in the "used by" column.
const (
	byFront      = "front"
	byStrategyA  = "Strategy A"
	byStrategyC  = "Strategy C"
	byTopology   = "topology"
	byDNS        = "embedded DNS"
	byStore      = "certificate store"
	byAdmin      = "admin API"
	byPlatformDB = "PlatformDB"
	byCluster    = "cluster"
	byMetrics    = "metrics"
	byCLI        = "CLI"
)

// recordDocs describes the fields of a RecordSet under prefix, for the zone
// apex (dns.records.root) or a static entry.
func recordDocs(prefix string, apex bool) map[string]keyDoc {
	m := map[string]keyDoc{
		prefix + ".a":    {by: byDNS, text: "IPv4 addresses."},
		prefix + ".aaaa": {by: byDNS, text: "IPv6 addresses."},
		prefix + ".ns":   {by: byDNS, text: "Name servers, as host names (`ns1.example.net.`)."},
		prefix + ".mx":   {by: byDNS, text: "Mail exchangers as `preference host` (`10 mail.example.com.`), or as open-pryv.io writes them, `{exchange: mail.example.com, priority: 10}` (priority 10 when unset)."},
		prefix + ".txt":  {by: byDNS, text: "TXT strings, one record each (`v=spf1 -all`)."},
		prefix + ".caa":  {by: byDNS, text: "CAA records as `flags tag value` (`0 issue \"letsencrypt.org\"`), or as open-pryv.io writes them, `{flags: 0, tag: issue, value: letsencrypt.org}` (flags 0 when unset)."},
	}
	if apex {
		m[prefix+".ns"] = keyDoc{by: byDNS, text: "Name servers of the zone, as host names; unset, the zone answers `core.{domain}`."}
		m[prefix+".cname"] = keyDoc{by: byDNS, text: "Not allowed: a CNAME cannot be at the apex; the DNS server refuses to start."}
		m[prefix+".soa"] = keyDoc{by: byDNS, text: "The SOA as `mname rname serial refresh retry expire minimum`; the serial is replaced by the zone's own, which changes with every rebuild. Or open-pryv.io's object `{primary, admin, serial, refresh, retry, expiration, minimum}` (`admin` as `hostmaster.example.com.` or `hostmaster@example.com`; `serial` optional). Unset: `core.{domain} hostmaster.{domain} 1 3600 600 1209600 {defaultTTL}`."}
	} else {
		m[prefix+".cname"] = keyDoc{by: byDNS, text: "Alias target (`target.example.net.`); a name with a CNAME holds no other record."}
		m[prefix+".soa"] = keyDoc{by: byDNS, text: "Accepted and ignored: only the apex has an SOA."}
	}
	return m
}

// keyDocs holds one entry per key path of Config: dotted yaml names, "[]"
// for the items of a list. TestReferenceIsCurrent fails on a key without
// an entry and on an entry without a key.
var keyDocs = func() map[string]keyDoc {
	m := map[string]keyDoc{
		"http":              {by: byFront, text: "The front: the public listener, HTTPS (Strategies A and C) or plain HTTP behind a TLS-terminating proxy (Strategy B), that forwards to `upstreams`."},
		"http.ip":           {by: byFront, def: DefaultHTTPIP, text: "Listen address of the front (IPv4 or IPv6). Also the address of the HTTP-01 listener."},
		"http.port":         {by: byFront, defNote: fmt.Sprintf("`%d` with TLS, `%d` without", DefaultHTTPSPort, DefaultHTTPPort), text: "Listen port of the front, 1-65535. TLS is on when `http.ssl.certFile` is set or `letsEncrypt.enabled` is true. A port below 1024 needs root or `CAP_NET_BIND_SERVICE`."},
		"http.ssl":          {by: byStrategyC + ", " + byStrategyA, text: "Certificate files. Strategy C: served, polled every 250 ms and hot-swapped. Strategy A: where the primary hostname's certificate is also written."},
		"http.ssl.keyFile":  {by: byStrategyC + ", " + byStrategyA, text: "PEM private key of `certFile` (ECDSA or RSA). Set both or neither."},
		"http.ssl.certFile": {by: byStrategyC + ", " + byStrategyA, text: "PEM certificate chain, leaf first. Symlinks are followed (certbot's `live/`); a replacement that does not check out is refused and the previous certificate keeps serving; `SIGHUP` re-reads at once."},
		"http.ssl.caFile":   {by: byStrategyC, text: "Extra PEM chain appended after `certFile`'s certificates. Needs `certFile`."},
		"http.hsts":         {by: byFront, text: "`Strict-Transport-Security` value sent on every response (the upstream's own is replaced), e.g. `max-age=31536000` or `max-age=31536000; includeSubDomains`; unset, none is sent. Directives: `max-age=SECONDS` (required), `includeSubDomains`, `preload` (needs both others, max-age at least 31536000). Browsers remember it for max-age: start small. Strategy B: set it on the proxy instead (samples/nginx.conf does). Read at start."},

		"dnsLess":           {by: byTopology, text: "Single-core topology: the platform is one hostname, with no embedded DNS."},
		"dnsLess.isActive":  {by: byTopology, def: false, text: "The platform is reached at `dnsLess.publicUrl`; its host gets a certificate by HTTP-01. Not together with `dns.active`."},
		"dnsLess.publicUrl": {by: byTopology, text: "`https://` URL of the platform. Required when `isActive` is true; ignored otherwise."},

		"core":           {by: byTopology + ", " + byDNS + ", " + byCluster, text: "This core. In a cluster each core has its own values (`bootstrap new-core` writes them for a joining core)."},
		"core.id":        {by: byCluster + ", " + byDNS, text: "One lower-case DNS label. Names this core's PlatformDB member (`single` when unset) and `{id}.{domain}`. Required by `bootstrap init-ca-holder`; never change it once the core is a member."},
		"core.url":       {by: byTopology, text: "`https://` URL of this core in a multi-core DNS-less deployment; its host gets its own certificate by HTTP-01, unless the `*.{domain}` wildcard already covers it."},
		"core.ip":        {by: byDNS + ", " + byCluster, text: "This core's public IPv4: answered for `{id}.{domain}` and for the users it hosts; where the other cores reach its PlatformDB, join and DNS ports. Required by `bootstrap init-ca-holder`."},
		"core.ipv6":      {by: byDNS, text: "This core's IPv6, answered as AAAA next to `core.ip`, and a SAN of its node certificate."},
		"core.hosting":   {by: byDNS, text: "Free-form hosting name, stored in this core's `core-info/` row and listed by `GET /system/pryv-tls/admin/cores`."},
		"core.cname":     {by: byTopology, text: "open-pryv.io's key, accepted so its `core` block can be pasted; pryv-tls does not use it."},
		"core.available": {by: byTopology, text: "open-pryv.io's key, accepted so its `core` block can be pasted; pryv-tls does not use it."},
		"core.nonVoter":  {by: byTopology, def: false, text: "open-pryv.io's key, accepted so its `core` block can be pasted; pryv-tls does not use it."},

		"dns":                         {by: byDNS, text: "The embedded authoritative DNS server for `dns.domain` (UDP and TCP)."},
		"dns.active":                  {by: byDNS, def: false, text: "Run the DNS server (and PlatformDB). Needs `dns.domain`; not together with `dnsLess.isActive`."},
		"dns.domain":                  {by: byTopology + ", " + byDNS, text: "The platform domain: users are `{username}.{domain}`. With `letsEncrypt.enabled` the certificate is `*.{domain}` + `{domain}` by DNS-01, which needs `dns.active: true` on the renewer. Case and a trailing dot are ignored."},
		"dns.ip":                      {by: byDNS, def: DefaultDNSIP, text: "IPv4 listen address, UDP and TCP."},
		"dns.ip6":                     {by: byDNS, text: "An IPv6 listen address in addition to `dns.ip`, same port."},
		"dns.port":                    {by: byDNS, def: DefaultDNSPort, text: "Listen port, UDP and TCP; `53` in production (root or `CAP_NET_BIND_SERVICE`). The DNS-01 propagation check queries the other cores on this same port."},
		"dns.defaultTTL":              {by: byDNS, def: DefaultDNSTTL, text: "TTL of the answers, in seconds, from 1 to 2147483647 (DNS-01 TXT values always have 60)."},
		"dns.publicIp":                {by: byDNS, defNote: "`core.ip`", text: "IPv4 of `core.{domain}`, the zone's name server: the glue record to give the registrar."},
		"dns.records":                 {by: byDNS, text: "Records of the zone's own names."},
		"dns.records.root":            {by: byDNS, text: "Records at the apex, `{domain}`."},
		"dns.dnssec":                  {by: byDNS, def: false, text: "Sign the zone online (DNSSEC, ECDSA P-256, algorithm 13): a key made once and sealed in PlatformDB (needs `letsEncrypt.atRestKey`), the same on every core; RRSIGs made on answer for queries with the DO bit, denials as compact NSEC (no zone walking). Give the registrar the DS of `pryv-tls dns ds`; roll the key with `pryv-tls dns rollover` (operator guide: DNSSEC)."},
		"dns.userLookup":              {by: byDNS, text: "Where the DNS server asks which core hosts a user that has no `user-core/` row in PlatformDB (the core's own users, in its rqlite): answers are cached for `dns.defaultTTL`, unknown users for at most 30 s (decision 0015)."},
		"dns.userLookup.source":       {by: byDNS, def: DefaultUserLookupSource, text: "`api`: the core's API (`upstreams.api`); `rqlite`: the core's platform database (`storages.engines.rqlite.url`, usernames hashed with `platform.piiHmacKey` unless `platform.piiMode` is `cleartext`); `off`: only PlatformDB's rows."},
		"dns.userLookup.timeout":      {by: byDNS, def: DefaultUserLookupTimeout, text: "Longest wait for one lookup, more than 0 and at most 5s: a DNS answer never waits longer (past it the query gets SERVFAIL, so the resolver asks again or another core; the lookup goes on and its answer is cached)."},
		"dns.userLookup.maxPerSecond": {by: byDNS, def: DefaultUserLookupRate, text: "Lookups sent upstream per second, at least 1 (bursts of as many); past it a name not known yet gets SERVFAIL, never NXDOMAIN. Answers from the cache do not count."},
		"dns.staticEntries":           {by: byDNS, text: "Fixed names below the domain: a list of `{subdomain, records}`, or open-pryv.io's map `subdomain: {a, aaaa, cname, txt}` (a, aaaa, txt: one string or a list). Either shape replaces an earlier file's whole set. A name that is also a runtime `dns-record/` row (`pryv-tls dns-records`) is answered from here, with a warning in the log."},

		"dns.staticEntries[].subdomain": {by: byDNS, text: "The name below `{domain}`: one or more labels (`www`, `_dmarc`, `a.b`). Required; unique."},
		"dns.staticEntries[].records":   {by: byDNS, text: "Its records."},

		"letsEncrypt":                         {by: byStrategyA, text: "Strategy A: built-in ACME with Let's Encrypt or any RFC 8555 CA. Hostnames come from the topology (`dnsLess.publicUrl`, `core.url`, `dns.domain`); there is no hostnames key."},
		"letsEncrypt.enabled":                 {by: byStrategyA, def: false, text: "Obtain and renew the topology's certificates. Needs `email`, `atRestKey` and a topology; starts PlatformDB and the HTTP-01 listener on every core."},
		"letsEncrypt.email":                   {by: byStrategyA, text: "Contact of the ACME account (the CA's expiry and policy notices). Required when `enabled`."},
		"letsEncrypt.atRestKey":               {by: byStore + " (" + byStrategyA + ", `certs import`)", text: "Base64 of exactly 32 random bytes (`pryv-tls keygen`) that seals every private key in PlatformDB. The same on every core. Required when `enabled`; set alone, it starts PlatformDB so that `certs import` works. Without it, sealed keys cannot be recovered."},
		"letsEncrypt.certRenewer":             {by: byStrategyA, def: false, text: "This core is the preferred renewer: it orders and renews. Set it on exactly one core. Every other core with the same `atRestKey` stands by and orders a due certificate only when this one is gone (its lease in PlatformDB ended) or has left it due for a tenth of its lifetime (at least 10 minutes); a PlatformDB lock keeps two renewers from ordering at once."},
		"letsEncrypt.onRotateScript":          {by: byStore, text: "Absolute path of a program run on every core after each certificate rotation from PlatformDB, with `PRYV_CERT_HOSTNAME`, `PRYV_CERT_PATH`, `PRYV_CERT_KEYPATH`. Killed after 30 s; a failure is logged, never retried."},
		"letsEncrypt.onFailureScript":         {by: byStrategyA, text: "Absolute path of a program the certRenewer runs when a renewal starts failing: once per failure streak (the first failure after a success), not at each retry, and once more if the CA pauses the account; the next streak (after a success) runs it again. Environment: that of `onRotateScript` (the current certificate's files) plus `PRYV_CERT_ERROR`, the error as `status` shows it (with the unpause link when the CA paused the account). Killed after 30 s; a failure is logged, never retried."},
		"letsEncrypt.onFailureWebhook":        {by: byStrategyA, text: "`http://` or `https://` URL the certRenewer POSTs to at the same moments as `onFailureScript`: JSON `{hostname, error, problem, at, failures, unpauseUrl}` (`problem`: the CA's problem document, `type`, `detail`, `status`, `subproblems`; null when the CA was not reached). No secret is ever in it. 10 s timeout, redirects not followed, not retried. The URL is treated as a secret (never logged beyond its host): chat and paging services put their token in it."},
		"letsEncrypt.renewBeforeDays":         {by: byStrategyA, def: DefaultRenewBeforeDays, text: "1-89. Without ARI, renew at the earlier of this many days before expiry and two thirds into the lifetime, never before half of it; with ARI, the CA's window decides."},
		"letsEncrypt.staging":                 {by: byStrategyA, def: false, text: "Use Let's Encrypt's staging directory (untrusted certificates, higher rate limits). Ignored when `directoryUrl` is set."},
		"letsEncrypt.directoryUrl":            {by: byStrategyA, defNote: "Let's Encrypt", text: "`https://` ACME directory of another CA; wins over `staging`. Each directory has its own account."},
		"letsEncrypt.tlsDir":                  {by: byStore, def: DefaultTLSDir, text: "Where certificates from PlatformDB are written: `{tlsDir}/{hostname}/fullchain.pem` and `privkey.pem` (0600), `wildcard.{domain}` for `*.{domain}`; each name is a symlink flipped atomically."},
		"letsEncrypt.directoryCaFile":         {by: byStrategyA, text: "PEM roots trusted for the directory's HTTPS in addition to the system's (a private ACME CA)."},
		"letsEncrypt.http01Port":              {by: byStrategyA, def: DefaultHTTP01Port, text: "Port of the HTTP-01 listener on `http.ip`, on every core: challenges are answered from PlatformDB, every other request gets a 308 to HTTPS. Change it only when port 80 is forwarded to it."},
		"letsEncrypt.challenge":               {by: byStrategyA, def: ChallengeHTTP01, text: "How the names of single-name certificates (`core.url`, `dnsLess.publicUrl`) are proved: `http-01` (the CA fetches a token from port 80, `http01Port`) or `tls-alpn-01` (RFC 8737: the CA makes a TLS handshake with the front's own port, 443; no port 80 needed, and no HTTP-01 listener is opened). Either is answered by any core, from PlatformDB. Not for `dns.domain`: its wildcard is always proved by DNS-01."},
		"letsEncrypt.keyType":                 {by: byStrategyA, def: DefaultKeyType, text: "Key of ordered certificates: `ec256`, `ec384`, `rsa2048` or `rsa4096`."},
		"letsEncrypt.profile":                 {by: byStrategyA, text: "ACME profile asked for at each order (Let's Encrypt: `classic`, `tlsserver`, `shortlived`); only for CAs that offer profiles."},
		"letsEncrypt.fallback":                {by: byStrategyA, text: "ACME CAs to order from, in order, when the directory has failed (network, 5xx, rate limit) for a tenth of a due certificate's lifetime (at most an hour): each has its own account; the next renewal goes back to the directory. Their HTTPS is trusted like the directory's (system roots plus `directoryCaFile`). Renewal information (ARI) is asked of the CA that issued the certificate."},
		"letsEncrypt.fallback[].directoryUrl": {by: byStrategyA, text: "`https://` ACME directory of the fallback CA. Required."},
		"letsEncrypt.fallback[].eab":          {by: byStrategyA, text: "External Account Binding for that CA, if it requires one."},
		"letsEncrypt.fallback[].eab.kid":      {by: byStrategyA, text: "Key identifier given by that CA."},
		"letsEncrypt.fallback[].eab.hmacKey":  {by: byStrategyA, text: "MAC key given by that CA, base64url."},
		"letsEncrypt.eab":                     {by: byStrategyA, text: "External Account Binding, for CAs that require it. Used once, when the account is registered."},
		"letsEncrypt.eab.kid":                 {by: byStrategyA, text: "Key identifier given by the CA. Set together with `hmacKey`."},
		"letsEncrypt.eab.hmacKey":             {by: byStrategyA, text: "MAC key given by the CA, base64url, pasted as given."},
		"letsEncrypt.caa":                     {by: byDNS, defNote: "`true`", text: "With `dns.domain`: publish at its apex CAA `issue` and `issuewild` records naming the CA (`caaIdentity`), `accounturi=` the ACME account and `validationmethods=` the challenges used (RFC 8659, RFC 8657), so that no other account or method can get a certificate for the domain. In step with the account rows in PlatformDB. CAA records in `dns.records.root.caa` replace them; `false` publishes none."},
		"letsEncrypt.caaIdentity":             {by: byDNS, text: "The CA's issuer domain for the CAA records (`letsencrypt.org`), used when the ACME directory's `meta.caaIdentities` names none (or the account was registered before pryv-tls stored them). Unset and unknown: no CAA record, and a warning."},
		"letsEncrypt.dns01":                   {by: byStrategyA, text: "The DNS-01 challenge of the `*.{domain}` certificate, answered by the cores' embedded DNS servers."},

		"letsEncrypt.dns01.propagationTimeout":   {by: byStrategyA, def: DefaultPropagationTimeout, text: "Longest wait for this core's and every other available core's DNS server to answer the challenge value before the CA is told to validate; the wait ends as soon as all do. v1's `acme.dnsRebootWaitMs`."},
		"letsEncrypt.dns01.skipPropagationCheck": {by: byStrategyA, def: false, text: "Tell the CA to validate without checking the cores' DNS servers first. v1's `acme.skipDnsChecks`."},

		"auth":                {by: byAdmin, text: "Credentials of the admin API."},
		"auth.adminAccessKey": {by: byAdmin, text: "Value of the `Authorization` header for pryv-tls's admin endpoints on the front (`/system/pryv-tls/admin/*`, `GET /system/admin/certs`, `POST /system/admin/certs/force-renew`), compared in constant time; shared with open-pryv.io, whose own `/system/*` routes check the same key. Unset: those endpoints refuse every request. The control socket needs no key."},

		"upstreams":     {by: byFront, text: "Where the front forwards requests, in plain HTTP."},
		"upstreams.api": {by: byFront, def: DefaultUpstreamAPI, text: "The core's API: every request not for HFS, WebSocket upgrades included. An `http://` URL naming a host, not the front's own address."},
		"upstreams.hfs": {by: byFront, def: DefaultUpstreamHFS, text: "The core's HFS: paths matching `^/[^/]+/events/[^/]+/series` or `^/[^/]+/series/batch`. An `http://` URL naming a host."},

		"upstreams.responseHeaderTimeout": {by: byFront, def: DefaultUpstreamHeaderTimeout, text: "Longest wait for an upstream's response head once the request is sent; past it the client gets 504 `gateway-timeout` and the upstream connection is closed. More than 0. The default is Node.js's own request timeout, which the core keeps: past it the core has given up on the request (its socket.io long polls answer within 25 s). A body that streams slowly after its head is not cut. Read at start."},

		"platformDB":               {by: byPlatformDB, text: "The embedded etcd member that holds certificates, the ACME account, DNS rows and join tokens. It runs when `letsEncrypt.enabled`, `letsEncrypt.atRestKey` or `dns.active` is set."},
		"platformDB.dataDir":       {by: byPlatformDB, def: DefaultPlatformDBDataDir, text: "The member's data (0700). Its parent also holds `platformdb-tls/`, this core's node certificate."},
		"platformDB.peerAddress":   {by: byPlatformDB + ", " + byCluster, def: DefaultPeerAddress, text: "`host:port` of the Raft peer listener, mutual TLS only. In a cluster, `core.ip:2380` (written by `bootstrap`)."},
		"platformDB.clientAddress": {by: byPlatformDB, def: DefaultClientAddress, text: "`host:port` of the client listener, mutual TLS only: this core's own client, and `etcdctl` with the node certificate."},

		"cluster":          {by: byCluster, text: "The cluster CA and the join flow (`pryv-tls bootstrap`)."},
		"cluster.ca":       {by: byCluster, text: "The cluster CA, which signs the node certificates of PlatformDB's mutual TLS."},
		"cluster.ca.path":  {by: byCluster, def: DefaultClusterCAPath, text: "Directory of the cluster CA (`ca.key` 0600, `ca.crt` and/or `ca.pem`), made by `bootstrap init-ca-holder` or by open-pryv.io's `bin/bootstrap.js` (used as it is: nothing there is ever overwritten). The core whose user can read the key there is the CA holder: it answers joins."},
		"cluster.joinPort": {by: byCluster, def: DefaultJoinPort, text: "Port on `core.ip` where the CA holder answers joining cores (TLS 1.3, node certificates required)."},

		"metrics":        {by: byMetrics, text: "Prometheus metrics and health endpoints."},
		"metrics.listen": {by: byMetrics, text: "`host:port` (an empty host: every address) of a plain-HTTP listener serving `/metrics`, `/healthz` and `/readyz`, without authentication: keep it off the internet. Unset: off."},

		"platform":              {by: byDNS, text: "The core's platform-wide PII policy (shared with the core: the same keys in the core's files), read to look users up in the core's platform database."},
		"platform.piiMode":      {by: byDNS, def: DefaultPIIMode, text: "`hashed`: the core's platform database holds HMAC tokens of usernames; `cleartext`: the names themselves. As in the core."},
		"platform.piiHmacKey":   {by: byDNS, text: "Base64 of exactly 32 bytes, the core's value (identical on every core). Required when `dns.active`, `dns.userLookup.source: rqlite` and `piiMode: hashed`."},
		"platform.piiAlgorithm": {by: byDNS, def: DefaultPIIAlgorithm, text: "`hmac-sha256`, the only value the core has."},

		"storages":                    {by: byDNS, text: "The core's storages (shared with the core); only `engines.rqlite.url` is read. Every other key of the core's section is an error in pryv-tls's own files: read it from the core's with `--core-config`."},
		"storages.engines":            {by: byDNS, text: "The core's storage engines."},
		"storages.engines.rqlite":     {by: byDNS, text: "The core's platform database."},
		"storages.engines.rqlite.url": {by: byDNS, def: DefaultRQLiteURL, text: "`http://` or `https://` URL of the core's rqlite, used when `dns.userLookup.source` is `rqlite`."},

		"log":       {by: byCLI, text: "The daemon's log (`serve`). A reload (`SIGHUP`) applies it."},
		"log.level": {by: byCLI, text: "`debug`, `info`, `warn` or `error`; wins over `serve --log-level`. Unset: the flag's level."},

		"control":        {by: byCLI, text: "The local CLI's channel to the running core."},
		"control.socket": {by: byCLI, def: DefaultControlSocket, text: "Unix socket (0600, in a 0700 directory, peer uid checked) through which `certs`, `dns-records`, `users` and `bootstrap new-core|list-tokens|revoke-token` reach `serve`: run them as the same user, or root."},

		// A rotation of letsEncrypt.atRestKey (keys rotate).
		"letsEncrypt.atRestKeyPrevious": {by: byStore, text: "During an `atRestKey` rotation: the key being replaced, in the same form. Rows it sealed are still read; everything written is sealed with `atRestKey`. `pryv-tls keys rotate` re-seals every row with `atRestKey`; then remove this key from every core. See the backup guide's \"Rotating the atRestKey\"."},
	}
	for k, v := range recordDocs("dns.records.root", true) {
		m[k] = v
	}
	for k, v := range recordDocs("dns.staticEntries[].records", false) {
		m[k] = v
	}
	return m
}()

// ReferenceKey is one key of the configuration reference.
type ReferenceKey struct {
	Path        string // dotted yaml names; "[]" stands for every item of a list
	Kind        string // as written in YAML: string, integer, boolean, duration, ...
	Default     string // Markdown; "" when none
	UsedBy      string
	Description string // "" when reference.go has none (the test fails)
}

// ReferenceKeys walks Config and returns every key, mappings included, in
// declaration order.
func ReferenceKeys() []ReferenceKey {
	var out []ReferenceKey
	walkKeys(reflect.TypeFor[Config](), "", &out)
	return out
}

func walkKeys(t reflect.Type, prefix string, out *[]ReferenceKey) {
	for i := range t.NumField() {
		name, ok := yamlName(t.Field(i))
		if !ok {
			continue
		}
		path := joinPath(prefix, name)
		ft := t.Field(i).Type
		d := keyDocs[path]
		k := ReferenceKey{Path: path, Kind: yamlKind(ft), UsedBy: d.by, Description: d.text, Default: d.defNote}
		if d.def != nil {
			k.Default = "`" + formatDefault(d.def) + "`"
		}
		*out = append(*out, k)
		switch {
		case ft == durationType || ft == secretType:
		case ft.Kind() == reflect.Struct:
			walkKeys(ft, path, out)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			walkKeys(ft.Elem(), path+"[]", out)
		}
	}
}

// yamlKind names a Go type as an operator writes it in YAML.
func yamlKind(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		return "duration"
	case t == secretType:
		return "string, secret"
	case t.Kind() == reflect.Slice:
		return "list of " + plural(yamlKind(t.Elem()))
	case t.Kind() == reflect.Struct:
		return "mapping"
	case isInt(t):
		return "integer"
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() == reflect.String:
		return "string"
	}
	return t.String()
}

func plural(kind string) string { return kind + "s" }

// formatDefault writes a default as an operator would type it ("2m", not
// "2m0s").
func formatDefault(v any) string {
	d, ok := v.(Duration)
	if !ok {
		return fmt.Sprint(v)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Reference renders docs/configuration.md.
func Reference() string {
	var b strings.Builder
	b.WriteString(referenceIntro)
	keys := ReferenceKeys()
	for _, k := range keys {
		if strings.Contains(k.Path, ".") {
			continue
		}
		fmt.Fprintf(&b, "\n## `%s`\n\n%s Used by: %s.\n\n", k.Path, k.Description, k.UsedBy)
		b.WriteString("| key | type | default | used by | description |\n|---|---|---|---|---|\n")
		for _, c := range keys {
			if !strings.HasPrefix(c.Path, k.Path+".") {
				continue
			}
			def := c.Default
			if def == "" {
				def = "—"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", c.Path, c.Kind, def, c.UsedBy, escapeCell(c.Description))
		}
	}
	return b.String()
}

func escapeCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

const referenceIntro = `<!-- Code generated from internal/config (types.go, defaults.go, reference.go). DO NOT EDIT.
     Regenerate: go test ./internal/config -run TestReferenceIsCurrent -update -->

# Configuration reference

Every key pryv-tls reads. This page is generated from the configuration types, their
defaults and the descriptions in ` + "`internal/config/reference.go`" + `; a test fails when they
disagree, so it is current with the code it ships with.

- Files are YAML, with the Pryv.io v2 key names. Every command takes ` + "`--config FILE`" + `,
  repeatable: a later file overrides an earlier one key by key, a list is replaced whole,
  and ` + "`null`" + ` (or an empty value) leaves the earlier value in place.
- ` + "`serve`" + ` and ` + "`config check`" + ` also take ` + "`--core-config FILE`" + `, repeatable: open-pryv.io's own
  ` + "`default-config.yml`" + ` and ` + "`override-config.yml`" + `, read before the ` + "`--config`" + ` files and only
  for the keys both programs share: ` + "`core.{id,url,ip,ipv6,hosting,cname,available,nonVoter}`" + `,
  ` + "`dnsLess.{isActive,publicUrl}`" + `, ` + "`dns.{domain,defaultTTL,publicIp,records,staticEntries}`" + `,
  ` + "`cluster.ca.path`" + `, ` + "`platform.{piiMode,piiHmacKey,piiAlgorithm}`" + `, ` + "`storages.engines.rqlite.url`" + `,
  ` + "`auth.adminAccessKey`" + `. Everything else there (the core's own ` + "`http.*`" + `,
  ` + "`dns.active/ip/ip6/port`" + `, ` + "`letsEncrypt.*`" + `, ...) is skipped; a shared key of the wrong type
  is an error naming the core's file and line. See [decision 0014](decisions/0014-core-config.md).
- Decoding is strict: an unknown key, a duplicate key or a value of the wrong type is an
  error naming the file, the line and the key's path. All problems are reported at once;
  ` + "`serve`" + ` exits 2 before it binds anything. ` + "`pryv-tls config check --config ...`" + ` runs
  the same checks and prints the effective configuration.
- Key names are case-sensitive (` + "`dnsLess`" + `, not ` + "`dnsless`" + `). ` + "`[]`" + ` in a key stands for every
  item of a list.
- Relative paths resolve against the working directory of the process.
- A ` + "`secret`" + ` is never printed: logs, errors and ` + "`config check`" + ` show ` + "`<redacted>`" + `.
- "—": no default; unset means empty or off. A duration is written ` + "`90s`" + `, ` + "`2m`" + `, ` + "`1h`" + `.
- The configuration is read at start-up only; ` + "`SIGHUP`" + ` re-reads certificate files, not
  this configuration. Restart to apply a change.

Problems reported for each key, and their fixes: [operator guide, troubleshooting](operator-guide/troubleshooting.md).
`
