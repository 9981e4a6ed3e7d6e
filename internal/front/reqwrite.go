package front

import (
	"bufio"
	"net/http"
	"net/http/httptrace"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// writeRequest writes a body-less request's head to bw, byte for byte what
// req.Write writes, without its allocations (three Fprintfs, the transfer
// writer, the header sorter, the request URI built as a new string): on a
// proxied GET that was a fifth of the front handler's allocations. Only the
// plain case is written here (GET or HEAD, no body, trailer or close, an
// ASCII Host that needs no cleaning, at most maxSortedHeaders headers, no
// value that needs its line breaks replaced, no client trace that watches
// the write); anything else is req.Write's. TestWriteRequestMatchesNetHTTP
// holds the two together.
func writeRequest(bw *bufio.Writer, req *http.Request) error {
	if !plainRequest(req) {
		return req.Write(bw)
	}
	var keys [maxSortedHeaders]string
	n := 0
	for k, vv := range req.Header {
		if reqWriteExclude(k) || !httpguts.ValidHeaderFieldName(k) {
			continue // what writeSubset skips
		}
		for _, v := range vv {
			if strings.ContainsAny(v, "\r\n") {
				return req.Write(bw)
			}
		}
		if n == len(keys) {
			return req.Write(bw)
		}
		keys[n] = k
		n++
	}
	sortStrings(keys[:n])
	u := req.URL
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if !ctlFree(path) || !ctlFree(u.RawQuery) {
		return req.Write(bw) // its error
	}
	_, _ = bw.WriteString(req.Method)
	_ = bw.WriteByte(' ')
	_, _ = bw.WriteString(path)
	if u.ForceQuery || u.RawQuery != "" {
		_ = bw.WriteByte('?')
		_, _ = bw.WriteString(u.RawQuery)
	}
	_, _ = bw.WriteString(" HTTP/1.1\r\nHost: ")
	_, _ = bw.WriteString(req.Host)
	_, _ = bw.WriteString("\r\n")
	if ua := req.Header.Get("User-Agent"); ua != "" {
		_, _ = bw.WriteString("User-Agent: ")
		_, _ = bw.WriteString(trimOWS(ua))
		_, _ = bw.WriteString("\r\n")
	}
	for _, k := range keys[:n] {
		for _, v := range req.Header[k] {
			_, _ = bw.WriteString(k)
			_, _ = bw.WriteString(": ")
			_, _ = bw.WriteString(trimOWS(v))
			_, err := bw.WriteString("\r\n")
			if err != nil {
				return err
			}
		}
	}
	_, err := bw.WriteString("\r\n")
	return err
}

// maxSortedHeaders is as many header names as writeRequest sorts on its
// stack; a request with more is req.Write's.
const maxSortedHeaders = 32

// plainRequest reports whether req is one writeRequest writes itself.
func plainRequest(req *http.Request) bool {
	if (req.Method != http.MethodGet && req.Method != http.MethodHead) ||
		(req.Body != nil && req.Body != http.NoBody) || req.ContentLength != 0 ||
		req.Close || req.TransferEncoding != nil || req.Trailer != nil ||
		req.URL == nil || req.URL.Opaque != "" || req.Host == "" || !plainHost(req.Host) {
		return false
	}
	if ua, ok := req.Header["User-Agent"]; !ok || (len(ua) > 0 && strings.ContainsAny(ua[0], "\r\n")) {
		return false // none: req.Write sends Go's; line breaks: its replacer
	}
	trace := httptrace.ContextClientTrace(req.Context())
	return trace == nil || (trace.WroteHeaderField == nil && trace.WroteRequest == nil)
}

// plainHost: ASCII (no punycode), not bracketed (no zone to remove), and a
// valid Host value (else req.Write sends an empty one).
func plainHost(h string) bool {
	if h[0] == '[' {
		return false
	}
	for i := 0; i < len(h); i++ {
		if h[i] >= 0x80 {
			return false
		}
	}
	return httpguts.ValidHostHeader(h)
}

func reqWriteExclude(k string) bool {
	switch k {
	case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
		return true
	}
	return false
}

func ctlFree(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// trimOWS is textproto.TrimString: leading and trailing spaces and tabs
// (and, as it, CR and LF, which plainRequest already excluded).
func trimOWS(s string) string {
	for len(s) > 0 && isOWS(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isOWS(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func isOWS(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// sortStrings sorts a request's few dozen header names in place
// (insertion sort: they come from a map, in no order).
func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
