package config

import (
	"slices"
	"strings"
	"testing"
)

// TestDiff: each changed key is found, classified live or restart-only,
// and a refusal names the key and why, never the values (secrets).
func TestDiff(t *testing.T) {
	base := "http:\n  port: 8443\n  ip: 127.0.0.1\ncore:\n  id: core1\n  url: https://core1.example.com\n" +
		"dns:\n  active: true\n  domain: example.com\n  staticEntries:\n    - subdomain: www\n      records:\n        a: [10.0.0.1]\n" +
		leBlock + "auth:\n  adminAccessKey: " + testAdminKey + "\nmetrics:\n  listen: 127.0.0.1:9100\n"
	for _, tc := range []struct {
		name    string
		over    string
		keys    []string
		restart []string
	}{
		{"nothing", "", nil, nil},
		{"upstreams", "upstreams:\n  api: http://127.0.0.1:3001\n  hfs: http://127.0.0.1:4001\n", []string{"upstreams.api", "upstreams.hfs"}, nil},
		{"static entry", "dns:\n  staticEntries:\n    - subdomain: www\n      records:\n        a: [10.0.0.2]\n", []string{"dns.staticEntries"}, nil},
		{"root records and TTL", "dns:\n  defaultTTL: 60\n  records:\n    root:\n      txt: [v=spf1 -all]\n", []string{"dns.defaultTTL", "dns.records.root.txt"}, nil},
		{"letsEncrypt live keys", "letsEncrypt:\n  email: other@example.com\n  profile: shortlived\n  keyType: rsa2048\n  renewBeforeDays: 20\n  onRotateScript: /etc/pryv/hook.sh\n",
			[]string{"letsEncrypt.email", "letsEncrypt.onRotateScript", "letsEncrypt.renewBeforeDays", "letsEncrypt.keyType", "letsEncrypt.profile"}, nil},
		{"metrics moved", "metrics:\n  listen: 127.0.0.1:9200\n", []string{"metrics.listen"}, nil},
		{"metrics off", "metrics:\n  listen: ''\n", []string{"metrics.listen"}, []string{"metrics.listen"}},
		{"log level", "log:\n  level: debug\n", []string{"log.level"}, nil},
		{"admin key", "auth:\n  adminAccessKey: another-admin-key-123\n", []string{"auth.adminAccessKey"}, nil},
		{"core.id", "core:\n  id: core2\n", []string{"core.id"}, []string{"core.id"}},
		{"dns.domain", "dns:\n  domain: example.org\n", []string{"dns.domain"}, []string{"dns.domain"}},
		{"front port", "http:\n  port: 9443\n", []string{"http.port"}, []string{"http.port"}},
		{"hsts", "http:\n  hsts: max-age=600\n", []string{"http.hsts"}, []string{"http.hsts"}},
		{"upstream header timeout", "upstreams:\n  responseHeaderTimeout: 30s\n", []string{"upstreams.responseHeaderTimeout"}, []string{"upstreams.responseHeaderTimeout"}},
		{"platformDB", "platformDB:\n  peerAddress: 127.0.0.1:12380\n  dataDir: /var/lib/other\n", []string{"platformDB.dataDir", "platformDB.peerAddress"}, []string{"platformDB.dataDir", "platformDB.peerAddress"}},
		{"atRestKey", "letsEncrypt:\n  atRestKey: " + strings.Repeat("A", 43) + "=\n", []string{"letsEncrypt.atRestKey"}, []string{"letsEncrypt.atRestKey"}},
		{"live and restart together", "core:\n  id: core2\nupstreams:\n  api: http://127.0.0.1:3001\n", []string{"core.id", "upstreams.api"}, []string{"core.id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			running := mustLoad(t, base)
			next, err := LoadSources(Source{Name: "base.yml", Data: []byte(base)}, Source{Name: "override.yml", Data: []byte(tc.over + "\n")})
			if err != nil {
				t.Fatal(err)
			}
			d := Diff(running, next)
			if got := d.Keys(); !sameSet(got, tc.keys) {
				t.Fatalf("changed keys %q, want %q", got, tc.keys)
			}
			err = d.Err()
			if len(tc.restart) == 0 {
				if err != nil {
					t.Fatalf("refused a live change: %v", err)
				}
				return
			}
			msgs := problems(t, err)
			if len(msgs) != len(tc.restart) {
				t.Fatalf("refusals %q, want one for each of %q", msgs, tc.restart)
			}
			for i, key := range tc.restart {
				if !strings.HasPrefix(msgs[i], key+": "+RestartOnlyMessage) || !strings.Contains(msgs[i], "restart pryv-tls") {
					t.Errorf("refusal %q does not name %s and the restart", msgs[i], key)
				}
			}
			for _, secret := range []string{testAtRestKey, testAdminKey, strings.Repeat("A", 43)} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("a refusal shows a secret: %v", err)
				}
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
