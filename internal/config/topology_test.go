package config

import (
	"path/filepath"
	"reflect"
	"testing"
)

func TestPlans(t *testing.T) {
	tests := []struct {
		name, yml string
		plans     []Plan
		primary   string
		certDir   string // under tlsDir; "" = no files
	}{
		{"single-core dnsLess", "dnsLess:\n  isActive: true\n  publicUrl: https://your-domain.com\n",
			[]Plan{{[]string{"your-domain.com"}, ChallengeHTTP01, "dnsLess.publicUrl"}}, "your-domain.com", "your-domain.com"},
		{"multi-core embedded DNS", "dns:\n  domain: mc.example.com\n",
			[]Plan{{[]string{"*.mc.example.com", "mc.example.com"}, ChallengeDNS01, "dns.domain"}}, "*.mc.example.com", "wildcard.mc.example.com"},
		{"multi-core DNSless overrides", "core:\n  url: https://core1.example.org\n",
			[]Plan{{[]string{"core1.example.org"}, ChallengeHTTP01, "core.url"}}, "core1.example.org", "core1.example.org"},
		{"core.url by tls-alpn-01", "  challenge: tls-alpn-01\ncore:\n  url: https://core1.example.org\n",
			[]Plan{{[]string{"core1.example.org"}, ChallengeTLSALPN01, "core.url"}}, "core1.example.org", "core1.example.org"},
		{"core.url under the wildcard is dropped", "dns:\n  domain: mc.example.com\ncore:\n  url: https://core1.mc.example.com\n",
			[]Plan{{[]string{"*.mc.example.com", "mc.example.com"}, ChallengeDNS01, "dns.domain"}}, "*.mc.example.com", "wildcard.mc.example.com"},
		{"two labels below the wildcard is kept", "dns:\n  domain: mc.example.com\ncore:\n  url: https://a.b.mc.example.com\n",
			[]Plan{
				{[]string{"a.b.mc.example.com"}, ChallengeHTTP01, "core.url"},
				{[]string{"*.mc.example.com", "mc.example.com"}, ChallengeDNS01, "dns.domain"},
			}, "a.b.mc.example.com", "a.b.mc.example.com"},
		{"same host twice", "dnsLess:\n  isActive: true\n  publicUrl: https://Your-Domain.com:8443/\ncore:\n  url: https://your-domain.com\n",
			[]Plan{{[]string{"your-domain.com"}, ChallengeHTTP01, "dnsLess.publicUrl"}}, "your-domain.com", "your-domain.com"},
		{"all three", "dnsLess:\n  isActive: true\n  publicUrl: https://pryv.example.net\ncore:\n  url: https://core1.example.org\ndns:\n  domain: mc.example.com\n",
			[]Plan{
				{[]string{"pryv.example.net"}, ChallengeHTTP01, "dnsLess.publicUrl"},
				{[]string{"core1.example.org"}, ChallengeHTTP01, "core.url"},
				{[]string{"*.mc.example.com", "mc.example.com"}, ChallengeDNS01, "dns.domain"},
			}, "pryv.example.net", "pryv.example.net"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, leBlock+tt.yml)
			if got := c.Plans(); !reflect.DeepEqual(got, tt.plans) {
				t.Errorf("Plans() = %+v, want %+v", got, tt.plans)
			}
			if got := c.PrimaryHostname(); got != tt.primary {
				t.Errorf("PrimaryHostname() = %q, want %q", got, tt.primary)
			}
			dir := filepath.Join(c.LetsEncrypt.TLSDir, tt.certDir)
			cert, key, ca := c.CertFiles()
			if cert != filepath.Join(dir, "fullchain.pem") || key != filepath.Join(dir, "privkey.pem") || ca != "" {
				t.Errorf("CertFiles() = %q, %q, %q; want them in %s", cert, key, ca, dir)
			}
		})
	}
}

func TestHostnames(t *testing.T) {
	c := mustLoad(t, leBlock+"dnsLess:\n  isActive: true\n  publicUrl: https://mc.example.com\ncore:\n  url: https://core1.example.org\ndns:\n  domain: mc.example.com\n")
	want := []string{"core1.example.org", "*.mc.example.com", "mc.example.com"}
	if got := c.Hostnames(); !reflect.DeepEqual(got, want) {
		t.Errorf("Hostnames() = %q, want %q", got, want)
	}
	if got := c.PrimaryHostname(); got != "core1.example.org" {
		t.Errorf("PrimaryHostname() = %q", got)
	}
}

func TestCertFilesSources(t *testing.T) {
	c := mustLoad(t, leBlock+"dns:\n  domain: mc.example.com\nhttp:\n  ssl:\n    certFile: /etc/ssl/c.pem\n    keyFile: /etc/ssl/k.pem\n    caFile: /etc/ssl/ca.pem\n")
	if cert, key, ca := c.CertFiles(); cert != "/etc/ssl/c.pem" || key != "/etc/ssl/k.pem" || ca != "/etc/ssl/ca.pem" {
		t.Errorf("http.ssl set: CertFiles() = %q, %q, %q", cert, key, ca)
	}
	c = mustLoad(t, "dns:\n  domain: mc.example.com\n")
	if cert, key, ca := c.CertFiles(); cert != "" || key != "" || ca != "" || c.TLSEnabled() {
		t.Errorf("plain HTTP (Strategy B): CertFiles() = %q, %q, %q, TLSEnabled = %v", cert, key, ca, c.TLSEnabled())
	}
	if got, want := c.CertDir("*.mc.example.com"), filepath.Join(c.LetsEncrypt.TLSDir, "wildcard.mc.example.com"); got != want {
		t.Errorf("CertDir(wildcard) = %q, want %q", got, want)
	}
	if got := (&Config{}).Plans(); got != nil {
		t.Errorf("empty config has plans: %+v", got)
	}
}

// TestCorePlans: one certificate per other core's core.url, none for a
// host this core's plans already cover.
func TestCorePlans(t *testing.T) {
	tests := []struct {
		name, yml string
		urls      []string
		want      []Plan
	}{
		{"DNSless overrides: the other cores", "core:\n  url: https://core1.example.org\n",
			[]string{"https://core1.example.org", "https://core2.example.org", "https://CORE3.example.org:443/", "https://core2.example.org"},
			[]Plan{
				{[]string{"core2.example.org"}, ChallengeHTTP01, "core-info"},
				{[]string{"core3.example.org"}, ChallengeHTTP01, "core-info"},
			}},
		{"under the wildcard: nothing", "dns:\n  domain: mc.example.com\ncore:\n  url: https://core1.mc.example.com\n",
			[]string{"https://core2.mc.example.com", "https://mc.example.com"}, nil},
		{"outside the wildcard: planned", "dns:\n  domain: mc.example.com\n",
			[]string{"https://core2.example.org"}, []Plan{{[]string{"core2.example.org"}, ChallengeHTTP01, "core-info"}}},
		{"by tls-alpn-01", "  challenge: tls-alpn-01\ncore:\n  url: https://core1.example.org\n",
			[]string{"https://core2.example.org"}, []Plan{{[]string{"core2.example.org"}, ChallengeTLSALPN01, "core-info"}}},
		{"no url, not a URL", "core:\n  url: https://core1.example.org\n", []string{"", "core2", "://x"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, leBlock+tt.yml)
			before := c.Plans()
			if got := c.CorePlans(tt.urls); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("CorePlans = %v, want %v", got, tt.want)
			}
			if !reflect.DeepEqual(c.Plans(), before) {
				t.Error("CorePlans changed Plans")
			}
		})
	}
}
