package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pryv/pryv-tls/internal/config"
)

// TestJoinOverrideKeepsTheJoinersOwn: the override new-core writes is
// loaded last on the joining core; its guesses (the holder's http.*, DNS
// listen address, a url: "" when new-core had no --url) no longer replace
// what the joiner's own files (and open-pryv.io's, for core.url) set, while
// the cluster's settings and the identity the node certificate names still
// win. Without its own settings the joiner gets the override's as before.
func TestJoinOverrideKeepsTheJoinersOwn(t *testing.T) {
	const key = "GC7BAkJ0lsqe50IsM8rBvtLQkR9AREmjVfRO5MmdLVM="
	const prevKey = "W1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1s=" // a rotation under way
	holder, err := config.LoadBytes("holder.yml", []byte(`
http: {ip: 10.0.0.1, port: 443}
core: {id: core1, ip: 10.0.0.1, url: 'https://core1.example.com'}
letsEncrypt: {enabled: true, email: ops@example.com, atRestKey: '`+key+`', atRestKeyPrevious: '`+prevKey+`', certRenewer: true, challenge: tls-alpn-01}
platformDB: {peerAddress: '10.0.0.1:2380', clientAddress: '10.0.0.1:2379'}
auth: {adminAccessKey: cluster-admin}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		url        string // new-core --url
		own, core  string // the joiner's file, open-pryv.io's file ("" = none)
		wantURL    string
		wantHTTP   string
		wantStderr string
	}{
		{"own core.url and http kept, no --url", "", "core: {url: 'https://core2.example.com'}\nhttp: {ip: 10.0.0.2, port: 8443}\n", "",
			"https://core2.example.com", "10.0.0.2:8443", "core.url, http.ip, http.port left to this core's own configuration"},
		{"own core.url wins over --url", "https://wrong.example.com", "core: {url: 'https://core2.example.com'}\n", "",
			"https://core2.example.com", "10.0.0.2:443", "core.url left"},
		{"open-pryv.io's core.url kept, its http (the API's) not read", "", "", "core: {url: 'https://core2.example.com'}\nhttp: {ip: 127.0.0.1, port: 3000}\n",
			"https://core2.example.com", "10.0.0.2:443", "core.url left"},
		{"nothing of its own: the override's", "https://core2.example.com", "# empty\n", "",
			"https://core2.example.com", "10.0.0.2:443", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			own := filepath.Join(dir, "override-config.yml")
			if err := os.WriteFile(own, []byte(tc.own), 0o600); err != nil {
				t.Fatal(err)
			}
			var coreFiles []string
			if tc.core != "" {
				coreFiles = []string{filepath.Join(dir, "core.yml")}
				if err := os.WriteFile(coreFiles[0], []byte(tc.core), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ov, err := joinerOverride(holder, joiner{id: "core2", ip: "10.0.0.2", url: tc.url})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, clusterOverrideName)
			if err := os.WriteFile(path, []byte(ov), 0o600); err != nil {
				t.Fatal(err)
			}
			files := []string{own, path}
			var stderr strings.Builder
			if code := keepOwn(coreFiles, files, &stderr); code != exitOK {
				t.Fatalf("keepOwn: %d %s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) || (tc.wantStderr == "" && stderr.Len() > 0) {
				t.Errorf("stderr %q, want %q", stderr.String(), tc.wantStderr)
			}
			cfg, err := config.LoadWithCore(coreFiles, files)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Core.URL != tc.wantURL || cfg.ListenAddr() != tc.wantHTTP {
				t.Errorf("core.url %q, http %s; want %q, %s", cfg.Core.URL, cfg.ListenAddr(), tc.wantURL, tc.wantHTTP)
			}
			// What the cluster shares and the node certificate's identity win.
			if cfg.Core.ID != "core2" || cfg.Core.IP != "10.0.0.2" || cfg.LetsEncrypt.AtRestKey.Reveal() != key || cfg.LetsEncrypt.AtRestKeyPrevious.Reveal() != prevKey ||
				cfg.LetsEncrypt.CertRenewer || cfg.LetsEncrypt.Challenge != config.ChallengeTLSALPN01 || cfg.PlatformDB.PeerAddress != "10.0.0.2:2380" || cfg.Auth.AdminAccessKey.Reveal() != "cluster-admin" {
				t.Errorf("shared settings lost: id %s ip %s renewer %v peer %s", cfg.Core.ID, cfg.Core.IP, cfg.LetsEncrypt.CertRenewer, cfg.PlatformDB.PeerAddress)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("override mode: %v %v", fi, err)
			}
			// Idempotent: a restart with the bundle again (prepareJoin
			// writes its override afresh) ends with the same file.
			before, _ := os.ReadFile(path)
			if err := os.WriteFile(path, []byte(ov), 0o600); err != nil {
				t.Fatal(err)
			}
			stderr.Reset()
			keepOwn(coreFiles, files, &stderr)
			if after, _ := os.ReadFile(path); string(after) != string(before) {
				t.Errorf("a second pass changed the override:\n%s\n---\n%s", before, after)
			}
		})
	}
}

// TestJoinOverrideUnreadable: an override that is not YAML, or is empty,
// is refused with its path and the reason (an empty one used to say
// "<nil>").
func TestJoinOverrideUnreadable(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"empty", "", "not the override a join writes: the file is empty"},
		{"not yaml", "core: [\n", "not the override a join writes: yaml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), clusterOverrideName)
			if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := keepOwnSettings(p, nil, nil)
			if err == nil || !strings.HasPrefix(err.Error(), p+": "+tc.want) {
				t.Fatalf("got %v, want %q", err, p+": "+tc.want)
			}
		})
	}
}
