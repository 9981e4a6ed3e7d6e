package docs_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pryv/pryv-tls/internal/config"
)

type nginxLocation struct {
	modifier, pattern, upstream string
	re                          *regexp.Regexp
	body                        string
}

// nginxRoute picks the location nginx uses for path: the longest matching
// prefix location unless it is "^~", else the first matching regexp
// location in file order, else that prefix location.
func nginxRoute(locs []nginxLocation, path string) *nginxLocation {
	var prefix *nginxLocation
	for i := range locs {
		l := &locs[i]
		if l.re == nil && strings.HasPrefix(path, l.pattern) && (prefix == nil || len(l.pattern) > len(prefix.pattern)) {
			prefix = l
		}
	}
	if prefix != nil && prefix.modifier == "^~" {
		return prefix
	}
	for i := range locs {
		if l := &locs[i]; l.re != nil && l.re.MatchString(path) {
			return l
		}
	}
	return prefix
}

func TestNginxSampleRoutes(t *testing.T) {
	conf := stripHashComments(readDoc(t, filepath.Join(samplesDir, "nginx.conf")))

	upstreams := map[string]string{}
	bodies, heads := braceBlocks(conf, regexp.MustCompile(`(?m)^\s*upstream\s+(\S+)\s*`))
	for i, b := range bodies {
		m := regexp.MustCompile(`server\s+([^;\s]+)`).FindStringSubmatch(b)
		if m == nil {
			t.Fatalf("upstream %s has no server", heads[i][1])
		}
		upstreams[heads[i][1]] = m[1]
	}

	servers, _ := braceBlocks(conf, regexp.MustCompile(`(?m)^\s*server\s*`))
	var tls string
	for _, s := range servers {
		if regexp.MustCompile(`listen\s+[^;]*443\s+ssl`).MatchString(s) {
			tls = s
		}
	}
	if tls == "" {
		t.Fatal("nginx.conf: no server block listening on 443 ssl")
	}
	for _, h := range []string{"Host", "X-Forwarded-For", "X-Forwarded-Proto", "Upgrade", "Connection"} {
		if !regexp.MustCompile(`(?m)^\s*proxy_set_header\s+` + h + `\s`).MatchString(tls) {
			t.Errorf("nginx.conf: the 443 server does not set %s for the upstreams", h)
		}
	}
	// nginx is the edge: the client's own X-Forwarded-For must not pass
	// (e2e TestNginxSampleEdgeHeaders sends a spoofed one through nginx).
	if !regexp.MustCompile(`(?m)^\s*proxy_set_header\s+X-Forwarded-For\s+\$remote_addr;`).MatchString(tls) {
		t.Error("nginx.conf: X-Forwarded-For must be $remote_addr at the edge ($proxy_add_x_forwarded_for passes on what the client sent)")
	}
	if !regexp.MustCompile(`(?m)^\s*add_header\s+Strict-Transport-Security\s+"max-age=\d+[^"]*"\s+always;`).MatchString(tls) {
		t.Error("nginx.conf: the 443 server must send Strict-Transport-Security (add_header ... always, so errors carry it too)")
	}

	var locs []nginxLocation
	bodies, heads = braceBlocks(tls, regexp.MustCompile(`(?m)^\s*location\s+(?:(~\*|~|\^~|=)\s+)?(\S+)\s*`))
	for i, b := range bodies {
		l := nginxLocation{modifier: heads[i][1], pattern: heads[i][2], body: b}
		if strings.HasPrefix(l.modifier, "~") {
			re, err := regexp.Compile(l.pattern)
			if err != nil {
				t.Fatalf("nginx.conf: location %s: %v", l.pattern, err)
			}
			if l.modifier == "~*" {
				t.Errorf("nginx.conf: location ~* %s is case-insensitive; the reference routes are not", l.pattern)
			}
			l.re = re
		}
		if m := regexp.MustCompile(`proxy_pass\s+http://([^;/\s]+)`).FindStringSubmatch(b); m != nil {
			l.upstream = m[1]
		}
		if strings.Contains(b, "proxy_set_header") {
			t.Errorf("nginx.conf: location %s sets proxy_set_header, which drops every header the server block sets", l.pattern)
		}
		locs = append(locs, l)
	}
	if len(locs) < 3 {
		t.Fatalf("nginx.conf: expected the two HFS locations and location /, found %d", len(locs))
	}

	hfsPort, apiPort := upstreamPort(t, config.DefaultUpstreamHFS), upstreamPort(t, config.DefaultUpstreamAPI)
	for _, p := range routePaths {
		l := nginxRoute(locs, p)
		if l == nil || l.upstream == "" {
			t.Errorf("nginx.conf: %s reaches no proxied location", p)
			continue
		}
		addr := upstreams[l.upstream]
		wantPort := apiPort
		if refIsHFS(p) {
			wantPort = hfsPort
		}
		if !strings.HasSuffix(addr, ":"+wantPort) {
			t.Errorf("nginx.conf: %s goes to upstream %s (%s), want port %s (reference HFS match: %v)", p, l.upstream, addr, wantPort, refIsHFS(p))
		}
		wantHost := "$host"
		if refIsHFS(p) {
			wantHost = addr
		}
		if got := nginxHost(t, conf, tls, p); got != wantHost {
			t.Errorf("nginx.conf: %s is sent Host %s, want %s (HFS needs its own address, the API the client's)", p, got, wantHost)
		}
	}
}

// nginxHost evaluates the server block's "proxy_set_header Host" for a path,
// through a "map $uri $var" if it names one: regexp entries in order, then
// default.
func nginxHost(t *testing.T, conf, server, path string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*proxy_set_header\s+Host\s+(\S+);`).FindStringSubmatch(server)
	if m == nil {
		t.Fatal("nginx.conf: no proxy_set_header Host in the 443 server")
	}
	bodies, heads := braceBlocks(conf, regexp.MustCompile(`(?m)^\s*map\s+\$uri\s+(\$\S+)\s*`))
	for i, b := range bodies {
		if heads[i][1] != m[1] {
			continue
		}
		def := ""
		for _, e := range regexp.MustCompile(`(?m)^\s*(\S+)\s+(\S+);`).FindAllStringSubmatch(b, -1) {
			if e[1] == "default" {
				def = e[2]
				continue
			}
			if !strings.HasPrefix(e[1], "~") || strings.HasPrefix(e[1], "~*") {
				t.Fatalf("nginx.conf: map %s: entry %s is not a case-sensitive regexp", m[1], e[1])
			}
			if regexp.MustCompile(e[1][1:]).MatchString(path) {
				return e[2]
			}
		}
		return def
	}
	return m[1]
}
