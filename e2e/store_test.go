package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/devpki"
)

// strategyA writes the spec's "Minimum config on a single-core host" verbatim
// (relative paths and all) plus what a test on loopback must change: the
// front's address, free PlatformDB ports, an admin key and a rotation hook.
func strategyA(t *testing.T, dir string, port int, hook string) []string {
	t.Helper()
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i * 7)
	}
	spec := filepath.Join(dir, "default-config.yml")
	writeFile(t, spec, yamlConfig(
		"http:",
		"  ip: 0.0.0.0",
		"  port: 443",
		"  ssl:",
		"    keyFile: var-pryv/tls/your-domain.com/privkey.pem",
		"    certFile: var-pryv/tls/your-domain.com/fullchain.pem",
		"dnsLess:",
		"  isActive: true",
		"  publicUrl: https://your-domain.com",
		"letsEncrypt:",
		"  enabled: true",
		"  email: ops@your-domain.com",
		"  atRestKey: '"+base64.StdEncoding.EncodeToString(key)+"'",
		"  certRenewer: true",
	), 0o644)
	override := filepath.Join(dir, "override-config.yml")
	writeFile(t, override, yamlConfig(
		"http:",
		"  ip: 127.0.0.1",
		fmt.Sprintf("  port: %d", port),
		"letsEncrypt:",
		"  onRotateScript: "+hook,
		"auth:",
		"  adminAccessKey: e2e-admin-key",
		"platformDB:",
		fmt.Sprintf("  peerAddress: 127.0.0.1:%d", freePort(t)),
		fmt.Sprintf("  clientAddress: 127.0.0.1:%d", freePort(t)),
	), 0o644)
	return []string{"--config", spec, "--config", override}
}

func cli(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return string(out), 0
}

func TestCertificateStoreEndToEnd(t *testing.T) {
	curl := needTool(t, "curl")
	dir := t.TempDir()
	p := newPKI(t, dir)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	hookOut := filepath.Join(dir, "hook.log")
	hook := filepath.Join(dir, "hooks", "reload.sh")
	writeFile(t, hook, []byte("#!/bin/sh\necho \"$PRYV_CERT_HOSTNAME $PRYV_CERT_PATH $PRYV_CERT_KEYPATH\" >> "+hookOut+"\n"), 0o755)
	cfg := strategyA(t, dir, port, hook)
	c := startCoreIn(t, dir, addr, cfg...)
	certsCmd := func(args ...string) (string, int) {
		return cli(t, dir, append([]string{"certs", args[0]}, append(cfg, args[1:]...)...)...)
	}

	// Until a certificate exists the port answers with the placeholder.
	if _, err := servedSerial(t, addr, host, p.roots); err == nil {
		t.Fatal("a trusted certificate is served before any was stored")
	}

	first := p.issue(t, devpki.Leaf{})
	writeFile(t, filepath.Join(dir, "in", "c.pem"), first.FullChain, 0o644)
	writeFile(t, filepath.Join(dir, "in", "k.pem"), first.KeyPEM, 0o600)
	if out, code := certsCmd("import", "--cert", "in/c.pem", "--key", "in/k.pem"); code != 0 || !strings.Contains(out, "stored your-domain.com") {
		t.Fatalf("certs import: exit %d\n%s", code, out)
	}
	waitSerial(t, addr, host, p.roots, serial(first))

	// The front serves a new certificate from memory first; the files and
	// then the hook follow. The hook having run means the files are there.
	t.Run("onRotateScript", func(t *testing.T) {
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, _ := os.ReadFile(hookOut)
			want := "your-domain.com " + filepath.Join(dir, "var-pryv/tls/your-domain.com/fullchain.pem") + " " + filepath.Join(dir, "var-pryv/tls/your-domain.com/privkey.pem")
			if strings.Contains(string(b), want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("hook output %q, want a line %q", b, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("materialised files", func(t *testing.T) {
		live := filepath.Join(dir, "var-pryv/tls/your-domain.com")
		for name, mode := range map[string]os.FileMode{"fullchain.pem": 0o644, "privkey.pem": 0o600} {
			fi, err := os.Stat(filepath.Join(live, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != mode {
				t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), mode)
			}
		}
		got, _ := os.ReadFile(filepath.Join(live, "fullchain.pem"))
		gotKey, _ := os.ReadFile(filepath.Join(live, "privkey.pem"))
		if !bytes.Equal(got, first.FullChain) || !bytes.Equal(gotKey, first.KeyPEM) {
			t.Error("materialised pair differs from the imported one")
		}
	})

	t.Run("admin endpoint", func(t *testing.T) {
		base := []string{"-sS", "--max-time", "10", "--cacert", p.caPEM, "--resolve", fmt.Sprintf("%s:%d:127.0.0.1", host, port), "-w", "\n%{http_code}"}
		url := fmt.Sprintf("https://%s:%d/system/admin/certs", host, port)
		for _, tc := range []struct {
			header string
			code   string
		}{{"", "401"}, {"Authorization: wrong", "403"}, {"Authorization: e2e-admin-key", "200"}} {
			args := append([]string{}, base...)
			if tc.header != "" {
				args = append(args, "-H", tc.header)
			}
			out, err := run(t, 15*time.Second, curl, append(args, url)...)
			if err != nil {
				t.Fatal(err, out)
			}
			i := strings.LastIndexByte(out, '\n')
			body, code := out[:i], out[i+1:]
			if code != tc.code {
				t.Fatalf("%q: status %s, want %s (%s)", tc.header, code, tc.code, body)
			}
			if tc.code != "200" {
				if strings.Contains(body, "your-domain.com") || !strings.Contains(body, `"error"`) {
					t.Errorf("refusal body %q must be a JSON error with no detail", body)
				}
				continue
			}
			var res struct {
				Certs []map[string]any `json:"certs"`
			}
			if err := json.Unmarshal([]byte(body), &res); err != nil || len(res.Certs) != 1 {
				t.Fatalf("body %q", body)
			}
			for _, k := range []string{"hostname", "issuedAt", "expiresAt", "daysUntilExpiry"} {
				if _, ok := res.Certs[0][k]; !ok {
					t.Errorf("admin certs entry lacks %q: %v", k, res.Certs[0])
				}
			}
			if d := res.Certs[0]["daysUntilExpiry"].(float64); d < 88 || d > 90 {
				t.Errorf("daysUntilExpiry %v, want ~89", d)
			}
		}
	})

	t.Run("bad import refused, old certificate keeps serving", func(t *testing.T) {
		a, b := p.issue(t, devpki.Leaf{}), p.issue(t, devpki.Leaf{})
		writeFile(t, filepath.Join(dir, "in", "bad-c.pem"), a.FullChain, 0o644)
		writeFile(t, filepath.Join(dir, "in", "bad-k.pem"), b.KeyPEM, 0o600)
		out, code := certsCmd("import", "--cert", "in/bad-c.pem", "--key", "in/bad-k.pem")
		if code == 0 || !strings.Contains(out, "does not match") || !strings.Contains(out, "bad-c.pem") {
			t.Fatalf("mismatched import: exit %d\n%s", code, out)
		}
		stillServes(t, addr, host, p.roots, serial(first), 500*time.Millisecond)
	})

	t.Run("list and export", func(t *testing.T) {
		out, code := certsCmd("list", "--json")
		if code != 0 || !strings.Contains(out, `"hostname": "your-domain.com"`) {
			t.Fatalf("certs list --json: %d\n%s", code, out)
		}
		out, code = certsCmd("list")
		if code != 0 || !strings.Contains(out, "DAYS LEFT") || !strings.Contains(out, "import") {
			t.Fatalf("certs list: %d\n%s", code, out)
		}
		out, code = cli(t, dir, append(append([]string{"certs", "export"}, cfg...), "your-domain.com", "--out", "exported")...)
		if code != 0 {
			t.Fatalf("certs export: %d\n%s", code, out)
		}
		key, _ := os.ReadFile(filepath.Join(dir, "exported", "privkey.pem"))
		fi, _ := os.Stat(filepath.Join(dir, "exported", "privkey.pem"))
		if !bytes.Equal(key, first.KeyPEM) || fi.Mode().Perm() != 0o600 {
			t.Fatalf("exported key differs or mode %v", fi.Mode().Perm())
		}
	})

	t.Run("rotation latency", func(t *testing.T) {
		// From the write (the import request on the control socket) to the
		// new certificate on the wire, 100 times.
		client := admin.SocketClient(filepath.Join(dir, "var-pryv/run/pryv-tls.sock"))
		var took []time.Duration
		for i := 0; i < 100; i++ {
			next := p.issue(t, devpki.Leaf{})
			body, _ := json.Marshal(admin.ImportRequest{Chain: string(next.FullChain), Key: string(next.KeyPEM)})
			start := time.Now()
			resp, err := client.Post("http://pryv-tls/certs", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("import %d: %s", i, resp.Status)
			}
			for {
				got, err := servedSerial(t, addr, host, p.roots)
				if err == nil && got == serial(next) {
					break
				}
				if time.Since(start) > 5*time.Second {
					t.Fatalf("rotation %d not served within 5s", i)
				}
			}
			took = append(took, time.Since(start))
		}
		sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
		t.Logf("write -> served, 100 rotations: p50 %s, p99 %s, max %s", took[49], took[98], took[99])
	})

	t.Run("PlatformDB refuses a client without a node certificate", func(t *testing.T) {
		// The etcd client port, reached the way any local process could.
		var clientAddr string
		for _, a := range cfg {
			b, _ := os.ReadFile(a)
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "clientAddress: "); ok {
					clientAddr = v
				}
			}
		}
		if clientAddr == "" {
			t.Fatal("no platformDB.clientAddress in the test config")
		}
		plain, err := run(t, 10*time.Second, curl, "-sS", "--max-time", "3", "http://"+clientAddr+"/version")
		if err == nil && strings.Contains(plain, "etcdserver") {
			t.Fatalf("plain HTTP to the store's client port answered: %s", plain)
		}
		noCert, err := run(t, 10*time.Second, curl, "-sS", "-k", "--max-time", "3", "https://"+clientAddr+"/version")
		if err == nil && strings.Contains(noCert, "etcdserver") {
			t.Fatalf("TLS without a client certificate to the store's client port answered: %s", noCert)
		}
	})

	t.Run("no plaintext key in PlatformDB", func(t *testing.T) {
		// Every byte etcd keeps on disk (WAL, snapshots, bbolt) is searched
		// for the private keys' PEM body.
		var blobs [][]byte
		_ = filepath.Walk(filepath.Join(dir, "var-pryv/platformdb"), func(path string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				b, _ := os.ReadFile(path)
				blobs = append(blobs, b)
			}
			return nil
		})
		if len(blobs) == 0 {
			t.Fatal("no PlatformDB files found")
		}
		all := bytes.Join(blobs, nil)
		if !bytes.Contains(all, []byte("your-domain.com")) {
			t.Fatal("the search cannot work: the record's hostname is not in the files either")
		}
		for _, marker := range [][]byte{[]byte("PRIVATE KEY"), keyBody(first.KeyPEM)} {
			if bytes.Contains(all, marker) {
				t.Fatalf("plaintext key material %q found in PlatformDB's files", marker[:12])
			}
		}
	})

	t.Run("restart finds everything", func(t *testing.T) {
		out, _ := certsCmd("list", "--json")
		c.signal(syscall.SIGTERM)
		if code := c.wait(15 * time.Second); code != 0 {
			t.Fatalf("exit %d", code)
		}
		var before struct {
			Certs []admin.CertInfo `json:"certs"`
		}
		if err := json.Unmarshal([]byte(out), &before); err != nil || len(before.Certs) != 1 {
			t.Fatalf("list before restart: %q", out)
		}
		startCoreIn(t, dir, addr, cfg...)
		want := before.Certs[0].Serial
		waitSerial(t, addr, host, p.roots, want)
		out2, code := certsCmd("list", "--json")
		if code != 0 || !strings.Contains(out2, want) {
			t.Fatalf("after restart, list: %d\n%s", code, out2)
		}
	})
}

// keyBody is a distinctive line from the middle of a PEM key.
func keyBody(keyPEM []byte) []byte {
	lines := bytes.Split(keyPEM, []byte("\n"))
	return lines[1]
}

// TestKill9DuringWrites: a core killed with SIGKILL in the middle of a
// stream of certificate writes comes back with a record that is one of the
// written ones, whole, and serves it.
func TestKill9DuringWrites(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := strategyA(t, dir, port, "/bin/true")
	c := startCoreIn(t, dir, addr, cfg...)
	client := admin.SocketClient(filepath.Join(dir, "var-pryv/run/pryv-tls.sock"))
	written := map[string]bool{}
	stop := time.Now().Add(400 * time.Millisecond)
	killed := false
	for i := 0; i < 500 && !killed; i++ {
		next := p.issue(t, devpki.Leaf{})
		written[serial(next)] = true
		body, _ := json.Marshal(admin.ImportRequest{Chain: string(next.FullChain), Key: string(next.KeyPEM)})
		go func() {
			if resp, err := client.Post("http://pryv-tls/certs", "application/json", bytes.NewReader(body)); err == nil {
				resp.Body.Close()
			}
		}()
		if time.Now().After(stop) {
			c.signal(syscall.SIGKILL)
			killed = true
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !killed {
		c.signal(syscall.SIGKILL)
	}
	c.wait(10 * time.Second)

	startCoreIn(t, dir, addr, cfg...)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := servedSerial(t, addr, host, p.roots)
		if err == nil {
			if !written[got] {
				t.Fatalf("after kill -9 the core serves serial %s, which was never written", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing trusted served after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, code := cli(t, dir, append([]string{"certs", "list", "--json"}, cfg...)...)
	if code != 0 || !strings.Contains(out, "your-domain.com") {
		t.Fatalf("certs list after kill -9: %d\n%s", code, out)
	}
}

// TestKeysRotate: an atRestKey rotation as the backup guide tells it, on
// the binary. A certificate stored under key A; the core restarted with
// atRestKey B and atRestKeyPrevious A still reads it; `keys rotate`
// re-seals its row under B, printing no key; restarted with B alone the
// core opens it (export), where before the rotation B alone could not.
func TestKeysRotate(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	hook := filepath.Join(dir, "hooks", "noop.sh")
	writeFile(t, hook, []byte("#!/bin/sh\n"), 0o755)
	cfg := strategyA(t, dir, port, hook) // atRestKey A is in the spec's file
	keyA := make([]byte, 32)
	for i := range keyA {
		keyA[i] = byte(i * 7) // strategyA's key
	}
	keyB := bytes.Repeat([]byte{0x5b}, 32)
	a64, b64 := base64.StdEncoding.EncodeToString(keyA), base64.StdEncoding.EncodeToString(keyB)
	rotating := filepath.Join(dir, "rotating.yml")
	writeFile(t, rotating, yamlConfig("letsEncrypt:", "  atRestKey: '"+b64+"'", "  atRestKeyPrevious: '"+a64+"'"), 0o600)
	newOnly := filepath.Join(dir, "new-only.yml")
	writeFile(t, newOnly, yamlConfig("letsEncrypt:", "  atRestKey: '"+b64+"'"), 0o600)
	with := func(extra string) []string { return append(slices.Clone(cfg), "--config", extra) }
	stop := func(c *core) {
		t.Helper()
		c.signal(syscall.SIGTERM)
		if code := c.wait(20 * time.Second); code != 0 {
			t.Fatalf("serve exited %d", code)
		}
	}

	c := startCoreIn(t, dir, addr, cfg...)
	first := p.issue(t, devpki.Leaf{})
	writeFile(t, filepath.Join(dir, "in", "c.pem"), first.FullChain, 0o644)
	writeFile(t, filepath.Join(dir, "in", "k.pem"), first.KeyPEM, 0o600)
	if out, code := cli(t, dir, append(append([]string{"certs", "import"}, cfg...), "--cert", "in/c.pem", "--key", "in/k.pem")...); code != 0 {
		t.Fatalf("certs import: exit %d\n%s", code, out)
	}
	waitSerial(t, addr, host, p.roots, serial(first))
	stop(c)

	exportWith := func(files []string) (string, int) {
		_ = os.RemoveAll(filepath.Join(dir, "exported"))
		return cli(t, dir, append(append([]string{"certs", "export"}, files...), host, "--out", "exported")...)
	}
	// B alone cannot open what A sealed: the rotation is needed.
	c = startCoreIn(t, dir, addr, with(newOnly)...)
	if out, code := exportWith(with(newOnly)); code == 0 || !strings.Contains(out, "the atRestKey differs from the one that wrote this row") {
		t.Fatalf("export with the new key alone before the rotation: exit %d\n%s", code, out)
	}
	stop(c)

	c = startCoreIn(t, dir, addr, with(rotating)...)
	if out, code := exportWith(with(rotating)); code != 0 {
		t.Fatalf("export during the rotation (B, previous A): exit %d\n%s", code, out)
	}
	out, code := cli(t, dir, append([]string{"keys", "rotate"}, with(rotating)...)...)
	if code != 0 || !strings.Contains(out, "resealed tls-cert/your-domain.com") || !strings.Contains(out, "atRestKeyPrevious can be removed") {
		t.Fatalf("keys rotate: exit %d\n%s", code, out)
	}
	again, code := cli(t, dir, append([]string{"keys", "rotate", "--json"}, with(rotating)...)...)
	if code != 0 || !strings.Contains(again, `"resealed": []`) || !strings.Contains(again, `"current": 1`) {
		t.Fatalf("keys rotate, second run: exit %d\n%s", code, again)
	}
	for _, text := range []string{out, again, c.logs.String()} {
		for _, secret := range []string{a64, b64, string(first.KeyPEM)} {
			if strings.Contains(text, secret) {
				t.Fatalf("a key was printed:\n%s", text)
			}
		}
	}
	stop(c)

	c = startCoreIn(t, dir, addr, with(newOnly)...)
	if out, code := exportWith(with(newOnly)); code != 0 {
		t.Fatalf("export with the new key alone after the rotation: exit %d\n%s", code, out)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "exported", "privkey.pem")); !bytes.Equal(got, first.KeyPEM) {
		t.Fatal("the exported key is not the imported one")
	}
	waitSerial(t, addr, host, p.roots, serial(first))
	_ = c
}
