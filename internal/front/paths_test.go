package front

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestNormalPath(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		// RFC 3986 §5.2.4's own examples, and §5.4's abnormal ones.
		{"/a/b/c/./../../g", "/a/g"},
		{"/b/c/d;p/../../g", "/b/g"}, // "mid/content=5/../6" rooted
		{"/../g", "/g"},
		{"/../../g", "/g"},
		{"/./g", "/g"},
		{"/g.", "/g."},
		{"/.g", "/.g"},
		{"/g..", "/g.."},
		{"/..g", "/..g"},
		{"/b/c/./../g", "/b/g"},
		{"/b/c/./g/.", "/b/c/g/"},
		{"/b/c/g/./h", "/b/c/g/h"},
		{"/b/c/g/../h", "/b/c/h"},
		{"/b/c/..", "/b/"},
		{"/b/c/.", "/b/c/"},
		{"/..", "/"},
		{"/.", "/"},
		// Runs of slashes are merged, as nginx and Caddy route.
		{"//alice//events/e1//series", "/alice/events/e1/series"},
		{"/alice/events/e1/series//", "/alice/events/e1/series/"},
		// Already normal: returned as is.
		{"/", "/"},
		{"/alice/events/e1/series/", "/alice/events/e1/series/"},
		{"/alice/events/e1/series", "/alice/events/e1/series"},
		{"/alice/.../x", "/alice/.../x"},
		{"*", "*"},
		{"", ""},
	} {
		if got := normalPath(c.in); got != c.want {
			t.Errorf("normalPath(%q) = %q, want %q", c.in, got, c.want)
		}
		if needsCleaning(c.in) != (c.in != c.want) {
			t.Errorf("needsCleaning(%q) = %v, but normalPath changes it: %v", c.in, needsCleaning(c.in), c.in != c.want)
		}
	}
}

// removeDotSegments is RFC 3986 §5.2.4's algorithm as written (input buffer,
// output buffer, rules A to E), after merging slashes: the reference that
// FuzzNormalPath holds normalPath to.
func removeDotSegments(in string) string {
	for strings.Contains(in, "//") {
		in = strings.ReplaceAll(in, "//", "/")
	}
	var out strings.Builder
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../") || in == "/..":
			in = "/" + strings.TrimPrefix(in[3:], "/")
			o := out.String()
			if i := strings.LastIndexByte(o, '/'); i >= 0 {
				o = o[:i]
			} else {
				o = ""
			}
			out.Reset()
			out.WriteString(o)
		case in == "." || in == "..":
			in = ""
		default:
			j := strings.IndexByte(in[1:], '/')
			if j < 0 {
				out.WriteString(in)
				in = ""
			} else {
				out.WriteString(in[:j+1])
				in = in[j+1:]
			}
		}
	}
	return out.String()
}

func FuzzNormalPath(f *testing.F) {
	for _, s := range []string{"/a/b/c/./../../g", "/alice/x/../events/e1/series", "//a//b/", "/..", "/a/.", "/a/b/..", "/..."} {
		f.Add(s)
	}
	for _, c := range routingCases {
		f.Add(c.path)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if p == "" || p[0] != '/' {
			return
		}
		if got, want := normalPath(p), removeDotSegments(p); got != want {
			t.Errorf("normalPath(%q) = %q, RFC 3986 §5.2.4 (slashes merged) gives %q", p, got, want)
		}
	})
}

func TestNormalPathDoesNotAllocate(t *testing.T) {
	for _, c := range routingCases {
		if n := testing.AllocsPerRun(100, func() { sinkBool = needsCleaning(c.path) }); n != 0 {
			t.Errorf("needsCleaning(%q) allocates %.0f times", c.path, n)
		}
	}
}

// normalisedRoutes are the paths where routing on the path as received and on
// the normalised one differ, and their neighbours: what the front routes
// them to and the path the upstream gets. nginx and Caddy (the samples) route
// every one the same way (e2e TestRoutesAsNginxAndCaddy drives all three).
var normalisedRoutes = []struct {
	target   string // sent as is
	upstream string
	path     string // the request URI the upstream gets
}{
	{"/alice/x/../events/e1/series", "hfs", "/alice/events/e1/series"},
	{"/alice/./events/e1/series", "hfs", "/alice/events/e1/series"},
	{"/alice/x/%2e%2e/events/e1/series", "hfs", "/alice/events/e1/series"},
	{"/alice/x/%2E%2E/events/e1/series", "hfs", "/alice/events/e1/series"},
	{"/alice/%2e/events/e1/series", "hfs", "/alice/events/e1/series"},
	{"/alice/x/../series/batch", "hfs", "/alice/series/batch"},
	{"/alice/events/e1/series/.", "hfs", "/alice/events/e1/series/"},
	{"/alice/events/e1/series/../../e2", "api", "/alice/events/e2"},
	{"/alice/events/e1/series/..", "api", "/alice/events/e1/"},
	{"/alice/series/batch/../../events", "api", "/alice/events"},
	{"/alice/events/e1/series/..%2F..%2Fe2", "api", "/alice/events/e2"},
	// The subdomain form (alice.your-domain.com/events/...) has no user
	// segment: a leading dot segment is not one either.
	{"/./events/e1/series", "api", "/events/e1/series"},
	{"/../events/e1/series", "api", "/events/e1/series"},
	{"/%2e%2e/events/e1/series", "api", "/events/e1/series"},
	{"/events/x/../e1/series", "api", "/events/e1/series"},
	// Trailing and repeated slashes.
	{"/alice/events/e1/series/", "hfs", "/alice/events/e1/series/"},
	{"//alice/events/e1/series", "hfs", "/alice/events/e1/series"},
	{"/alice//events/e1/series", "hfs", "/alice/events/e1/series"},
	{"/alice/events//e1/series", "hfs", "/alice/events/e1/series"},
	{"/alice/events/e1//series", "hfs", "/alice/events/e1/series"},
	// An encoded slash is a separator for the route, so for the upstream too.
	{"/u%2Fv/events/e1/series", "api", "/u/v/events/e1/series"},
	{"/alice%2Fevents/e1/series", "hfs", "/alice/events/e1/series"},
	{"/alice/events/e1%2Fx/series", "api", "/alice/events/e1/x/series"},
	// Other escapes are not touched; the query is never cleaned.
	{"/alice/ev%65nts/e1/series", "hfs", "/alice/ev%65nts/e1/series"},
	{"/alice/events/e1/series?x=/../", "hfs", "/alice/events/e1/series?x=/../"},
	{"/alice/x/..", "api", "/alice/"},
}

// TestRoutesOnNormalisedPath sends each path as is, over HTTP/2 and
// HTTP/1.1, and checks the upstream it reaches and the path it gets.
func TestRoutesOnNormalisedPath(t *testing.T) {
	api, hfs := newEchoUpstream(t, "api"), newEchoUpstream(t, "hfs")
	certsHit := 0
	tf := startFront(t, frontSetup{API: api.URL, HFS: hfs.URL, GetCertificate: getPKI(t).store.GetCertificate,
		Local: map[string]http.Handler{"/system/admin/certs": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			certsHit++
			_, _ = io.WriteString(w, "local")
		})}})
	for _, h2 := range []bool{true, false} {
		t.Run(protoName(h2), func(t *testing.T) {
			c := httpsClient(t, tf.addr, h2, nil)
			for _, tc := range normalisedRoutes {
				_, e := doEcho(t, c, http.MethodGet, "https://"+testHost+tc.target, nil, nil)
				if e.Upstream != tc.upstream || e.RequestURI != tc.path {
					t.Errorf("%s: reached %s with %q, want %s with %q", tc.target, e.Upstream, e.RequestURI, tc.upstream, tc.path)
				}
			}
			// A local path is recognised on the normalised path too.
			before := certsHit
			resp, err := c.Get("https://" + testHost + "/system/x/../admin/./certs")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "local" || certsHit != before+1 {
				t.Errorf("/system/x/../admin/./certs: got %q, want the local handler", b)
			}
		})
	}
}
