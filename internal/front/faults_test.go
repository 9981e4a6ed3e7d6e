package front

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawUpstream accepts connections and hands each to serve (which owns it);
// it stands for an upstream that misbehaves below HTTP.
func rawUpstream(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); serve(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

// readRequestHead reads one request head from c (what a real upstream does
// before it misbehaves).
func readRequestHead(c net.Conn) (*bufio.Reader, error) {
	br := bufio.NewReader(c)
	_, err := http.ReadRequest(br)
	return br, err
}

func TestHSTS(t *testing.T) {
	const value = "max-age=31536000; includeSubDomains"
	// The API sends its own header; the front's replaces it, never doubles it.
	api := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=1")
		_, _ = io.WriteString(w, "api")
	}))
	hfs := newEchoUpstream(t, "hfs")
	local := map[string]http.Handler{"/system/admin/certs": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "local")
	})}
	on := startFront(t, frontSetup{API: api.URL, HFS: hfs.URL, GetCertificate: getPKI(t).store.GetCertificate, Local: local, HSTS: value})
	dead := startFront(t, frontSetup{API: "http://" + deadAddr(t), HFS: hfs.URL, GetCertificate: getPKI(t).store.GetCertificate, HSTS: value})
	off := startFront(t, frontSetup{API: api.URL, HFS: hfs.URL, GetCertificate: getPKI(t).store.GetCertificate})
	for _, h2 := range []bool{true, false} {
		t.Run(protoName(h2), func(t *testing.T) {
			for _, tc := range []struct {
				front *testFront
				path  string
				code  int
				want  []string
			}{
				{on, "/alice/events", 200, []string{value}},           // the upstream's replaced
				{on, "/alice/events/e1/series", 200, []string{value}}, // an upstream without one
				{on, "/system/admin/certs", 200, []string{value}},     // a local path
				{on, "/alice/x/../events/e1/series", 200, []string{value}},
				{dead, "/alice/events", 502, []string{value}},      // the front's own error
				{off, "/alice/events", 200, []string{"max-age=1"}}, // off: the upstream's passes
				{off, "/alice/events/e1/series", 200, nil},
			} {
				c := httpsClient(t, tc.front.addr, h2, nil)
				resp, err := c.Get("https://" + testHost + tc.path)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				got := resp.Header.Values("Strict-Transport-Security")
				if resp.StatusCode != tc.code || strings.Join(got, "|") != strings.Join(tc.want, "|") {
					t.Errorf("%s: %d with Strict-Transport-Security %q, want %d with %q", tc.path, resp.StatusCode, got, tc.code, tc.want)
				}
			}
		})
	}
}

// TestUpstreamFaults: an upstream that takes the request and never answers
// gets 504 after the header timeout, one that answers garbage 502, one that
// resets mid-body cuts that response only; every other request is answered
// meanwhile, over HTTP/2 and HTTP/1.1, with and without a request body (the
// two transports).
func TestUpstreamFaults(t *testing.T) {
	const timeout = time.Second
	var hung sync.WaitGroup
	release := make(chan struct{})
	silent := rawUpstream(t, func(c net.Conn) {
		defer c.Close()
		hung.Add(1)
		defer hung.Done()
		br, err := readRequestHead(c)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, br) // reads on, answers nothing, until the front hangs up
		<-release
	})
	defer close(release)
	garbage := rawUpstream(t, func(c net.Conn) {
		defer c.Close()
		if _, err := readRequestHead(c); err == nil {
			_, _ = io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n\r\n")
		}
	})
	resetting := rawUpstream(t, func(c net.Conn) {
		defer c.Close()
		if _, err := readRequestHead(c); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\nContent-Type: application/octet-stream\r\n\r\n")
		_, _ = c.Write(bytes.Repeat([]byte("x"), 64<<10))
		_ = c.(*net.TCPConn).SetLinger(0) // close sends RST
	})
	hfs := newEchoUpstream(t, "hfs")
	pki := getPKI(t).store.GetCertificate
	fronts := map[string]*testFront{
		"silent":    startFront(t, frontSetup{API: silent, HFS: hfs.URL, GetCertificate: pki, UpstreamHeaderTimeout: timeout}),
		"garbage":   startFront(t, frontSetup{API: garbage, HFS: hfs.URL, GetCertificate: pki, UpstreamHeaderTimeout: timeout}),
		"resetting": startFront(t, frontSetup{API: resetting, HFS: hfs.URL, GetCertificate: pki, UpstreamHeaderTimeout: timeout}),
	}
	for _, h2 := range []bool{true, false} {
		for _, post := range []bool{false, true} {
			name := protoName(h2) + map[bool]string{false: "/GET", true: "/POST"}[post]
			t.Run(name, func(t *testing.T) {
				request := func(tf *testFront, path string) (*http.Response, []byte, time.Duration, error) {
					c := httpsClient(t, tf.addr, h2, nil)
					var body io.Reader
					method := http.MethodGet
					if post {
						method, body = http.MethodPost, strings.NewReader(`{"streamIds":["s"],"type":"note/txt","content":"x"}`)
					}
					req, _ := http.NewRequest(method, "https://"+testHost+path, body)
					start := time.Now()
					resp, err := c.Do(req)
					if err != nil {
						return nil, nil, time.Since(start), err
					}
					defer resp.Body.Close()
					b, err := io.ReadAll(resp.Body)
					return resp, b, time.Since(start), err
				}
				wantError := func(what string, resp *http.Response, b []byte, code int, id string) {
					t.Helper()
					var e pryvError
					if resp.StatusCode != code || json.Unmarshal(b, &e) != nil || e.Error.ID != id {
						t.Errorf("%s: %d %q, want %d with error id %s", what, resp.StatusCode, b, code, id)
					}
				}

				// While one request waits on the silent upstream, others are answered.
				type result struct {
					resp *http.Response
					body []byte
					took time.Duration
					err  error
				}
				done := make(chan result, 1)
				go func() {
					resp, b, took, err := request(fronts["silent"], "/alice/events")
					done <- result{resp, b, took, err}
				}()
				for i := 0; i < 5; i++ {
					resp, _, took, err := request(fronts["silent"], "/alice/events/e1/series")
					if err != nil || resp.StatusCode != 200 {
						t.Fatalf("HFS beside a hung API: %v %v after %v", err, resp, took)
					}
				}
				var r result
				select {
				case r = <-done:
					t.Errorf("the hung request was answered (%v) before 5 requests beside it were", r.took)
				default:
					r = <-done
				}
				if r.err != nil {
					t.Fatalf("silent upstream: %v", r.err)
				}
				wantError("silent upstream", r.resp, r.body, http.StatusGatewayTimeout, "gateway-timeout")
				if r.took < timeout || r.took > timeout+2*time.Second {
					t.Errorf("silent upstream answered 504 after %v, want just over %v", r.took, timeout)
				}

				resp, b, _, err := request(fronts["garbage"], "/alice/events")
				if err != nil {
					t.Fatalf("garbage upstream: %v", err)
				}
				wantError("garbage upstream", resp, b, http.StatusBadGateway, "unexpected-error")

				resp, b, _, err = request(fronts["resetting"], "/alice/events")
				if err == nil {
					t.Errorf("upstream reset mid-body: the client got a complete answer (%d, %d bytes), want a cut one", resp.StatusCode, len(b))
				} else if resp != nil && resp.StatusCode != 200 {
					t.Errorf("upstream reset mid-body: status %d, want the 200 that had been sent", resp.StatusCode)
				}
				if len(b) >= 1<<20 {
					t.Errorf("upstream reset mid-body: %d bytes arrived", len(b))
				}
				for _, tf := range fronts {
					if resp, _, _, err := request(tf, "/alice/series/batch"); err != nil || resp.StatusCode != 200 {
						t.Errorf("after the faults, HFS: %v %v", err, resp)
					}
				}
			})
		}
	}
	if n := countLines(fronts["silent"].logs.String(), "upstream did not answer in time", "timeout=1s"); n != 4 {
		t.Errorf("%d log lines name the header timeout, want one per 504 (4)", n)
	}
}
