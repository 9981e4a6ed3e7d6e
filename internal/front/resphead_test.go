package front

import (
	"bufio"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// readResponse reads what http.ReadResponse reads, for the heads it parses
// and those it leaves to it: status, version, headers, length, close,
// body, and what is left on the connection after the body.
func TestReadResponseMatchesNetHTTP(t *testing.T) {
	// Each response is followed by another (pipelined), unless it ends
	// with end: the connection's end.
	const next, end = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nN", "\x00end"
	for _, tc := range []struct {
		name   string
		method string
		raw    string
		parsed bool // readResponse parses it itself
	}{
		{"plain", "GET", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"events\":[]}", true},
		{"names to canonicalise, repeated, spaces", "GET", "HTTP/1.1 201 Created\r\ncontent-length: 2\r\nset-cookie: a=1\r\nSet-Cookie:b=2 \r\nX-Empty:\r\nETag:  \"x\"\t\r\n\r\nok", true},
		{"no reason phrase", "GET", "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", true},
		{"zero length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true},
		{"leading zeros", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 003\r\n\r\nabc", true},
		{"connection close", "GET", "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nhi", true},
		{"connection keep-alive kept", "GET", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi", true},
		{"pragma no-cache", "GET", "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 2\r\n\r\nhi", true},
		{"obs-text in a value", "GET", "HTTP/1.1 200 OK\r\nX-Name: caf\xc3\xa9\r\nContent-Length: 2\r\n\r\nhi", true},
		{"5xx", "GET", "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nRetry-After: 1\r\n\r\nbusy", true},
		{"short body, then the connection's end", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc" + end, true},

		{"HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", false},
		{"chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nhi\r\n0\r\nX-T: v\r\n\r\n", false},
		{"chunked and a length (smuggling)", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", false},
		{"two lengths, same", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi", false},
		{"two lengths, different", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!", false},
		{"bad length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nhi", false},
		{"no length: read to the end", "GET", "HTTP/1.1 200 OK\r\nX: y\r\n\r\nall of it", false},
		{"204", "GET", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", false},
		{"304", "GET", "HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", false},
		{"103 then 200", "GET", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", false},
		{"HTTP/1.0", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", false},
		{"two spaces after the version", "GET", "HTTP/1.1  200 OK\r\nContent-Length: 2\r\n\r\nhi", false},
		{"bare LF", "GET", "HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", false},
		{"bare LF in a header", "GET", "HTTP/1.1 200 OK\r\nX: a\nContent-Length: 2\r\n\r\nhi", false},
		{"continuation line", "GET", "HTTP/1.1 200 OK\r\nX: a\r\n  b\r\nContent-Length: 2\r\n\r\nhi", false},
		{"space before the colon", "GET", "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nhi", false},
		{"no colon", "GET", "HTTP/1.1 200 OK\r\nbroken\r\nContent-Length: 2\r\n\r\nhi", false},
		{"control byte in a value", "GET", "HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 2\r\n\r\nhi", false},
		{"bad status", "GET", "HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nhi", false},
		{"garbage", "GET", "hello\r\n\r\n", false},
		{"head cut short", "GET", "HTTP/1.1 200 OK\r\nContent-Len", false},
		{"head larger than the buffer", "GET", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 5000) + "\r\nContent-Length: 2\r\n\r\nhi", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://127.0.0.1:3000/x", nil)
			read := func(ours bool) (*http.Response, string, string, int64, error) {
				raw := tc.raw + next
				if before, ok := strings.CutSuffix(tc.raw, end); ok {
					raw = before
				}
				br := bufio.NewReaderSize(strings.NewReader(raw), 4<<10)
				var resp *http.Response
				var err error
				n := int64(-1)
				if ours {
					resp, n, err = readResponse(br, req)
				} else {
					resp, err = http.ReadResponse(br, req)
				}
				if err != nil {
					return nil, "", "", n, err
				}
				if n > 0 {
					resp.Body = &fixedBody{br: br, left: n}
				}
				body, berr := io.ReadAll(resp.Body)
				if berr != nil {
					body = append(body, "|"+berr.Error()...)
				}
				left, _ := io.ReadAll(br)
				return resp, string(body), string(left), n, nil
			}
			want, wantBody, wantLeft, _, wantErr := read(false)
			got, gotBody, gotLeft, n, gotErr := read(true)
			if (n >= 0) != tc.parsed {
				t.Fatalf("parsed here = %v, want %v", n >= 0, tc.parsed)
			}
			if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
				t.Fatalf("error %v, ReadResponse's %v", gotErr, wantErr)
			}
			if wantErr != nil {
				return
			}
			for _, f := range []struct {
				what      string
				got, want any
			}{
				{"status", got.Status, want.Status}, {"code", got.StatusCode, want.StatusCode},
				{"proto", got.Proto, want.Proto}, {"major", got.ProtoMajor, want.ProtoMajor}, {"minor", got.ProtoMinor, want.ProtoMinor},
				{"header", got.Header, want.Header}, {"length", got.ContentLength, want.ContentLength},
				{"close", got.Close, want.Close}, {"transfer encoding", got.TransferEncoding, want.TransferEncoding},
				{"trailer", got.Trailer, want.Trailer}, {"body", gotBody, wantBody}, {"left on the connection", gotLeft, wantLeft},
				{"request", got.Request, want.Request},
			} {
				if !reflect.DeepEqual(f.got, f.want) {
					t.Errorf("%s: %#v, ReadResponse's %#v", f.what, f.got, f.want)
				}
			}
		})
	}
}

// The parsed head allocates five (the response, the header map's two, the
// head string, the values); http.ReadResponse allocates 11 for this one.
func TestReadResponseAllocs(t *testing.T) {
	raw := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Thu, 03 Dec 2026 17:00:00 GMT\r\nContent-Length: 13\r\nX-Powered-By: Express\r\n\r\n"
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:3000/x", nil)
	sr := strings.NewReader(raw)
	br := bufio.NewReaderSize(sr, 4<<10)
	if n := testing.AllocsPerRun(200, func() {
		sr.Reset(raw)
		br.Reset(sr)
		if _, n, err := readResponse(br, req); err != nil || n != 13 {
			t.Fatalf("n %d, %v", n, err)
		}
	}); n > 5 {
		t.Fatalf("%.0f allocations per parsed head, want at most 5", n)
	}
}
