package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/devpki"
)

// seenByUpstream is what the core stand-ins answer: who answered and what
// reached them.
type seenByUpstream struct {
	Upstream string   `json:"upstream"`
	Method   string   `json:"method"`
	Path     string   `json:"path"`
	Resolved string   `json:"resolved,omitempty"` // HFS: the path it would serve
	Host     string   `json:"host"`
	XFHost   []string `json:"xfHost"`
	BodySHA  string   `json:"bodySHA256"`
	BodyLen  int      `json:"bodyLen"`
	// The core's own answers to its admin routes (open-pryv.io
	// methods/system.ts shapes).
	Users []map[string]any `json:"users,omitempty"`
	Cores []map[string]any `json:"cores,omitempty"`
}

// coreUsernameRule is open-pryv.io's USERNAME_REGEXP_STR.
var coreUsernameRule = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{3,58}[a-z0-9]$`)

// coreStandIn serves what the core's api-server (name "api") or HFS ("hfs")
// would for the requests this test sends, with the core's rules: /system/*
// needs the admin key except POST /system/admin/cores/ack (answered 404
// unknown-resource otherwise, as routes/system.ts does), and HFS prefixes
// the first label of Host to the path when it looks like a username
// (middleware subdomainToPath). It remembers every path it was sent.
type coreStandIn struct {
	name, adminKey string
	mu             sync.Mutex
	paths          []string
}

func (s *coreStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.paths = append(s.paths, r.Method+" "+r.URL.Path)
	s.mu.Unlock()
	sum := sha256.New()
	n, _ := io.Copy(sum, r.Body)
	w.Header().Set("Content-Type", "application/json")
	if s.name == "api" && strings.HasPrefix(r.URL.Path, "/system/") &&
		!(r.Method == http.MethodPost && r.URL.Path == "/system/admin/cores/ack") && r.Header.Get("Authorization") != s.adminKey {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":{"id":"unknown-resource","message":"Unknown resource"}}`)
		return
	}
	seen := seenByUpstream{Upstream: s.name, Method: r.Method, Path: r.URL.Path, Host: r.Host,
		XFHost: r.Header.Values("X-Forwarded-Host"), BodySHA: hex.EncodeToString(sum.Sum(nil)), BodyLen: int(n)}
	switch {
	case s.name == "hfs":
		seen.Resolved = r.URL.Path
		first := strings.Split(r.Host, ".")[0]
		if coreUsernameRule.MatchString(strings.ToLower(first)) && !strings.HasPrefix(r.URL.Path, "/"+first) {
			seen.Resolved = "/" + first + r.URL.Path
		}
	case r.URL.Path == "/system/admin/users":
		seen.Users = []map[string]any{{"username": "alice", "id": "cuser0000alice", "email": "alice@example.com", "language": "en"}}
	case r.URL.Path == "/system/admin/cores":
		seen.Cores = []map[string]any{{"id": "single", "url": "https://your-domain.com", "hosting": nil, "available": true, "userCount": 1}}
	}
	_ = json.NewEncoder(w).Encode(seen)
}

func (s *coreStandIn) sent(methodPath string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.paths {
		if p == methodPath {
			return true
		}
	}
	return false
}

func serveStandIn(t *testing.T, s *coreStandIn) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// TestCoreRoutes runs the binary in front of stand-ins for a real
// open-pryv.io core's API and HFS and checks with curl that the core keeps
// its /system/admin/ routes, pryv-tls answers its own, and HFS gets the Host
// it needs.
func TestCoreRoutes(t *testing.T) {
	curl := needTool(t, "curl")
	dir := t.TempDir()
	p := newPKI(t, dir)
	const adminKey = "e2e-admin-key" // strategyA's; the core reads the same auth.adminAccessKey
	api := &coreStandIn{name: "api", adminKey: adminKey}
	hfs := &coreStandIn{name: "hfs"}
	apiAddr, hfsAddr := serveStandIn(t, api), serveStandIn(t, hfs)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := strategyA(t, dir, port, filepath.Join(dir, "no-hook.sh"))
	upstreams := filepath.Join(dir, "upstreams.yml")
	writeFile(t, upstreams, yamlConfig("upstreams:", "  api: http://"+apiAddr, "  hfs: http://"+hfsAddr), 0o644)
	cfg = append(cfg, "--config", upstreams)
	startCoreIn(t, dir, addr, cfg...)

	leaf := p.issue(t, devpki.Leaf{Names: []string{host, "*." + host}})
	writeFile(t, filepath.Join(dir, "in", "c.pem"), leaf.FullChain, 0o644)
	writeFile(t, filepath.Join(dir, "in", "k.pem"), leaf.KeyPEM, 0o600)
	if out, code := cli(t, dir, append([]string{"certs", "import", "--cert", "in/c.pem", "--key", "in/k.pem"}, cfg...)...); code != 0 {
		t.Fatalf("certs import: exit %d\n%s", code, out)
	}
	waitSerial(t, addr, host, p.roots, serial(leaf))

	// do sends one request with curl and returns the status and body.
	do := func(proto, method, name, path, body string, headers ...string) (int, string) {
		t.Helper()
		args := []string{"-sS", "--max-time", "10", proto, "--cacert", p.caPEM, "-X", method,
			"--resolve", fmt.Sprintf("%s:%d:127.0.0.1", name, port), "-w", "\n%{http_code}"}
		if body != "" {
			args = append(args, "-H", "Content-Type: application/json", "--data-binary", body)
		}
		for _, h := range headers {
			args = append(args, "-H", h)
		}
		out, err := run(t, 15*time.Second, curl, append(args, fmt.Sprintf("https://%s:%d%s", name, port, path))...)
		if err != nil {
			t.Fatalf("curl %s %s%s: %v\n%s", method, name, path, err, out)
		}
		i := strings.LastIndexByte(out, '\n')
		var code int
		if _, err := fmt.Sscan(out[i+1:], &code); err != nil {
			t.Fatalf("curl %s %s%s: no status code at the end of its output: %v\n%s", method, name, path, err, out)
		}
		return code, out[:i]
	}
	key := "Authorization: " + adminKey
	decode := func(what, body string) seenByUpstream {
		t.Helper()
		var s seenByUpstream
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatalf("%s: %q: %v", what, body, err)
		}
		return s
	}

	t.Run("the core keeps its admin routes", func(t *testing.T) {
		ack := `{"token":"one-time-join-token","coreId":"core2","url":"https://core2.example.com","ip":"192.0.2.2"}`
		ackSum := sha256.Sum256([]byte(ack))
		for _, proto := range []string{"--http1.1", "--http2"} {
			code, body := do(proto, "GET", host, "/system/admin/users", "", key)
			if s := decode("users", body); code != 200 || s.Upstream != "api" || len(s.Users) != 1 || s.Users[0]["email"] != "alice@example.com" {
				t.Errorf("%s GET /system/admin/users: %d %s; want the core's answer", proto, code, body)
			}
			code, body = do(proto, "GET", host, "/system/admin/cores", "", key)
			if s := decode("cores", body); code != 200 || s.Upstream != "api" || len(s.Cores) != 1 || s.Cores[0]["id"] != "single" {
				t.Errorf("%s GET /system/admin/cores: %d %s; want the core's answer", proto, code, body)
			}
			// The join flow's ack carries a one-time token, not the admin key.
			code, body = do(proto, "POST", host, "/system/admin/cores/ack", ack)
			s := decode("ack", body)
			if code != 200 || s.Upstream != "api" || s.BodyLen != len(ack) || s.BodySHA != hex.EncodeToString(ackSum[:]) {
				t.Errorf("%s POST /system/admin/cores/ack: %d %s; want the core to get the body intact", proto, code, body)
			}
			// The core's refusal, not pryv-tls's, for its routes without a key.
			code, body = do(proto, "GET", host, "/system/admin/users", "")
			if code != 404 || !strings.Contains(body, "unknown-resource") {
				t.Errorf("%s GET /system/admin/users without a key: %d %s; want the core's 404", proto, code, body)
			}
			// Variants of the certificate paths are the core's too.
			code, body = do(proto, "GET", host, "/system/admin/certs/", "", key)
			if s := decode("certs/", body); code != 200 || s.Upstream != "api" {
				t.Errorf("%s GET /system/admin/certs/: %d %s; want the core", proto, code, body)
			}
		}
	})

	t.Run("pryv-tls answers its own", func(t *testing.T) {
		for _, path := range []string{"/system/admin/certs", "/system/pryv-tls/admin/certs"} {
			code, body := do("--http2", "GET", host, path, "", key)
			var res struct {
				Certs []struct {
					Hostname, Source string
				} `json:"certs"`
			}
			if err := json.Unmarshal([]byte(body), &res); err != nil || code != 200 || len(res.Certs) != 1 || res.Certs[0].Hostname != host || res.Certs[0].Source == "" {
				t.Errorf("GET %s: %d %s; want pryv-tls's listing", path, code, body)
			}
		}
		for _, path := range []string{"/system/admin/certs/force-renew", "/system/pryv-tls/admin/certs/force-renew"} {
			// A hostname outside the topology: the renewer refuses at once,
			// and the answer is pryv-tls's.
			code, body := do("--http1.1", "POST", host, path, `{"hostname":"not-ours.example"}`, key)
			if code != 400 || !strings.Contains(body, `"ok":false`) || !strings.Contains(body, "not-ours.example") {
				t.Errorf("POST %s: %d %s; want pryv-tls's refusal", path, code, body)
			}
			if api.sent("POST " + path) {
				t.Errorf("POST %s reached the core", path)
			}
		}
		if api.sent("GET /system/admin/certs") {
			t.Error("GET /system/admin/certs reached the core")
		}

		code, body := do("--http2", "PUT", host, "/system/pryv-tls/admin/users/alice", `{"core":"core1"}`, key)
		if code != 200 || !strings.Contains(body, `"core":"core1"`) {
			t.Fatalf("PUT /system/pryv-tls/admin/users/alice: %d %s", code, body)
		}
		code, body = do("--http2", "GET", host, "/system/pryv-tls/admin/users/alice", "", key)
		if code != 200 || !strings.Contains(body, `{"username":"alice","core":"core1"}`) {
			t.Errorf("GET /system/pryv-tls/admin/users/alice: %d %s", code, body)
		}
		for _, c := range []struct {
			hdr  []string
			code int
		}{{nil, 401}, {[]string{"Authorization: wrong"}, 403}} {
			code, body := do("--http1.1", "GET", host, "/system/pryv-tls/admin/users/alice", "", c.hdr...)
			if code != c.code || strings.Contains(body, "core1") {
				t.Errorf("GET /system/pryv-tls/admin/users/alice with %v: %d %s, want %d and no row", c.hdr, code, body, c.code)
			}
		}
		code, body = do("--http2", "GET", host, "/system/pryv-tls/admin/cores", "", key)
		if code != 200 || !strings.Contains(body, `"cores":`) {
			t.Errorf("GET /system/pryv-tls/admin/cores: %d %s", code, body)
		}
		// The control socket keeps its paths: the CLI reads the same row.
		if out, code := cli(t, dir, append([]string{"users", "get"}, append(cfg, "alice")...)...); code != 0 || !strings.Contains(out, "core1") {
			t.Errorf("users get alice (control socket): exit %d\n%s", code, out)
		}
		if api.sent("GET /system/pryv-tls/admin/users/alice") {
			t.Error("pryv-tls's own endpoint reached the core")
		}
	})

	t.Run("HFS gets its own Host", func(t *testing.T) {
		for _, proto := range []string{"--http1.1", "--http2"} {
			for _, tc := range []struct {
				name, path, body string
				headers          []string
			}{
				{host, "/alice/events/ckev1/series", "", nil}, // dnsLess: "your-domain" would read as a username
				{host, "/alice/series/batch", `{"format":"seriesBatch","data":[]}`, nil},
				{"alice." + host, "/alice/events/ckev1/series", `{"format":"flatJSON","fields":["deltaTime","value"],"points":[[0,1]]}`, nil},
				{host, "/alice/events/ckev1/series", "", []string{"X-Forwarded-Host: evil.example"}}, // not trusted at the edge
			} {
				method := "GET"
				if tc.body != "" {
					method = "POST"
				}
				original := fmt.Sprintf("%s:%d", tc.name, port)
				code, body := do(proto, method, tc.name, tc.path, tc.body, append(tc.headers, "Authorization: alice-token")...)
				s := decode("hfs", body)
				if code != 200 || s.Upstream != "hfs" || s.Host != hfsAddr || len(s.XFHost) != 1 || s.XFHost[0] != original {
					t.Errorf("%s %s %s%s %v: %d; HFS saw Host %q X-Forwarded-Host %q, want %q and [%s]",
						proto, method, tc.name, tc.path, tc.headers, code, s.Host, s.XFHost, hfsAddr, original)
				}
				if s.Resolved != tc.path || s.BodyLen != len(tc.body) {
					t.Errorf("%s %s%s: HFS would serve %q with %d bytes, want %q with %d", proto, tc.name, tc.path, s.Resolved, s.BodyLen, tc.path, len(tc.body))
				}
			}
			// The API keeps the client's Host.
			code, body := do(proto, "GET", "alice."+host, "/alice/events", "", "X-Forwarded-Host: evil.example")
			original := fmt.Sprintf("alice.%s:%d", host, port)
			if s := decode("api", body); code != 200 || s.Upstream != "api" || s.Host != original || len(s.XFHost) != 1 || s.XFHost[0] != original {
				t.Errorf("%s GET /alice/events: %d; API saw Host %q X-Forwarded-Host %q, want %s for both", proto, code, s.Host, s.XFHost, original)
			}
		}
	})
}
