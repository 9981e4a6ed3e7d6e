package front

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// coreUsername is open-pryv.io's username rule (USERNAME_REGEXP_STR in
// components/api-server/src/schema/helpers.ts), applied lower-cased.
var coreUsername = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{3,58}[a-z0-9]$`)

// hfsResolve is the path the core's HFS serves for a request: its
// subdomainToPath middleware takes Host's first "."-separated chunk, and if
// that looks like a username not already at the path's root, prefixes it.
func hfsResolve(host, path string) string {
	first := strings.Split(host, ".")[0]
	if !coreUsername.MatchString(strings.ToLower(first)) || strings.HasPrefix(path, "/"+first) {
		return path
	}
	return "/" + first + path
}

// hfsSeen is what the HFS stand-in reports.
type hfsSeen struct {
	Host     string   `json:"host"`
	XFHost   []string `json:"xfHost"`
	XFProto  []string `json:"xfProto"`
	Resolved string   `json:"resolved"` // the path HFS would serve
	Method   string   `json:"method"`
	BodySHA  string   `json:"bodySHA256"`
}

func newHFSStandIn(tb testing.TB) string {
	tb.Helper()
	srv := newUpstream(tb, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.New()
		_, _ = io.Copy(sum, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(hfsSeen{Host: r.Host, XFHost: r.Header.Values("X-Forwarded-Host"),
			XFProto: r.Header.Values("X-Forwarded-Proto"), Resolved: hfsResolve(r.Host, r.URL.Path),
			Method: r.Method, BodySHA: hex.EncodeToString(sum.Sum(nil))})
	}))
	return srv.URL
}

// send does one request to the front with an explicit Host (the URL names
// the certificate's domain, so TLS verifies whatever Host is sent) and
// decodes the JSON answer into into.
func send(tb testing.TB, c *http.Client, base, method, host, path string, body []byte, hdr http.Header, into any) int {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	req.Host = host
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s%s: %v", method, host, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if into != nil {
		if err := json.Unmarshal(raw, into); err != nil {
			tb.Fatalf("%s %s%s: %d %q: %v", method, host, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

// TestHFSHost: HFS gets its own host:port as Host (the core's install docs
// require it) and the client's in X-Forwarded-Host, for a dnsLess host whose
// first label looks like a username and for a user's own subdomain; the API
// keeps the client's Host.
func TestHFSHost(t *testing.T) {
	hfsURL := newHFSStandIn(t)
	hfsHost := mustURL(t, hfsURL).Host
	api := newEchoUpstream(t, "api")
	tf := startFront(t, frontSetup{API: api.URL, HFS: hfsURL, GetCertificate: getPKI(t).store.GetCertificate})
	body := bytes.Repeat([]byte(`{"format":"flatJSON","fields":["deltaTime","value"],"points":[[0,1]]}`), 300)
	bodySum := sha256.Sum256(body)
	spoof := http.Header{"X-Forwarded-Host": {"evil.example"}, "X-Forwarded-Proto": {"http"}}
	cases := []struct {
		name, host, path string
		body             []byte // nil: GET (the proxy's own transport); else POST (the standard one)
		hdr              http.Header
	}{
		{"dnsLess GET", "your-domain.com", "/alice/events/ckev1/series", nil, nil},
		{"dnsLess POST", "your-domain.com", "/alice/events/ckev1/series", body, nil},
		{"dnsLess batch", "your-domain.com", "/alice/series/batch", body, nil},
		{"dnsLess with port", "your-domain.com:443", "/alice/events/ckev1/series", nil, nil},
		{"subdomain GET", testHost, "/alice/events/ckev1/series", nil, nil},
		{"subdomain POST", testHost, "/alice/series/batch", body, nil},
		{"spoofed X-Forwarded-Host", "your-domain.com", "/alice/events/ckev1/series", body, spoof},
	}
	for _, h2 := range []bool{true, false} {
		t.Run(protoName(h2), func(t *testing.T) {
			c := httpsClient(t, tf.addr, h2, nil)
			for _, tc := range cases {
				method := http.MethodGet
				if tc.body != nil {
					method = http.MethodPost
				}
				var got hfsSeen
				if code := send(t, c, "https://"+testDomain, method, tc.host, tc.path, tc.body, tc.hdr, &got); code != 200 {
					t.Fatalf("%s: status %d", tc.name, code)
				}
				if got.Host != hfsHost || !slices.Equal(got.XFHost, []string{tc.host}) || !slices.Equal(got.XFProto, []string{"https"}) {
					t.Errorf("%s: HFS saw Host %q X-Forwarded-Host %q X-Forwarded-Proto %q; want %q [%s] [https]",
						tc.name, got.Host, got.XFHost, got.XFProto, hfsHost, tc.host)
				}
				if got.Resolved != tc.path {
					t.Errorf("%s: HFS would serve %q, want %q", tc.name, got.Resolved, tc.path)
				}
				if tc.body != nil && (got.Method != http.MethodPost || got.BodySHA != hex.EncodeToString(bodySum[:])) {
					t.Errorf("%s: HFS got %s with body sha256 %s", tc.name, got.Method, got.BodySHA)
				}
			}
			// The API keeps the client's Host, with X-Forwarded-Host the same
			// (the core's OAuth2 DPoP check reads it), spoofed or not.
			for _, hdr := range []http.Header{nil, spoof} {
				var e echoReply
				send(t, c, "https://"+testDomain, http.MethodGet, "your-domain.com", "/alice/events", nil, hdr, &e)
				if e.Upstream != "api" || e.Host != "your-domain.com" || !slices.Equal(e.XFHost, []string{"your-domain.com"}) {
					t.Errorf("API (client headers %v) saw %s Host %q X-Forwarded-Host %q; want your-domain.com for both", hdr, e.Upstream, e.Host, e.XFHost)
				}
			}
		})
	}
}

// TestHFSHostStrategyB: behind the operator's TLS proxy the front keeps the
// proxy's X-Forwarded-Host (decision 0002); HFS still gets its own Host.
func TestHFSHostStrategyB(t *testing.T) {
	hfsURL := newHFSStandIn(t)
	hfsHost := mustURL(t, hfsURL).Host
	api := newEchoUpstream(t, "api")
	tf := startFront(t, frontSetup{API: api.URL, HFS: hfsURL})
	c := &http.Client{Timeout: 10 * time.Second}
	for _, tc := range []struct {
		name   string
		hdr    http.Header
		wantXF string
	}{
		{"proxy sets it", http.Header{"X-Forwarded-Host": {"your-domain.com"}, "X-Forwarded-Proto": {"https"}}, "your-domain.com"},
		{"proxy does not", nil, "your-domain.com:8080"},
	} {
		var got hfsSeen
		if code := send(t, c, "http://"+tf.addr, http.MethodPost, "your-domain.com:8080", "/alice/series/batch", []byte("{}"), tc.hdr, &got); code != 200 {
			t.Fatalf("%s: status %d", tc.name, code)
		}
		if got.Host != hfsHost || !slices.Equal(got.XFHost, []string{tc.wantXF}) || got.Resolved != "/alice/series/batch" {
			t.Errorf("%s: HFS saw Host %q X-Forwarded-Host %q resolved %q; want %q [%s] /alice/series/batch",
				tc.name, got.Host, got.XFHost, got.Resolved, hfsHost, tc.wantXF)
		}
		var e echoReply
		send(t, c, "http://"+tf.addr, http.MethodGet, "your-domain.com:8080", "/alice/events", nil, tc.hdr, &e)
		if e.Host != "your-domain.com:8080" || !slices.Equal(e.XFHost, []string{tc.wantXF}) {
			t.Errorf("%s: API saw Host %q X-Forwarded-Host %q; want your-domain.com:8080 [%s]", tc.name, e.Host, e.XFHost, tc.wantXF)
		}
	}
}

// TestHFSHostWebSocket: an upgrade on an HFS path (the standard transport's
// upgrade path) carries HFS's Host too.
func TestHFSHostWebSocket(t *testing.T) {
	ws, seen := newWSUpstream(t)
	api := newEchoUpstream(t, "api")
	tf := startFront(t, frontSetup{API: api.URL, HFS: ws.URL, GetCertificate: getPKI(t).store.GetCertificate})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{RootCAs: getPKI(t).pool, ServerName: testDomain, NextProtos: []string{"http/1.1"}}}
	conn, err := d.DialContext(ctx, "tcp", tf.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = io.WriteString(conn, "GET /alice/events/ckev1/series HTTP/1.1\r\nHost: your-domain.com\r\n"+
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"+
		"Sec-WebSocket-Version: 13\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-seen:
		if want := mustURL(t, ws.URL).Host; s.host != want {
			t.Errorf("HFS upgrade Host %q, want %q", s.host, want)
		}
	case <-ctx.Done():
		t.Fatal("HFS never saw the upgrade")
	}
}

// TestCoreAdminRoutes: under /system/admin/ the front answers only the
// certificate paths it is given exactly; the core's own admin routes (users,
// cores, the join flow's cores/ack, and any variant of the certificate
// paths) reach the API with their bodies. pryv-tls's own endpoints live
// under /system/pryv-tls/.
func TestCoreAdminRoutes(t *testing.T) {
	api := newEchoUpstream(t, "api")
	hfs := newEchoUpstream(t, "hfs")
	local := map[string]http.Handler{}
	for _, p := range benchLocalPaths {
		local[p] = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(echoReply{Upstream: "local:" + p, Method: r.Method, Path: r.URL.Path})
		})
	}
	tf := startFront(t, frontSetup{API: api.URL, HFS: hfs.URL, GetCertificate: getPKI(t).store.GetCertificate, Local: local})
	ack := []byte(`{"token":"one-time-join-token","coreId":"core2","ip":"192.0.2.2"}`)
	cases := []struct {
		method, path string
		body         []byte
		want         string // "api" or the local key that answers
	}{
		{"GET", "/system/admin/users", nil, "api"},
		{"GET", "/system/admin/cores", nil, "api"},
		{"POST", "/system/admin/cores/ack", ack, "api"},
		{"GET", "/system/admin/mail/templates", nil, "api"},
		{"GET", "/system/admin/certs/", nil, "api"},
		{"GET", "/system/admin/certs/x", nil, "api"},
		{"POST", "/system/admin/certs/force-renew/", nil, "api"},
		{"GET", "/system/admin/users/alice", nil, "api"},
		{"GET", "/system/admin/certs", nil, "local:/system/admin/certs"},
		{"POST", "/system/admin/certs/force-renew", []byte("{}"), "local:/system/admin/certs/force-renew"},
		{"GET", "/system/pryv-tls/admin/users/alice", nil, "local:/system/pryv-tls/admin/"},
		{"GET", "/system/pryv-tls/admin/certs", nil, "local:/system/pryv-tls/admin/"},
		{"GET", "/system/pryv-tls/healthz", nil, "local:/system/pryv-tls/healthz"},
		{"GET", "/system/pryv-tls/readyz", nil, "local:/system/pryv-tls/readyz"},
	}
	for _, h2 := range []bool{true, false} {
		t.Run(protoName(h2), func(t *testing.T) {
			c := httpsClient(t, tf.addr, h2, nil)
			for _, tc := range cases {
				var e echoReply
				if code := send(t, c, "https://"+testHost, tc.method, testHost, tc.path, tc.body, nil, &e); code != 200 {
					t.Fatalf("%s %s: status %d", tc.method, tc.path, code)
				}
				if e.Upstream != tc.want || e.Method != tc.method || e.Path != tc.path {
					t.Errorf("%s %s answered by %s (%s %s), want %s", tc.method, tc.path, e.Upstream, e.Method, e.Path, tc.want)
				}
				if tc.want == "api" && tc.body != nil {
					sum := sha256.Sum256(tc.body)
					if e.BodySHA256 != hex.EncodeToString(sum[:]) || e.BodyLen != int64(len(tc.body)) {
						t.Errorf("%s %s: the core got %d bytes sha256 %s, want %d bytes", tc.method, tc.path, e.BodyLen, e.BodySHA256, len(tc.body))
					}
				}
			}
		})
	}
}

// TestLocalPrefixOnlyUnderOwnRoot: a prefix elsewhere would take a subtree
// of the core's paths (and the front tests prefixes only under its root).
func TestLocalPrefixOnlyUnderOwnRoot(t *testing.T) {
	nop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, c := range []struct {
		key string
		ok  bool
	}{
		{"/system/pryv-tls/admin/", true},
		{"/system/admin/certs", true}, // exact: fine anywhere
		{"/system/admin/", false},
		{"/system/admin/users/", false},
		{"/", false},
	} {
		_, err := New(Options{Addr: "127.0.0.1:0", API: mustURL(t, "http://127.0.0.1:1"), HFS: mustURL(t, "http://127.0.0.1:2"),
			Local: map[string]http.Handler{c.key: nop}})
		if (err == nil) != c.ok {
			t.Errorf("Local key %q: error %v, want ok=%v", c.key, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), c.key) {
			t.Errorf("Local key %q: the error does not name it: %v", c.key, err)
		}
	}
}

// TestHostReadAsUser agrees with the core's username rule on the hosts an
// operator might give upstreams.hfs.
func TestHostReadAsUser(t *testing.T) {
	for _, host := range []string{"127.0.0.1:4000", "127.0.0.1", "[::1]:4000", "localhost:4000", "localhost",
		"hfs-server", "hfs-server:4000", "hfs", "hfs.internal:4000", "hfsserver.internal:4000", "HFS-Node.lan",
		"10.0.0.7:4000", "-abcd.lan", "abcd-.lan", "abcde", "a-b-c", strings.Repeat("a", 60), strings.Repeat("a", 61)} {
		first := strings.Split(host, ".")[0]
		want := coreUsername.MatchString(strings.ToLower(first))
		if got := hostReadAsUser(host); got != want {
			t.Errorf("hostReadAsUser(%q) = %v, the core's rule says %v", host, got, want)
		}
	}
}
