package docs_test

import (
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/pryv/pryv-tls/internal/config"
	"go.yaml.in/yaml/v3"
)

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
	hfsPort, apiPort := upstreamPort(t, config.DefaultUpstreamHFS), upstreamPort(t, config.DefaultUpstreamAPI)
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
	hfsPort, apiPort := upstreamPort(t, config.DefaultUpstreamHFS), upstreamPort(t, config.DefaultUpstreamAPI)
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
