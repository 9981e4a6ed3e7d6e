package front

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rapidReset opens one HTTP/2 connection to addr and sends n HEADERS, each
// followed at once by RST_STREAM(CANCEL), as the CVE-2023-44487 attack does.
// It returns whether a GOAWAY came, how many frames were written before the
// server stopped taking them, and whether the server closed the connection
// within wait.
func rapidReset(t *testing.T, addr string, n int, wait time.Duration) (goAway bool, sent int, closed bool) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		ServerName: testHost, RootCAs: getPKI(t).pool, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", testHost}, {":path", "/alice/events"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	block := hb.Bytes()

	var sawGoAway atomic.Bool
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		rf := http2.NewFramer(io.Discard, conn)
		for {
			f, err := rf.ReadFrame()
			if err != nil {
				return
			}
			if _, ok := f.(*http2.GoAwayFrame); ok {
				sawGoAway.Store(true)
			}
		}
	}()
	_ = conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
	for i := 0; i < n; i++ {
		id := uint32(2*i + 1)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
			break
		}
		if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			break
		}
		sent++
	}
	select {
	case <-readDone:
		closed = true
	case <-time.After(wait):
	}
	return sawGoAway.Load(), sent, closed
}

// TestRapidReset: 5,000 HEADERS+RST_STREAM on one connection reach the
// upstream a bounded number of times, draw a GOAWAY and end the connection,
// while a well-behaved client is answered.
func TestRapidReset(t *testing.T) {
	var hits atomic.Int64
	api := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "{}")
	}))
	tf := startFront(t, frontSetup{API: api.URL, HFS: api.URL, GetCertificate: getPKI(t).store.GetCertificate})

	const n = 5000
	start := time.Now()
	goAway, sent, closed := rapidReset(t, tf.addr, n, 10*time.Second)
	took := time.Since(start)
	// Streams whose handler ran before its reset was read may have been
	// forwarded; the rest were not, and past the bound no stream starts.
	const bound = maxResets + 250 // the reset bound, plus at most one window of concurrent streams
	got := hits.Load()
	t.Logf("%d of %d HEADERS+RST_STREAM pairs sent in %v; upstream hits %d; GOAWAY %v; connection closed by the server %v",
		sent, n, took.Round(time.Millisecond), got, goAway, closed)
	if !goAway {
		t.Error("no GOAWAY after the resets")
	}
	if !closed {
		t.Error("the connection was still open 10 s after the attack")
	}
	if got > bound {
		t.Errorf("%d requests reached the upstream, want at most %d", got, bound)
	}
	if n := countLines(tf.logs.String(), "HTTP/2 client reset too many streams"); n != 1 {
		t.Errorf("%d warnings for the resets, want 1", n)
	}

	// A well-behaved client on its own connection is answered.
	c := httpsClient(t, tf.addr, true, nil)
	resp, err := c.Get("https://" + testHost + "/alice/events")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a normal request after the attack: %v %v", err, resp)
	}
	resp.Body.Close()
}

// TestResetsBelowTheBound: a client that cancels some requests (a browser
// navigating away) keeps its connection.
func TestResetsBelowTheBound(t *testing.T) {
	api := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "{}") }))
	tf := startFront(t, frontSetup{API: api.URL, HFS: api.URL, GetCertificate: getPKI(t).store.GetCertificate})
	goAway, sent, closed := rapidReset(t, tf.addr, maxResets/2, time.Second)
	if goAway || sent != maxResets/2 {
		t.Errorf("%d resets (under the bound of %d): GOAWAY %v, closed %v; want the connection kept", sent, maxResets, goAway, closed)
	}
}

// TestGrowStackDoesNotAllocate: the stream's stack reserve is a frame, not a
// heap object (escape analysis keeps the array on the stack only while
// nothing keeps it).
func TestGrowStackDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, growStack); n != 0 {
		t.Fatalf("growStack allocates %v times per call", n)
	}
}
