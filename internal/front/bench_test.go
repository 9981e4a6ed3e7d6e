package front

import (
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkProxyKeepAlive measures HTTPS requests through the front to a
// small upstream, over one keep-alive client shared by parallel goroutines.
func BenchmarkProxyKeepAlive(b *testing.B) {
	upstream := newUpstream(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"events":[]}`)
	}))
	for _, bc := range []struct {
		name string
		h2   bool
		path string
	}{
		{"http1.1/api", false, "/alice/events"},
		{"http1.1/hfs", false, "/alice/events/e1/series"},
		{"h2/api", true, "/alice/events"},
		{"h2/hfs", true, "/alice/events/e1/series"},
	} {
		// "+observe" runs with Options.Observe set, as the daemon does when
		// metrics are on: it must not add allocations per request.
		for _, observe := range []bool{false, true} {
			name := bc.name
			setup := frontSetup{API: upstream.URL, HFS: upstream.URL, GetCertificate: getPKI(b).store.GetCertificate}
			if observe {
				name += "+observe"
				var counts [2][6]atomic.Uint64
				var nanos atomic.Int64
				setup.Observe = func(upstream string, status int, d time.Duration) {
					u := 0
					if upstream == "hfs" {
						u = 1
					}
					counts[u][min(status/100, 5)].Add(1)
					nanos.Add(int64(d))
				}
			}
			b.Run(name, func(b *testing.B) {
				tf := startFront(b, setup)
				c := httpsClient(b, tf.addr, bc.h2, nil)
				url := "https://" + testHost + bc.path
				get := func() error {
					resp, err := c.Get(url)
					if err != nil {
						return err
					}
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
					}
					return err
				}
				if err := get(); err != nil { // warm up: handshake and upstream pool
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := get(); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			})
		}
	}
}

func BenchmarkIsHFS(b *testing.B) {
	paths := []string{
		"/alice/events/ckq1w2e3r4t5y6/series",
		"/alice/series/batch",
		"/alice/events/ckq1w2e3r4t5y6",
		"/socket.io/",
		"/alice/events",
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sinkBool = isHFS(paths[i%len(paths)])
		i++
	}
}

// BenchmarkLocalRoutes is the cost localRoutes adds in front of the proxy,
// with the paths the daemon mounts: a proxied path, a core admin path that
// is proxied, and ones answered here.
func BenchmarkLocalRoutes(b *testing.B) {
	nop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	local := map[string]http.Handler{}
	for _, p := range benchLocalPaths {
		local[p] = nop
	}
	f, err := New(Options{Addr: "127.0.0.1:0", API: mustURL(b, "http://127.0.0.1:1"), HFS: mustURL(b, "http://127.0.0.1:2"), Local: local})
	if err != nil {
		b.Fatal(err)
	}
	lr := f.srv.Handler.(*localRoutes)
	lr.next = nop
	for _, path := range []string{"/alice/events", "/system/admin/users", "/system/admin/certs", benchLocalPaths[len(benchLocalPaths)-1] + "alice"} {
		b.Run(path, func(b *testing.B) {
			r, _ := http.NewRequest(http.MethodGet, "http://x"+path, nil)
			b.ReportAllocs()
			for b.Loop() {
				lr.ServeHTTP(nil, r)
			}
		})
	}
}
