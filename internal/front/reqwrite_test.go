package front

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"testing"
)

// writeRequest writes what req.Write writes, for the requests it takes and
// those it hands on, header for header.
func TestWriteRequestMatchesNetHTTP(t *testing.T) {
	many := http.Header{"User-Agent": {""}}
	for i := range 40 {
		many[fmt.Sprintf("X-H%02d", i)] = []string{"v"}
	}
	tracer := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{WroteHeaderField: func(string, []string) {}})
	for _, tc := range []struct {
		name   string
		method string
		host   string
		url    url.URL
		header http.Header
		ctx    context.Context
		plain  bool // plainRequest takes it (some it takes are handed on later: a line break, a control byte, too many names)
	}{
		{"plain", "GET", "alice.pryv.me", url.URL{Path: "/alice/events"},
			http.Header{"Accept": {"*/*"}, "Authorization": {"tok"}, "User-Agent": {"curl/8"}, "X-Forwarded-For": {"127.0.0.1"}}, nil, true},
		{"head, query, several values", "HEAD", "h:443", url.URL{Path: "/a", RawQuery: "x=1&y=%20"},
			http.Header{"Accept": {"a", " b ", "\tc"}, "Cookie": {"k=v"}, "User-Agent": {""}}, nil, true},
		{"path to escape and a raw path", "GET", "h", url.URL{Path: "/a b/c/d", RawPath: "/a%20b/c%2Fd"}, http.Header{"User-Agent": {" ua "}}, nil, true},
		{"path escaped here", "GET", "h", url.URL{Path: "/é ü"}, http.Header{"User-Agent": {"x"}}, nil, true},
		{"empty path and a bare question mark", "GET", "h", url.URL{ForceQuery: true}, http.Header{"User-Agent": {"x"}}, nil, true},
		{"excluded and invalid names", "GET", "h", url.URL{Path: "/"},
			http.Header{"Host": {"evil"}, "Content-Length": {"5"}, "Transfer-Encoding": {"chunked"}, "Trailer": {"X"}, "Bad Name": {"v"}, "Ok": {"v"}, "User-Agent": {"x"}}, nil, true},
		{"other control bytes kept", "GET", "h", url.URL{Path: "/"}, http.Header{"X": {"a\x00b\x7f"}, "User-Agent": {"x"}}, nil, true},
		{"line break in a value", "GET", "h", url.URL{Path: "/"}, http.Header{"X": {"a\r\nInjected: 1"}, "User-Agent": {"x"}}, nil, true},
		{"line break in the user agent", "GET", "h", url.URL{Path: "/"}, http.Header{"User-Agent": {"a\nb"}}, nil, false},
		{"no user agent: Go's", "GET", "h", url.URL{Path: "/"}, http.Header{}, nil, false},
		{"non-ASCII host", "GET", "bücher.example", url.URL{Path: "/"}, http.Header{"User-Agent": {"x"}}, nil, false},
		{"IPv6 zone", "GET", "[fe80::1%25eth0]:80", url.URL{Path: "/"}, http.Header{"User-Agent": {"x"}}, nil, false},
		{"invalid host", "GET", "a b", url.URL{Path: "/"}, http.Header{"User-Agent": {"x"}}, nil, false},
		{"control byte in the query", "GET", "h", url.URL{Path: "/", RawQuery: "a=\x01"}, http.Header{"User-Agent": {"x"}}, nil, true},
		{"DELETE", "DELETE", "h", url.URL{Path: "/"}, http.Header{"User-Agent": {"x"}}, nil, false},
		{"more headers than sorted on the stack", "GET", "h", url.URL{Path: "/"}, many, nil, true},
		{"a trace watching the write", "GET", "h", url.URL{Path: "/"}, http.Header{"User-Agent": {"x"}}, tracer, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mk := func() *http.Request {
				u := tc.url
				u.Scheme, u.Host = "http", "127.0.0.1:3000"
				ctx := tc.ctx
				if ctx == nil {
					ctx = context.Background()
				}
				r := (&http.Request{Method: tc.method, URL: &u, Host: tc.host, Header: tc.header.Clone(), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}).WithContext(ctx)
				return r
			}
			if got := plainRequest(mk()); got != tc.plain {
				t.Fatalf("plainRequest = %v, want %v", got, tc.plain)
			}
			var want, got bytes.Buffer
			wantErr := mk().Write(&want)
			bw := bufio.NewWriter(&got)
			gotErr := writeRequest(bw, mk())
			_ = bw.Flush()
			if (wantErr == nil) != (gotErr == nil) {
				t.Fatalf("error %v, req.Write's %v", gotErr, wantErr)
			}
			if got.String() != want.String() {
				t.Fatalf("wrote\n%q\nreq.Write wrote\n%q", got.String(), want.String())
			}
			if wantErr == nil && !strings.HasSuffix(got.String(), "\r\n\r\n") {
				t.Fatalf("head not ended: %q", got.String())
			}
		})
	}
}

// The request writer allocates nothing for the plain request.
func TestWriteRequestAllocs(t *testing.T) {
	u := &url.URL{Scheme: "http", Host: "127.0.0.1:3000", Path: "/alice/events", RawQuery: "limit=20"}
	req := &http.Request{Method: "GET", URL: u, Host: "alice.pryv.me",
		Header: http.Header{"Accept": {"*/*"}, "Authorization": {"tok"}, "User-Agent": {"curl/8"}, "X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"https"}}}
	req = req.WithContext(context.Background())
	var sink bytes.Buffer
	bw := bufio.NewWriterSize(&sink, 4096)
	if n := testing.AllocsPerRun(200, func() {
		sink.Reset()
		bw.Reset(&sink)
		if err := writeRequest(bw, req); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%.0f allocations per plain request head, want 0", n)
	}
}
