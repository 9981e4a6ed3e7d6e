package front

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// wireUpstream records each request head as it came on the wire and answers
// with resp, byte for byte: what the two forwarding paths send and how they
// pass a response on are compared on the wire, not through net/http's view.
type wireUpstream struct {
	addr string
	mu   sync.Mutex
	got  []string
	resp string
}

func newWireUpstream(t *testing.T) *wireUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u := &wireUpstream{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c)
		}
	}()
	return u
}

func (u *wireUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		u.mu.Lock()
		u.got = append(u.got, head.String())
		resp := u.resp
		u.mu.Unlock()
		if _, err := io.WriteString(c, resp); err != nil {
			return
		}
	}
}

func (u *wireUpstream) last() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.got) == 0 {
		return ""
	}
	return u.got[len(u.got)-1]
}

// TestGetForwarderMatchesReverseProxy: for every request the forwarder
// takes, the upstream gets the same bytes as through ReverseProxy, and the
// client the same status, headers, body and trailers; in both trust modes,
// with and without the front's own HSTS, for the API (client's Host) and
// HFS (the upstream's own).
func TestGetForwarderMatchesReverseProxy(t *testing.T) {
	up := newWireUpstream(t)
	target := mustURL(t, "http://"+up.addr)
	responses := map[string]string{
		"plain": "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\nX-Api-Version: 1.9\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n{\"events\":[]}",
		"hop-by-hop": "HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n" +
			"Strict-Transport-Security: max-age=1\r\nContent-Length: 2\r\n\r\nok",
		"chunked+trailers": "HTTP/1.1 200 OK\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Late: unannounced\r\n\r\n",
		"not found":        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
		"early hints": "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
		"event stream": "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nContent-Length: 9\r\n\r\ndata: 1\n\n",
	}
	requests := []struct {
		name   string
		method string
		target string
		header map[string][]string
		tls    bool
	}{
		{"get", "GET", "/alice/events?limit=10&fromTime=1", map[string][]string{"Authorization": {"tok"}, "User-Agent": {"sdk/1"}, "Accept-Encoding": {"gzip"}}, true},
		{"no user agent", "GET", "/alice/events", nil, true},
		{"empty user agent", "GET", "/alice/events", map[string][]string{"User-Agent": {""}}, false},
		{"head", "HEAD", "/alice/events/e1/series", map[string][]string{"Accept": {"*/*"}}, true},
		{"spoofed forwarding", "GET", "/alice/access-info", map[string][]string{"X-Forwarded-For": {"10.0.0.1", "10.0.0.2"},
			"X-Forwarded-Host": {"evil.example"}, "X-Forwarded-Proto": {"http"}, "Forwarded": {"for=1.2.3.4"}}, true},
		{"hop-by-hop", "GET", "/alice/events", map[string][]string{"Connection": {"keep-alive, X-Private", "Foo"}, "X-Private": {"p"}, "Foo": {"f"},
			"Keep-Alive": {"300"}, "Proxy-Authorization": {"Basic x"}, "Te": {"trailers, deflate"}, "Trailer": {"X"}}, true},
		{"te without trailers", "GET", "/alice/events", map[string][]string{"Te": {"deflate"}}, true},
		{"escaped path", "GET", "/alice/events/a%20b", nil, true},
		{"repeated header", "GET", "/alice/events", map[string][]string{"Accept": {"a", "b"}, "Cookie": {"c=1", "d=2"}}, true},
	}
	for _, trust := range []bool{false, true} {
		for _, ownHSTS := range []bool{false, true} {
			for _, u := range []upstream{{name: "api", target: target}, {name: "hfs", target: target, ownHost: true}} {
				o := proxyOptions{trustForwarded: trust, ownHSTS: ownHSTS, log: slog.New(slog.DiscardHandler)}
				ut := newUpstreamTransport(up.addr, &http.Transport{DialContext: (&net.Dialer{}).DialContext, IdleConnTimeout: time.Hour, MaxIdleConnsPerHost: 4})
				ut.checkAfter = 1 << 62 // the raw upstream keeps its connections
				rp := reverseProxy(u, ut, o)
				fast := newGetForwarder(u, ut, o)
				if fast == nil {
					t.Fatal("no forwarder for a plain http://host:port target")
				}
				for rname, resp := range responses {
					up.mu.Lock()
					up.resp = resp
					up.mu.Unlock()
					for _, rq := range requests {
						name := strings.Join([]string{rq.name, rname, u.name, map[bool]string{true: "trusted", false: "edge"}[trust],
							map[bool]string{true: "hsts", false: "nohsts"}[ownHSTS]}, "/")
						newReq := func() *http.Request {
							r := httptest.NewRequest(rq.method, "https://alice.pryv.me"+rq.target, nil)
							r.RemoteAddr = "192.0.2.7:40000"
							if !rq.tls {
								r.TLS = nil
							} else if r.TLS == nil {
								r.TLS = &tls.ConnectionState{}
							}
							for k, vv := range rq.header {
								r.Header[k] = slices.Clone(vv)
							}
							return r
						}
						r := newReq()
						if !takes(r) {
							t.Fatalf("%s: not taken by the forwarder", name)
						}
						viaRP, wireRP := serveOnce(t, rp, newReq(), up)
						viaFast, wireFast := serveOnce(t, fast, r, up)
						if wireRP != wireFast {
							t.Errorf("%s: upstream got\n%q\nthrough the forwarder, and through ReverseProxy\n%q", name, wireFast, wireRP)
						}
						if viaRP != viaFast {
							t.Errorf("%s: client got\n%s\nthrough the forwarder, and through ReverseProxy\n%s", name, viaFast, viaRP)
						}
					}
				}
			}
		}
	}
}

// serveOnce runs h on r with a hsts-like header already set (as the front's
// wrappers do) and returns what the client got, in a comparable form, and
// the request head the upstream got.
func serveOnce(t *testing.T, h http.Handler, r *http.Request, up *wireUpstream) (string, string) {
	t.Helper()
	w := &recorder{ResponseRecorder: httptest.NewRecorder()}
	w.Header()["Strict-Transport-Security"] = []string{"max-age=63072000"}
	aborted := func() (aborted bool) {
		defer func() {
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler { //nolint:errorlint // a recover() value: the sentinel panicked as is, as net/http compares it
					panic(v)
				}
				aborted = true
			}
		}()
		// As under a server: ReverseProxy ends a failed copy with ErrAbortHandler only there.
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), http.ServerContextKey, &http.Server{})))
		return false
	}()
	res := w.Result()
	body, _ := io.ReadAll(res.Body)
	var b strings.Builder
	b.WriteString(strings.Join(w.informational, ";") + "\n")
	if aborted {
		b.WriteString("aborted\n")
	}
	b.WriteString(res.Status + "\n")
	for _, k := range slices.Sorted(maps.Keys(res.Header)) {
		v := res.Header[k]
		if k == "Trailer" { // a set: its order follows a map's
			v = strings.Split(strings.Join(v, ", "), ", ")
			slices.Sort(v)
		}
		b.WriteString(k + ": " + strings.Join(v, " | ") + "\n")
	}
	b.WriteString("\n" + string(body) + "\n")
	for _, k := range slices.Sorted(maps.Keys(res.Trailer)) {
		b.WriteString("trailer " + k + ": " + strings.Join(res.Trailer[k], " | ") + "\n")
	}
	return b.String(), up.last()
}

// recorder notes the interim responses (ResponseRecorder keeps only the
// final one).
type recorder struct {
	*httptest.ResponseRecorder
	informational []string
}

func (r *recorder) WriteHeader(code int) {
	if code >= 100 && code < 200 {
		r.informational = append(r.informational, http.StatusText(code)+" "+r.Header().Get("Link"))
		return // a server sends it and goes on; ResponseRecorder would take it for the final status
	}
	r.ResponseRecorder.WriteHeader(code)
}

func TestTakes(t *testing.T) {
	for _, c := range []struct {
		name string
		req  func() *http.Request
		want bool
	}{
		{"get", func() *http.Request { return httptest.NewRequest("GET", "/alice/events", nil) }, true},
		{"head", func() *http.Request { return httptest.NewRequest("HEAD", "/alice/events", nil) }, true},
		{"post", func() *http.Request { return httptest.NewRequest("POST", "/alice/events", strings.NewReader("{}")) }, false},
		{"get with a body", func() *http.Request { return httptest.NewRequest("GET", "/alice/events", strings.NewReader("x")) }, false},
		{"websocket", func() *http.Request {
			r := httptest.NewRequest("GET", "/socket.io/", nil)
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
			return r
		}, false},
		{"expect", func() *http.Request {
			r := httptest.NewRequest("GET", "/alice/events", nil)
			r.Header.Set("Expect", "100-continue")
			return r
		}, false},
		{"query ReverseProxy re-encodes (;)", func() *http.Request { return httptest.NewRequest("GET", "/alice/events?a=1;b=2", nil) }, false},
		{"query ReverseProxy re-encodes (bad escape)", func() *http.Request { return httptest.NewRequest("GET", "/alice/events?a=%zz", nil) }, false},
		{"clean query", func() *http.Request { return httptest.NewRequest("GET", "/alice/events?a=%20&b=2", nil) }, true},
	} {
		if got := takes(c.req()); got != c.want {
			t.Errorf("%s: takes = %v, want %v", c.name, got, c.want)
		}
	}
	for _, target := range []string{"http://127.0.0.1:3000/base", "http://127.0.0.1:3000?x=1", "https://127.0.0.1:3000"} {
		u := mustURL(t, target)
		if g := newGetForwarder(upstream{name: "api", target: u}, newUpstreamTransport(u.Host, &http.Transport{}), proxyOptions{}); g != nil {
			t.Errorf("%s: a forwarder for a target ReverseProxy must join or that is not plain HTTP", target)
		}
	}
}

// A streamed answer (chunked, or Server-Sent Events) reaches the client as
// it comes: the upstream sends its second part only once the client has
// read the first, so a front that buffered would hold the first back.
func TestGetForwarderStreams(t *testing.T) {
	for _, ct := range []string{"application/json", "text/event-stream"} {
		gotFirst := make(chan struct{}, 1)
		up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ct)
			if ct == "text/event-stream" {
				w.Header().Set("Content-Length", "18")
			}
			_, _ = io.WriteString(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-gotFirst:
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Second):
			}
			_, _ = io.WriteString(w, "last\n")
		}))
		tf := startFront(t, frontSetup{API: up.URL, HFS: up.URL, GetCertificate: getPKI(t).store.GetCertificate})
		for _, h2 := range []bool{false, true} {
			name := ct + " " + protoName(h2)
			ctx, cancel := context.WithCancel(context.Background())
			first := make(chan error, 1)
			var resp *http.Response
			go func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+testHost+"/alice/events?streaming=true", nil)
				var err error
				if resp, err = httpsClient(t, tf.addr, h2, nil).Do(req); err == nil {
					b := make([]byte, len("data: first\n\n"))
					if _, err = io.ReadFull(resp.Body, b); err == nil && string(b) != "data: first\n\n" {
						err = errors.New("first part " + string(b))
					}
				}
				first <- err
			}()
			select {
			case err := <-first:
				if err != nil {
					cancel()
					t.Fatalf("%s: %v", name, err)
				}
			case <-time.After(5 * time.Second):
				cancel()
				t.Fatalf("%s: the first part did not arrive while the upstream waited for it: the front held it back", name)
			}
			gotFirst <- struct{}{}
			rest, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			if err != nil || string(rest) != "last\n" {
				t.Fatalf("%s: rest %q, %v", name, rest, err)
			}
		}
	}
}
