package front

import (
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Writer is the lean loop's http.ResponseWriter. It frames a response as
// net/http's does (TestLeanMatchesNetHTTP): the head written at the first
// flush, at 2 KiB of body, or at the end, whichever comes first; a body
// that ended by then gets a Content-Length, a longer one of unknown length
// is chunked; no Content-Type set and some body: one sniffed; a Date;
// trailers after the last chunk; Connection: close when the client or the
// handler asked for it or the body fell short of its Content-Length. The
// header map is the connection's, reused; the head is written from a
// snapshot taken at WriteHeader, so changes made after it (trailers) are not
// in it, as net/http's clone at WriteHeader keeps them out.
type h1Writer struct {
	c      *h1Conn
	req    *http.Request
	header http.Header
	snap   []headerKV // the header at WriteHeader

	status      int   // 0: WriteHeader not called
	wroteHead   bool  // the head is in the write buffer
	chunked     bool  // the body is sent chunked
	length      int64 // the Content-Length sent, -1: none
	written     int64 // body bytes written by the handler
	pend        []byte
	closeAfter  bool
	hasTrailers bool
	failed      bool     // a write to the connection failed
	scratch     [24]byte // numbers formatted for the wire
}

type headerKV struct {
	k  string
	vv []string
}

// bufferBeforeHead is net/http's bufferBeforeChunkingSize.
const bufferBeforeHead = 2048

func (w *h1Writer) reset(r *http.Request) {
	clear(w.header)
	clear(w.snap)
	w.req, w.snap, w.pend = r, w.snap[:0], w.pend[:0]
	w.status, w.wroteHead, w.chunked, w.length, w.written = 0, false, false, -1, 0
	w.closeAfter, w.hasTrailers, w.failed = r.Close, false, false
}

func (w *h1Writer) Header() http.Header { return w.header }

func (w *h1Writer) WriteHeader(code int) {
	if w.status != 0 {
		w.c.f.log.Debug("superfluous WriteHeader", "status", code, "path", w.req.URL.Path)
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code)) // net/http's checkWriteHeaderCode
	}
	if code < 200 {
		if code == http.StatusSwitchingProtocols {
			return // no upgrade reaches this loop; net/http ignores it there too without a hijack
		}
		w.interim(code)
		return
	}
	w.status = code
	for k, vv := range w.header {
		w.snap = append(w.snap, headerKV{k, vv})
	}
	if cl := w.header.Get("Content-Length"); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.length = v
		} else {
			w.c.f.log.Debug("invalid Content-Length from a handler", "value", cl)
			w.dropSnap("Content-Length")
		}
	}
}

// interim writes a 1xx answer at once, with the header as it is.
func (w *h1Writer) interim(code int) {
	bw := w.c.bw
	writeStatus(w, code)
	for k, vv := range w.header {
		if k == "Content-Length" || k == "Transfer-Encoding" {
			continue
		}
		writeField(w, k, vv)
	}
	_, _ = bw.WriteString("\r\n")
	if bw.Flush() != nil {
		w.failed = true
	}
}

// dropSnap deletes k from the snapshot (its key emptied).
func (w *h1Writer) dropSnap(k string) {
	for i := range w.snap {
		if w.snap[i].k == k {
			w.snap[i].k = ""
		}
	}
}

func (w *h1Writer) snapGet(k string) string {
	for _, kv := range w.snap {
		if kv.k == k && len(kv.vv) > 0 {
			return kv.vv[0]
		}
	}
	return ""
}

// snapHas reports whether k is in the snapshot, even with no value (a
// handler's way to suppress Date or the sniffed Content-Type).
func (w *h1Writer) snapHas(k string) bool {
	for _, kv := range w.snap {
		if kv.k == k {
			return true
		}
	}
	return false
}

func (w *h1Writer) bodyAllowed() bool {
	return w.status != http.StatusNoContent && w.status != http.StatusNotModified
}

func (w *h1Writer) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	if w.failed {
		return 0, errConnWrite
	}
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.wroteHead {
		if len(w.pend)+len(p) <= bufferBeforeHead {
			w.pend = append(w.pend, p...)
			return len(p), nil
		}
		w.writeHead(false)
		if err := w.body(w.pend); err != nil {
			return 0, err
		}
		w.pend = w.pend[:0]
	}
	if err := w.body(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *h1Writer) WriteString(s string) (int, error) {
	return w.Write([]byte(s)) // rare (error bodies); the proxy writes []byte
}

var errConnWrite = &connWriteError{}

type connWriteError struct{}

func (*connWriteError) Error() string { return "front: writing to the client failed" }

// body writes p, framed; a HEAD's body is counted and dropped.
func (w *h1Writer) body(p []byte) error {
	if len(p) == 0 || w.req.Method == http.MethodHead {
		return nil
	}
	bw := w.c.bw
	if w.chunked {
		_, _ = bw.Write(strconv.AppendInt(w.scratch[:0], int64(len(p)), 16))
		_, _ = bw.WriteString("\r\n")
		_, _ = bw.Write(p)
		_, err := bw.WriteString("\r\n")
		if err != nil {
			w.failed = true
		}
		return err
	}
	if _, err := bw.Write(p); err != nil {
		w.failed = true
		return err
	}
	return nil
}

// Flush writes the head and what is buffered to the client.
func (w *h1Writer) Flush() { _ = w.FlushError() }

func (w *h1Writer) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.wroteHead {
		w.writeHead(false)
		if err := w.body(w.pend); err != nil {
			return err
		}
		w.pend = w.pend[:0]
	}
	if err := w.c.bw.Flush(); err != nil {
		w.failed = true
		return err
	}
	return nil
}

// finish ends the response after the handler returned; false: the
// connection must close at once.
func (w *h1Writer) finish() bool {
	if w.failed {
		return false
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.wroteHead {
		w.writeHead(true)
		if w.body(w.pend) != nil {
			return false
		}
	}
	if w.chunked {
		bw := w.c.bw
		_, _ = bw.WriteString("0\r\n")
		w.writeTrailers()
		if _, err := bw.WriteString("\r\n"); err != nil {
			return false
		}
	}
	if w.req.Method != http.MethodHead && w.bodyAllowed() && w.length >= 0 && w.written != w.length {
		w.closeAfter = true // the body fell short: the client cannot find the next answer
	}
	return !w.failed
}

// writeTrailers writes the trailers the head announced and those set
// with http.TrailerPrefix.
func (w *h1Writer) writeTrailers() {
	for _, kv := range w.snap {
		if kv.k != "Trailer" {
			continue
		}
		for _, v := range kv.vv {
			for t := range strings.SplitSeq(v, ",") {
				t = textproto.CanonicalMIMEHeaderKey(textproto.TrimString(t))
				if t == "" || !httpguts.ValidTrailerHeader(t) {
					continue
				}
				if vv, ok := w.header[t]; ok {
					writeField(w, t, vv)
				}
			}
		}
	}
	for k, vv := range w.header {
		if t, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && t != "" {
			writeField(w, t, vv)
		}
	}
}

// writeHead writes the status line and the header; done: the handler has
// returned, so a body held whole gets its length.
func (w *h1Writer) writeHead(done bool) {
	w.wroteHead = true
	isHEAD := w.req.Method == http.MethodHead
	bodyOK := w.bodyAllowed()
	for _, kv := range w.snap {
		if kv.k == "Trailer" && len(kv.vv) > 0 || strings.HasPrefix(kv.k, http.TrailerPrefix) {
			w.hasTrailers = true
		}
	}
	te := w.snapGet("Transfer-Encoding")
	w.dropSnap("Transfer-Encoding") // the framing is this writer's
	setLength := done && !w.hasTrailers && te == "" && bodyOK && w.length < 0 && (!isHEAD || len(w.pend) > 0)
	if setLength {
		w.length = int64(len(w.pend))
	}
	if w.snapGet("Connection") == "close" || w.c.f.draining.Load() {
		w.closeAfter = true // the drain's, for a request that began before it too (net/http's doKeepAlives)
	}
	if !isHEAD && bodyOK {
		switch {
		case w.length >= 0:
		case te == "identity":
			w.closeAfter = true // the body ends when the connection does
		default:
			w.chunked = true
		}
	}
	if w.chunked {
		w.dropSnap("Content-Length")
	}
	if !bodyOK {
		w.dropSnap("Content-Length") // net/http's suppressedHeaders
		if w.status == http.StatusNotModified {
			w.dropSnap("Content-Type")
		}
	}
	ownClose := w.closeAfter && !httpguts.HeaderValuesContainsToken([]string{w.snapGet("Connection")}, "close")
	if ownClose {
		w.dropSnap("Connection")
	}

	writeStatus(w, w.status)
	for _, kv := range w.snap {
		if kv.k == "" || strings.HasPrefix(kv.k, http.TrailerPrefix) {
			continue
		}
		writeField(w, kv.k, kv.vv)
	}
	bw := w.c.bw
	if setLength {
		_, _ = bw.WriteString("Content-Length: ")
		_, _ = bw.Write(strconv.AppendInt(w.scratch[:0], w.length, 10))
		_, _ = bw.WriteString("\r\n")
	}
	if bodyOK && !w.snapHas("Content-Type") && te == "" && w.snapGet("Content-Encoding") == "" && len(w.pend) > 0 {
		_, _ = bw.WriteString("Content-Type: ")
		_, _ = bw.WriteString(http.DetectContentType(w.pend))
		_, _ = bw.WriteString("\r\n")
	}
	if !w.snapHas("Date") {
		_, _ = bw.WriteString("Date: ")
		_, _ = bw.Write(httpDate())
		_, _ = bw.WriteString("\r\n")
	}
	if w.chunked {
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if ownClose {
		_, _ = bw.WriteString("Connection: close\r\n")
	}
	_, _ = bw.WriteString("\r\n")
}

func writeStatus(w *h1Writer, code int) {
	bw := w.c.bw
	if code < len(statusLines) && statusLines[code] != "" {
		_, _ = bw.WriteString(statusLines[code])
		return
	}
	_, _ = bw.WriteString("HTTP/1.1 ")
	n := strconv.AppendInt(w.scratch[:0], int64(code), 10)
	_, _ = bw.Write(n)
	_, _ = bw.WriteString(" status code ")
	_, _ = bw.Write(n)
	_, _ = bw.WriteString("\r\n")
}

// statusLines are the status lines of the codes with a text, as
// net/http's writeStatusLine writes them.
var statusLines = func() []string {
	l := make([]string, 600)
	for code := range l {
		if text := http.StatusText(code); text != "" {
			l[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
		}
	}
	return l
}()

// writeField writes one header's lines as net/http's Header.Write does: an
// invalid name is skipped, a CR or LF in a value becomes a space, the value
// is trimmed.
func writeField(w *h1Writer, k string, vv []string) {
	if !httpguts.ValidHeaderFieldName(k) {
		return
	}
	bw := w.c.bw
	for _, v := range vv {
		_, _ = bw.WriteString(k)
		_, _ = bw.WriteString(": ")
		v = textproto.TrimString(v)
		if strings.ContainsAny(v, "\r\n") {
			v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
		}
		_, _ = bw.WriteString(v)
		_, _ = bw.WriteString("\r\n")
	}
}

// httpDate is the current second in http.TimeFormat, formatted once per
// second.
func httpDate() []byte {
	now := time.Now()
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return d.b
	}
	d := &cachedDate{sec: sec, b: now.UTC().AppendFormat(make([]byte, 0, 29), http.TimeFormat)}
	dateCache.Store(d)
	return d.b
}

type cachedDate struct {
	sec int64
	b   []byte
}

var dateCache atomic.Pointer[cachedDate]
