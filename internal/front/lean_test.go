package front

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/textproto"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The lean HTTP/1.1 loop (h1.go, h1writer.go) against net/http's server:
// raw requests written on raw connections, so the requests are exactly the
// bytes below, to a lean front and to one with leanH1 false (every
// connection to net/http, the reference).

// leanCount counts the requests the lean loop served. The hook is set once,
// before any test runs; the tests that read it do not run in parallel.
var leanCount atomic.Int64

func init() { leanServed = func() { leanCount.Add(1) } }

// leanSetup describes a front for these tests (startFront starts Serve at
// once; these need leanH1 and the server's timeouts set before).
type leanSetup struct {
	api, hfs   string
	plain      bool          // no TLS (Strategy B)
	netHTTP    bool          // leanH1 false: the reference
	tweak      func(*Front)  // run before Serve
	drainGrace time.Duration // Options.DrainGrace
}

func startLean(tb testing.TB, s leanSetup) *testFront {
	tb.Helper()
	logs := &lockedBuffer{}
	opts := Options{
		Addr:       "127.0.0.1:0",
		API:        mustURL(tb, s.api),
		HFS:        mustURL(tb, s.hfs),
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		DrainGrace: s.drainGrace,
	}
	if !s.plain {
		opts.GetCertificate = getPKI(tb).store.GetCertificate
	}
	f, err := New(opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	f.leanH1 = !s.netHTTP
	if s.tweak != nil {
		s.tweak(f)
	}
	if err := f.Listen(); err != nil {
		tb.Fatalf("Listen: %v", err)
	}
	tf := &testFront{f: f, addr: f.Addr().String(), logs: logs, serveDone: make(chan struct{})}
	go func() {
		tf.serveErr = f.Serve()
		close(tf.serveDone)
	}()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = f.Shutdown(ctx)
		_ = tf.waitServe(tb)
		if tb.Failed() {
			tb.Logf("front log (lean %v):\n%s", f.leanH1, logs.String())
		}
	})
	return tf
}

// rawClient is one raw connection to a front: TLS (ALPN http/1.1) unless
// the front is plain HTTP.
type rawClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(tb testing.TB, tf *testFront) *rawClient {
	tb.Helper()
	var c net.Conn
	var err error
	d := &net.Dialer{Timeout: 5 * time.Second}
	if tf.f.opts.GetCertificate == nil { // not srv.TLSConfig, which Serve writes
		c, err = d.Dial("tcp", tf.addr)
	} else {
		c, err = tls.DialWithDialer(d, "tcp", tf.addr, &tls.Config{RootCAs: getPKI(tb).pool, ServerName: testHost,
			NextProtos: []string{"http/1.1"}})
	}
	if err != nil {
		tb.Fatalf("dial %s: %v", tf.addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{c: c, br: bufio.NewReader(c)}
}

func (rc *rawClient) send(tb testing.TB, s string) {
	tb.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		tb.Fatalf("write: %v", err)
	}
}

// read reads one answer to a request of method: the interim ones, the
// final one and its body; err is the first error met.
func (rc *rawClient) read(method string) (interim []*http.Response, resp *http.Response, body []byte, err error) {
	for range 5 {
		resp, err = http.ReadResponse(rc.br, &http.Request{Method: method})
		if err != nil {
			return interim, nil, nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		interim = append(interim, resp)
	}
	body, err = io.ReadAll(resp.Body)
	return interim, resp, body, err
}

func (rc *rawClient) readNoInterim() (*http.Response, []byte, error) {
	_, resp, body, err := rc.read(http.MethodGet)
	return resp, body, err
}

// echo reads an echo upstream's answer to a GET.
func (rc *rawClient) echo(tb testing.TB) echoReply {
	tb.Helper()
	resp, body, err := rc.readNoInterim()
	return echoOf(tb, resp, body, err)
}

// closed reports, within a bounded wait, whether the server closed the
// connection: "eof", or what the read got instead.
func (rc *rawClient) closed(wait time.Duration) string {
	_ = rc.c.SetReadDeadline(time.Now().Add(wait))
	var b [64]byte
	n, err := rc.br.Read(b[:])
	switch {
	case n > 0:
		return fmt.Sprintf("more bytes %q", b[:n])
	case errors.Is(err, io.EOF):
		return "eof"
	case err == nil:
		return "open"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "still open"
	}
	return "closed (" + reduceErr(err) + ")"
}

// wasClosed: the server closed the connection (EOF, or a reset).
func wasClosed(got string) bool { return got == "eof" || strings.HasPrefix(got, "closed") }

// reduceErr names an error without its addresses (ports differ between the
// two fronts).
func reduceErr(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "connection reset"):
		return "reset"
	}
	return fmt.Sprintf("%T", err)
}

// describe is what a client sees of an answer, in a comparable form:
// everything but Date and the order of the header lines.
func describe(interim []*http.Response, resp *http.Response, body []byte, err error) string {
	var b strings.Builder
	for _, r := range interim {
		fmt.Fprintf(&b, "interim %s %v\n", r.Status, headerLines(r.Header))
	}
	if resp == nil {
		fmt.Fprintf(&b, "no answer: %s\n", reduceErr(err))
		return b.String()
	}
	fmt.Fprintf(&b, "%s %s\nlength %d te %v close %v\n", resp.Proto, resp.Status, resp.ContentLength, resp.TransferEncoding, resp.Close)
	b.WriteString(headerLines(resp.Header))
	fmt.Fprintf(&b, "body %q (%s)\n", body, reduceErr(err))
	b.WriteString("trailer " + headerLines(resp.Trailer))
	return b.String()
}

func headerLines(h http.Header) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if k == "Date" {
			continue
		}
		v := h[k]
		if k == "Trailer" { // a set: its order follows a map's
			v = strings.Split(strings.Join(v, ", "), ", ")
			slices.Sort(v)
		}
		b.WriteString(k + ": " + strings.Join(v, " | ") + "\n")
	}
	return b.String()
}

// leanUpstream records each request head as it came on the wire and
// answers the response set, byte for byte: its head alone to a HEAD, and
// then closes the connection if the response says so.
type leanUpstream struct {
	addr string
	mu   sync.Mutex
	got  []string
	resp upResp
}

type upResp struct {
	name, head, body string
	closeAfter       bool // close the connection once written (truncated, or Connection: close)
}

func newLeanUpstream(t *testing.T) *leanUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &leanUpstream{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { u.serve(c) })
		}
	})
	return u
}

func (u *leanUpstream) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	for {
		var head strings.Builder
		for i := 0; ; i++ {
			line, err := br.ReadString('\n')
			if err != nil || i > 200 {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		u.mu.Lock()
		u.got = append(u.got, head.String())
		r := u.resp
		u.mu.Unlock()
		out := r.head + r.body
		if strings.HasPrefix(head.String(), "HEAD ") {
			out = r.head
		}
		// A HEAD's answer is whole: closing after it would race the
		// client's pool, which takes the connection back at once.
		if _, err := io.WriteString(c, out); err != nil || r.closeAfter && out != r.head {
			return
		}
	}
}

// take sets the next response and returns the heads received since the
// last take.
func (u *leanUpstream) take(r upResp) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	got := u.got
	u.got, u.resp = nil, r
	return got
}

// leanRequests are plain requests the lean loop takes (the fuzz seeds
// too); %s is the Host.
var leanRequests = []struct{ name, raw string }{
	{"get", "GET /alice/events HTTP/1.1\r\nHost: %s\r\nAuthorization: tok\r\nUser-Agent: sdk/1\r\nAccept-Encoding: gzip\r\n\r\n"},
	{"head hfs", "HEAD /alice/events/e1/series HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\n\r\n"},
	{"head api", "HEAD /alice/events HTTP/1.1\r\nHost: %s\r\n\r\n"},
	{"delete", "DELETE /alice/events/e1 HTTP/1.1\r\nHost: %s\r\nAuthorization: tok\r\n\r\n"},
	{"options", "OPTIONS /alice/events HTTP/1.1\r\nHost: %s\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n\r\n"},
	{"query", "GET /alice/events?limit=10&fromTime=1&types[]=note/txt HTTP/1.1\r\nHost: %s\r\n\r\n"},
	{"query ReverseProxy re-encodes", "GET /alice/events?a=1;b=2&c=%%zz&d=%%20 HTTP/1.1\r\nHost: %s\r\n\r\n"},
	{"empty query", "GET /alice/events? HTTP/1.1\r\nHost: %s\r\n\r\n"},
	{"encoded path", "GET /alice/events/a%%2Fb%%41c%%20d HTTP/1.1\r\nHost: %s\r\n\r\n"},
	{"dot segments", "GET /alice/./events/../events//e1/. HTTP/1.1\r\nHost: %s\r\n\r\n"},
	{"duplicate headers", "GET /alice/events HTTP/1.1\r\nHost: %s\r\nAccept: a\r\nCookie: c=1\r\nAccept: b\r\nCookie: d=2\r\n\r\n"},
	{"connection close", "GET /alice/events HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"},
	{"connection hop-by-hop", "GET /alice/events HTTP/1.1\r\nHost: %s\r\nConnection: keep-alive, X-Private\r\nX-Private: p\r\nKeep-Alive: 300\r\nTe: trailers\r\n\r\n"},
	{"pragma", "GET /alice/events HTTP/1.1\r\nHost: %s\r\nPragma: no-cache\r\n\r\n"},
	{"odd case names", "GET /alice/events HTTP/1.1\r\nhOST: %s\r\nx-CUSTOM-header: v\r\naCCept: */*\r\nuser-agent:  spaced\t \r\n\r\n"},
	{"long value", "GET /alice/events HTTP/1.1\r\nHost: %s\r\nX-Long: " + strings.Repeat("abcdefgh", 300) + "\r\n\r\n"},
	{"client forwarding", "GET /alice/access-info HTTP/1.1\r\nHost: %s\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n" +
		"X-Forwarded-Proto: http\r\nX-Forwarded-Host: evil.example\r\nForwarded: for=1.2.3.4\r\n\r\n"},
	{"hfs series", "GET /alice/events/e1/series?fromDeltaTime=0&toDeltaTime=10 HTTP/1.1\r\nHost: %s\r\nAuthorization: tok\r\n\r\n"},
	{"obs-text value", "GET /alice/events HTTP/1.1\r\nHost: %s\r\nX-Name: caf\xc3\xa9\r\n\r\n"},
}

// leanResponses are what the upstream answers in TestLeanMatchesNetHTTP.
// Every chunked one has a Content-Type: without one, whether the answer
// gets a sniffed one through ReverseProxy depends, under net/http as under
// the lean loop, on a race in ReverseProxy (its first flush runs on a
// timer of -1, which may come before or after the first body write), so
// the sniffing is checked on a body of known length.
var leanResponses = []upResp{
	{name: "length", head: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\nX-Api-Version: 1.9\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n", body: `{"events":[]}`},
	{name: "empty", head: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
	{name: "chunked", head: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", body: "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"},
	{name: "chunked over 2 KiB", head: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
		body: strings.Repeat("3e8\r\n"+strings.Repeat("x", 1000)+"\r\n", 3) + "0\r\n\r\n"},
	{name: "length over 4 KiB", head: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\n\r\n", body: strings.Repeat("y", 5000)},
	{name: "sniffed", head: "HTTP/1.1 200 OK\r\nContent-Length: 28\r\n\r\n", body: "<html><body>hi</body></html>"},
	{name: "no content", head: "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"},
	{name: "not modified", head: "HTTP/1.1 304 Not Modified\r\nContent-Length: 13\r\nContent-Type: application/json\r\nEtag: \"x\"\r\n\r\n"},
	{name: "not found", head: "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n", body: "{}"},
	{name: "trailers", head: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrailer: X-Checksum, X-Other\r\nTransfer-Encoding: chunked\r\n\r\n",
		body: "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: o\r\nX-Late: unannounced\r\n\r\n"},
	{name: "undeclared trailers", head: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
		body: "5\r\nhello\r\n0\r\nX-Late: unannounced\r\n\r\n"},
	{name: "early hints", head: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", body: "x"},
	{name: "upstream close", head: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", body: "ok", closeAfter: true},
	{name: "close-delimited", head: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n", body: "until the end", closeAfter: true},
	{name: "event stream", head: "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 9\r\n\r\n", body: "data: 1\n\n"},
	{name: "truncated chunked", head: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n", body: "5\r\nhello\r\n", closeAfter: true},
	{name: "truncated length", head: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n", body: "only ten b", closeAfter: true},
}

func methodOf(raw string) string { m, _, _ := strings.Cut(raw, " "); return m }

// exchange writes raw on a new connection and describes the answer, and
// whether the connection then closed if the answer said it would.
func exchange(t *testing.T, tf *testFront, raw string) string {
	t.Helper()
	rc := dialRaw(t, tf)
	rc.send(t, raw)
	interim, resp, body, err := rc.read(methodOf(raw))
	d := describe(interim, resp, body, err)
	if resp != nil && err == nil && resp.Close {
		d += "then " + rc.closed(5*time.Second) + "\n"
	}
	return d
}

// TestLeanMatchesNetHTTP: for each request and each upstream response, the
// upstream gets the same bytes through the lean loop as through net/http
// (compared as they are, nothing removed), and the client the same answer
// (status, headers but Date, body, trailers, framing, the connection closed
// after an answer that says so).
func TestLeanMatchesNetHTTP(t *testing.T) {
	up := newLeanUpstream(t)
	target := "http://" + up.addr
	lean := startLean(t, leanSetup{api: target, hfs: target})
	ref := startLean(t, leanSetup{api: target, hfs: target, netHTTP: true})
	dead := "http://" + deadAddr(t)
	leanDown := startLean(t, leanSetup{api: dead, hfs: dead})
	refDown := startLean(t, leanSetup{api: dead, hfs: dead, netHTTP: true})
	responses := append(slices.Clone(leanResponses), upResp{name: "upstream down"})
	for _, resp := range responses {
		lf, rf := lean, ref
		if resp.name == "upstream down" {
			lf, rf = leanDown, refDown
		}
		for _, rq := range leanRequests {
			name := rq.name + "/" + resp.name
			raw := fmt.Sprintf(rq.raw, testHost)
			up.take(resp)
			before := leanCount.Load()
			viaRef := exchange(t, rf, raw)
			refHeads := up.take(resp)
			if n := leanCount.Load() - before; n != 0 {
				t.Fatalf("%s: the reference front's lean loop served %d requests", name, n)
			}
			viaLean := exchange(t, lf, raw)
			leanHeads := up.take(resp)
			if n := leanCount.Load() - before; n != 1 {
				t.Errorf("%s: the lean loop served %d requests, want 1", name, n)
			}
			if !slices.Equal(leanHeads, refHeads) {
				t.Errorf("%s: upstream got\n%q\nthrough the lean loop, and through net/http\n%q", name, leanHeads, refHeads)
			}
			if viaLean != viaRef {
				t.Errorf("%s: client got\n%s\nthrough the lean loop, and through net/http\n%s", name, viaLean, viaRef)
			}
			if resp.name != "upstream down" && len(refHeads) != 1 {
				t.Errorf("%s: the upstream got %d requests, want 1", name, len(refHeads))
			}
		}
	}
}

// echoOf decodes an echo upstream's answer.
func echoOf(tb testing.TB, resp *http.Response, body []byte, err error) echoReply {
	tb.Helper()
	if err != nil || resp == nil {
		tb.Fatalf("no answer: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("status %s, body %q", resp.Status, body)
	}
	var e echoReply
	if err := json.Unmarshal(body, &e); err != nil {
		tb.Fatalf("decoding %q: %v", body, err)
	}
	return e
}

func getReq(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: " + testHost + "\r\n\r\n"
}

// TestLeanPipelining: pipelined requests are answered in order; a request
// the lean loop does not take (a body, a head over its buffer) goes to
// net/http with what was read, and net/http serves the rest.
func TestLeanPipelining(t *testing.T) {
	echo := newEchoUpstream(t, "echo")
	tf := startLean(t, leanSetup{api: echo.URL, hfs: echo.URL})

	t.Run("three gets", func(t *testing.T) {
		before := leanCount.Load()
		rc := dialRaw(t, tf)
		rc.send(t, getReq("/alice/p1")+getReq("/alice/p2?x=1")+getReq("/alice/p3"))
		for _, want := range []string{"/alice/p1", "/alice/p2?x=1", "/alice/p3"} {
			if e := rc.echo(t); e.RequestURI != want {
				t.Fatalf("answer for %s, want %s", e.RequestURI, want)
			}
		}
		if n := leanCount.Load() - before; n != 3 {
			t.Errorf("lean loop served %d, want 3", n)
		}
	})

	t.Run("post after two gets", func(t *testing.T) {
		before := leanCount.Load()
		rc := dialRaw(t, tf)
		body := strings.Repeat("payload.", 100)
		rc.send(t, getReq("/alice/a")+getReq("/alice/b")+
			"POST /alice/events HTTP/1.1\r\nHost: "+testHost+"\r\nContent-Type: text/plain\r\nContent-Length: "+fmt.Sprint(len(body))+"\r\n\r\n"+body+
			getReq("/alice/c"))
		for _, want := range []string{"/alice/a", "/alice/b", "/alice/events", "/alice/c"} {
			e := rc.echo(t)
			if e.RequestURI != want {
				t.Fatalf("answer for %s, want %s", e.RequestURI, want)
			}
			if want == "/alice/events" {
				sum := sha256.Sum256([]byte(body))
				if e.Method != http.MethodPost || e.BodyLen != int64(len(body)) || e.BodySHA256 != hex.EncodeToString(sum[:]) {
					t.Fatalf("upstream got %s with %d bytes (%s), want POST with %d", e.Method, e.BodyLen, e.BodySHA256, len(body))
				}
			}
		}
		if n := leanCount.Load() - before; n != 2 {
			t.Errorf("lean loop served %d, want 2 (the POST and what follows go to net/http)", n)
		}
	})

	t.Run("head over the buffer", func(t *testing.T) {
		before := leanCount.Load()
		rc := dialRaw(t, tf)
		rc.send(t, "GET /alice/big HTTP/1.1\r\nHost: "+testHost+"\r\nX-Big: "+strings.Repeat("b", 6<<10)+"\r\n\r\n"+getReq("/alice/after"))
		for _, want := range []string{"/alice/big", "/alice/after"} {
			if e := rc.echo(t); e.RequestURI != want {
				t.Fatalf("answer for %s, want %s", e.RequestURI, want)
			}
		}
		if n := leanCount.Load() - before; n != 0 {
			t.Errorf("lean loop served %d, want 0", n)
		}
	})
}

// TestLeanMalformed: requests the lean loop must leave to net/http get
// net/http's answer, and the connection is kept or closed as net/http
// does (a kept one answers a next request).
func TestLeanMalformed(t *testing.T) {
	echo := newEchoUpstream(t, "echo")
	lean := startLean(t, leanSetup{api: echo.URL, hfs: echo.URL})
	ref := startLean(t, leanSetup{api: echo.URL, hfs: echo.URL, netHTTP: true})
	h := testHost
	cases := []struct{ name, raw string }{
		{"bare LF", "GET /alice/events HTTP/1.1\nHost: " + h + "\n\n"},
		{"bare LF in a header", "GET /alice/events HTTP/1.1\r\nHost: " + h + "\nX-A: 1\r\n\r\n"},
		{"bare LF at the end", "GET /alice/events HTTP/1.1\r\nHost: " + h + "\r\n\n"},
		{"bare CR", "GET /alice/events HTTP/1.1\r\nHost: " + h + "\r\nX-A: a\rb\r\n\r\n"},
		{"obs-fold", "GET /alice/events HTTP/1.1\r\nHost: " + h + "\r\nX-A: a\r\n b\r\n\r\n"},
		{"two hosts", "GET /alice/events HTTP/1.1\r\nHost: " + h + "\r\nHost: other.example\r\n\r\n"},
		{"two equal hosts", "GET /alice/events HTTP/1.1\r\nHost: " + h + "\r\nHost: " + h + "\r\n\r\n"},
		{"no host", "GET /alice/events HTTP/1.1\r\nAccept: */*\r\n\r\n"},
		{"invalid host", "GET /alice/events HTTP/1.1\r\nHost: a b\r\n\r\n"},
		{"space before colon", "GET /alice/events HTTP/1.1\r\nHost : " + h + "\r\n\r\n"},
		{"no colon", "GET /alice/events HTTP/1.1\r\nHost: " + h + "\r\nX-A\r\n\r\n"},
		{"empty name", "GET /alice/events HTTP/1.1\r\nHost: " + h + "\r\n: v\r\n\r\n"},
		{"HTTP/1.0", "GET /alice/events HTTP/1.0\r\nHost: " + h + "\r\n\r\n"},
		{"HTTP/1.0 keep-alive", "GET /alice/events HTTP/1.0\r\nHost: " + h + "\r\nConnection: keep-alive\r\n\r\n"},
		{"HTTP/1.0 no host", "GET /alice/events HTTP/1.0\r\n\r\n"},
		{"lowercase proto", "GET /alice/events http/1.1\r\nHost: " + h + "\r\n\r\n"},
		{"HTTP/2.0", "GET /alice/events HTTP/2.0\r\nHost: " + h + "\r\n\r\n"},
		{"absolute-form", "GET https://" + h + "/alice/events?x=1 HTTP/1.1\r\nHost: " + h + "\r\n\r\n"},
		{"absolute-form other host", "GET https://other.example/alice/events HTTP/1.1\r\nHost: " + h + "\r\n\r\n"},
		{"CONNECT", "CONNECT " + h + ":443 HTTP/1.1\r\nHost: " + h + ":443\r\n\r\n"},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: " + h + "\r\n\r\n"},
		{"invalid method", "GE(T /alice/events HTTP/1.1\r\nHost: " + h + "\r\n\r\n"},
		{"NUL in value", "GET /alice/events HTTP/1.1\r\nHost: " + h + "\r\nX-A: a\x00b\r\n\r\n"},
		{"NUL in name", "GET /alice/events HTTP/1.1\r\nHost: " + h + "\r\nX-\x00A: a\r\n\r\n"},
		{"fragment", "GET /alice/events#frag HTTP/1.1\r\nHost: " + h + "\r\n\r\n"},
		{"space in target", "GET /alice/ev ents HTTP/1.1\r\nHost: " + h + "\r\n\r\n"},
		{"get with content-length", "GET /alice/events HTTP/1.1\r\nHost: " + h + "\r\nContent-Length: 0\r\n\r\n"},
		{"get chunked", "GET /alice/events HTTP/1.1\r\nHost: " + h + "\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"expect", "GET /alice/events HTTP/1.1\r\nHost: " + h + "\r\nExpect: 100-continue\r\n\r\n"},
		{"unknown expect", "GET /alice/events HTTP/1.1\r\nHost: " + h + "\r\nExpect: magic\r\n\r\n"},
		{"trailer header", "GET /alice/events HTTP/1.1\r\nHost: " + h + "\r\nTrailer: X-A\r\n\r\n"},
		{"leading empty line", "\r\nGET /alice/events HTTP/1.1\r\nHost: " + h + "\r\n\r\n"},
	}
	for _, c := range cases {
		viaRef := malformedExchange(t, ref, c.raw)
		viaLean := malformedExchange(t, lean, c.raw)
		if viaLean != viaRef {
			t.Errorf("%s: client got\n%s\nfrom the lean front, and from net/http\n%s", c.name, viaLean, viaRef)
		}
	}
}

// malformedExchange writes raw, describes the answer, then whether the
// connection closed (if the answer said so or failed) or still answers.
func malformedExchange(t *testing.T, tf *testFront, raw string) string {
	t.Helper()
	rc := dialRaw(t, tf)
	_ = rc.c.SetDeadline(time.Now().Add(3 * time.Second)) // a stall is a failure, not a hang
	rc.send(t, raw)
	_, resp, body, err := rc.read(methodOf(raw))
	d := describe(nil, resp, body, err)
	if resp == nil || err != nil || resp.Close {
		return d + "then " + rc.closed(3*time.Second) + "\n"
	}
	rc.send(t, getReq("/alice/next"))
	_, resp, body, err = rc.read(http.MethodGet)
	if resp == nil {
		return d + "next: " + reduceErr(err) + "\n"
	}
	return d + fmt.Sprintf("next: %s %q\n", resp.Status, body)
}

// TestLeanClientGone: a client that closes its connection while its
// request runs has the upstream's request canceled.
func TestLeanClientGone(t *testing.T) {
	arrived := make(chan struct{}, 1)
	canceled := make(chan struct{}, 1)
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
			canceled <- struct{}{}
		case <-time.After(10 * time.Second):
		}
	}))
	tf := startLean(t, leanSetup{api: up.URL, hfs: up.URL})
	for _, path := range []string{"/alice/events", "/alice/events?a=1;b=2"} { // the forwarder, ReverseProxy
		before := leanCount.Load()
		rc := dialRaw(t, tf)
		rc.send(t, getReq(path))
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the request did not reach the upstream", path)
		}
		rc.c.Close()
		select {
		case <-canceled:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the upstream's request was not canceled within 10s of the client going away", path)
		}
		if n := leanCount.Load() - before; n != 1 {
			t.Errorf("%s: lean loop served %d, want 1", path, n)
		}
	}
}

// TestLeanTimeouts: the header timeout closes a connection that stalls in
// a head, the idle timeout an idle one; one that keeps sending within the
// idle timeout is kept.
func TestLeanTimeouts(t *testing.T) {
	echo := newEchoUpstream(t, "echo")
	tf := startLean(t, leanSetup{api: echo.URL, hfs: echo.URL, tweak: func(f *Front) {
		f.srv.ReadHeaderTimeout = 300 * time.Millisecond
		f.srv.IdleTimeout = 500 * time.Millisecond
	}})
	const bound = 5 * time.Second
	half := "GET /alice/events HTTP/1.1\r\nHost: al"

	t.Run("half a first head", func(t *testing.T) {
		rc := dialRaw(t, tf)
		rc.send(t, half)
		if got := rc.closed(bound); !wasClosed(got) {
			t.Fatalf("a stalled head: %s after %v", got, bound)
		}
	})
	t.Run("half a second head", func(t *testing.T) {
		rc := dialRaw(t, tf)
		rc.send(t, getReq("/alice/first"))
		rc.echo(t)
		rc.send(t, half)
		if got := rc.closed(bound); !wasClosed(got) {
			t.Fatalf("a stalled head: %s after %v", got, bound)
		}
	})
	t.Run("idle", func(t *testing.T) {
		rc := dialRaw(t, tf)
		rc.send(t, getReq("/alice/first"))
		rc.echo(t)
		if got := rc.closed(bound); !wasClosed(got) {
			t.Fatalf("an idle connection: %s after %v", got, bound)
		}
	})
	t.Run("active", func(t *testing.T) {
		before := leanCount.Load()
		rc := dialRaw(t, tf)
		for i := range 8 {
			rc.send(t, getReq(fmt.Sprintf("/alice/r%d", i)))
			if e := rc.echo(t); e.RequestURI != fmt.Sprintf("/alice/r%d", i) {
				t.Fatalf("request %d: answer for %s", i, e.RequestURI)
			}
			time.Sleep(200 * time.Millisecond) // within the 500ms idle timeout
		}
		if n := leanCount.Load() - before; n != 8 {
			t.Errorf("lean loop served %d, want 8", n)
		}
	})
}

// TestLeanDrain: Shutdown closes an idle lean connection, lets one in
// flight finish with Connection: close, then returns; Serve returns nil.
func TestLeanDrain(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/alice/slow" {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		}
		_, _ = io.WriteString(w, "done")
	}))
	tf := startLean(t, leanSetup{api: up.URL, hfs: up.URL})
	before := leanCount.Load()
	idle := dialRaw(t, tf)
	idle.send(t, getReq("/alice/quick"))
	if resp, body, err := idle.readNoInterim(); err != nil || string(body) != "done" || resp.Close {
		t.Fatalf("quick: %v %q", err, body)
	}
	busy := dialRaw(t, tf)
	busy.send(t, getReq("/alice/slow"))
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not reach the upstream")
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel()
		shut <- tf.f.Shutdown(ctx)
	}()
	if got := idle.closed(5 * time.Second); !wasClosed(got) {
		t.Fatalf("idle connection during the drain: %s", got)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
	default:
	}
	close(release)
	resp, body, err := busy.readNoInterim()
	if err != nil || string(body) != "done" {
		t.Fatalf("in-flight request: %v %q", err, body)
	}
	if !resp.Close {
		t.Errorf("in-flight answer during the drain has no Connection: close: %v", resp.Header)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("Shutdown did not return after the in-flight request")
	}
	if err := tf.waitServe(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if n := leanCount.Load() - before; n != 2 {
		t.Errorf("lean loop served %d, want 2", n)
	}
}

// TestLeanPlainHTTP: behind a TLS-terminating proxy (no certificate), the
// lean loop serves too and keeps the proxy's X-Forwarded-Proto.
func TestLeanPlainHTTP(t *testing.T) {
	echo := newEchoUpstream(t, "echo")
	tf := startLean(t, leanSetup{api: echo.URL, hfs: echo.URL, plain: true})
	before := leanCount.Load()
	rc := dialRaw(t, tf)
	rc.send(t, "GET /alice/events HTTP/1.1\r\nHost: "+testHost+"\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n")
	e := rc.echo(t)
	if !slices.Equal(e.XFProto, []string{"https"}) {
		t.Errorf("X-Forwarded-Proto upstream %q, want the proxy's [https]", e.XFProto)
	}
	if !slices.Equal(e.XFF, []string{"198.51.100.1, 127.0.0.1"}) {
		t.Errorf("X-Forwarded-For upstream %q, want the proxy's chain and the hop", e.XFF)
	}
	if n := leanCount.Load() - before; n != 1 {
		t.Errorf("lean loop served %d, want 1", n)
	}
}

// leanParse runs the lean parser on head, as readHead would hand it over.
func leanParse(head []byte) (*http.Request, bool) {
	c := &h1Conn{hdr: make(http.Header, 16), remote: "192.0.2.1:40000"}
	c.tmpl = *c.tmpl.WithContext(context.Background())
	c.br = bufio.NewReaderSize(bytes.NewReader(head), h1ReadBuffer)
	buf, err := c.br.Peek(len(head))
	if err != nil || !c.parse(buf) {
		return nil, false
	}
	return &c.req, true
}

// netHTTPParse is what net/http's server reads from head: http.ReadRequest
// and the server's own checks (one valid Host for HTTP/1.1, valid names and
// values; the Host header removed).
func netHTTPParse(head []byte) (*http.Request, error) {
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		return nil, err
	}
	// ReadRequest drops the Host header; the server counts it first.
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(head)))
	if _, err := tp.ReadLine(); err != nil {
		return nil, err
	}
	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, err
	}
	hosts := mh["Host"]
	if r.ProtoAtLeast(1, 1) && len(hosts) != 1 || len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]) {
		return nil, errors.New("bad Host")
	}
	for k, vv := range r.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, errors.New("invalid header name")
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, errors.New("invalid header value")
			}
		}
	}
	delete(r.Header, "Host")
	return r, nil
}

// FuzzLeanParse: whatever head the lean parser takes, net/http reads the
// same request from it.
func FuzzLeanParse(f *testing.F) {
	for _, rq := range leanRequests {
		f.Add([]byte(fmt.Sprintf(rq.raw, testHost)))
	}
	for _, s := range []string{
		"GET /a%2fb?x=%zz HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET //x/../y?#f HTTP/1.1\r\nHost: h:443\r\nPragma: no-cache\r\nCache-Control: max-age=0\r\n\r\n",
		"OPTIONS /\xff HTTP/1.1\r\nHost: [::1]:80\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: h\r\nX: \t v \t\r\nx: w\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		i := bytes.Index(data, []byte("\r\n\r\n"))
		if i < 0 || i+4 > h1ReadBuffer {
			return
		}
		head := data[:i+4]
		got, ok := leanParse(head)
		if !ok {
			return
		}
		want, err := netHTTPParse(head)
		if err != nil {
			t.Fatalf("the lean parser took %q, net/http refuses it: %v", head, err)
		}
		body, err := io.ReadAll(got.Body)
		if err != nil || len(body) != 0 {
			t.Fatalf("%q: lean body %q, %v", head, body, err)
		}
		wb, _ := io.ReadAll(want.Body)
		for _, c := range []struct {
			field     string
			lean, net any
		}{
			{"Method", got.Method, want.Method},
			{"URL", *got.URL, *want.URL},
			{"Proto", [3]any{got.Proto, got.ProtoMajor, got.ProtoMinor}, [3]any{want.Proto, want.ProtoMajor, want.ProtoMinor}},
			{"Host", got.Host, want.Host},
			{"Header", got.Header, want.Header},
			{"Close", got.Close, want.Close},
			{"RequestURI", got.RequestURI, want.RequestURI},
			{"ContentLength", got.ContentLength, want.ContentLength},
			{"Body", len(body), len(wb)},
			{"TransferEncoding", len(got.TransferEncoding), len(want.TransferEncoding)},
			{"Trailer", len(got.Trailer), len(want.Trailer)},
		} {
			if !reflect.DeepEqual(c.lean, c.net) {
				t.Errorf("%q: %s %#v from the lean parser, %#v from net/http", head, c.field, c.lean, c.net)
			}
		}
	})
}
