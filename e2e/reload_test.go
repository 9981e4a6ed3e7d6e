package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/devpki"
)

// SIGHUP reloads the configuration (decision 0020): the same files, loaded
// and validated as at start, applied live or refused with the old
// configuration kept.

// reloadCore is a single core with PlatformDB (dns.active, an atRestKey),
// its certificate in http.ssl files, and a configuration the test rewrites.
type reloadCore struct {
	dir, front, conf string
	dnsAddr          string
	pki              *pki
	peer, client     string
}

// reloadConf is what the tests change between two reloads.
type reloadConf struct {
	api, hfs string // upstreams
	wwwA     string // dns.staticEntries: www's A record
	coreID   string
	logLevel string
	extra    []string // raw lines appended (a broken file)
}

func newReloadCore(t *testing.T) *reloadCore {
	t.Helper()
	dir := t.TempDir()
	c := &reloadCore{dir: dir, pki: newPKI(t, dir), conf: filepath.Join(dir, "config.yml")}
	c.front = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c.dnsAddr = fmt.Sprintf("127.0.0.1:%d", freeUDPTCPPort(t))
	c.peer, c.client = fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	is := c.pki.issue(t, devpki.Leaf{Names: []string{host, "*." + host}})
	writeFile(t, filepath.Join(dir, "tls", "fullchain.pem"), is.FullChain, 0o644)
	writeFile(t, filepath.Join(dir, "tls", "privkey.pem"), is.KeyPEM, 0o600)
	return c
}

// write replaces the configuration file (atomically: serve may be reading it).
func (c *reloadCore) write(t *testing.T, rc reloadConf) {
	t.Helper()
	_, port, _ := net.SplitHostPort(c.front)
	_, dnsPort, _ := net.SplitHostPort(c.dnsAddr)
	if rc.coreID == "" {
		rc.coreID = "core1"
	}
	lines := []string{
		"http:",
		"  ip: 127.0.0.1",
		"  port: " + port,
		"  ssl:",
		"    certFile: tls/fullchain.pem",
		"    keyFile: tls/privkey.pem",
		"core:",
		"  id: " + rc.coreID,
		"  ip: 127.0.0.1",
		"  url: https://core1." + host,
		"dns:",
		"  active: true",
		"  domain: " + host,
		"  ip: 127.0.0.1",
		"  port: " + dnsPort,
		"  staticEntries:",
		"    - subdomain: www",
		"      records:",
		"        a: [" + rc.wwwA + "]",
		"letsEncrypt:",
		"  atRestKey: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8='",
		"upstreams:",
		"  api: " + rc.api,
		"  hfs: " + rc.hfs,
		"platformDB:",
		"  peerAddress: " + c.peer,
		"  clientAddress: " + c.client,
	}
	if rc.logLevel != "" {
		lines = append(lines, "log:", "  level: "+rc.logLevel)
	}
	lines = append(lines, rc.extra...)
	writeAtomic(t, c.conf, yamlConfig(lines...), 0o600)
}

func (c *reloadCore) spawn(t *testing.T, env ...string) *core {
	t.Helper()
	lc := &lcCore{dir: c.dir, front: c.front, args: []string{"--config", c.conf}}
	return lc.spawn(t, env...)
}

func (c *reloadCore) socket() string { return filepath.Join(c.dir, "var-pryv", "run", "pryv-tls.sock") }

// hup sends SIGHUP and waits for the reload to be over (RELOADING=1, then
// READY=1).
func hup(t *testing.T, srv *core, ch <-chan string) {
	t.Helper()
	srv.signal(syscall.SIGHUP)
	awaitNotify(t, ch, "RELOADING=1", 10*time.Second)
	awaitNotify(t, ch, "READY=1", 20*time.Second)
}

// lastReload is status's core.lastReload.
func lastReload(t *testing.T, sock string) *admin.ReloadState {
	t.Helper()
	cl := admin.SocketClient(sock)
	defer cl.CloseIdleConnections()
	resp, err := cl.Get("http://pryv-tls/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Core struct {
			LastReload *admin.ReloadState `json:"lastReload"`
		} `json:"core"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st.Core.LastReload
}

// frontClient trusts the test PKI; keepAlive false opens a new TLS
// connection (a full handshake) for every request.
func frontClient(c *reloadCore, keepAlive bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: c.pki.roots, ServerName: host},
		DisableKeepAlives: !keepAlive,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, c.front)
		},
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// get is one request to the API upstream through the front: the body's
// first word names the upstream that answered.
func get(cl *http.Client) (string, error) {
	resp, err := cl.Get("https://" + host + "/alice/events")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	name, _, _ := strings.Cut(string(body), " ")
	return name, nil
}

// A reload that moves the API and HFS upstreams from A to B, under a load of
// 8 clients (4 opening a TLS connection per request, 4 on keep-alive), fails
// no request and no handshake; once the reload is over, every request goes
// to B.
func TestReloadUpstreamsUnderLoad(t *testing.T) {
	a, b := upstream(t, "A", 0), upstream(t, "B", 0)
	c := newReloadCore(t)
	c.write(t, reloadConf{api: a, hfs: a, wwwA: "10.0.0.1"})
	env, ch := notifySocket(t)
	srv := c.spawn(t, env)
	awaitNotify(t, ch, "READY=1", 30*time.Second)

	var (
		reloaded atomic.Bool // set once READY=1 after the reload came
		mu       sync.Mutex
		failures []string
		byName   = map[string]int{}
		afterA   int // answers from A to requests sent after the reload was over
	)
	stop := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for i := range 8 {
		cl := frontClient(c, i%2 == 0)
		wg.Go(func() {
			defer cl.CloseIdleConnections()
			for n := 0; time.Now().Before(stop) && n < 5000; n++ {
				after := reloaded.Load()
				name, err := get(cl)
				mu.Lock()
				if err != nil {
					failures = append(failures, err.Error())
				} else {
					byName[name]++
					if after && name == "A" {
						afterA++
					}
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Second)
	c.write(t, reloadConf{api: b, hfs: b, wwwA: "10.0.0.1"})
	hup(t, srv, ch)
	reloaded.Store(true)
	wg.Wait()

	if len(failures) > 0 {
		t.Fatalf("%d requests failed during the reload, first: %s", len(failures), failures[0])
	}
	if byName["A"] < 50 || byName["B"] < 50 {
		t.Fatalf("answers by upstream %v: the load did not span the reload", byName)
	}
	if afterA > 0 {
		t.Fatalf("%d requests sent after the reload was over went to the old upstream A", afterA)
	}
	if st := lastReload(t, c.socket()); st == nil || !st.OK {
		t.Fatalf("status lastReload %+v, want ok", st)
	}
	t.Logf("answers: %v, no failure", byName)
	srv.signal(syscall.SIGTERM)
	if code := srv.wait(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
}

// One core through a series of reloads: an invalid file (refused, named,
// the old configuration serving), a restart-only key (refused, named), a
// DNS static entry and the log level (applied).
func TestReloadConfig(t *testing.T) {
	a, b := upstream(t, "A", 0), upstream(t, "B", 0)
	c := newReloadCore(t)
	good := reloadConf{api: a, hfs: a, wwwA: "10.0.0.1"}
	c.write(t, good)
	env, ch := notifySocket(t)
	srv := c.spawn(t, env)
	awaitNotify(t, ch, "READY=1", 30*time.Second)
	cl := frontClient(c, true)
	defer cl.CloseIdleConnections()
	served := func(want string) {
		t.Helper()
		if name, err := get(cl); err != nil || name != want {
			t.Fatalf("the front answers from %q (%v), want %s", name, err, want)
		}
	}
	wwwA := func() string {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion("www."+host+".", dns.TypeA)
		r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, c.dnsAddr)
		if err != nil || len(r.Answer) != 1 {
			t.Fatalf("www A: %v %v", r, err)
		}
		return r.Answer[0].(*dns.A).A.String()
	}
	served("A")
	if got := wwwA(); got != "10.0.0.1" {
		t.Fatalf("www answers %s before any reload", got)
	}

	t.Run("invalid file", func(t *testing.T) {
		bad := good
		bad.api = b // would move, but the file is refused as a whole
		bad.extra = []string{"metrics:", "  listn: 127.0.0.1:9100"}
		c.write(t, bad)
		hup(t, srv, ch)
		st := lastReload(t, c.socket())
		if st == nil || st.OK || !strings.Contains(st.Error, c.conf) || !strings.Contains(st.Error, "metrics.listn") || !strings.Contains(st.Error, "unknown key") {
			t.Fatalf("lastReload %+v, want the error naming %s, metrics.listn and why", st, c.conf)
		}
		if !strings.Contains(srv.logs.String(), "level=ERROR msg=\"configuration not reloaded; the running configuration stays\"") {
			t.Fatalf("no error line in the log for the refused reload")
		}
		served("A")
		// The CLI reads a configuration too (to find the socket): the
		// running one, kept aside, since the file on disk is now invalid.
		running := filepath.Join(c.dir, "running.yml")
		badFile, _ := os.ReadFile(c.conf)
		c.write(t, good)
		if err := os.Rename(c.conf, running); err != nil {
			t.Fatal(err)
		}
		writeFile(t, c.conf, badFile, 0o600)
		out, err := (&lcCore{dir: c.dir, args: []string{"--config", running}}).cliCmd(context.Background(), "status").CombinedOutput()
		if exitOf(t, err) != 1 || !strings.Contains(string(out), "Configuration reload REFUSED at") ||
			!strings.Contains(string(out), "the configuration reload of") || !strings.Contains(string(out), "metrics.listn") {
			// status exits 1 when something needs attention; the refused reload is one.
			t.Fatalf("pryv-tls status does not show the refused reload (%v):\n%s", err, out)
		}
	})

	t.Run("restart-only key", func(t *testing.T) {
		moved := good
		moved.coreID = "core9"
		moved.api = b
		c.write(t, moved)
		hup(t, srv, ch)
		st := lastReload(t, c.socket())
		if st == nil || st.OK || !strings.Contains(st.Error, "core.id: cannot change while pryv-tls runs") || !strings.Contains(st.Error, "restart pryv-tls") {
			t.Fatalf("lastReload %+v, want core.id refused with the restart named", st)
		}
		if strings.Contains(st.Error, "upstreams") {
			t.Fatalf("lastReload names a live key as refused: %s", st.Error)
		}
		served("A") // nothing of it was applied
	})

	t.Run("dns static entry and log level", func(t *testing.T) {
		probe := func() {
			// A TLS handshake error is logged at debug level only.
			conn, err := net.DialTimeout("tcp", c.front, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = conn.Write([]byte("not TLS\r\n\r\n"))
			_, _ = io.Copy(io.Discard, conn)
			conn.Close()
		}
		probe()
		time.Sleep(100 * time.Millisecond)
		if strings.Contains(srv.logs.String(), "level=DEBUG") {
			t.Fatal("debug lines at log level info")
		}
		next := good
		next.wwwA, next.logLevel, next.api, next.hfs = "10.0.0.2", "debug", b, b
		c.write(t, next)
		hup(t, srv, ch)
		if st := lastReload(t, c.socket()); st == nil || !st.OK {
			t.Fatalf("lastReload %+v, want ok", st)
		}
		if got := wwwA(); got != "10.0.0.2" {
			t.Fatalf("www answers %s after the reload, want 10.0.0.2", got)
		}
		served("B")
		probe()
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(srv.logs.String(), "level=DEBUG") {
			if time.Now().After(deadline) {
				t.Fatal("no debug line after log.level: debug was reloaded")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	srv.signal(syscall.SIGTERM)
	if code := srv.wait(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	_ = os.Remove(c.conf)
}

// A reload of letsEncrypt.keyType under Strategy A with Pebble: the renewer
// is rebuilt with it, and the next order (a forced renewal through the
// admin API) is for an RSA key where the first was ECDSA.
func TestReloadACMEKeyType(t *testing.T) {
	pebble := acmetest.Start(t, acmetest.Options{})
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	hook := filepath.Join(dir, "hooks", "reload.sh")
	writeFile(t, hook, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	cfg := strategyA(t, dir, port, hook)
	acmeCfg := filepath.Join(dir, "acme.yml")
	acmeLines := []string{
		"letsEncrypt:",
		"  directoryUrl: " + pebble.DirectoryURL,
		"  directoryCaFile: " + pebble.CAFile,
		fmt.Sprintf("  http01Port: %d", pebble.HTTPPort),
	}
	writeFile(t, acmeCfg, yamlConfig(acmeLines...), 0o644)
	env, ch := notifySocket(t)
	srv := (&lcCore{dir: dir, front: addr, args: append(cfg, "--config", acmeCfg)}).spawn(t, env)
	awaitNotify(t, ch, "READY=1", 30*time.Second)
	roots := pebble.IssuerRoots(t)
	served := func(not string) *x509.Certificate {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{ServerName: host, RootCAs: roots})
			if err == nil {
				leaf := conn.ConnectionState().PeerCertificates[0]
				conn.Close()
				if leaf.SerialNumber.Text(16) != not {
					return leaf
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no new certificate from Pebble served within 60s (last: %v)", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	first := served("")
	if first.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("first certificate's key is %s, want the default ECDSA", first.PublicKeyAlgorithm)
	}

	writeAtomic(t, acmeCfg, yamlConfig(append(acmeLines, "  keyType: rsa2048")...), 0o644)
	hup(t, srv, ch)
	if st := lastReload(t, filepath.Join(dir, "var-pryv", "run", "pryv-tls.sock")); st == nil || !st.OK {
		t.Fatalf("lastReload %+v, want ok", st)
	}
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("https://%s:%d/system/admin/certs/force-renew", host, port), strings.NewReader(`{"hostname":"your-domain.com"}`))
	req.Header.Set("Authorization", "e2e-admin-key")
	cl := &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, n, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, n, addr)
		},
	}}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("force-renew after the reload: %d %s", resp.StatusCode, body)
	}
	if next := served(first.SerialNumber.Text(16)); next.PublicKeyAlgorithm != x509.RSA {
		t.Fatalf("the certificate ordered after the reload has a %s key, want RSA (letsEncrypt.keyType: rsa2048)", next.PublicKeyAlgorithm)
	}
	srv.signal(syscall.SIGTERM)
	if code := srv.wait(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
}
