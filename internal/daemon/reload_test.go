package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/testutil"
)

func freeTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// freeUDPTCP is a loopback port free for both UDP and TCP (the DNS server).
func freeUDPTCP(t *testing.T) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		ln, err := net.Listen("tcp", addr)
		pc.Close()
		if err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free UDP+TCP port")
	return ""
}

func named(name string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, name) }))
}

// testCore is where a test core listens and keeps its state.
type testCore struct {
	dir, front, dnsAddr, peer, client string
}

// yaml is a plain-HTTP core (Strategy B's front) with PlatformDB
// (dns.active, an atRestKey) on loopback, all under dir.
// live is what a reload changes in it.
type live struct {
	upstream, wwwA, adminKey, metrics string
}

func (tc testCore) yaml(l live) string {
	dir, peer, client := tc.dir, tc.peer, tc.client
	_, fport, _ := net.SplitHostPort(tc.front)
	_, dport, _ := net.SplitHostPort(tc.dnsAddr)
	return strings.Join([]string{
		"http:", "  ip: 127.0.0.1", "  port: " + fport,
		"core:", "  id: core1", "  ip: 127.0.0.1",
		"dns:", "  active: true", "  domain: example.com", "  ip: 127.0.0.1", "  port: " + dport,
		"  staticEntries:", "    - subdomain: www", "      records:", "        a: [" + l.wwwA + "]",
		"  userLookup:", "    source: 'off'",
		"letsEncrypt:", "  atRestKey: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8='", "  tlsDir: " + filepath.Join(dir, "tls"),
		"upstreams:", "  api: " + l.upstream, "  hfs: " + l.upstream,
		"auth:", "  adminAccessKey: " + l.adminKey,
		"metrics:", "  listen: " + l.metrics,
		"platformDB:", "  dataDir: " + filepath.Join(dir, "platformdb"), "  peerAddress: " + peer, "  clientAddress: " + client,
		"cluster:", "  ca:", "    path: " + filepath.Join(dir, "ca"),
		"control:", "  socket: " + filepath.Join(dir, "run", "pryv-tls.sock"),
	}, "\n") + "\n"
}

// In process and under -race: a reload moves the upstreams and the DNS
// static entry; reopening PlatformDB (what a live init-ca-holder does)
// keeps the front and the DNS server answering throughout and finds the
// data written before; SIGTERM then stops everything.
func TestReloadAndReopenInProcess(t *testing.T) {
	a, b := named("A"), named("B")
	defer a.Close()
	defer b.Close()
	tc := testCore{dir: t.TempDir(), front: freeTCP(t), dnsAddr: freeUDPTCP(t), peer: freeTCP(t), client: freeTCP(t)}
	front, dnsAddr := tc.front, tc.dnsAddr
	metrics1, metrics2 := freeTCP(t), freeTCP(t)
	load := func(l live) *config.Config {
		cfg, err := config.LoadBytes("reload.yml", []byte(tc.yaml(l)))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	var next atomic.Pointer[config.Config]
	next.Store(load(live{b.URL, "10.0.0.2", "admin-key-two-2222", metrics2}))
	hup := make(chan struct{})
	ready := make(chan string, 1)
	c, err := newCore(load(live{a.URL, "10.0.0.1", "admin-key-one-1111", metrics1}), Options{
		Logger: slog.New(slog.DiscardHandler), Reload: hup,
		Load:  func() (*config.Config, error) { return next.Load(), nil },
		Ready: func(addr string) { ready <- addr },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("run ended before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not ready within 30s")
	}
	cl := &http.Client{Timeout: 5 * time.Second}
	get := func() (string, error) {
		resp, err := cl.Get("http://" + front + "/alice/events")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), err
	}
	wwwA := func() (string, error) {
		m := new(dns.Msg)
		m.SetQuestion("www.example.com.", dns.TypeA)
		r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, dnsAddr)
		if err != nil {
			return "", err
		}
		if len(r.Answer) != 1 {
			return "", fmt.Errorf("%d answers", len(r.Answer))
		}
		return r.Answer[0].(*dns.A).A.String(), nil
	}
	status := func(url, key string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if key != "" {
			req.Header.Set("Authorization", key)
		}
		resp, err := cl.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	cores := "http://" + front + "/system/pryv-tls/admin/cores"
	testutil.Eventually(t, 10*time.Second, "the admin API answering with the first key", func() (bool, string) {
		st := status(cores, "admin-key-one-1111")
		return st == http.StatusOK, fmt.Sprint(st)
	})
	if got, err := get(); got != "A" || err != nil {
		t.Fatalf("before the reload the front answers %q (%v)", got, err)
	}
	if st := status("http://"+metrics1+"/healthz", ""); st != http.StatusOK {
		t.Fatalf("metrics listener at %s: %d", metrics1, st)
	}

	hup <- struct{}{}
	testutil.EventuallyTrue(t, 10*time.Second, "the reload finished", func() bool { return c.ob.lastReload.Load() != nil })
	if st := c.ob.lastReload.Load(); !st.OK {
		t.Fatalf("reload refused: %s", st.Error)
	}
	if got, err := get(); got != "B" || err != nil {
		t.Fatalf("after the reload the front answers %q (%v), want B", got, err)
	}
	if got, err := wwwA(); got != "10.0.0.2" || err != nil {
		t.Fatalf("after the reload www is %q (%v), want 10.0.0.2", got, err)
	}
	if one, two := status(cores, "admin-key-one-1111"), status(cores, "admin-key-two-2222"); one == http.StatusOK || two != http.StatusOK {
		t.Fatalf("after the reload: the old admin key answers %d, the new one %d", one, two)
	}
	if old, now := status("http://"+metrics1+"/healthz", ""), status("http://"+metrics2+"/healthz", ""); old != 0 || now != http.StatusOK {
		t.Fatalf("after the reload: metrics at the old address %d (want closed), at the new one %d", old, now)
	}

	db := c.plat.db.Load()
	if _, err := db.Put(ctx, "test/before-reopen", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	var (
		stop     atomic.Bool
		failures atomic.Int64
		served   atomic.Int64
		wg       sync.WaitGroup
	)
	wg.Go(func() {
		for n := 0; !stop.Load() && n < 100000; n++ {
			if got, err := get(); err != nil || got != "B" {
				failures.Add(1)
			}
			if got, err := wwwA(); err != nil || got != "10.0.0.2" {
				failures.Add(1)
			}
			served.Add(1)
		}
	})
	if err := c.reopenPlatform(ctx, next.Load()); err != nil {
		t.Fatalf("reopening PlatformDB: %v", err)
	}
	stop.Store(true)
	wg.Wait()
	if failures.Load() > 0 || served.Load() < 5 {
		t.Fatalf("during the reopen: %d failed of %d rounds (front and DNS)", failures.Load(), served.Load())
	}
	if !c.plat.wired.Load() || c.plat.db.Load() == db {
		t.Fatal("PlatformDB is not wired again with a new member after the reopen")
	}
	if st := status(cores, "admin-key-two-2222"); st != http.StatusOK {
		t.Fatalf("the admin API after the reopen answers %d with the reloaded key", st)
	}
	e, err := c.plat.db.Load().Get(ctx, "test/before-reopen")
	if err != nil || string(e.Value) != "kept" {
		t.Fatalf("the row written before the reopen: %q %v", e.Value, err)
	}
}

// The renewer is rebuilt by a reload only when what it was built with
// changed: any other change leaves an order under way alone.
func TestRenewerChanged(t *testing.T) {
	base := "dnsLess:\n  isActive: true\n  publicUrl: https://pryv.example.com\nletsEncrypt:\n  enabled: true\n  certRenewer: true\n" +
		"  atRestKey: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8='\n"
	const email = "  email: ops@example.com\n"
	cur := mustConfig(t, base+email)
	for _, tc := range []struct {
		name     string
		le, rest string // lines under letsEncrypt (email's included), then top-level blocks
		want     bool
	}{
		{"nothing", email, "", false},
		{"upstreams only", email, "upstreams:\n  api: http://127.0.0.1:3001\n", false},
		{"onRotateScript only", email + "  onRotateScript: /etc/pryv/hook.sh\n", "", false},
		{"email", "  email: other@example.com\n", "", true},
		{"keyType", email + "  keyType: rsa2048\n", "", true},
		{"profile", email + "  profile: shortlived\n", "", true},
		{"renewBeforeDays", email + "  renewBeforeDays: 20\n", "", true},
		{"staging", email + "  staging: true\n", "", true},
		{"eab", email + "  eab:\n    kid: kid-1\n    hmacKey: c2VjcmV0LWhtYWMta2V5LWZvci1lYWItdGVzdHM\n", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := mustConfig(t, base+tc.le+tc.rest)
			if got := renewerChanged(cur, next); got != tc.want {
				t.Fatalf("renewerChanged = %v, want %v", got, tc.want)
			}
		})
	}
	moved := mustConfig(t, strings.Replace(base, "pryv.example.com", "other.example.com", 1)+email)
	if !renewerChanged(cur, moved) {
		t.Fatal("a new hostname (another plan) does not rebuild the renewer")
	}
}
