package front

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// hfsRoutes are the reference's HFS routes, as the nginx config has them.
var hfsRoutes = []*regexp.Regexp{
	regexp.MustCompile(`^/[^/]+/events/[^/]+/series`),
	regexp.MustCompile(`^/[^/]+/series/batch`),
}

func refIsHFS(path string) bool {
	for _, re := range hfsRoutes {
		if re.MatchString(path) {
			return true
		}
	}
	return false
}

var routingCases = []struct {
	path string
	hfs  bool
}{
	{"/u/events/e1/series", true},
	{"/u/events/e1/series/", true},
	{"/u/events/e1/seriesx", true}, // the reference regexps are not anchored at the end
	{"/u/events/e1/series/batch", true},
	{"/u/events/e1/series/deep/path/x", true},
	{"/u/series/batch", true},
	{"/u/series/batchy", true},
	{"/u/series/batch/deep/path", true},
	{"/series/series/batch", true},
	{"/events/events/e1/series", true}, // a user named "events"
	{"/alice/events/ckqw7q8f5000101/series", true},
	{"/ü/events/é/series", true},
	{"/u\n/events/e1\n/series", true},           // [^/] matches a newline
	{"/\xff/events/\xfe/series", true},          // and invalid UTF-8 bytes
	{"/u/events/e1/series?fromTime=1", true},    // never in a URL.Path, but must agree
	{"/u%2Fv/events/e1/series", true},           // escaped bytes are ordinary characters
	{"/events/e1/series", false},                // no user segment
	{"//events/e1/series", false},               // empty user segment
	{"/u/events//series", false},                // empty event id
	{"/u/events/e1", false},                     // no /series
	{"/u/events/e1/", false},                    //
	{"/u/events/e1/serie", false},               //
	{"/u/events/e1/x/series", false},            // event id cannot span a slash
	{"/u/events/series", false},                 //
	{"/u/events", false},                        //
	{"/u/events/", false},                       //
	{"/u/events/events/e1/series", false},       // deep path, not at the right depth
	{"/u/x/events/e1/series", false},            //
	{"/a/b/series/batch", false},                //
	{"/u/series", false},                        //
	{"/u/series/", false},                       //
	{"/u/series/batc", false},                   //
	{"/u/Series/batch", false},                  // case-sensitive
	{"/u/EVENTS/e1/series", false},              //
	{"/u/events/e1/SERIES", false},              //
	{"/u/other", false},                         //
	{"/u", false},                               //
	{"/", false},                                //
	{"", false},                                 //
	{"u/events/e1/series", false},               // not absolute
	{"u/series/batch", false},                   //
	{" /u/events/e1/series", false},             //
	{"/socket.io/", false},                      //
	{"/reg/access", false},                      //
	{"/alice/events", false},                    //
	{"/alice/streams/series/batch", false},      //
	{"/alice/accesses/events/e1/series", false}, //
}

func TestIsHFSTable(t *testing.T) {
	for _, c := range routingCases {
		got, ref := isHFS(c.path), refIsHFS(c.path)
		if ref != c.hfs {
			t.Errorf("table row %q says hfs=%v but the reference regexps say %v", c.path, c.hfs, ref)
		}
		if got != ref {
			t.Errorf("isHFS(%q) = %v, reference regexps say %v", c.path, got, ref)
		}
	}
}

func TestIsHFSDoesNotAllocate(t *testing.T) {
	for _, c := range routingCases {
		if n := testing.AllocsPerRun(100, func() { sinkBool = isHFS(c.path) }); n != 0 {
			t.Errorf("isHFS(%q) allocates %.0f times", c.path, n)
		}
	}
}

var sinkBool bool

func FuzzIsHFS(f *testing.F) {
	for _, c := range routingCases {
		f.Add(c.path)
	}
	f.Fuzz(func(t *testing.T, path string) {
		if got, ref := isHFS(path), refIsHFS(path); got != ref {
			t.Errorf("isHFS(%q) = %v, reference regexps say %v", path, got, ref)
		}
	})
}

// TestRoutingEndToEnd sends real HTTPS requests (HTTP/2 and HTTP/1.1) through
// the front to two echo upstreams.
func TestRoutingEndToEnd(t *testing.T) {
	api, hfs := newEchoUpstream(t, "api"), newEchoUpstream(t, "hfs")
	tf := startFront(t, frontSetup{API: api.URL, HFS: hfs.URL, GetCertificate: getPKI(t).store.GetCertificate})

	cases := []struct {
		target   string // path and query, sent as-is
		upstream string
		path     string // as the upstream decodes it
		query    string
	}{
		{"/alice/events/ckq1/series?fromDeltaTime=0&toDeltaTime=10", "hfs", "/alice/events/ckq1/series", "fromDeltaTime=0&toDeltaTime=10"},
		{"/alice/events/ckq1/series/", "hfs", "/alice/events/ckq1/series/", ""},
		{"/alice/series/batch", "hfs", "/alice/series/batch", ""},
		{"/alice/events/c%20k/series?a=%2F", "hfs", "/alice/events/c k/series", "a=%2F"},
		{"/alice/events", "api", "/alice/events", ""},
		{"/alice/events/ckq1?auth=tok", "api", "/alice/events/ckq1", "auth=tok"},
		{"/alice/EVENTS/ckq1/series", "api", "/alice/EVENTS/ckq1/series", ""},
		{"/events/ckq1/series", "api", "/events/ckq1/series", ""},
		{"/socket.io/?EIO=4&transport=polling", "api", "/socket.io/", "EIO=4&transport=polling"},
		{"/reg/access", "api", "/reg/access", ""},
		{"/", "api", "/", ""},
	}
	for _, h2 := range []bool{true, false} {
		t.Run(protoName(h2), func(t *testing.T) {
			c := httpsClient(t, tf.addr, h2, nil)
			for _, tc := range cases {
				resp, e := doEcho(t, c, http.MethodGet, "https://"+testHost+tc.target, nil, nil)
				if h2 && (resp.ProtoMajor != 2 || resp.TLS.NegotiatedProtocol != "h2") {
					t.Errorf("%s: proto %s, ALPN %q; want HTTP/2 over h2", tc.target, resp.Proto, resp.TLS.NegotiatedProtocol)
				}
				if !h2 && (resp.ProtoMajor != 1 || resp.ProtoMinor != 1 || resp.TLS.NegotiatedProtocol != "http/1.1") {
					t.Errorf("%s: proto %s, ALPN %q; want HTTP/1.1", tc.target, resp.Proto, resp.TLS.NegotiatedProtocol)
				}
				if e.Upstream != tc.upstream {
					t.Errorf("%s reached %s, want %s", tc.target, e.Upstream, tc.upstream)
				}
				if e.Path != tc.path || e.Query != tc.query || e.RequestURI != tc.target {
					t.Errorf("%s: upstream got path %q query %q request URI %q; want %q %q %q",
						tc.target, e.Path, e.Query, e.RequestURI, tc.path, tc.query, tc.target)
				}
				if want := wantUpstreamHost(tc.upstream, testHost, hfs.URL); e.Host != want {
					t.Errorf("%s: upstream Host %q, want %q", tc.target, e.Host, want)
				}
				if !slices.Equal(e.XFHost, []string{testHost}) {
					t.Errorf("%s: X-Forwarded-Host %q, want the original [%s]", tc.target, e.XFHost, testHost)
				}
				if !slices.Equal(e.XFProto, []string{"https"}) {
					t.Errorf("%s: X-Forwarded-Proto %q, want [https]", tc.target, e.XFProto)
				}
				if !slices.Equal(e.XFF, []string{"127.0.0.1"}) {
					t.Errorf("%s: X-Forwarded-For %q, want [127.0.0.1]", tc.target, e.XFF)
				}
			}
		})
	}
}

// wantUpstreamHost is the Host an upstream must get: the API the client's,
// HFS its own address (open-pryv.io's HFS reads the user from Host's first
// label; the client's Host comes as X-Forwarded-Host).
func wantUpstreamHost(upstream, clientHost, hfsURL string) string {
	if upstream == "hfs" {
		return strings.TrimPrefix(hfsURL, "http://")
	}
	return clientHost
}

// TestHostWithPort: a Host with a port reaches the API unchanged, and HFS as
// X-Forwarded-Host.
func TestHostWithPort(t *testing.T) {
	api, hfs := newEchoUpstream(t, "api"), newEchoUpstream(t, "hfs")
	tf := startFront(t, frontSetup{API: api.URL, HFS: hfs.URL, GetCertificate: getPKI(t).store.GetCertificate})
	for _, h2 := range []bool{true, false} {
		t.Run(protoName(h2), func(t *testing.T) {
			c := httpsClient(t, tf.addr, h2, nil)
			for _, tc := range []struct{ path, upstream string }{{"/alice/events", "api"}, {"/alice/series/batch", "hfs"}} {
				_, e := doEcho(t, c, http.MethodGet, "https://"+testHost+":8443"+tc.path, nil, nil)
				if want := wantUpstreamHost(tc.upstream, testHost+":8443", hfs.URL); e.Host != want {
					t.Errorf("%s: upstream Host %q, want %q", tc.path, e.Host, want)
				}
				if !slices.Equal(e.XFHost, []string{testHost + ":8443"}) {
					t.Errorf("%s: X-Forwarded-Host %q, want [%s:8443]", tc.path, e.XFHost, testHost)
				}
			}
		})
	}
}

// TestForwardedHeadersNotSpoofable: the front is the edge, so whatever
// X-Forwarded-* or Forwarded a client sends is replaced, not appended to.
func TestForwardedHeadersNotSpoofable(t *testing.T) {
	api, hfs := newEchoUpstream(t, "api"), newEchoUpstream(t, "hfs")
	tf := startFront(t, frontSetup{API: api.URL, HFS: hfs.URL, GetCertificate: getPKI(t).store.GetCertificate})
	spoof := http.Header{
		"X-Forwarded-For":   {"6.6.6.6", "7.7.7.7, 8.8.8.8"},
		"X-Forwarded-Proto": {"http"},
		"X-Forwarded-Host":  {"evil.example"},
		"Forwarded":         {"for=6.6.6.6;proto=http;host=evil.example"},
	}
	for _, h2 := range []bool{true, false} {
		t.Run(protoName(h2), func(t *testing.T) {
			c := httpsClient(t, tf.addr, h2, nil)
			for _, p := range []string{"/alice/events", "/alice/events/e1/series"} {
				_, e := doEcho(t, c, http.MethodGet, "https://"+testHost+p, nil, spoof)
				if !slices.Equal(e.XFF, []string{"127.0.0.1"}) {
					t.Errorf("%s: X-Forwarded-For %q, want exactly [127.0.0.1]", p, e.XFF)
				}
				if !slices.Equal(e.XFProto, []string{"https"}) {
					t.Errorf("%s: X-Forwarded-Proto %q, want [https]", p, e.XFProto)
				}
				if !slices.Equal(e.XFHost, []string{testHost}) {
					t.Errorf("%s: X-Forwarded-Host %q, want [%s]", p, e.XFHost, testHost)
				}
				if len(e.Forwarded) != 0 {
					t.Errorf("%s: Forwarded %q passed through", p, e.Forwarded)
				}
			}
		})
	}
}

// TestRequestBodyIntact: a 1 MiB POST body reaches either upstream byte for byte.
func TestRequestBodyIntact(t *testing.T) {
	api, hfs := newEchoUpstream(t, "api"), newEchoUpstream(t, "hfs")
	tf := startFront(t, frontSetup{API: api.URL, HFS: hfs.URL, GetCertificate: getPKI(t).store.GetCertificate})

	body := make([]byte, 1<<20)
	r := rand.NewChaCha8([32]byte{1, 2, 3})
	_, _ = r.Read(body)
	sum := sha256.Sum256(body)
	want := hex.EncodeToString(sum[:])

	for _, h2 := range []bool{true, false} {
		t.Run(protoName(h2), func(t *testing.T) {
			c := httpsClient(t, tf.addr, h2, nil)
			for _, tc := range []struct{ path, upstream string }{
				{"/alice/events", "api"},
				{"/alice/series/batch", "hfs"},
				{"/alice/events/e1/series", "hfs"},
			} {
				_, e := doEcho(t, c, http.MethodPost, "https://"+testHost+tc.path, bytes.NewReader(body),
					http.Header{"Content-Type": {"application/octet-stream"}})
				if e.Upstream != tc.upstream || e.Method != http.MethodPost {
					t.Errorf("%s: reached %s with %s, want %s with POST", tc.path, e.Upstream, e.Method, tc.upstream)
				}
				if e.BodyLen != int64(len(body)) || e.BodySHA256 != want {
					t.Errorf("%s: upstream got %d bytes sha256 %s, want %d bytes %s",
						tc.path, e.BodyLen, e.BodySHA256, len(body), want)
				}
			}
		})
	}
}
