package config

// Tests that keep docs/operator-guide from drifting away from the code: the
// samples load, route and parse; the troubleshooting page names every key
// the validator reports; the commands and flags the guide shows exist.

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	guideDir   = filepath.Join(moduleRoot, "docs", "operator-guide")
	samplesDir = filepath.Join(guideDir, "samples")
)

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ---- HFS routing of the proxy samples ---------------------------------------

// refHFS are the reference implementation's HFS routes (internal/front
// implements the same; its tests check it against these).
var refHFS = []*regexp.Regexp{
	regexp.MustCompile(`^/[^/]+/events/[^/]+/series`),
	regexp.MustCompile(`^/[^/]+/series/batch`),
}

func refIsHFS(path string) bool {
	return slices.ContainsFunc(refHFS, func(re *regexp.Regexp) bool { return re.MatchString(path) })
}

// routePaths are request paths both ways of every edge of the two regexps.
var routePaths = []string{
	"/u/events/e1/series", "/u/events/e1/series/", "/u/events/e1/seriesx",
	"/u/events/e1/series/batch", "/u/events/e1/series/deep/path/x",
	"/u/series/batch", "/u/series/batchy", "/u/series/batch/deep/path",
	"/series/series/batch", "/events/events/e1/series",
	"/alice/events/ckqw7q8f5000101/series", "/ü/events/é/series", "/u%2Fv/events/e1/series",
	"/events/e1/series", "//events/e1/series", "/u/events//series", "/u/events/e1",
	"/u/events/e1/x/series", "/u/events/series", "/u/events/events/e1/series",
	"/u/x/events/e1/series", "/a/b/series/batch", "/u/series", "/u/series/",
	"/u/series/batc", "/u/EVENTS/e1/series", "/u/Series/batch", "/alice/streams/series/batch",
	"/alice/accesses/events/e1/series", "/", "/alice/events", "/alice/events/e1",
	"/socket.io/", "/alice/socket.io/", "/system/admin/certs", "/reg/access",
}

func TestRoutePathsCoverBothWays(t *testing.T) {
	var hfs, api int
	for _, p := range routePaths {
		if refIsHFS(p) {
			hfs++
		} else {
			api++
		}
	}
	if hfs < 8 || api < 8 {
		t.Fatalf("the path table must exercise both routes: %d HFS, %d API", hfs, api)
	}
}

// upstreamPort is the port of an upstream default ("http://127.0.0.1:4000").
func upstreamPort(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// stripHashComments drops "# ..." to the end of each line.
func stripHashComments(s string) string {
	return regexp.MustCompile(`(?m)#.*$`).ReplaceAllString(s, "")
}

// braceBlocks returns the bodies of the blocks of s whose header matches
// head (a regexp ending just before "{"), with the header's submatches.
func braceBlocks(s string, head *regexp.Regexp) (bodies []string, heads [][]string) {
	for _, loc := range head.FindAllStringSubmatchIndex(s, -1) {
		open := strings.IndexByte(s[loc[1]:], '{')
		if open < 0 {
			continue
		}
		start := loc[1] + open + 1
		depth := 1
		end := start
		for ; end < len(s) && depth > 0; end++ {
			switch s[end] {
			case '{':
				depth++
			case '}':
				depth--
			}
		}
		var h []string
		for i := 0; i+1 < len(loc); i += 2 {
			if loc[i] >= 0 {
				h = append(h, s[loc[i]:loc[i+1]])
			} else {
				h = append(h, "")
			}
		}
		bodies = append(bodies, s[start:end-1])
		heads = append(heads, h)
	}
	return bodies, heads
}

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

	hfsPort, apiPort := upstreamPort(t, DefaultUpstreamHFS), upstreamPort(t, DefaultUpstreamAPI)
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

func TestCaddySampleRoutes(t *testing.T) {
	conf := stripHashComments(readDoc(t, filepath.Join(samplesDir, "Caddyfile")))
	matchers := map[string]*regexp.Regexp{}
	for _, m := range regexp.MustCompile(`(?m)^\s*@(\S+)\s+path_regexp\s+(?:\S+\s+)?(\^\S+)\s*$`).FindAllStringSubmatch(conf, -1) {
		re, err := regexp.Compile(m[2])
		if err != nil {
			t.Fatalf("Caddyfile: @%s: %v", m[1], err)
		}
		matchers[m[1]] = re
	}
	type handle struct {
		matcher, addr string
		ownHost       bool // sends the upstream's address as Host
	}
	var handles []handle
	var fallback *handle
	bodies, heads := braceBlocks(conf, regexp.MustCompile(`(?m)^\s*handle(?:\s+@(\S+))?\s*`))
	for i, b := range bodies {
		m := regexp.MustCompile(`reverse_proxy\s+(\S+)`).FindStringSubmatch(b)
		if m == nil {
			t.Fatalf("Caddyfile: handle %q has no reverse_proxy", heads[i][1])
		}
		h := handle{heads[i][1], m[1], strings.Contains(b, "header_up Host {upstream_hostport}")}
		if h.matcher == "" {
			fallback = &h
			continue
		}
		if matchers[h.matcher] == nil {
			t.Fatalf("Caddyfile: handle @%s: no path_regexp matcher of that name", h.matcher)
		}
		handles = append(handles, h)
	}
	if fallback == nil || len(handles) == 0 {
		t.Fatal("Caddyfile: expected a handle for the HFS matcher and a fallback handle")
	}
	hfsPort, apiPort := upstreamPort(t, DefaultUpstreamHFS), upstreamPort(t, DefaultUpstreamAPI)
	for _, p := range routePaths {
		got := *fallback
		for _, h := range handles {
			if matchers[h.matcher].MatchString(p) {
				got = h
				break
			}
		}
		want := apiPort
		if refIsHFS(p) {
			want = hfsPort
		}
		if !strings.HasSuffix(got.addr, ":"+want) {
			t.Errorf("Caddyfile: %s goes to %s, want port %s", p, got.addr, want)
		}
		if got.ownHost != refIsHFS(p) {
			t.Errorf("Caddyfile: %s: Host rewritten to the upstream's: %v, want %v (HFS needs its own address, the API the client's)", p, got.ownHost, refIsHFS(p))
		}
	}
}

func TestTraefikSampleRoutes(t *testing.T) {
	var dyn struct {
		HTTP struct {
			Routers map[string]struct {
				Rule        string   `yaml:"rule"`
				Priority    int      `yaml:"priority"`
				EntryPoints []string `yaml:"entryPoints"`
				Service     string   `yaml:"service"`
				TLS         struct {
					CertResolver string `yaml:"certResolver"`
				} `yaml:"tls"`
			} `yaml:"routers"`
			Services map[string]struct {
				LoadBalancer struct {
					PassHostHeader *bool `yaml:"passHostHeader"`
					Servers        []struct {
						URL string `yaml:"url"`
					} `yaml:"servers"`
				} `yaml:"loadBalancer"`
			} `yaml:"services"`
		} `yaml:"http"`
	}
	dec := yaml.NewDecoder(strings.NewReader(readDoc(t, filepath.Join(samplesDir, "traefik-dynamic.yml"))))
	dec.KnownFields(true)
	if err := dec.Decode(&dyn); err != nil {
		t.Fatalf("traefik-dynamic.yml: %v", err)
	}
	var static struct {
		EntryPoints map[string]any `yaml:"entryPoints"`
		Resolvers   map[string]any `yaml:"certificatesResolvers"`
	}
	if err := yaml.Unmarshal([]byte(readDoc(t, filepath.Join(samplesDir, "traefik-static.yml"))), &static); err != nil {
		t.Fatalf("traefik-static.yml: %v", err)
	}

	// Each rule is Host(...) alone, or Host(...) && (PathRegexp(...) || ...).
	ruleRE := regexp.MustCompile("^Host\\(`[^`]+`\\)(?: && \\((PathRegexp\\(`[^`]+`\\)(?: \\|\\| PathRegexp\\(`[^`]+`\\))*)\\))?$")
	pathRE := regexp.MustCompile("PathRegexp\\(`([^`]+)`\\)")
	type router struct {
		name     string
		priority int
		paths    []*regexp.Regexp
		url      string
		ownHost  bool // passHostHeader: false, Host is the server's address
	}
	var routers []router
	for name, r := range dyn.HTTP.Routers {
		m := ruleRE.FindStringSubmatch(r.Rule)
		if m == nil {
			t.Fatalf("traefik-dynamic.yml: router %s: rule %q is not of a form this test understands", name, r.Rule)
		}
		rt := router{name: name, priority: r.Priority}
		for _, pm := range pathRE.FindAllStringSubmatch(m[1], -1) {
			re, err := regexp.Compile(pm[1])
			if err != nil {
				t.Fatalf("traefik-dynamic.yml: router %s: %v", name, err)
			}
			rt.paths = append(rt.paths, re)
		}
		svc, ok := dyn.HTTP.Services[r.Service]
		if !ok || len(svc.LoadBalancer.Servers) != 1 {
			t.Fatalf("traefik-dynamic.yml: router %s: service %q must exist with one server", name, r.Service)
		}
		rt.url = svc.LoadBalancer.Servers[0].URL
		rt.ownHost = svc.LoadBalancer.PassHostHeader != nil && !*svc.LoadBalancer.PassHostHeader
		for _, ep := range r.EntryPoints {
			if _, ok := static.EntryPoints[ep]; !ok {
				t.Errorf("router %s: entry point %s is not in traefik-static.yml", name, ep)
			}
		}
		if _, ok := static.Resolvers[r.TLS.CertResolver]; !ok {
			t.Errorf("router %s: certResolver %q is not in traefik-static.yml", name, r.TLS.CertResolver)
		}
		routers = append(routers, rt)
	}
	sort.Slice(routers, func(i, j int) bool { return routers[i].priority > routers[j].priority })
	for i := 1; i < len(routers); i++ {
		if routers[i].priority == routers[i-1].priority {
			t.Fatalf("traefik-dynamic.yml: routers %s and %s have the same priority", routers[i].name, routers[i-1].name)
		}
	}
	hfsPort, apiPort := upstreamPort(t, DefaultUpstreamHFS), upstreamPort(t, DefaultUpstreamAPI)
	for _, p := range routePaths {
		var got router
		for _, r := range routers {
			if len(r.paths) == 0 || slices.ContainsFunc(r.paths, func(re *regexp.Regexp) bool { return re.MatchString(p) }) {
				got = r
				break
			}
		}
		want := apiPort
		if refIsHFS(p) {
			want = hfsPort
		}
		if upstreamPort(t, got.url) != want {
			t.Errorf("traefik-dynamic.yml: %s goes to %q, want port %s", p, got.url, want)
		}
		if got.ownHost != refIsHFS(p) {
			t.Errorf("traefik-dynamic.yml: %s: passHostHeader false: %v, want %v (HFS needs its own address as Host, the API the client's)", p, got.ownHost, refIsHFS(p))
		}
	}
}

// ---- the systemd unit -------------------------------------------------------

// parseUnit reads an INI-ish systemd unit: [Section] headers, key=value
// lines (a trailing backslash continues a line), # and ; comments. A key
// may repeat; its values are kept in order.
func parseUnit(t *testing.T, text string) map[string]map[string][]string {
	t.Helper()
	units := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	n, pending := 0, ""
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if pending != "" {
			line = pending + " " + line
			pending = ""
		}
		if strings.HasSuffix(line, `\`) {
			pending = strings.TrimSuffix(line, `\`)
			continue
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				t.Fatalf("pryv-tls.service:%d: bad section header %q", n, line)
			}
			section = line[1 : len(line)-1]
			units[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.TrimSpace(k) == "" || strings.ContainsAny(k, " \t") {
				t.Fatalf("pryv-tls.service:%d: not key=value in a section: %q", n, line)
			}
			units[section][k] = append(units[section][k], strings.TrimSpace(v))
		}
	}
	if pending != "" {
		t.Fatal("pryv-tls.service: ends with a continuation line")
	}
	return units
}

func TestSystemdUnit(t *testing.T) {
	u := parseUnit(t, readDoc(t, filepath.Join(samplesDir, "pryv-tls.service")))
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Fatalf("pryv-tls.service: no [%s] section", s)
		}
	}
	svc := u["Service"]
	one := func(k string) string {
		v := svc[k]
		if len(v) != 1 {
			t.Errorf("[Service] %s is set %d times, want once", k, len(v))
			return ""
		}
		return v[0]
	}
	yes := func(k string) {
		if v := one(k); !slices.Contains([]string{"true", "yes", "1", "on"}, v) {
			t.Errorf("[Service] %s=%q, want true", k, v)
		}
	}
	for k, want := range map[string]string{
		"User":                  "pryv",
		"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
		"ProtectSystem":         "strict",
		"ExecReload":            "/bin/kill -HUP $MAINPID",
		"Restart":               "on-failure",
		"Type":                  "notify", // the daemon sends READY=1 (decision 0019)
		"NotifyAccess":          "main",
	} {
		if got := one(k); got != want {
			t.Errorf("[Service] %s=%q, want %q", k, got, want)
		}
	}
	yes("NoNewPrivileges")
	yes("PrivateTmp")
	if !slices.Contains(strings.Fields(one("AmbientCapabilities")), "CAP_NET_BIND_SERVICE") {
		t.Error("[Service] AmbientCapabilities lacks CAP_NET_BIND_SERVICE (ports 80, 443, 53 without root)")
	}
	wd := one("WorkingDirectory")
	var rw []string
	for _, p := range strings.Fields(one("ReadWritePaths")) {
		rw = append(rw, strings.TrimLeft(p, "-+")) // "-": ignored when missing
	}
	for _, p := range []string{filepath.Join(wd, filepath.Dir(DefaultTLSDir)), DefaultClusterCAPath} {
		if !slices.Contains(rw, p) {
			t.Errorf("[Service] ReadWritePaths %q lacks %s", rw, p)
		}
	}
	// The default paths are relative: under WorkingDirectory, they must fall
	// inside the writable var-pryv.
	for _, p := range []string{DefaultTLSDir, DefaultPlatformDBDataDir, DefaultControlSocket} {
		if !strings.HasPrefix(filepath.Join(wd, p), filepath.Join(wd, "var-pryv")+"/") {
			t.Errorf("default %s is not under var-pryv/", p)
		}
	}
	exec := strings.Fields(one("ExecStart"))
	if len(exec) < 4 || !filepath.IsAbs(exec[0]) || filepath.Base(exec[0]) != "pryv-tls" || exec[1] != "serve" || !slices.Contains(exec, "--config") {
		t.Errorf("[Service] ExecStart=%q: want /abs/path/pryv-tls serve --config FILE ...", exec)
	}
	// serve drains for 20 s by default (--drain-timeout), then stops PlatformDB.
	if d, err := time.ParseDuration(one("TimeoutStopSec")); err != nil || d <= 20*time.Second {
		t.Errorf("[Service] TimeoutStopSec=%q: want more than the 20 s drain", one("TimeoutStopSec"))
	}
	if got := u["Install"]["WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
		t.Errorf("[Install] WantedBy=%q", got)
	}
}

// ---- sample configurations --------------------------------------------------

// loadSample loads a sample with its placeholders replaced by valid values.
func loadSample(t *testing.T, name string) *Config {
	t.Helper()
	text := readDoc(t, filepath.Join(samplesDir, name))
	for _, ph := range []string{"'<base64 of 32 random bytes>'", "'<output of pryv-tls keygen>'"} {
		text = strings.ReplaceAll(text, ph, "'"+testAtRestKey+"'")
	}
	text = strings.ReplaceAll(text, "'<a long random string>'", "'"+testAdminKey+"'")
	if strings.Contains(text, "'<") {
		t.Fatalf("%s: a placeholder this test does not know", name)
	}
	c, err := LoadBytes(name, []byte(text))
	if err != nil {
		t.Fatalf("%s does not load:\n%v", name, err)
	}
	return c
}

func TestSampleConfigs(t *testing.T) {
	// The spec's "minimum config on a single-core host", verbatim.
	spec := readDoc(t, filepath.Join(moduleRoot, "internal", "config", "testdata", "spec-single-core.yml"))
	sample := readDoc(t, filepath.Join(samplesDir, "strategy-a.yml"))
	keyLine := regexp.MustCompile(`(?m)^  atRestKey: .*$`)
	if keyLine.ReplaceAllString(spec, "") != keyLine.ReplaceAllString(sample, "") {
		t.Error("samples/strategy-a.yml is no longer the spec's single-core config (testdata/spec-single-core.yml)")
	}
	a := loadSample(t, "strategy-a.yml")
	if p := a.Plans(); len(p) != 1 || p[0].Row() != "your-domain.com" || p[0].Challenge != ChallengeHTTP01 || !a.PlatformDBEnabled() {
		t.Errorf("strategy-a.yml: plans %+v", p)
	}

	b := loadSample(t, "strategy-b.yml")
	if b.TLSEnabled() || b.PlatformDBEnabled() || b.ListenAddr() != "127.0.0.1:8080" {
		t.Errorf("strategy-b.yml: TLS %v, PlatformDB %v, listen %s; want plain HTTP on 127.0.0.1:8080 without PlatformDB",
			b.TLSEnabled(), b.PlatformDBEnabled(), b.ListenAddr())
	}
	for _, f := range []string{"nginx.conf", "Caddyfile", "traefik-dynamic.yml"} {
		if !strings.Contains(readDoc(t, filepath.Join(samplesDir, f)), b.ListenAddr()) {
			t.Errorf("%s does not say how to reach pryv-tls in plain mode at %s", f, b.ListenAddr())
		}
	}

	c := loadSample(t, "strategy-c.yml")
	cert, key, _ := c.CertFiles()
	if !c.TLSEnabled() || c.PlatformDBEnabled() || !strings.HasPrefix(cert, "/etc/letsencrypt/live/") || !strings.HasPrefix(key, "/etc/letsencrypt/live/") {
		t.Errorf("strategy-c.yml: TLS %v, PlatformDB %v, files %s %s", c.TLSEnabled(), c.PlatformDBEnabled(), cert, key)
	}

	core1 := loadSample(t, "cluster-core1.yml")
	if p := core1.Plans(); len(p) != 1 || p[0].Row() != "*.mc.example.com" || p[0].Challenge != ChallengeDNS01 {
		t.Errorf("cluster-core1.yml: plans %+v", p)
	}
	if core1.Core.ID == "" || core1.Core.IP == "" || !core1.DNS.Active || !core1.LetsEncrypt.CertRenewer || core1.Auth.AdminAccessKey == "" {
		t.Error("cluster-core1.yml: bootstrap init-ca-holder needs core.id and core.ip; the walkthrough needs dns.active, certRenewer and an admin key")
	}
}

// TestGuideEmbedsSamples checks each "<!-- sample: samples/NAME -->" marker
// is followed by a fenced block holding exactly that file, and that every
// sample is shown or linked somewhere in the guide.
func TestGuideEmbedsSamples(t *testing.T) {
	pages, err := filepath.Glob(filepath.Join(guideDir, "*.md"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no pages in %s: %v", guideDir, err)
	}
	marker := regexp.MustCompile("(?s)<!-- sample: (samples/[^ ]+) -->\n```[a-z]*\n(.*?)```\n")
	all := ""
	for _, page := range pages {
		text := readDoc(t, page)
		all += text
		for _, m := range marker.FindAllStringSubmatch(text, -1) {
			want := readDoc(t, filepath.Join(guideDir, m[1]))
			if m[2] != want {
				t.Errorf("%s: the block after the marker for %s is not that file's content", filepath.Base(page), m[1])
			}
		}
		if n, m := strings.Count(text, "<!-- sample: "), len(marker.FindAllString(text, -1)); n != m {
			t.Errorf("%s: %d sample markers, %d followed by a fenced block", filepath.Base(page), n, m)
		}
	}
	samples, _ := os.ReadDir(samplesDir)
	for _, s := range samples {
		if !strings.Contains(all, "samples/"+s.Name()) {
			t.Errorf("samples/%s is neither shown nor linked by any page of the guide", s.Name())
		}
	}
}

// TestDocLinks checks the relative links of docs/ point at files that exist.
func TestDocLinks(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)#\s]+)(?:#[^)]*)?\)`)
	err := filepath.WalkDir(filepath.Join(moduleRoot, "docs"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".md") {
			return err
		}
		for _, m := range link.FindAllStringSubmatch(readDoc(t, path), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), target)); err != nil {
				t.Errorf("%s: broken link %s", path, target)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ---- the troubleshooting page and the validator -----------------------------

// validatorReport is one v.add / v.ip / ... call of validate.go.
type validatorReport struct {
	line   int
	key    string // key pattern, "[]" for an index; "" for a forwarded path
	format string // the message format, for v.add; "" otherwise
}

// validatorReports parses validate.go and returns, for each call of a
// validator method, the key it reports under and (for add) its format.
// Keys built from the helper's own parameter are left empty: the callers'
// literal keys are reported instead.
func validatorReports(t *testing.T) []validatorReport {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "validate.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	methods := map[string]bool{}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.GenDecl:
			for _, s := range d.Specs {
				if vs, ok := s.(*ast.ValueSpec); ok && d.Tok == token.CONST {
					for i, n := range vs.Names {
						if s, ok := stringValue(vs.Values[i], nil); ok {
							consts[n.Name] = s
						}
					}
				}
			}
		case *ast.FuncDecl:
			if d.Recv != nil && len(d.Recv.List) == 1 {
				if star, ok := d.Recv.List[0].Type.(*ast.StarExpr); ok {
					if id, ok := star.X.(*ast.Ident); ok && id.Name == "validator" {
						methods[d.Name.Name] = true
					}
				}
			}
		}
	}
	if !methods["add"] {
		t.Fatal("validate.go: no (*validator).add; this test must follow the validator")
	}

	var out []validatorReport
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Body == nil {
			continue
		}
		params := map[string]bool{}
		for _, p := range fn.Type.Params.List {
			for _, n := range p.Names {
				params[n.Name] = true
			}
		}
		// Local variables: name -> expression, and range values over a
		// literal list of structs: name -> the list.
		locals := map[string]ast.Expr{}
		ranges := map[string]*ast.CompositeLit{}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.AssignStmt:
				for i, l := range n.Lhs {
					if id, ok := l.(*ast.Ident); ok && i < len(n.Rhs) {
						locals[id.Name] = n.Rhs[i]
					}
				}
			case *ast.RangeStmt:
				if id, ok := n.Value.(*ast.Ident); ok {
					if cl, ok := n.X.(*ast.CompositeLit); ok {
						ranges[id.Name] = cl
					}
				}
			}
			return true
		})
		var keysOf func(e ast.Expr) ([]string, bool)
		keysOf = func(e ast.Expr) ([]string, bool) {
			switch e := e.(type) {
			case *ast.BasicLit:
				s, ok := stringValue(e, nil)
				return []string{s}, ok
			case *ast.Ident:
				if params[e.Name] {
					return []string{""}, true // forwarded: the callers' keys count
				}
				if x, ok := locals[e.Name]; ok {
					return keysOf(x)
				}
			case *ast.BinaryExpr:
				l, ok1 := keysOf(e.X)
				r, ok2 := keysOf(e.Y)
				if !ok1 || !ok2 || e.Op != token.ADD {
					return nil, false
				}
				var out []string
				for _, a := range l {
					for _, b := range r {
						if a == "" {
							out = append(out, "")
						} else {
							out = append(out, a+b)
						}
					}
				}
				return out, true
			case *ast.CallExpr: // fmt.Sprintf("dns.staticEntries[%d]", i)
				if sel, ok := e.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Sprintf" && len(e.Args) > 0 {
					s, ok := stringValue(e.Args[0], nil)
					if !ok {
						return nil, false
					}
					if strings.HasPrefix(s, "%s") {
						return []string{""}, true // the helper's path parameter
					}
					return []string{strings.ReplaceAll(s, "[%d]", "[]")}, true
				}
			case *ast.SelectorExpr: // u.key, ranging over []struct{key, raw string}{...}
				id, ok := e.X.(*ast.Ident)
				if !ok || ranges[id.Name] == nil {
					return nil, false
				}
				cl := ranges[id.Name]
				at, ok := cl.Type.(*ast.ArrayType)
				if !ok {
					return nil, false
				}
				st, ok := at.Elt.(*ast.StructType)
				if !ok {
					return nil, false
				}
				idx, i := -1, 0
				for _, fld := range st.Fields.List {
					for _, n := range fld.Names {
						if n.Name == e.Sel.Name {
							idx = i
						}
						i++
					}
				}
				var out []string
				for _, elt := range cl.Elts {
					item, ok := elt.(*ast.CompositeLit)
					if !ok || idx < 0 || idx >= len(item.Elts) {
						return nil, false
					}
					s, ok := stringValue(item.Elts[idx], nil)
					if !ok {
						return nil, false
					}
					out = append(out, s)
				}
				return out, true
			}
			return nil, false
		}

		ast.Inspect(fn.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !methods[sel.Sel.Name] || len(call.Args) == 0 {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "v" {
				return true
			}
			line := fset.Position(call.Pos()).Line
			keys, ok := keysOf(call.Args[0])
			if !ok {
				t.Fatalf("validate.go:%d: cannot tell which key v.%s reports; teach validatorReports this form", line, sel.Sel.Name)
			}
			format := ""
			if sel.Sel.Name == "add" {
				if len(call.Args) < 2 {
					t.Fatalf("validate.go:%d: v.add without a format", line)
				}
				var ok bool
				if format, ok = stringValue(call.Args[1], consts); !ok {
					t.Fatalf("validate.go:%d: the format of v.add is not a string literal", line)
				}
				if format == "%s" && len(call.Args) == 3 {
					if s, ok := stringValue(call.Args[2], consts); ok {
						format = s // v.add("", "%s", NoHostnameError)
					}
				}
			}
			for _, k := range keys {
				out = append(out, validatorReport{line: line, key: k, format: format})
			}
			return true
		})
	}
	return out
}

// stringValue evaluates a string literal, a constant, or their sum.
func stringValue(e ast.Expr, consts map[string]string) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.Ident:
		s, ok := consts[e.Name]
		return s, ok
	case *ast.BinaryExpr:
		l, ok1 := stringValue(e.X, consts)
		r, ok2 := stringValue(e.Y, consts)
		return l + r, ok1 && ok2 && e.Op == token.ADD
	}
	return "", false
}

// fixedText is the longest run of a format without a verb.
func fixedText(format string) string {
	best := ""
	for _, part := range regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z%]`).Split(format, -1) {
		part = strings.Trim(part, " ;:,()\"")
		if len(part) > len(best) {
			best = part
		}
	}
	return best
}

func TestTroubleshootingCoversValidator(t *testing.T) {
	page := readDoc(t, filepath.Join(guideDir, "troubleshooting.md"))
	reports := validatorReports(t)
	if len(reports) < 30 {
		t.Fatalf("found only %d validator reports in validate.go; the parser is missing some", len(reports))
	}
	mentioned := func(key string) bool {
		pat := regexp.QuoteMeta(key)
		pat = strings.ReplaceAll(pat, `\[\]`, `\[[^\]]*\]`)
		return regexp.MustCompile(`(^|[^A-Za-z0-9_.])` + pat + `($|[^A-Za-z0-9_])`).MatchString(page)
	}
	seen := map[string]bool{}
	for _, r := range reports {
		if r.key != "" && !seen[r.key] {
			seen[r.key] = true
			if !mentioned(r.key) {
				t.Errorf("validate.go:%d reports problems under %s; troubleshooting.md never names that key", r.line, r.key)
			}
		}
		if r.format == "" {
			continue
		}
		if fx := fixedText(r.format); len(fx) >= 8 && !strings.Contains(page, fx) {
			t.Errorf("validate.go:%d: troubleshooting.md lacks the message %q (from %q)", r.line, fx, r.format)
		}
	}
	// The helpers' own messages (v.ip, v.port, ...), whatever key they carry.
	for _, d := range []string{"is not an IP address", "is not an IPv4 address", "is not an IPv6 address",
		"must be between 1 and 65535", "must be an https:// URL", "must name a host", "must be host:port such as"} {
		if !strings.Contains(page, d) {
			t.Errorf("troubleshooting.md lacks the validator message %q", d)
		}
	}
}

// ---- commands and flags the guide shows -------------------------------------

// cliSource is the non-test Go source of internal/cli.
func cliSource(t *testing.T) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(moduleRoot, "internal", "cli", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("internal/cli: %v", err)
	}
	var b strings.Builder
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			b.WriteString(readDoc(t, f))
		}
	}
	return b.String()
}

func TestGuideCommandsExist(t *testing.T) {
	src := cliSource(t)
	flags := map[string]bool{"h": true}
	for _, m := range regexp.MustCompile(`fs\.(?:String|Bool|Duration|Int|Var|BoolVar|StringVar|DurationVar)\((?:&\w+, )?"([a-z0-9-]+)"`).FindAllStringSubmatch(src, -1) {
		flags[m[1]] = true
	}
	if !flags["config"] || !flags["bootstrap-passphrase-file"] {
		t.Fatalf("could not read the flags of internal/cli (found %d)", len(flags))
	}
	// Subcommands: the words after "pryv-tls CMD" in the usage texts.
	usage := strings.Join(regexp.MustCompile("(?s)Usage = `(.*?)`|usage = `(.*?)`").FindAllString(src, -1), "\n")
	sub := map[string]bool{}
	for _, m := range regexp.MustCompile(`pryv-tls ([a-z0-9-]+)(?: ([a-z|-]+))?`).FindAllStringSubmatch(usage, -1) {
		sub[m[1]] = true
		for _, s := range strings.Split(m[2], "|") {
			if s != "" {
				sub[m[1]+" "+s] = true
			}
		}
	}
	withSub := map[string]bool{"config": true, "certs": true, "dns-records": true, "users": true, "bootstrap": true}

	pages, _ := filepath.Glob(filepath.Join(guideDir, "*.md"))
	// A command is "pryv-tls" at the start of a code segment or after sudo,
	// a directory, "&&", "|", ";" or "$(" — not inside a quoted message.
	cmdRE := regexp.MustCompile(`(?:^|&& |\|\| |\| |; |\$\(|sudo -u \S+ |/)pryv-tls ([a-z][a-z0-9-]*)(?: ([a-z][a-z0-9-]*))?`)
	flagRE := regexp.MustCompile(`(?:^|\s)--([a-z][a-z0-9-]*)`)
	comment := regexp.MustCompile(`(^|\s)#.*$`)
	for _, page := range pages {
		for _, seg := range codeSegments(readDoc(t, page)) {
			where := filepath.Base(page) + ":" + strconv.Itoa(seg.line)
			text := strings.TrimSpace(comment.ReplaceAllString(seg.text, ""))
			for _, loc := range cmdRE.FindAllStringSubmatchIndex(text, -1) {
				cmd := text[loc[2]:loc[3]]
				arg := ""
				if loc[4] >= 0 {
					arg = text[loc[4]:loc[5]]
				}
				if !sub[cmd] {
					t.Errorf("%s: pryv-tls %s is not a command", where, cmd)
					continue
				}
				if withSub[cmd] && arg != "" && !sub[cmd+" "+arg] {
					t.Errorf("%s: pryv-tls %s %s is not a subcommand", where, cmd, arg)
				}
				rest := text[loc[0]:]
				for _, stop := range []string{" && ", " | ", "; ", " >"} {
					if j := strings.Index(rest, stop); j >= 0 {
						rest = rest[:j]
					}
				}
				for _, m := range flagRE.FindAllStringSubmatch(rest, -1) {
					if !flags[m[1]] {
						t.Errorf("%s: --%s is not a flag of pryv-tls", where, m[1])
					}
				}
			}
		}
	}
}

type codeSegment struct {
	line int
	text string
}

// codeSegments returns the lines of fenced code blocks and the inline code
// spans of the other lines: where a page shows commands.
func codeSegments(md string) []codeSegment {
	var out []codeSegment
	fenced := false
	inline := regexp.MustCompile("`([^`]+)`")
	for i, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			out = append(out, codeSegment{i + 1, line})
			continue
		}
		for _, m := range inline.FindAllStringSubmatch(line, -1) {
			out = append(out, codeSegment{i + 1, m[1]})
		}
	}
	return out
}

// TestTroubleshootingCoversLogs checks every error and warning the code logs
// (slog's Error/Warn with a constant message) is on the troubleshooting page.
func TestTroubleshootingCoversLogs(t *testing.T) {
	page := readDoc(t, filepath.Join(guideDir, "troubleshooting.md"))
	// Not operator-facing: test servers, the demo.
	skip := []string{"devpki", filepath.Join("acme", "pebbledev"), filepath.Join("acme", "acmetest"), filepath.Join("cli", "demo.go"), filepath.Join("cli", "demo_acme.go")}
	logRE := regexp.MustCompile(`\.(?:Error|Warn)\("([^"]+)"`)
	root := filepath.Join(moduleRoot, "internal")
	n := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if slices.ContainsFunc(skip, func(s string) bool { return rel == s || strings.HasPrefix(rel, s+string(filepath.Separator)) }) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		for _, m := range logRE.FindAllStringSubmatch(readDoc(t, path), -1) {
			n++
			if !strings.Contains(page, m[1]) {
				t.Errorf("internal/%s logs %q; add it to docs/operator-guide/troubleshooting.md with its meaning and fix", rel, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 20 {
		t.Fatalf("found only %d log messages under internal/; the scan is broken", n)
	}
}
