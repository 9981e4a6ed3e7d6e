package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Change is one key whose value differs between the running configuration
// and the one a reload (SIGHUP) loaded. Values are never kept: a key may
// be a secret.
type Change struct {
	Key    string // dotted path as in the files: upstreams.api, dns.staticEntries
	Live   bool   // a reload applies it
	Reason string // when not Live: what is set up once, at start, from it
}

// Changes are the differences between two configurations, in key order.
type Changes []Change

// liveKeys are the keys a reload applies (a key covers the keys under it).
// Every other key is read once, at start: changing it needs a restart.
var liveKeys = []string{
	"upstreams.api", "upstreams.hfs",
	"dns.staticEntries", "dns.records", "dns.defaultTTL", "dns.publicIp",
	"letsEncrypt.email", "letsEncrypt.profile", "letsEncrypt.keyType", "letsEncrypt.renewBeforeDays",
	"letsEncrypt.onRotateScript", "letsEncrypt.onFailureScript", "letsEncrypt.onFailureWebhook",
	"letsEncrypt.staging", "letsEncrypt.directoryUrl",
	"letsEncrypt.directoryCaFile", "letsEncrypt.eab", "letsEncrypt.caa", "letsEncrypt.caaIdentity",
	"metrics.listen",
	"log.level",
	"auth.adminAccessKey",
}

// restartReasons say, for the keys a reload refuses, what was set up from
// them at start; the longest matching prefix wins.
var restartReasons = map[string]string{
	"http":                   "the front's listener is bound at start",
	"http.ssl":               "the certificate files watched are chosen at start",
	"dnsLess":                "the hostnames served and certified are derived at start",
	"core":                   "this core's PlatformDB row, node certificate and DNS names are made from it at start",
	"core.id":                "it names this core's PlatformDB member and node certificate",
	"dns":                    "the DNS server is set up at start",
	"dns.domain":             "the zone, the hostnames, the node certificate and the ACME plans are derived from it at start",
	"dns.active":             "the DNS server is started, or not, at start",
	"dns.userLookup":         "the user lookup is set up at start",
	"dns.dnssec":             "the zone's signing keys are set up when PlatformDB answers",
	"letsEncrypt":            "the certificate sources and PlatformDB are chosen at start",
	"letsEncrypt.http01Port": "the HTTP-01 listener is bound when PlatformDB answers",
	"letsEncrypt.dns01":      "the DNS-01 provider is set up when PlatformDB answers",
	"platformDB":             "PlatformDB's member is opened with it",
	"cluster":                "the node identity and the join listener are set up when PlatformDB opens",
	"control.socket":         "the control socket is opened at start",
	"platform":               "the user lookup is set up at start",
	"storages":               "the user lookup is set up at start",
	"metrics":                "the front and the certificate sources are built with or without metrics",

	"http.hsts":                       "the front's handler chain is built with it at start",
	"upstreams.responseHeaderTimeout": "the upstream transports are built with it at start",
}

// Diff compares the running configuration with the next one, key by key.
func Diff(running, next *Config) Changes {
	var out Changes
	diffValue(reflect.ValueOf(running).Elem(), reflect.ValueOf(next).Elem(), "", &out)
	for i, c := range out {
		out[i] = classify(c.Key, running, next)
	}
	return out
}

func diffValue(a, b reflect.Value, path string, out *Changes) {
	if a.Kind() == reflect.Struct && a.Type() != durationType {
		t := a.Type()
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			key := name
			if path != "" {
				key = path + "." + name
			}
			diffValue(a.Field(i), b.Field(i), key, out)
		}
		return
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*out = append(*out, Change{Key: path})
	}
}

func classify(key string, running, next *Config) Change {
	c := Change{Key: key}
	for _, k := range liveKeys {
		if key == k || strings.HasPrefix(key, k+".") {
			c.Live = true
		}
	}
	if key == "metrics.listen" && (running.Metrics.Listen == "" || next.Metrics.Listen == "") {
		c.Live = false // moving the listener is live; turning metrics on or off is not
	}
	if c.Live {
		return c
	}
	best := ""
	for p := range restartReasons {
		if (key == p || strings.HasPrefix(key, p+".")) && len(p) > len(best) {
			best = p
		}
	}
	c.Reason = restartReasons[best]
	if c.Reason == "" {
		c.Reason = "it is read at start"
	}
	return c
}

// Keys are the changed keys.
func (cs Changes) Keys() []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Key
	}
	return out
}

// Err refuses the reload when a key that needs a restart changed, naming
// each one and why; nil when every change is live.
func (cs Changes) Err() error {
	var errs Errors
	for _, c := range cs {
		if !c.Live {
			errs = append(errs, &FieldError{Path: c.Key, Msg: fmt.Sprintf("%s %s; restart pryv-tls to apply the new value (nothing of this reload was applied)", RestartOnlyMessage, c.Reason)})
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// RestartOnlyMessage begins the refusal of a key a reload cannot change.
const RestartOnlyMessage = "cannot change while pryv-tls runs:"
