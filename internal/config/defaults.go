package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// The reference implementation's defaults.
const (
	DefaultHTTPIP             = "0.0.0.0"
	DefaultHTTPSPort          = 443
	DefaultHTTPPort           = 80
	DefaultRenewBeforeDays    = 30
	DefaultTLSDir             = "var-pryv/tls"
	DefaultHTTP01Port         = 80
	DefaultKeyType            = "ec256"
	DefaultPropagationTimeout = Duration(2 * time.Minute)
	DefaultDNSIP              = "0.0.0.0"
	DefaultDNSPort            = 5353
	DefaultDNSTTL             = 300
	DefaultUpstreamAPI        = "http://127.0.0.1:3000"
	DefaultUpstreamHFS        = "http://127.0.0.1:4000"
	DefaultPlatformDBDataDir  = "var-pryv/platformdb"
	DefaultPeerAddress        = "127.0.0.1:2380"
	DefaultClientAddress      = "127.0.0.1:2379"
	DefaultClusterCAPath      = "/etc/pryv/ca"
	DefaultControlSocket      = "var-pryv/run/pryv-tls.sock"
	DefaultJoinPort           = 2381
	DefaultPIIMode            = PIIModeHashed
	DefaultPIIAlgorithm       = "hmac-sha256"
	DefaultRQLiteURL          = "http://localhost:4001"
	DefaultUserLookupSource   = UserLookupAPI
	DefaultUserLookupTimeout  = Duration(time.Second)
	DefaultUserLookupRate     = 50
)

// DefaultUpstreamHeaderTimeout is Node.js's http.Server requestTimeout
// (300 s), which open-pryv.io does not change: past it the core has
// dropped the request itself, so waiting longer gets no answer. The
// core's own longest waits are shorter (force-renew: 180 s, answered
// by pryv-tls anyway; a socket.io long poll: 25 s).
const DefaultUpstreamHeaderTimeout = Duration(5 * time.Minute)

// Values of platform.piiMode and dns.userLookup.source.
const (
	PIIModeHashed    = "hashed"
	PIIModeCleartext = "cleartext"

	UserLookupAPI    = "api"
	UserLookupRQLite = "rqlite"
	UserLookupOff    = "off"
)

// applyDefaults fills what no layer set. explicit holds the leaf paths some
// layer set, for the few keys where an explicit zero is a mistake rather
// than "use the default".
func applyDefaults(c *Config, explicit map[string]bool) []error {
	setStr(&c.HTTP.IP, DefaultHTTPIP)
	if c.HTTP.Port == 0 {
		c.HTTP.Port = DefaultHTTPPort
		if c.TLSEnabled() {
			c.HTTP.Port = DefaultHTTPSPort
		}
	}

	le := &c.LetsEncrypt
	if le.RenewBeforeDays == 0 && !explicit["letsEncrypt.renewBeforeDays"] {
		le.RenewBeforeDays = DefaultRenewBeforeDays
	}
	setStr(&le.TLSDir, DefaultTLSDir)
	setInt(&le.HTTP01Port, DefaultHTTP01Port)
	setStr(&le.KeyType, DefaultKeyType)
	setStr(&le.Challenge, ChallengeHTTP01)
	if le.DNS01.PropagationTimeout == 0 {
		le.DNS01.PropagationTimeout = DefaultPropagationTimeout
	}

	c.DNS.Domain = normalizeDomain(c.DNS.Domain)
	setStr(&c.DNS.IP, DefaultDNSIP)
	setInt(&c.DNS.Port, DefaultDNSPort)
	setInt(&c.DNS.DefaultTTL, DefaultDNSTTL)
	setStr(&c.DNS.PublicIP, c.Core.IP)
	ul := &c.DNS.UserLookup
	setStr(&ul.Source, DefaultUserLookupSource)
	if ul.Timeout == 0 && !explicit["dns.userLookup.timeout"] {
		ul.Timeout = DefaultUserLookupTimeout
	}
	if ul.MaxPerSecond == 0 && !explicit["dns.userLookup.maxPerSecond"] {
		ul.MaxPerSecond = DefaultUserLookupRate
	}
	setStr(&c.Platform.PIIMode, DefaultPIIMode)
	setStr(&c.Platform.PIIAlgorithm, DefaultPIIAlgorithm)
	setStr(&c.Storages.Engines.RQLite.URL, DefaultRQLiteURL)

	setStr(&c.Upstreams.API, DefaultUpstreamAPI)
	setStr(&c.Upstreams.HFS, DefaultUpstreamHFS)
	if c.Upstreams.ResponseHeaderTimeout == 0 && !explicit["upstreams.responseHeaderTimeout"] {
		c.Upstreams.ResponseHeaderTimeout = DefaultUpstreamHeaderTimeout
	}
	setStr(&c.PlatformDB.DataDir, DefaultPlatformDBDataDir)
	setStr(&c.PlatformDB.PeerAddress, DefaultPeerAddress)
	setStr(&c.PlatformDB.ClientAddress, DefaultClientAddress)
	setStr(&c.Cluster.CA.Path, DefaultClusterCAPath)
	setStr(&c.Control.Socket, DefaultControlSocket)
	setInt(&c.Cluster.JoinPort, DefaultJoinPort)

	// Relative paths are relative to the working directory, as in the
	// reference; resolving them once here means a later chdir or a
	// subprocess (onRotateScript) sees the same files.
	var errs []error
	for _, f := range []struct {
		key string
		p   *string
	}{
		{"http.ssl.keyFile", &c.HTTP.SSL.KeyFile},
		{"http.ssl.certFile", &c.HTTP.SSL.CertFile},
		{"http.ssl.caFile", &c.HTTP.SSL.CAFile},
		{"letsEncrypt.tlsDir", &le.TLSDir},
		{"letsEncrypt.directoryCaFile", &le.DirectoryCAFile},
		{"platformDB.dataDir", &c.PlatformDB.DataDir},
		{"cluster.ca.path", &c.Cluster.CA.Path},
		{"control.socket", &c.Control.Socket},
	} {
		key, p := f.key, f.p
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			errs = append(errs, &FieldError{Path: key, Msg: fmt.Sprintf("cannot resolve %q against the working directory: %v", *p, err)})
			continue
		}
		*p = abs
	}
	return errs
}

// normalizeDomain makes "Example.COM." and "example.com" the same zone.
func normalizeDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

func setStr(p *string, def string) {
	if *p == "" {
		*p = def
	}
}

func setInt(p *int, def int) {
	if *p == 0 {
		*p = def
	}
}
