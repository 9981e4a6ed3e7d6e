package front

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"

	"golang.org/x/net/http/httpguts"
)

// readResponse reads the upstream's response head. The common answer to a
// GET (HTTP/1.1, a final status with a body, one Content-Length, a head
// that fits the connection's buffer) is parsed here, from the buffer,
// into what http.ReadResponse returns for it, in five allocations (the
// response, its header map, one string for the head, one slice for the
// values) rather than its eleven; its body is upBody's own fixed-length
// read. Anything else, or anything not well-formed, is left unread in the
// buffer for http.ReadResponse, which then reads it (and answers a
// malformed head with its own error). TestReadResponseMatchesNetHTTP holds
// the two together.
func readResponse(br *bufio.Reader, req *http.Request) (resp *http.Response, bodyLen int64, err error) {
	if req.Method == http.MethodGet {
		if head := peekHead(br); head != nil {
			if resp, bodyLen, ok := parseHead(head, req); ok {
				_, _ = br.Discard(len(head))
				return resp, bodyLen, nil
			}
		}
	}
	resp, err = http.ReadResponse(br, req)
	return resp, -1, err
}

// peekHead returns the response head (through its blank line) as it is in
// br's buffer, reading more as needed; nil if it does not fit the buffer or
// the read failed (http.ReadResponse then meets the failure itself: a
// connection's end and its deadline stay).
func peekHead(br *bufio.Reader) []byte {
	n := 1
	for {
		if _, err := br.Peek(n); err != nil {
			return nil
		}
		buf, _ := br.Peek(br.Buffered())
		if i := bytes.Index(buf, crlfcrlf); i >= 0 {
			return buf[:i+4]
		}
		if len(buf) >= br.Size() {
			return nil
		}
		n = len(buf) + 1
	}
}

var crlfcrlf = []byte("\r\n\r\n")

// parseHead parses head as http.ReadResponse would, or reports !ok for
// what it leaves to it: another version, a 1xx, 204 or 304, no or several
// Content-Length, Transfer-Encoding or Trailer, a line that is not a plain
// "Name: value" with CRLF (continuations, bare LF or CR, bytes net/http
// rejects), a name not a token.
func parseHead(head []byte, req *http.Request) (*http.Response, int64, bool) {
	// One string for the whole head: the status and values are slices of it.
	s := string(head[:len(head)-2])
	line, rest, _ := cutLine(s)
	if len(line) < 12 || line[:9] != "HTTP/1.1 " || !isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) ||
		(len(line) > 12 && line[12] != ' ') {
		return nil, 0, false
	}
	code := int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
		return nil, 0, false
	}
	// Count the lines first: one slice holds every value.
	lines := 0
	for i := 0; i < len(rest); i++ {
		if rest[i] == '\n' {
			lines++
		}
	}
	values := make([]string, lines)
	h := make(http.Header, lines)
	for rest != "" {
		var ok bool
		line, rest, ok = cutLine(rest)
		if !ok {
			return nil, 0, false
		}
		k, v, found := cut(line, ':')
		if !found || k == "" || !isToken(k) || !validValue(v) {
			return nil, 0, false
		}
		k = textproto.CanonicalMIMEHeaderKey(k)
		switch k {
		case "Transfer-Encoding", "Trailer":
			return nil, 0, false
		}
		values[0] = trimOWS(v)
		if vv := h[k]; vv != nil {
			h[k] = append(vv, values[0])
		} else {
			h[k] = values[:1:1]
		}
		values = values[1:]
	}
	cl := h["Content-Length"]
	if len(cl) != 1 {
		return nil, 0, false
	}
	n, ok := parseLength(cl[0])
	if !ok {
		return nil, 0, false
	}
	resp := &http.Response{
		Status: line0(s), StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: n, Request: req, Body: http.NoBody,
	}
	if conn := h["Connection"]; conn != nil && httpguts.HeaderValuesContainsToken(conn, "close") {
		resp.Close = true
		delete(h, "Connection") // as ReadResponse does
	}
	if hp := h["Pragma"]; len(hp) > 0 && hp[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	return resp, n, true
}

// line0 is the status after "HTTP/1.1 ".
func line0(s string) string {
	line, _, _ := cutLine(s)
	return line[9:]
}

// cutLine cuts s at its first CRLF; !ok for a bare CR or LF before it, or
// none.
func cutLine(s string) (line, rest string, ok bool) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				return s[:i], s[i+2:], true
			}
			return "", "", false
		case '\n':
			return "", "", false
		}
	}
	return "", "", false
}

func cut(s string, c byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !httpguts.IsTokenRune(rune(s[i])) {
			return false
		}
	}
	return true
}

// validValue: the bytes textproto accepts in a value (VCHAR, SP, HTAB,
// obs-text).
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// parseLength: digits only (what strconv.ParseUint takes, at most 18 of
// them: no overflow).
func parseLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// fixedBody reads a body of known length from the connection's buffer
// (what io.LimitReader in net/http's body does, with its unexpected-EOF
// rule).
type fixedBody struct {
	br   *bufio.Reader
	left int64
}

func (f *fixedBody) Read(p []byte) (int, error) {
	if f.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.br.Read(p)
	f.left -= int64(n)
	if f.left == 0 {
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (f *fixedBody) Close() error { return nil }
