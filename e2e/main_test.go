// Package e2e runs the pryv-tls binary the way an operator does — a config
// file, signals, certificate files replaced on disk — and checks it with real
// clients: Go's TLS client, openssl s_client and curl.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/devpki"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pryv-tls-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "pryv-tls")
	build := exec.Command("go", "build", "-o", binary, "../cmd/pryv-tls")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building pryv-tls:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir) // a temp dir: best effort
	os.Exit(code)
}

// needTool returns the path of an external tool. Missing, it skips the test
// on a developer's machine but fails it in CI, where .ci/run installs it.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI (.ci/run installs it) but is not on PATH", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// core is one running pryv-tls process.
type core struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	logs *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startCore runs "pryv-tls serve" on the given config files and waits until
// the front accepts connections.
func startCore(t *testing.T, addr string, args ...string) *core {
	t.Helper()
	return startCoreIn(t, "", addr, args...)
}

// startCoreIn is startCore with a working directory, against which the
// spec's relative paths (var-pryv/...) resolve.
func startCoreIn(t *testing.T, dir, addr string, args ...string) *core {
	t.Helper()
	c := &core{t: t, addr: addr, logs: &syncBuffer{}, done: make(chan error, 1)}
	c.cmd = exec.Command(binary, append([]string{"serve"}, args...)...)
	c.cmd.Dir = dir
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case _ = <-c.done: // exited already; the test checked what it expected
		default:
			_ = c.cmd.Process.Kill()
			_ = <-c.done
		}
		if t.Failed() {
			t.Logf("pryv-tls output:\n%s", c.logs.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return c
		}
		select {
		case err := <-c.done:
			c.done <- err // the cleanup waits for it too
			t.Fatalf("pryv-tls exited before listening (%v):\n%s", err, c.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pryv-tls did not listen on %s within 15s:\n%s", addr, c.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *core) signal(sig syscall.Signal) {
	if err := c.cmd.Process.Signal(sig); err != nil {
		c.t.Fatal(err)
	}
}

// wait returns the exit code once the process ends (bounded).
func (c *core) wait(timeout time.Duration) int {
	c.t.Helper()
	select {
	case err := <-c.done:
		c.done <- err // let Cleanup see it ended
		if err == nil {
			return 0
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		c.t.Fatalf("waiting for pryv-tls: %v", err)
	case <-time.After(timeout):
		c.t.Fatalf("pryv-tls did not exit within %s:\n%s", timeout, c.logs.String())
	}
	return -1
}

// servedSerial handshakes with Go's TLS client and returns the leaf serial.
func servedSerial(t *testing.T, addr, serverName string, roots *x509.CertPool) (string, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: serverName, RootCAs: roots})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}

// waitSerial polls until the served serial is want (bounded), and returns
// how long that took.
func waitSerial(t *testing.T, addr, serverName string, roots *x509.CertPool, want string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(5 * time.Second)
	var got string
	var err error
	for time.Now().Before(deadline) {
		got, err = servedSerial(t, addr, serverName, roots)
		if err == nil && got == want {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("serial %s not served within 5s (last: %q, err %v)", want, got, err)
	return 0
}

// stillServes checks for a while that the serial does not change.
func stillServes(t *testing.T, addr, serverName string, roots *x509.CertPool, want string, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		got, err := servedSerial(t, addr, serverName, roots)
		if err != nil {
			t.Fatalf("handshake failed while the old certificate should still serve: %v", err)
		}
		if got != want {
			t.Fatalf("served serial changed to %s; want the old %s to keep serving", got, want)
		}
	}
}

// pki is a CA and a way to write leaf certificates for one hostname.
type pki struct {
	ca    *devpki.CA
	roots *x509.CertPool
	caPEM string // path of the CA file, for openssl and curl
}

func newPKI(t *testing.T, dir string) *pki {
	t.Helper()
	root, err := devpki.NewCA("e2e root")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := root.NewIntermediate("e2e intermediate")
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{ca: ca, roots: x509.NewCertPool(), caPEM: filepath.Join(dir, "ca.pem")}
	p.roots.AddCert(root.Cert)
	writeFile(t, p.caPEM, root.CertPEM(), 0o644)
	return p
}

func (p *pki) issue(t *testing.T, l devpki.Leaf) *devpki.Issued {
	t.Helper()
	if l.Names == nil {
		l.Names = []string{"your-domain.com"}
	}
	is, err := p.ca.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

func serial(is *devpki.Issued) string { return is.Cert.SerialNumber.Text(16) }

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

// writeAtomic writes a file the way careful tools do: temp file, rename.
func writeAtomic(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, data, mode)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// upstream is a stand-in for the Pryv API or HFS.
func upstream(t *testing.T, name string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if delay > 0 {
			time.Sleep(delay)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %s host=%s xfp=%s xfh=%s", name, r.URL.Path, r.Host, r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

func yamlConfig(lines ...string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

func tlsDialInsecure(addr, serverName string) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	return tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
}
