package front

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/testutil"
)

// countingUpstream is an upstream that counts the connections it accepts and
// closes.
type countingUpstream struct {
	*httptest.Server
	opened, closed atomic.Int64
}

func newCountingUpstream(tb testing.TB, h http.Handler, idle time.Duration) *countingUpstream {
	tb.Helper()
	u := &countingUpstream{Server: httptest.NewUnstartedServer(h)}
	u.Config.IdleTimeout = idle
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			u.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			u.closed.Add(1)
		}
	}
	u.Start()
	tb.Cleanup(u.Close)
	return u
}

func get(tb testing.TB, c *http.Client, method, url string) (*http.Response, string) {
	tb.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, string(b)
}

// Keep-alive to the upstream: one connection carries every sequential
// request, whatever the response's shape (sized, chunked, empty, HEAD).
func TestUpstreamConnectionReused(t *testing.T) {
	up := newCountingUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/u/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/u/chunked":
			w.(http.Flusher).Flush() // no Content-Length: chunked
			_, _ = io.WriteString(w, strings.Repeat("x", 100<<10))
		default:
			_, _ = io.WriteString(w, "hello")
		}
	}), 0)
	for _, h2 := range []bool{false, true} {
		t.Run(protoName(h2), func(t *testing.T) {
			tf := startFront(t, frontSetup{API: up.URL, HFS: up.URL, GetCertificate: getPKI(t).store.GetCertificate})
			c := httpsClient(t, tf.addr, h2, nil)
			before := up.opened.Load()
			for i := range 40 {
				method, path, want, wantStatus := http.MethodGet, "/u/sized", "hello", 200
				switch i % 4 {
				case 1:
					path, want, wantStatus = "/u/empty", "", 204
				case 2:
					path, want = "/u/chunked", strings.Repeat("x", 100<<10)
				case 3:
					method, want = http.MethodHead, ""
				}
				resp, body := get(t, c, method, "https://"+testHost+path)
				if resp.StatusCode != wantStatus || body != want {
					t.Fatalf("%s %s: %d with %d bytes, want %d with %d", method, path, resp.StatusCode, len(body), wantStatus, len(want))
				}
			}
			if n := up.opened.Load() - before; n != 1 {
				t.Fatalf("40 sequential requests opened %d upstream connections, want 1", n)
			}
		})
	}
}

// An upstream's "Connection: close" is honoured: that connection is not
// reused, and the next request gets a new one.
func TestUpstreamConnectionClose(t *testing.T) {
	up := newCountingUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	}), 0)
	tf := startFront(t, frontSetup{API: up.URL, HFS: up.URL, GetCertificate: getPKI(t).store.GetCertificate})
	c := httpsClient(t, tf.addr, false, nil)
	for range 3 {
		if resp, body := get(t, c, http.MethodGet, "https://"+testHost+"/a"); resp.StatusCode != 200 || body != "bye" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	}
	if n := up.opened.Load(); n != 3 {
		t.Fatalf("3 requests answered with Connection: close opened %d connections, want 3", n)
	}
}

// The upstream closes keep-alive connections it finds idle (Node.js does
// after 5 s). A pooled connection it closed is found out before use when it
// has been idle a while, and otherwise retried once for a request that is
// safe to replay; a POST is never sent twice.
func TestUpstreamClosedIdleConnection(t *testing.T) {
	var posts atomic.Int64
	up := newCountingUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}), 50*time.Millisecond)
	addr := strings.TrimPrefix(up.URL, "http://")
	newTransport := func(checkAfter time.Duration) *upstreamTransport {
		ut := newUpstreamTransport(addr, &http.Transport{DialContext: (&net.Dialer{}).DialContext,
			IdleConnTimeout: time.Minute, MaxIdleConnsPerHost: 8})
		ut.checkAfter = checkAfter
		t.Cleanup(ut.closeIdle)
		return ut
	}
	do := func(ut *upstreamTransport, method string, body io.Reader) (string, error) {
		req, err := http.NewRequest(method, up.URL+"/x", body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ut.RoundTrip(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	// waitIdleClosed waits until the upstream has closed every connection.
	waitIdleClosed := func() {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, "the upstream closing its idle connections", func() (bool, string) {
			closed, opened := up.closed.Load(), up.opened.Load()
			return closed == opened, fmt.Sprintf("%d of %d closed", closed, opened)
		})
	}

	t.Run("found out before use", func(t *testing.T) {
		ut := newTransport(0) // always peek at a pooled connection
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			if _, err := do(ut, http.MethodGet, nil); err != nil {
				t.Fatal(err)
			}
			waitIdleClosed()
			opened, before := up.opened.Load(), posts.Load()
			if body, err := do(ut, method, strings.NewReader("payload")); err != nil || body != "ok" {
				t.Fatalf("%s on a connection the upstream closed: %q, %v", method, body, err)
			}
			if up.opened.Load() != opened+1 {
				t.Fatalf("%s: %d new connections, want 1", method, up.opened.Load()-opened)
			}
			if method == http.MethodPost && posts.Load() != before+1 {
				t.Fatalf("POST reached the upstream %d times, want 1", posts.Load()-before)
			}
		}
	})
	t.Run("retried when safe", func(t *testing.T) {
		ut := newTransport(time.Hour) // never peek: the request meets the closed connection
		if _, err := do(ut, http.MethodGet, nil); err != nil {
			t.Fatal(err)
		}
		waitIdleClosed()
		if body, err := do(ut, http.MethodGet, nil); err != nil || body != "ok" {
			t.Fatalf("GET on a connection the upstream closed: %q, %v (want a retry on a new one)", body, err)
		}
		waitIdleClosed()
		before := posts.Load()
		if _, err := do(ut, http.MethodPost, nil); err == nil {
			t.Fatalf("POST on a closed connection succeeded: it must not be replayed")
		}
		if n := posts.Load() - before; n != 0 {
			t.Fatalf("the POST reached the upstream %d times", n)
		}
	})
}

// A client that goes away, before the answer or in the middle of the body,
// takes the upstream connection with it: the upstream sees it closed, and it
// never returns to the pool half-read.
func TestUpstreamClientGone(t *testing.T) {
	gone := make(chan string, 4)
	up := newCountingUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/mid-body" {
			_, _ = io.WriteString(w, strings.Repeat("y", 64<<10))
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
			gone <- r.URL.Path
		case <-time.After(10 * time.Second):
		}
	}), 0)
	tf := startFront(t, frontSetup{API: up.URL, HFS: up.URL, GetCertificate: getPKI(t).store.GetCertificate})
	c := httpsClient(t, tf.addr, false, nil)
	for _, path := range []string{"/before-head", "/mid-body"} {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+testHost+path, nil)
		go func() { time.Sleep(200 * time.Millisecond); cancel() }()
		resp, err := c.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: err %v, want context.Canceled", path, err)
		}
		select {
		case p := <-gone:
			if p != path {
				t.Fatalf("upstream saw %s go, want %s", p, path)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the upstream connection stayed open after the client went away", path)
		}
	}
	if n := up.opened.Load(); n != 2 {
		t.Fatalf("%d upstream connections, want 2 (an abandoned one is never reused)", n)
	}
}

// 103 Early Hints reach the client before the answer, and a chunked body's
// trailers after it.
func TestUpstreamInterimAndTrailers(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Trailer", "X-Checksum")
		_, _ = io.WriteString(w, "body")
		w.(http.Flusher).Flush()
		w.Header().Set("X-Checksum", "abc")
	}))
	tf := startFront(t, frontSetup{API: up.URL, HFS: up.URL, GetCertificate: getPKI(t).store.GetCertificate})
	for _, h2 := range []bool{false, true} {
		t.Run(protoName(h2), func(t *testing.T) {
			c := httpsClient(t, tf.addr, h2, nil)
			var hints []string
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				hints = append(hints, h.Get("Link"))
				return nil
			}}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
				http.MethodGet, "https://"+testHost+"/a", nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(b) != "body" {
				t.Fatalf("body %q, %v", b, err)
			}
			if len(hints) != 1 || hints[0] != "</app.css>; rel=preload" {
				t.Fatalf("early hints seen by the client: %q", hints)
			}
			if got := resp.Trailer.Get("X-Checksum"); got != "abc" {
				t.Fatalf("trailer X-Checksum = %q, want abc", got)
			}
		})
	}
}

// An upstream that answers something that is not HTTP gets the client a 502
// in the API's error shape, and the connection is not reused.
func TestUpstreamGarbageIs502(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = http.ReadRequest(bufio.NewReader(c))
				_, _ = io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n\r\n")
			}()
		}
	}()
	url := "http://" + ln.Addr().String()
	tf := startFront(t, frontSetup{API: url, HFS: url, GetCertificate: getPKI(t).store.GetCertificate})
	c := httpsClient(t, tf.addr, false, nil)
	resp, body := get(t, c, http.MethodGet, "https://"+testHost+"/a")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, `"id":"unexpected-error"`) {
		t.Fatalf("got %d %s, want 502 with the API's error shape", resp.StatusCode, body)
	}
}

// An upstream that answers an upload before reading it (401, 413) is heard:
// the client gets that answer, not a 502 for the write it cut short.
func TestUpstreamEarlyAnswerToUpload(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		_, _ = io.WriteString(w, `{"error":{"id":"too-large"}}`)
	}))
	tf := startFront(t, frontSetup{API: up.URL, HFS: up.URL, GetCertificate: getPKI(t).store.GetCertificate})
	c := httpsClient(t, tf.addr, false, nil)
	req, _ := http.NewRequest(http.MethodPost, "https://"+testHost+"/alice/events", strings.NewReader(strings.Repeat("z", 8<<20)))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("upload answered %d %s, want the upstream's 413", resp.StatusCode, b)
	}
}

// After a shutdown closed the pool, a connection whose request was still in
// flight (a drain that timed out) is closed when it comes back, not pooled.
func TestUpstreamClosedPoolClosesLateReturns(t *testing.T) {
	up := newCountingUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "late")
	}), 0)
	ut := newUpstreamTransport(strings.TrimPrefix(up.URL, "http://"), &http.Transport{
		DialContext: (&net.Dialer{}).DialContext, IdleConnTimeout: time.Minute, MaxIdleConnsPerHost: 8})
	req, _ := http.NewRequest(http.MethodGet, up.URL+"/x", nil)
	resp, err := ut.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	ut.closeIdle() // the shutdown, while the body is still unread
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "late" {
		t.Fatalf("body %q, %v", b, err)
	}
	resp.Body.Close()
	testutil.Eventually(t, 5*time.Second, "the connection returned after the shutdown closed", func() (bool, string) {
		n := up.closed.Load()
		return n == 1, fmt.Sprintf("%d closed", n)
	})
	if n := ut.idleCount(); n != 0 {
		t.Fatalf("%d connections pooled after the shutdown", n)
	}
}
