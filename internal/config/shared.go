package config

import "strings"

// sharedKeys are the keys pryv-tls reads from open-pryv.io's own files
// (--core-config), each with everything below it. Everything else there
// describes the core itself: http.* and dns.active/ip/ip6/port are its own
// listeners, letsEncrypt.* its (disabled) ACME, and the rest is not DNS or
// TLS at all. Keys listed here that this build has no field for are skipped
// like the others.
var sharedKeys = []string{
	"core.id", "core.url", "core.ip", "core.ipv6", "core.hosting",
	"core.cname", "core.available", "core.nonVoter",
	"dnsLess.isActive", "dnsLess.publicUrl",
	"dns.domain", "dns.defaultTTL", "dns.publicIp", "dns.records", "dns.staticEntries",
	"cluster.ca.path",
	"platform.piiMode", "platform.piiHmacKey", "platform.piiAlgorithm",
	"storages.engines.rqlite.url",
	"auth.adminAccessKey",
}

// isShared: path is a shared key, below one, or a section leading to one.
func isShared(path string) bool {
	for _, k := range sharedKeys {
		if path == k || strings.HasPrefix(path, k+".") || strings.HasPrefix(path, k+"[") || strings.HasPrefix(k, path+".") {
			return true
		}
	}
	return false
}

// underShared: path is a shared key or below one, where the core's file is
// read as strictly as pryv-tls's own.
func underShared(path string) bool {
	for _, k := range sharedKeys {
		if path == k || strings.HasPrefix(path, k+".") || strings.HasPrefix(path, k+"[") {
			return true
		}
	}
	return false
}
