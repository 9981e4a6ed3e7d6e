package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/devpki"
)

// TestRoutingWithCurlAndDrain checks the proxy with curl (HTTP/1.1 and
// HTTP/2) and that SIGTERM lets an in-flight request finish, then exits 0.
func TestRoutingWithCurlAndDrain(t *testing.T) {
	curl := needTool(t, "curl")
	dir := t.TempDir()
	p := newPKI(t, dir)
	is := p.issue(t, devpki.Leaf{})
	certFile, keyFile := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	writeFile(t, certFile, is.FullChain, 0o644)
	writeFile(t, keyFile, is.KeyPEM, 0o600)
	api := upstream(t, "api", 0)
	hfs := upstream(t, "hfs", 0)
	slow := upstream(t, "slow", 700*time.Millisecond)

	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := sslConfig(t, dir, port, certFile, keyFile)
	override := filepath.Join(dir, "upstreams.yml")
	writeFile(t, override, yamlConfig("upstreams:", "  api: "+api, "  hfs: "+hfs), 0o644)
	c := startCore(t, addr, "--config", cfg, "--config", override)

	get := func(args ...string) string {
		t.Helper()
		base := []string{"-sS", "--max-time", "10", "--cacert", p.caPEM, "--resolve", fmt.Sprintf("%s:%d:127.0.0.1", host, port)}
		out, err := run(t, 15*time.Second, curl, append(base, args...)...)
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return out
	}
	url := fmt.Sprintf("https://%s:%d", host, port)
	for _, tc := range []struct{ path, want string }{
		{"/alice/events", "api /alice/events"},
		{"/alice/events/ev1/series", "hfs /alice/events/ev1/series"},
		{"/alice/series/batch", "hfs /alice/series/batch"},
		{"/socket.io/", "api /socket.io/"},
	} {
		for _, proto := range []string{"--http1.1", "--http2"} {
			out := get(proto, "-w", " %{http_version}", url+tc.path)
			if !strings.HasPrefix(out, tc.want) {
				t.Errorf("%s %s: got %q, want prefix %q", proto, tc.path, out, tc.want)
			}
			// The API gets the client's Host; HFS its own address (open-pryv.io's
			// HFS reads the user from Host), the client's in X-Forwarded-Host.
			clientHost := host + fmt.Sprintf(":%d", port)
			wantHost := clientHost
			if strings.HasPrefix(tc.want, "hfs ") {
				wantHost = strings.TrimPrefix(hfs, "http://")
			}
			if !strings.Contains(out, "host="+wantHost+" ") || !strings.Contains(out, "xfp=https") || !strings.Contains(out, "xfh="+clientHost+" ") {
				t.Errorf("%s %s: upstream did not get Host %s, X-Forwarded-Proto https and X-Forwarded-Host %s: %q", proto, tc.path, wantHost, clientHost, out)
			}
			wantVer := map[string]string{"--http1.1": " 1.1", "--http2": " 2"}[proto]
			if !strings.HasSuffix(out, wantVer) {
				t.Errorf("%s: negotiated %q", proto, out)
			}
		}
	}

	// SIGTERM with a request in flight: it completes, then exit 0.
	writeFile(t, override, yamlConfig("upstreams:", "  api: "+slow, "  hfs: "+hfs), 0o644)
	c.signal(syscall.SIGTERM)
	if code := c.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	c2 := startCore(t, addr, "--config", cfg, "--config", override)
	res := make(chan string, 1)
	go func() {
		o, err := run(t, 15*time.Second, curl, "-sS", "--max-time", "10", "--cacert", p.caPEM,
			"--resolve", fmt.Sprintf("%s:%d:127.0.0.1", host, port), "-w", " %{http_code}", url+"/slow")
		if err != nil {
			o += " error: " + err.Error()
		}
		res <- o
	}()
	time.Sleep(250 * time.Millisecond) // let the request reach the slow upstream
	c2.signal(syscall.SIGTERM)
	if got := <-res; !strings.HasPrefix(got, "slow /slow") || !strings.HasSuffix(got, " 200") {
		t.Fatalf("in-flight request during drain: %q", got)
	}
	if code := c2.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code after drain = %d, want 0", code)
	}
}

func TestDeadUpstream502(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	deadPort := freePort(t) // bound and closed: nothing listens
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := filepath.Join(dir, "cfg.yml")
	writeFile(t, cfg, yamlConfig("http:", "  ip: 127.0.0.1", fmt.Sprintf("  port: %d", port),
		"upstreams:", fmt.Sprintf("  api: http://127.0.0.1:%d", deadPort), fmt.Sprintf("  hfs: http://127.0.0.1:%d", deadPort)), 0o644)
	startCore(t, addr, "--config", cfg)
	resp, body := httpGet(t, "http://"+addr+"/alice/events")
	if resp != 502 {
		t.Fatalf("status %d, want 502", resp)
	}
	var e struct {
		Error struct{ ID, Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.ID != "unexpected-error" || e.Error.Message == "" {
		t.Fatalf("body %q is not the Pryv error shape", body)
	}
}

// TestStrategyBPlainHTTP: no http.ssl, letsEncrypt off -> plain HTTP.
func TestStrategyBPlainHTTP(t *testing.T) {
	dir := t.TempDir()
	api := upstream(t, "api", 0)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := filepath.Join(dir, "cfg.yml")
	writeFile(t, cfg, yamlConfig("http:", "  ip: 127.0.0.1", fmt.Sprintf("  port: %d", port), "upstreams:", "  api: "+api), 0o644)
	startCore(t, addr, "--config", cfg)
	code, body := httpGet(t, "http://"+addr+"/alice/events")
	if code != 200 || !strings.HasPrefix(body, "api /alice/events") || !strings.Contains(body, "xfp=http") {
		t.Fatalf("plain HTTP: %d %q", code, body)
	}
	if _, err := tlsDialInsecure(addr, host); err == nil {
		t.Fatal("a TLS handshake succeeded on a plain-HTTP front")
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	good := filepath.Join(dir, "good.yml")
	writeFile(t, good, yamlConfig(
		"http:", "  ip: 0.0.0.0", "  port: 443", "  ssl:",
		"    keyFile: var-pryv/tls/your-domain.com/privkey.pem",
		"    certFile: var-pryv/tls/your-domain.com/fullchain.pem",
		"dnsLess:", "  isActive: true", "  publicUrl: https://your-domain.com",
		"letsEncrypt:", "  enabled: true", "  email: ops@your-domain.com", "  atRestKey: '"+key+"'", "  certRenewer: true",
		"auth:", "  adminAccessKey: super-secret-admin-key",
	), 0o644)
	out, err := exec.Command(binary, "config", "check", "--config", good).CombinedOutput()
	if err != nil {
		t.Fatalf("config check on the spec's example: %v\n%s", err, out)
	}
	for _, secret := range []string{key, "super-secret-admin-key"} {
		if strings.Contains(string(out), secret) {
			t.Fatalf("config check printed a secret:\n%s", out)
		}
	}
	if !strings.Contains(string(out), "your-domain.com") || !strings.Contains(string(out), "HTTP-01") {
		t.Fatalf("config check does not show the derived hostname and challenge:\n%s", out)
	}

	bad := filepath.Join(dir, "bad.yml")
	writeFile(t, bad, yamlConfig(
		"http:", "  port: abc",
		"letsEncrypt:", "  enabled: true", "  emial: ops@your-domain.com", "  atRestKey: 'c2hvcnQ='",
	), 0o644)
	for _, args := range [][]string{{"config", "check", "--config", bad}, {"serve", "--config", bad}} {
		cmd := exec.Command(binary, args...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("%v: exit %v, want 2\n%s", args, err, out)
		}
		for _, want := range []string{"http.port", "letsEncrypt.emial", `did you mean "email"`, "letsEncrypt.atRestKey", "no hostname can be derived"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%v: output lacks %q:\n%s", args, want, out)
			}
		}
		if strings.Contains(string(out), "c2hvcnQ=") {
			t.Errorf("%v: the atRestKey value was printed", args)
		}
	}
}

func TestKeygen(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		out, err := exec.Command(binary, "keygen").Output()
		if err != nil {
			t.Fatal(err)
		}
		k := strings.TrimSpace(string(out))
		raw, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(raw) != 32 {
			t.Fatalf("keygen printed %q: want base64 of 32 bytes", k)
		}
		if seen[k] {
			t.Fatal("keygen printed the same key twice")
		}
		seen[k] = true
	}
}

// TestDemo runs the README's first command and checks what it promises.
func TestDemo(t *testing.T) {
	curl := needTool(t, "curl")
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := &core{t: t, addr: addr, logs: &syncBuffer{}, done: make(chan error, 1)}
	c.cmd = exec.Command(binary, "demo", "--addr", addr, "--dir", dir)
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(c.logs.String(), "Ctrl-C") {
		if time.Now().After(deadline) {
			_ = c.cmd.Process.Kill()
			t.Fatalf("demo did not start:\n%s", c.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err := run(t, 10*time.Second, curl, "-sS", "--cacert", filepath.Join(dir, "ca.pem"),
		fmt.Sprintf("https://localhost:%d/alice/events/e1/series", port))
	if err != nil || !strings.Contains(out, `"servedBy":"demo hfs upstream, through pryv-tls"`) {
		t.Fatalf("demo HFS route: %v %q", err, out)
	}
	c.signal(syscall.SIGTERM)
	if code := c.wait(10 * time.Second); code != 0 {
		t.Fatalf("demo exit code %d", code)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	needTool(t, "curl")
	out, err := run(t, 10*time.Second, "curl", "-sS", "--max-time", "8", "-w", "\n%{http_code}", url)
	if err != nil {
		t.Fatalf("curl %s: %v %s", url, err, out)
	}
	i := strings.LastIndexByte(out, '\n')
	var code int
	if _, err := fmt.Sscan(out[i+1:], &code); err != nil {
		t.Fatalf("curl %s: no status code at the end of its output: %v\n%s", url, err, out)
	}
	return code, out[:i]
}

// TestDemoACME runs the README's Strategy A command (a -tags demo build:
// decision 0028): the spec's config against an in-process Pebble, the
// placeholder replaced by the issued certificate, checked by curl against
// Pebble's roots.
func TestDemoACME(t *testing.T) {
	curl := needTool(t, "curl")
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := &core{t: t, addr: addr, logs: &syncBuffer{}, done: make(chan error, 1)}
	c.cmd = exec.Command(demoBinary(t), "demo", "--acme", "--addr", addr, "--dir", dir)
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("demo output:\n%s", c.logs.String())
		}
	})
	resolve := fmt.Sprintf("your-domain.com:%d:127.0.0.1", port)
	url := fmt.Sprintf("https://your-domain.com:%d/alice/events", port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := run(t, 10*time.Second, curl, "-sS", "--max-time", "5", "--cacert", filepath.Join(dir, "pebble-roots.pem"), "--resolve", resolve, url)
		if err == nil && strings.Contains(out, `"servedBy":"demo api upstream, through pryv-tls"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo's certificate from Pebble was not served within 60s: %v %s", err, out)
		}
		time.Sleep(250 * time.Millisecond)
	}
	c.signal(syscall.SIGTERM)
	if code := c.wait(15 * time.Second); code != 0 {
		t.Fatalf("demo --acme exit code %d", code)
	}
}

// rawEcho is a stand-in upstream that answers who it is, the request URI
// exactly as it arrived, and the X-Forwarded-For values it got.
func rawEcho(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The core may send its own HSTS; the edge's must replace it.
		w.Header().Set("Strict-Transport-Security", "max-age=1")
		fmt.Fprintf(w, "%s %s xff=%s", name, r.RequestURI, strings.Join(r.Header.Values("X-Forwarded-For"), "|"))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// mustReplace replaces every old in s, and fails if there is none: a sample
// that no longer holds what the test adapts has changed under it.
func mustReplace(t *testing.T, sample, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("%s no longer contains %q, which this test adapts", sample, old)
	}
	return strings.ReplaceAll(s, old, new)
}

// samplePath is a file of docs/operator-guide/samples.
func samplePath(name string) string {
	return filepath.Join("..", "docs", "operator-guide", "samples", name)
}

// peer is a proxy run from a sample: where it listens.
type peer struct {
	name string
	url  string // https://your-domain.com:PORT or http://your-domain.com:PORT
	port int
}

// waitListening waits (bounded) until addr accepts connections or the
// process ends.
func waitListening(t *testing.T, name, addr string, done chan error, logs *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-done:
			done <- err // the cleanup waits for it too
			t.Fatalf("%s exited before listening (%v):\n%s", name, err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s within 15s:\n%s", name, addr, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runPeer starts a proxy process and stops it at the end of the test.
func runPeer(t *testing.T, name, addr string, cmd *exec.Cmd) {
	t.Helper()
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = <-done // killed: its exit status says so
		if t.Failed() {
			t.Logf("%s output:\n%s", name, logs.String())
		}
	})
	waitListening(t, name, addr, done, logs)
}

// startNginxSample runs samples/nginx.conf as an operator installs it, with
// only its addresses and files moved to the test's: both servers on
// 127.0.0.1 ports, the upstreams at the stand-ins, the certificate is.
func startNginxSample(t *testing.T, dir, api, hfs string, is *devpki.Issued) peer {
	t.Helper()
	nginx := needTool(t, "nginx")
	b, err := os.ReadFile(samplePath("nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	httpsPort, httpPort := freePort(t), freePort(t)
	cert, key := filepath.Join(dir, "nginx-fullchain.pem"), filepath.Join(dir, "nginx-privkey.pem")
	writeFile(t, cert, is.FullChain, 0o644)
	writeFile(t, key, is.KeyPEM, 0o600)
	const sample = "samples/nginx.conf"
	conf = mustReplace(t, sample, conf, "127.0.0.1:3000", api)
	conf = mustReplace(t, sample, conf, "127.0.0.1:4000", hfs)
	conf = mustReplace(t, sample, conf, "listen 443 ssl", fmt.Sprintf("listen 127.0.0.1:%d ssl", httpsPort))
	conf = mustReplace(t, sample, conf, "listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", httpPort))
	conf = mustReplace(t, sample, conf, "/etc/letsencrypt/live/your-domain.com/fullchain.pem", cert)
	conf = mustReplace(t, sample, conf, "/etc/letsencrypt/live/your-domain.com/privkey.pem", key)
	conf = mustReplace(t, sample, conf, "/var/www/letsencrypt", dir)
	var kept []string
	for _, line := range strings.Split(conf, "\n") {
		if !strings.Contains(line, "listen [::]:") { // loopback only in tests
			kept = append(kept, line)
		}
	}
	writeFile(t, filepath.Join(dir, "pryv.conf"), []byte(strings.Join(kept, "\n")), 0o644)
	// The sample goes in conf.d, read in the http context of the main file.
	main := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log stderr;
events {}
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/pryv.conf;
}
`, dir)
	writeFile(t, filepath.Join(dir, "nginx-main.conf"), []byte(main), 0o644)
	runPeer(t, "nginx", fmt.Sprintf("127.0.0.1:%d", httpsPort), exec.Command(nginx, "-p", dir, "-c", filepath.Join(dir, "nginx-main.conf")))
	return peer{name: "nginx", url: fmt.Sprintf("https://%s:%d", host, httpsPort), port: httpsPort}
}

// startCaddySample runs samples/Caddyfile with its site on a 127.0.0.1 port
// in plain HTTP (no ACME here) and the upstreams at the stand-ins.
func startCaddySample(t *testing.T, dir, api, hfs string) peer {
	t.Helper()
	caddy := needTool(t, "caddy")
	b, err := os.ReadFile(samplePath("Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	port := freePort(t)
	const sample = "samples/Caddyfile"
	conf = mustReplace(t, sample, conf, "127.0.0.1:3000", api)
	conf = mustReplace(t, sample, conf, "127.0.0.1:4000", hfs)
	conf = mustReplace(t, sample, conf, "\nyour-domain.com {", fmt.Sprintf("\nhttp://your-domain.com:%d {\n\tbind 127.0.0.1", port))
	conf = "{\n\tadmin off\n\tauto_https off\n}\n" + conf
	file := filepath.Join(dir, "Caddyfile")
	writeFile(t, file, []byte(conf), 0o644)
	cmd := exec.Command(caddy, "run", "--config", file, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	runPeer(t, "caddy", fmt.Sprintf("127.0.0.1:%d", port), cmd)
	return peer{name: "caddy", url: fmt.Sprintf("http://%s:%d", host, port), port: port}
}

// curlAsIs sends path exactly as written (--path-as-is) and returns the body.
func curlAsIs(t *testing.T, curl string, p *pki, pr peer, path string, args ...string) string {
	t.Helper()
	base := []string{"-sS", "--path-as-is", "--max-time", "10", "--cacert", p.caPEM,
		"--resolve", fmt.Sprintf("%s:%d:127.0.0.1", host, pr.port)}
	out, err := run(t, 15*time.Second, curl, append(append(base, args...), pr.url+path)...)
	if err != nil {
		t.Fatalf("curl %s%s through %s: %v\n%s", pr.url, path, pr.name, err, out)
	}
	return out
}

// TestRoutesAsNginxAndCaddy sends the paths whose route depends on dot
// segments, repeated and encoded slashes (decision 0023) through pryv-tls and
// through the nginx and Caddy samples, all in front of the same stand-ins:
// every path reaches the same upstream on the three; pryv-tls forwards the
// normalised path, the peers the path as received.
func TestRoutesAsNginxAndCaddy(t *testing.T) {
	curl := needTool(t, "curl")
	dir := t.TempDir()
	p := newPKI(t, dir)
	is := p.issue(t, devpki.Leaf{})
	api, hfs := rawEcho(t, "api"), rawEcho(t, "hfs")

	certFile, keyFile := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	writeFile(t, certFile, is.FullChain, 0o644)
	writeFile(t, keyFile, is.KeyPEM, 0o600)
	port := freePort(t)
	override := filepath.Join(dir, "upstreams.yml")
	writeFile(t, override, yamlConfig("upstreams:", "  api: http://"+api, "  hfs: http://"+hfs), 0o644)
	startCore(t, fmt.Sprintf("127.0.0.1:%d", port), "--config", sslConfig(t, dir, port, certFile, keyFile), "--config", override)
	ours := peer{name: "pryv-tls", url: fmt.Sprintf("https://%s:%d", host, port), port: port}
	peers := []peer{startNginxSample(t, filepath.Join(dir, "nginx"), api, hfs, is), startCaddySample(t, filepath.Join(dir, "caddy"), api, hfs)}

	cases := []struct {
		target, upstream, forwarded string
		nginx                       string // nginx's answer when it does not route as the others
	}{
		{"/alice/x/../events/e1/series", "hfs", "/alice/events/e1/series", ""},
		{"/alice/./events/e1/series", "hfs", "/alice/events/e1/series", ""},
		{"/alice/x/%2e%2e/events/e1/series", "hfs", "/alice/events/e1/series", ""},
		{"/alice/x/%2E%2E/events/e1/series", "hfs", "/alice/events/e1/series", ""},
		{"/alice/%2e/events/e1/series", "hfs", "/alice/events/e1/series", ""},
		{"/alice/x/../series/batch", "hfs", "/alice/series/batch", ""},
		{"/alice/events/e1/series/.", "hfs", "/alice/events/e1/series/", ""},
		{"/alice/events/e1/series/../../e2", "api", "/alice/events/e2", ""},
		{"/alice/events/e1/series/..", "api", "/alice/events/e1/", ""},
		{"/alice/series/batch/../../events", "api", "/alice/events", ""},
		{"/alice/events/e1/series/..%2F..%2Fe2", "api", "/alice/events/e2", ""},
		{"/./events/e1/series", "api", "/events/e1/series", ""},
		{"/../events/e1/series", "api", "/events/e1/series", "400 Bad Request"},
		{"/%2e%2e/events/e1/series", "api", "/events/e1/series", "400 Bad Request"},
		{"/events/x/../e1/series", "api", "/events/e1/series", ""},
		{"/alice/events/e1/series/", "hfs", "/alice/events/e1/series/", ""},
		{"//alice/events/e1/series", "hfs", "/alice/events/e1/series", ""},
		{"/alice//events/e1/series", "hfs", "/alice/events/e1/series", ""},
		{"/alice/events//e1/series", "hfs", "/alice/events/e1/series", ""},
		{"/alice/events/e1//series", "hfs", "/alice/events/e1/series", ""},
		{"/u%2Fv/events/e1/series", "api", "/u/v/events/e1/series", ""},
		{"/alice%2Fevents/e1/series", "hfs", "/alice/events/e1/series", ""},
		{"/alice/events/e1%2Fx/series", "api", "/alice/events/e1/x/series", ""},
		{"/alice/ev%65nts/e1/series", "hfs", "/alice/ev%65nts/e1/series", ""},
		{"/alice/events/e1/series?x=/../", "hfs", "/alice/events/e1/series?x=/../", ""},
		{"/alice/x/..", "api", "/alice/", ""},
	}
	same := 0
	for _, tc := range cases {
		got := curlAsIs(t, curl, p, ours, tc.target)
		if want := tc.upstream + " " + tc.forwarded + " "; !strings.HasPrefix(got, want) {
			t.Errorf("pryv-tls: %s: upstream got %q, want %q", tc.target, got, want)
		}
		for _, pr := range peers {
			got := curlAsIs(t, curl, p, pr, tc.target)
			if pr.name == "nginx" && tc.nginx != "" {
				if !strings.Contains(got, tc.nginx) {
					t.Errorf("nginx: %s: got %q, want %q (nginx refuses a dot segment above the root)", tc.target, got, tc.nginx)
				}
				continue
			}
			// The peers forward the path as they received it.
			if want := tc.upstream + " " + tc.target + " "; !strings.HasPrefix(got, want) {
				t.Errorf("%s: %s: upstream got %q, want %q", pr.name, tc.target, got, want)
				continue
			}
			same++
		}
	}
	t.Logf("%d paths: pryv-tls routes each as nginx and Caddy do (%d peer answers agree; nginx answers 400 to the 2 with a dot segment above the root)", len(cases), same)
}

// TestEdgeHeadersAsNginx: at the edge, a client's X-Forwarded-For never
// reaches the upstream (pryv-tls, the nginx sample, the Caddy sample), and
// pryv-tls with http.hsts and the two samples send exactly one
// Strict-Transport-Security, theirs (the upstream's dropped), on proxied
// answers.
func TestEdgeHeadersAsNginx(t *testing.T) {
	curl := needTool(t, "curl")
	dir := t.TempDir()
	p := newPKI(t, dir)
	is := p.issue(t, devpki.Leaf{})
	api, hfs := rawEcho(t, "api"), rawEcho(t, "hfs")
	certFile, keyFile := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	writeFile(t, certFile, is.FullChain, 0o644)
	writeFile(t, keyFile, is.KeyPEM, 0o600)
	port := freePort(t)
	const hsts = "max-age=31536000"
	override := filepath.Join(dir, "edge.yml")
	writeFile(t, override, yamlConfig("http:", "  hsts: '"+hsts+"'", "upstreams:", "  api: http://"+api, "  hfs: http://"+hfs), 0o644)
	startCore(t, fmt.Sprintf("127.0.0.1:%d", port), "--config", sslConfig(t, dir, port, certFile, keyFile), "--config", override)
	ours := peer{name: "pryv-tls", url: fmt.Sprintf("https://%s:%d", host, port), port: port}
	nginx := startNginxSample(t, filepath.Join(dir, "nginx"), api, hfs, is)
	caddy := startCaddySample(t, filepath.Join(dir, "caddy"), api, hfs)

	for _, pr := range []peer{ours, nginx, caddy} {
		for _, path := range []string{"/alice/events", "/alice/events/e1/series"} {
			out := curlAsIs(t, curl, p, pr, path, "-D", "-", "-H", "X-Forwarded-For: 6.6.6.6", "-H", "X-Forwarded-For: 7.7.7.7")
			head, body, _ := strings.Cut(strings.ReplaceAll(out, "\r\n", "\n"), "\n\n")
			if !strings.HasSuffix(body, " xff=127.0.0.1") {
				t.Errorf("%s %s: the upstream got %q; want X-Forwarded-For 127.0.0.1 only (the client's spoofed values dropped)", pr.name, path, body)
			}
			var sts []string
			for _, line := range strings.Split(head, "\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Strict-Transport-Security") {
					sts = append(sts, strings.TrimSpace(v))
				}
			}
			if len(sts) != 1 || sts[0] != hsts {
				t.Errorf("%s %s: Strict-Transport-Security %q, want exactly [%s]", pr.name, path, sts, hsts)
			}
		}
	}
}

// TestCertbotDNSHook runs samples/certbot-dns-hook.sh as certbot does
// (CERTBOT_VALIDATION in the environment, auth then cleanup per name, a
// wildcard + apex order publishing two values) against a running core: the
// values are answered by its DNS, every successful run prints nothing, the
// second cleanup of a value exits 0 silently, and a refused load fails with
// a line on stderr.
func TestCertbotDNSHook(t *testing.T) {
	const domain = "mc.example.com"
	dir := t.TempDir()
	dnsPort := freeUDPTCPPort(t)
	port := freePort(t)
	cfg := filepath.Join(dir, "pryv-tls.yml")
	writeFile(t, cfg, yamlConfig(
		"http: {ip: 127.0.0.1, port: "+itoa(port)+"}",
		"core: {id: core1, ip: 127.0.0.1, url: 'https://core1."+domain+"'}",
		"dns: {active: true, domain: "+domain+", ip: 127.0.0.1, port: "+itoa(dnsPort)+", userLookup: {source: 'off'}}",
		"letsEncrypt: {enabled: false}",
		"cluster: {ca: {path: "+filepath.Join(dir, "ca")+"}}",
		"platformDB: {dataDir: "+filepath.Join(dir, "platformdb")+", peerAddress: '127.0.0.1:"+itoa(freePort(t))+"', clientAddress: '127.0.0.1:"+itoa(freePort(t))+"'}",
		"control: {socket: "+filepath.Join(dir, "run", "pryv-tls.sock")+"}",
	), 0o644)
	startCoreIn(t, dir, fmt.Sprintf("127.0.0.1:%d", port), "--config", cfg)

	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(binary, filepath.Join(bin, "pryv-tls")); err != nil {
		t.Fatal(err)
	}
	hook, err := filepath.Abs(samplePath("certbot-dns-hook.sh"))
	if err != nil {
		t.Fatal(err)
	}
	runHook := func(stage, value, config string) (stdout, stderr string, code int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", hook, stage)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "CERTBOT_VALIDATION="+value,
			"PRYV_TLS_HOOK_WORKDIR="+dir, "PRYV_TLS_HOOK_CONFIG=--config "+config,
			"PRYV_TLS_HOOK_STATE="+filepath.Join(dir, "certbot-state"), "PRYV_TLS_HOOK_WAIT=0")
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return o.String(), e.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatalf("hook %s: %v", stage, err)
		}
		return o.String(), e.String(), 0
	}
	quiet := func(stage, value string) {
		t.Helper()
		if o, e, code := runHook(stage, value, cfg); code != 0 || o != "" || e != "" {
			t.Fatalf("hook %s %s: exit %d, stdout %q, stderr %q; want 0 and nothing printed", stage, value, code, o, e)
		}
	}
	txt := func(want ...string) {
		t.Helper()
		var got []string
		deadline := time.Now().Add(5 * time.Second)
		for {
			m := new(dns.Msg)
			m.SetQuestion("_acme-challenge."+domain+".", dns.TypeTXT)
			r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, fmt.Sprintf("127.0.0.1:%d", dnsPort))
			if err != nil {
				t.Fatal(err)
			}
			got = nil
			for _, rr := range r.Answer {
				if tx, ok := rr.(*dns.TXT); ok {
					got = append(got, strings.Join(tx.Txt, ""))
				}
			}
			sort.Strings(got)
			if strings.Join(got, " ") == strings.Join(want, " ") || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("TXT _acme-challenge.%s: %q, want %q", domain, got, want)
		}
	}

	// A wildcard + apex order: two auths, then a cleanup per name.
	v1, v2 := "dGhlIGZpcnN0IHZhbHVl-aaaaaaaaaaaaaaaaaaaaaaaa", "dGhlIHNlY29uZCB2YWx1ZQ-bbbbbbbbbbbbbbbbbbbbbbb"
	quiet("auth", v1)
	txt(v1)
	quiet("auth", v2)
	txt(v1, v2)
	quiet("cleanup", v1)
	txt(v2)
	quiet("cleanup", v2)
	txt()
	quiet("cleanup", v2) // already gone: done, not an error
	quiet("cleanup", v1)
	txt()

	// A failure is not swallowed: one line on stderr, a non-zero exit.
	bad := filepath.Join(dir, "missing.yml")
	if o, e, code := runHook("auth", v1, bad); code == 0 || o != "" || !strings.Contains(e, "missing.yml") {
		t.Errorf("hook auth with a missing config: exit %d, stdout %q, stderr %q; want a failure naming the file", code, o, e)
	}
	if _, e, code := runHook("cleanup", v1, bad); code == 0 || !strings.Contains(e, "missing.yml") {
		t.Errorf("hook cleanup with a missing config: exit %d, stderr %q; want a failure naming the file", code, e)
	}
}
