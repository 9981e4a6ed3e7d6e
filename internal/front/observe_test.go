package front

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/testutil"
)

// observed records Options.Observe calls.
type observed struct {
	mu    sync.Mutex
	calls []observation
}

type observation struct {
	upstream string
	status   int
	d        time.Duration
}

func (o *observed) observe(upstream string, status int, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, observation{upstream, status, d})
}

// wait returns the calls once there are n of them (bounded).
func (o *observed) wait(t *testing.T, n int) []observation {
	t.Helper()
	var got []observation
	testutil.Eventually(t, 5*time.Second, fmt.Sprintf("%d observations", n), func() (bool, string) {
		o.mu.Lock()
		defer o.mu.Unlock()
		got = append([]observation(nil), o.calls...)
		return len(got) >= n, fmt.Sprintf("%d: %+v", len(got), got)
	})
	return got
}

func TestObserveProxiedRequests(t *testing.T) {
	api := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/alice/missing":
			w.WriteHeader(http.StatusEarlyHints) // informational: not the final status
			http.NotFound(w, r)
		case "/alice/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		default:
			_, _ = io.WriteString(w, "ok")
		}
	}))
	hfs := newEchoUpstream(t, "hfs")
	var obs observed
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "local") })
	tf := startFront(t, frontSetup{API: api.URL, HFS: hfs.URL, GetCertificate: getPKI(t).store.GetCertificate,
		Observe: obs.observe, Local: map[string]http.Handler{"/system/pryv-tls/healthz": local}})

	for _, h2 := range []bool{false, true} {
		t.Run(protoName(h2), func(t *testing.T) {
			obs.mu.Lock()
			obs.calls = nil
			obs.mu.Unlock()
			c := httpsClient(t, tf.addr, h2, nil)
			get := func(path string) int {
				t.Helper()
				resp, err := c.Get("https://" + testHost + path)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			if get("/system/pryv-tls/healthz") != 200 {
				t.Fatal("local route")
			}
			if get("/alice/events") != 200 || get("/alice/events/e1/series") != 200 || get("/alice/missing") != 404 {
				t.Fatal("unexpected status")
			}
			// A client that gives up before the answer: 499.
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+testHost+"/alice/slow", nil)
			if resp, err := c.Do(req); err == nil {
				resp.Body.Close()
				t.Fatalf("the slow request answered: %d %v", resp.StatusCode, resp.Header)
			}
			cancel()
			got := obs.wait(t, 4)
			want := []observation{{"api", 200, 0}, {"hfs", 200, 0}, {"api", 404, 0}, {"api", 499, 0}}
			if len(got) != len(want) {
				t.Fatalf("observations %+v, want %+v (the local route is not observed)", got, want)
			}
			for i := range want {
				if got[i].upstream != want[i].upstream || got[i].status != want[i].status || got[i].d <= 0 {
					t.Errorf("observation %d: %+v, want %s %d", i, got[i], want[i].upstream, want[i].status)
				}
			}
			if got[3].d < 150*time.Millisecond {
				t.Errorf("the abandoned request took %s, want about 200ms", got[3].d)
			}
		})
	}
}

func TestObserveUnreachableUpstreamAndUpgrade(t *testing.T) {
	ws, _ := newWSUpstream(t)
	var obs observed
	tf := startFront(t, frontSetup{API: ws.URL, HFS: "http://" + deadAddr(t), GetCertificate: getPKI(t).store.GetCertificate,
		Observe: obs.observe})

	c := httpsClient(t, tf.addr, false, nil)
	resp, err := c.Get("https://" + testHost + "/alice/events/e1/series")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}

	conn, err := tls.Dial("tcp", tf.addr, &tls.Config{RootCAs: getPKI(t).pool, ServerName: testHost, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(conn, "GET /socket.io/?transport=websocket HTTP/1.1\r\nHost: "+testHost+
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	wsResp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil || wsResp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", wsResp, err)
	}
	_, _ = io.WriteString(conn, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the upgraded connection: %q %v", buf, err)
	}
	conn.Close()

	got := obs.wait(t, 2)
	if got[0].upstream != "hfs" || got[0].status != 502 || got[1].upstream != "api" || got[1].status != 101 {
		t.Fatalf("observations %+v, want hfs 502 then api 101", got)
	}
}

// OnHandshake sees every handshake, full or resumed.
func TestOnHandshake(t *testing.T) {
	api := newEchoUpstream(t, "api")
	var mu sync.Mutex
	var seen []string
	tf := startFront(t, frontSetup{API: api.URL, HFS: api.URL, GetCertificate: getPKI(t).store.GetCertificate,
		OnHandshake: func(version uint16, resumed bool) {
			mu.Lock()
			defer mu.Unlock()
			s := tls.VersionName(version)
			if resumed {
				s += " resumed"
			}
			seen = append(seen, s)
		}})
	cache := tls.NewLRUClientSessionCache(4)
	for _, maxVersion := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		c := httpsClient(t, tf.addr, false, func(cfg *tls.Config) {
			cfg.ClientSessionCache = cache
			cfg.MaxVersion = maxVersion
		})
		for range 2 {
			resp, err := c.Get("https://" + testHost + "/alice/events")
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			c.CloseIdleConnections() // the next request handshakes again, resuming
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := "TLS 1.3,TLS 1.3 resumed,TLS 1.2,TLS 1.2 resumed"
	if got := strings.Join(seen, ","); got != want {
		t.Fatalf("handshakes %q, want %q", got, want)
	}
}

// nopWriter is a ResponseWriter that keeps nothing, reused across calls.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Observing a request adds no allocation to the proxy's own.
func TestObserveDoesNotAllocate(t *testing.T) {
	body := strings.NewReader("")
	rp := reverseProxy(upstream{name: "api", target: mustURL(t, "http://127.0.0.1:1")}, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		body.Reset("{}")
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(body), Request: r}, nil
	}), proxyOptions{log: slog.New(slog.DiscardHandler)})
	req, err := http.NewRequest(http.MethodGet, "https://"+testHost+"/alice/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.RemoteAddr = "127.0.0.1:1234"
	w := &nopWriter{h: http.Header{}}
	var last int
	measure := func(p *proxy) float64 {
		p.ServeHTTP(w, req) // warm the pool
		return testing.AllocsPerRun(200, func() {
			clear(w.h)
			p.ServeHTTP(w, req)
		})
	}
	plain := measure(&proxy{api: rp, hfs: rp})
	observing := measure(&proxy{api: rp, hfs: rp, observe: func(_ string, status int, _ time.Duration) { last = status }})
	if last != 200 {
		t.Fatalf("observed status %d, want 200", last)
	}
	t.Logf("allocations per proxied request: %v without Observe, %v with", plain, observing)
	if observing > plain {
		t.Fatalf("observing: %v allocations per request, without: %v", observing, plain)
	}
}
