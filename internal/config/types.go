// Package config owns pryv-tls's configuration: the types, strict layered YAML
// loading, the reference defaults, validation, secret redaction and the
// topology -> hostnames + ACME challenge derivation of the spec.
//
// Only internal/cli, internal/daemon and internal/admin import this package;
// every other package takes a small Options struct of its own.
package config

// Config is the whole configuration. The yaml tags are the key names of the
// spec (Pryv.io v2 config) verbatim; keys marked "ours" are pryv-tls additions.
// Pointers to bool distinguish "unset" from "false" where a default depends on it.
type Config struct {
	HTTP        HTTP        `yaml:"http"`
	DNSLess     DNSLess     `yaml:"dnsLess"`
	Core        Core        `yaml:"core"`
	DNS         DNS         `yaml:"dns"`
	LetsEncrypt LetsEncrypt `yaml:"letsEncrypt"`
	Auth        Auth        `yaml:"auth"`
	Upstreams   Upstreams   `yaml:"upstreams"`  // ours
	PlatformDB  PlatformDB  `yaml:"platformDB"` // ours (issue: PlatformDB)
	Cluster     Cluster     `yaml:"cluster"`    // ours (issue: cluster)
	Metrics     Metrics     `yaml:"metrics"`    // ours (issue: operating it)
	Control     Control     `yaml:"control"`    // ours: the local CLI's channel to serve
	Log         Log         `yaml:"log"`        // ours
	Platform    Platform    `yaml:"platform"`   // shared with the core
	Storages    Storages    `yaml:"storages"`   // shared with the core: only engines.rqlite.url is read
}

type HTTP struct {
	IP   string `yaml:"ip"`   // default 0.0.0.0
	Port int    `yaml:"port"` // default 443 when TLS is on, 3000... see defaults.go
	SSL  SSL    `yaml:"ssl"`
	// HSTS is the Strict-Transport-Security value the front sends on every
	// response; empty sends none (ours).
	HSTS string `yaml:"hsts"`
}

type SSL struct {
	KeyFile  string `yaml:"keyFile"`
	CertFile string `yaml:"certFile"`
	CAFile   string `yaml:"caFile"` // optional extra chain appended to certFile
}

type DNSLess struct {
	IsActive  bool   `yaml:"isActive"`
	PublicURL string `yaml:"publicUrl"`
}

type Core struct {
	ID      string `yaml:"id"`
	URL     string `yaml:"url"`
	IP      string `yaml:"ip"`
	IPv6    string `yaml:"ipv6"`
	Hosting string `yaml:"hosting"`

	// The core's own keys, accepted so that its core block can be pasted
	// as is; pryv-tls does not act on them (decision 0014).
	CName     string `yaml:"cname"`
	Available *bool  `yaml:"available"`
	NonVoter  bool   `yaml:"nonVoter"`
}

// IsAvailable is core.available, true when unset as in the core.
func (c Core) IsAvailable() bool { return c.Available == nil || *c.Available }

type DNS struct {
	Active        bool          `yaml:"active"`
	Domain        string        `yaml:"domain"`
	IP            string        `yaml:"ip"`         // default 0.0.0.0
	IP6           string        `yaml:"ip6"`        // optional IPv6 listen address
	Port          int           `yaml:"port"`       // default 5353
	DefaultTTL    int           `yaml:"defaultTTL"` // default 300
	PublicIP      string        `yaml:"publicIp"`   // address of core.{domain}; defaults to core.ip
	Records       DNSRecords    `yaml:"records"`
	StaticEntries []StaticEntry `yaml:"staticEntries"`
	UserLookup    UserLookup    `yaml:"userLookup"` // ours
	DNSSEC        bool          `yaml:"dnssec"`     // ours: sign the zone online
}

// UserLookup is where the DNS server asks which core hosts a user it has no
// row for.
type UserLookup struct {
	Source       string   `yaml:"source"`       // "api" (default) | "rqlite" | "off"
	Timeout      Duration `yaml:"timeout"`      // default 1s: a DNS answer never waits longer
	MaxPerSecond int      `yaml:"maxPerSecond"` // default 50: upstream lookups per second
}

type DNSRecords struct {
	Root RecordSet `yaml:"root"`
}

// RecordSet is the set of records of one name. Values are strings in zone-file
// presentation format (e.g. mx: "10 mail.example.com.", caa: `0 issue "letsencrypt.org"`);
// the core's object forms of mx, caa and soa are normalised into them on load
// (coreshapes.go).
type RecordSet struct {
	A     []string `yaml:"a"`
	AAAA  []string `yaml:"aaaa"`
	CNAME string   `yaml:"cname"`
	NS    []string `yaml:"ns"`
	MX    []string `yaml:"mx"`
	TXT   []string `yaml:"txt"`
	CAA   []string `yaml:"caa"`
	SOA   string   `yaml:"soa"`
}

type StaticEntry struct {
	Subdomain string    `yaml:"subdomain"`
	Records   RecordSet `yaml:"records"`
}

type LetsEncrypt struct {
	Enabled   bool   `yaml:"enabled"`
	Email     string `yaml:"email"`
	AtRestKey Secret `yaml:"atRestKey"` // base64 of exactly 32 bytes
	// ours: the key being rotated away from, read-only (keys rotate)
	AtRestKeyPrevious Secret `yaml:"atRestKeyPrevious"`
	CertRenewer       bool   `yaml:"certRenewer"`
	OnRotateScript    string `yaml:"onRotateScript"`  // absolute path
	RenewBeforeDays   int    `yaml:"renewBeforeDays"` // default 30
	Staging           bool   `yaml:"staging"`
	DirectoryURL      string `yaml:"directoryUrl"` // wins over staging
	TLSDir            string `yaml:"tlsDir"`       // default var-pryv/tls

	// ours: told once per failure streak of a renewal (decision 0025)
	OnFailureScript  string `yaml:"onFailureScript"`  // absolute path
	OnFailureWebhook Secret `yaml:"onFailureWebhook"` // http(s) URL; often holds a token

	// ours
	DirectoryCAFile string `yaml:"directoryCaFile"`
	HTTP01Port      int    `yaml:"http01Port"` // default 80
	KeyType         string `yaml:"keyType"`    // ec256 (default), rsa2048, rsa4096
	// Challenge proves the HTTP-01 topologies' names: http-01 (default) or
	// tls-alpn-01 on the front's own port (decision 0027).
	Challenge string `yaml:"challenge"`
	Profile   string `yaml:"profile"`
	EAB       EAB    `yaml:"eab"`
	// Fallback CAs, in order, for when the directory keeps failing
	// (decision 0027).
	Fallback []FallbackCA `yaml:"fallback"`
	DNS01    DNS01        `yaml:"dns01"`
	// CAA publishes, at the apex of dns.domain, CAA records that only our
	// ACME account may use (RFC 8657). Unset means true.
	CAA         *bool  `yaml:"caa"`
	CAAIdentity string `yaml:"caaIdentity"` // issuer domain when the directory names none
}

// CAAOn reports whether letsEncrypt.caa leaves the account-bound CAA
// records on (the default).
func (le LetsEncrypt) CAAOn() bool { return le.CAA == nil || *le.CAA }

// FallbackCA is a second ACME directory with its own account.
type FallbackCA struct {
	DirectoryURL string `yaml:"directoryUrl"`
	EAB          EAB    `yaml:"eab"`
}

type EAB struct {
	KID     string `yaml:"kid"`
	HMACKey Secret `yaml:"hmacKey"`
}

type DNS01 struct {
	PropagationTimeout   Duration `yaml:"propagationTimeout"` // default 2m
	SkipPropagationCheck bool     `yaml:"skipPropagationCheck"`
}

type Auth struct {
	AdminAccessKey Secret `yaml:"adminAccessKey"`
}

type Upstreams struct {
	API string `yaml:"api"` // default http://127.0.0.1:3000
	HFS string `yaml:"hfs"` // default http://127.0.0.1:4000
	// ResponseHeaderTimeout is the longest wait for an upstream's response
	// head once the request is sent; past it the client gets 504.
	ResponseHeaderTimeout Duration `yaml:"responseHeaderTimeout"` // default 5m
}

type PlatformDB struct {
	DataDir       string `yaml:"dataDir"`       // default var-pryv/platformdb
	PeerAddress   string `yaml:"peerAddress"`   // default 127.0.0.1:2380
	ClientAddress string `yaml:"clientAddress"` // default 127.0.0.1:2379
}

type Cluster struct {
	CA ClusterCA `yaml:"ca"`
	// JoinPort is where the CA holder answers joining cores (on core.ip,
	// mutual TLS with the cluster CA). Default 2381.
	JoinPort int `yaml:"joinPort"`
}

type ClusterCA struct {
	Path string `yaml:"path"` // default /etc/pryv/ca
}

type Metrics struct {
	Listen string `yaml:"listen"` // empty = off
}

// Control is the unix socket through which the local CLI ("pryv-tls certs
// ...") reaches the running core. Only its owner (and root) can use it.
type Control struct {
	Socket string `yaml:"socket"` // default var-pryv/run/pryv-tls.sock
}

// Log is the daemon's logging; a reload (SIGHUP) applies it.
type Log struct {
	Level string `yaml:"level"` // debug | info | warn | error; empty: serve's --log-level
}

// LogLevels are the accepted log.level values.
var LogLevels = []string{"debug", "info", "warn", "error"}

// Platform is the core's platform-wide PII policy: how PlatformDB stores
// usernames (HMAC tokens or cleartext).
type Platform struct {
	PIIMode      string `yaml:"piiMode"`      // "hashed" (default) | "cleartext"
	PIIHmacKey   Secret `yaml:"piiHmacKey"`   // base64 of exactly 32 bytes; never printed
	PIIAlgorithm string `yaml:"piiAlgorithm"` // "hmac-sha256" (default, only value)
}

// Storages mirrors the core's storages section; only the rqlite URL is read.
type Storages struct {
	Engines StorageEngines `yaml:"engines"`
}

type StorageEngines struct {
	RQLite RQLite `yaml:"rqlite"`
}

type RQLite struct {
	URL string `yaml:"url"` // default http://localhost:4001
}
