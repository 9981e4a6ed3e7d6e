package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// The daemon's lifecycle as an operator's script and systemd see it: the
// control socket answering from the start, the CLI waiting for a starting
// core, sd_notify readiness, signals during start-up (decision 0019).

const waitingLine = "waiting for the core to start (up to 30s)..."

// lcCore is a single core with PlatformDB (dns.active, an atRestKey) and
// its certificate in http.ssl files, in dir; it returns serve's flags.
type lcCore struct {
	dir, front   string
	args         []string
	pki          *pki
	serial       string // of the certificate in the files
	peer, client string // PlatformDB's addresses
}

func newLCCore(t *testing.T) *lcCore {
	t.Helper()
	dir := t.TempDir()
	c := &lcCore{dir: dir, pki: newPKI(t, dir)}
	c.front = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c.peer, c.client = fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	is := c.pki.issue(t, devpki.Leaf{Names: []string{host, "*." + host}})
	c.serial = serial(is)
	writeFile(t, filepath.Join(dir, "tls", "fullchain.pem"), is.FullChain, 0o644)
	writeFile(t, filepath.Join(dir, "tls", "privkey.pem"), is.KeyPEM, 0o600)
	_, port, _ := net.SplitHostPort(c.front)
	conf := filepath.Join(dir, "config.yml")
	writeFile(t, conf, yamlConfig(
		"http:",
		"  ip: 127.0.0.1",
		"  port: "+port,
		"  ssl:",
		"    certFile: tls/fullchain.pem",
		"    keyFile: tls/privkey.pem",
		"dnsLess:",
		"  isActive: false",
		"core:",
		"  id: core1",
		"  ip: 127.0.0.1",
		"  url: https://core1."+host,
		"dns:",
		"  active: true",
		"  domain: "+host,
		"  ip: 127.0.0.1",
		fmt.Sprintf("  port: %d", freeUDPTCPPort(t)),
		"letsEncrypt:",
		"  atRestKey: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8='",
		"platformDB:",
		"  peerAddress: "+c.peer,
		"  clientAddress: "+c.client,
	), 0o600)
	c.args = []string{"--config", conf}
	return c
}

func (c *lcCore) socket() string { return filepath.Join(c.dir, "var-pryv", "run", "pryv-tls.sock") }

// spawn starts "pryv-tls serve" and returns at once (startCore waits for
// the front; these tests look at what comes before).
func (c *lcCore) spawn(t *testing.T, env ...string) *core {
	t.Helper()
	p := &core{t: t, addr: c.front, logs: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(binary, append([]string{"serve"}, c.args...)...)
	p.cmd.Dir = c.dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-p.done:
			p.done <- err
		default:
			_ = p.cmd.Process.Kill()
			_ = <-p.done // killed: its exit status says so
		}
		if t.Failed() {
			t.Logf("pryv-tls output:\n%s", p.logs.String())
		}
	})
	return p
}

// cliCmd is a CLI command of this core, not started.
func (c *lcCore) cliCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, binary, append(args, c.args...)...)
	cmd.Dir = c.dir
	return cmd
}

// exitOf is a finished command's exit code.
func exitOf(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	t.Fatal(err)
	return -1
}

// socketAnswer is one GET /status on the control socket: status and error id.
func socketAnswer(path string) (int, string, error) {
	c := admin.SocketClient(path)
	defer c.CloseIdleConnections()
	c.Timeout = 2 * time.Second
	resp, err := c.Get("http://pryv-tls/status")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var e struct {
		Error struct{ ID, Message string } `json:"error"`
	}
	body, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(body, &e)
	return resp.StatusCode, e.Error.ID + ": " + e.Error.Message, nil
}

// A command run before serve, and one right after it, both succeed: they
// wait for the starting core and say so on stderr. "serve & command" in a
// shell script works as is. Once the core is gone, --wait bounds the wait.
func TestLifecycleCLIRacesStart(t *testing.T) {
	c := newLCCore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	before := c.cliCmd(ctx, "users", "set-core", "alice", "core1")
	var beforeOut syncBuffer
	before.Stdout, before.Stderr = &beforeOut, &beforeOut
	if err := before.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the command is waiting: no socket yet
	srv := c.spawn(t)
	after, err := c.cliCmd(ctx, "status").CombinedOutput()
	code := exitOf(t, err)
	if code != 0 || !strings.Contains(string(after), "This core: core1") {
		t.Fatalf("status run right after serve: exit %d\n%s", code, after)
	}
	if code := exitOf(t, before.Wait()); code != 0 || !strings.Contains(beforeOut.String(), "alice -> core1") || !strings.Contains(beforeOut.String(), waitingLine) {
		t.Fatalf("users set-core run before serve: exit %d\n%s", code, beforeOut.String())
	}
	if out, err := c.cliCmd(ctx, "users", "get", "alice", "--wait", "0").CombinedOutput(); exitOf(t, err) != 0 || strings.Contains(string(out), "waiting") {
		t.Fatalf("users get on a running core: %v\n%s", err, out)
	}
	srv.signal(syscall.SIGTERM)
	if code := srv.wait(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d", code)
	}

	// The core is gone: --wait 0 fails at once, --wait 1s after a second.
	for _, tc := range []struct {
		wait     string
		min, max time.Duration
		want     string
	}{
		{"0", 0, 3 * time.Second, "cannot reach the running core through its control socket"},
		{"1s", time.Second, 5 * time.Second, "after waiting 1s"},
	} {
		start := time.Now()
		out, err := c.cliCmd(ctx, "users", "list", "--wait", tc.wait).CombinedOutput()
		d := time.Since(start)
		if code := exitOf(t, err); code != 1 || !strings.Contains(string(out), tc.want) {
			t.Errorf("--wait %s on a stopped core: exit %d\n%s", tc.wait, code, out)
		}
		if d < tc.min || d > tc.max {
			t.Errorf("--wait %s failed after %s, want within [%s, %s]", tc.wait, d, tc.min, tc.max)
		}
	}

	// The script of the issue, verbatim but for the paths.
	script := `"$0" serve "$@" >serve.log 2>&1 & echo $! >serve.pid
"$0" users set-core bob core1 "$@"`
	sh := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", script, binary}, c.args...)...)
	sh.Dir = c.dir
	out, err := sh.CombinedOutput()
	if pid, rerr := os.ReadFile(filepath.Join(c.dir, "serve.pid")); rerr == nil {
		var n int
		if _, serr := fmt.Sscan(string(pid), &n); serr == nil {
			p, _ := os.FindProcess(n)
			_ = p.Signal(syscall.SIGTERM)
			defer waitGone(t, n)
		}
	}
	if code := exitOf(t, err); code != 0 || !strings.Contains(string(out), "bob -> core1") {
		logs, _ := os.ReadFile(filepath.Join(c.dir, "serve.log"))
		t.Fatalf("serve & users set-core: exit %d\n%s\nserve:\n%s", code, out, logs)
	}
}

// waitGone waits (bounded) for a process this test started through a shell
// to exit.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); err != nil {
			return
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	t.Errorf("serve (pid %d) did not exit within 30s of SIGTERM", pid)
}

// notifySocket stands for systemd's NOTIFY_SOCKET: a unixgram socket; it
// returns the env to give serve and the datagrams as they arrive.
func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	out := make(chan string, 256)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			select {
			case out <- string(buf[:n]):
			default: // a test that stopped reading: drop
			}
		}
	}()
	return "NOTIFY_SOCKET=" + path, out
}

// awaitNotify reads datagrams until one has assignment want (e.g.
// "READY=1"), and returns it and every one before it.
func awaitNotify(t *testing.T, ch <-chan string, want string, d time.Duration) (string, []string) {
	t.Helper()
	var seen []string
	deadline := time.After(d)
	for {
		select {
		case m := <-ch:
			for _, line := range strings.Split(m, "\n") {
				if line == want {
					return m, seen
				}
			}
			seen = append(seen, m)
		case <-deadline:
			t.Fatalf("no %s within %s; received %q", want, d, seen)
			return "", nil
		}
	}
}

// READY=1 arrives when the front answers TLS and the control socket
// answers the API (both probed the moment it arrives), after the starting
// states; WATCHDOG=1 comes every WATCHDOG_USEC/2; SIGHUP is RELOADING=1 then
// READY=1 once the files were read again; SIGTERM is STOPPING=1.
func TestLifecycleNotify(t *testing.T) {
	c := newLCCore(t)
	env, ch := notifySocket(t)
	srv := c.spawn(t, env, "WATCHDOG_USEC=400000")

	ready, before := awaitNotify(t, ch, "READY=1", 30*time.Second)
	if got, err := servedSerial(t, c.front, host, c.pki.roots); err != nil || got != c.serial {
		t.Fatalf("at READY=1 the front does not serve the certificate: %q %v", got, err)
	}
	if st, id, err := socketAnswer(c.socket()); err != nil || st != http.StatusOK {
		t.Fatalf("at READY=1 the control socket answers %d %q %v, want the API", st, id, err)
	}
	if !strings.Contains(ready, "STATUS=serving") {
		t.Errorf("READY=1 datagram %q lacks STATUS=serving", ready)
	}
	var states []string
	for _, m := range before {
		if s, ok := strings.CutPrefix(m, "STATUS="); ok {
			states = append(states, s)
		}
	}
	joined := strings.Join(states, " | ")
	for _, want := range []string{"starting: opening the control socket", "starting: opening PlatformDB", "starting: starting the front"} {
		if !strings.Contains(joined, want) {
			t.Errorf("before READY=1, no STATUS=%s; got %q", want, joined)
		}
	}

	// Two pings at least, at WATCHDOG_USEC/2 = 200 ms.
	awaitNotify(t, ch, "WATCHDOG=1", 5*time.Second)
	awaitNotify(t, ch, "WATCHDOG=1", 5*time.Second)

	// SIGHUP: new files, then RELOADING=1 and READY=1 once read.
	next := c.pki.issue(t, devpki.Leaf{Names: []string{host, "*." + host}})
	writeAtomic(t, filepath.Join(c.dir, "tls", "privkey.pem"), next.KeyPEM, 0o600)
	writeAtomic(t, filepath.Join(c.dir, "tls", "fullchain.pem"), next.FullChain, 0o644)
	srv.signal(syscall.SIGHUP)
	awaitNotify(t, ch, "RELOADING=1", 10*time.Second)
	awaitNotify(t, ch, "READY=1", 10*time.Second)
	if got, err := servedSerial(t, c.front, host, c.pki.roots); err != nil || got != serial(next) {
		t.Fatalf("after the reload's READY=1: serial %q (%v), want the new %s", got, err, serial(next))
	}

	srv.signal(syscall.SIGTERM)
	stopping, _ := awaitNotify(t, ch, "STOPPING=1", 10*time.Second)
	if !strings.Contains(stopping, "STATUS=draining") {
		t.Errorf("STOPPING=1 datagram %q lacks STATUS=draining", stopping)
	}
	if code := srv.wait(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
}

// lostQuorum makes c's PlatformDB a member of a two-member cluster whose
// other member is gone: serve then waits for a quorum that never comes,
// a reliable start-up to look at for as long as quorumWait (10 s).
func lostQuorum(t *testing.T, c *lcCore) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	quiet := platformdbLogger()
	one, err := platformdb.Open(ctx, platformdb.Options{Name: "core1", DataDir: filepath.Join(c.dir, "var-pryv", "platformdb"),
		PeerAddress: c.peer, ClientAddress: c.client, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	peer2 := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	m, initial, err := one.AddLearner(ctx, "core2", "http://"+peer2)
	if err != nil {
		t.Fatal(err)
	}
	two, err := platformdb.Open(ctx, platformdb.Options{Name: "core2", DataDir: filepath.Join(t.TempDir(), "core2"),
		PeerAddress: peer2, ClientAddress: fmt.Sprintf("127.0.0.1:%d", freePort(t)), Logger: quiet,
		InitialCluster: initial, ClusterState: "existing"})
	if err != nil {
		t.Fatal(err)
	}
	if err := one.Promote(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	_ = two.Close()
	_ = one.Close()
}

func platformdbLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// SIGTERM while PlatformDB is still opening (waiting for quorum) exits 0
// after closing what was opened. Meanwhile the control socket answers 503
// starting, which --wait 0 reports at once and --wait 1s after a second.
func TestLifecycleSIGTERMAtStartup(t *testing.T) {
	c := newLCCore(t)
	lostQuorum(t, c)
	srv := c.spawn(t)

	deadline := time.Now().Add(20 * time.Second)
	for {
		st, id, err := socketAnswer(c.socket())
		if err == nil && st == http.StatusServiceUnavailable && strings.HasPrefix(id, "starting: ") && strings.Contains(id, "opening PlatformDB") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the socket did not answer 503 starting within 20s: %d %q %v", st, id, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		wait     string
		min, max time.Duration
		want     string
	}{
		{"0", 0, 2 * time.Second, "the core is starting (starting: opening PlatformDB)"},
		{"1s", time.Second, 4 * time.Second, "after waiting 1s: the core is starting"},
	} {
		start := time.Now()
		out, err := c.cliCmd(ctx, "users", "list", "--wait", tc.wait).CombinedOutput()
		d := time.Since(start)
		if code := exitOf(t, err); code != 1 || !strings.Contains(string(out), tc.want) {
			t.Errorf("--wait %s on a starting core: exit %d\n%s", tc.wait, code, out)
		}
		if d < tc.min || d > tc.max {
			t.Errorf("--wait %s failed after %s, want within [%s, %s]", tc.wait, d, tc.min, tc.max)
		}
	}
	if st, id, _ := socketAnswer(c.socket()); st != http.StatusServiceUnavailable || !strings.HasPrefix(id, "starting: ") {
		t.Fatalf("start-up is over before the signal (%d %q): the test would not test start-up", st, id)
	}

	signalled := time.Now()
	srv.signal(syscall.SIGTERM)
	if code := srv.wait(30 * time.Second); code != 0 {
		t.Fatalf("SIGTERM during start-up: exit %d, want 0", code)
	}
	t.Logf("exited %s after SIGTERM", time.Since(signalled).Round(time.Millisecond))
	logs := srv.logs.String()
	// Promptly: the wait for PlatformDB was abandoned, not run out (the
	// order of events: quorumWait's end is logged, and it is not there).
	if strings.Contains(logs, "PlatformDB is not answering yet") {
		t.Errorf("the core waited out quorumWait after SIGTERM instead of abandoning the wait for PlatformDB:\n%s", logs)
	}
	if !strings.Contains(logs, `msg="stopped during start-up" step="opening PlatformDB"`) || strings.Contains(logs, "serve failed") {
		t.Fatalf("the log does not say it stopped during start-up:\n%s", logs)
	}
	// Closed, not left behind: the socket file, PlatformDB's ports; the
	// front was never bound.
	if _, err := os.Lstat(c.socket()); !os.IsNotExist(err) {
		t.Errorf("the control socket file is left: %v", err)
	}
	for _, addr := range []string{c.peer, c.client, c.front} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s still taken after the stop: %v", addr, err)
			continue
		}
		ln.Close()
	}
	if strings.Contains(logs, "front listening") {
		t.Errorf("the front started although start-up was interrupted before it")
	}
}

// Without quorum the core still becomes ready after quorumWait: the front
// serves from its files, the control socket says PlatformDB is
// unavailable (not "starting": commands do not wait for it), and STATUS=
// says so.
func TestLifecycleReadyWithoutQuorum(t *testing.T) {
	c := newLCCore(t)
	lostQuorum(t, c)
	env, ch := notifySocket(t)
	srv := c.spawn(t, env)
	start := time.Now()

	ready, _ := awaitNotify(t, ch, "READY=1", 40*time.Second)
	if d := time.Since(start); d < 9*time.Second {
		t.Errorf("READY=1 after %s, before quorumWait (10s)", d)
	}
	if !strings.Contains(ready, "STATUS=serving; PlatformDB is not answering yet (no quorum?)") {
		t.Errorf("READY=1 datagram %q does not say PlatformDB is missing", ready)
	}
	if got, err := servedSerial(t, c.front, host, c.pki.roots); err != nil || got != c.serial {
		t.Fatalf("at READY=1 the front does not serve the certificate: %q %v", got, err)
	}
	if st, id, err := socketAnswer(c.socket()); err != nil || st != http.StatusServiceUnavailable || !strings.HasPrefix(id, "unavailable: PlatformDB is not reachable yet") {
		t.Fatalf("the control socket answers %d %q %v, want 503 unavailable", st, id, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.cliCmd(ctx, "status").CombinedOutput()
	if code := exitOf(t, err); code != 1 || !strings.Contains(string(out), "PlatformDB is not reachable yet") || strings.Contains(string(out), "waiting for the core") {
		t.Errorf("status without quorum: exit %d\n%s", code, out)
	}
	srv.signal(syscall.SIGTERM)
	awaitNotify(t, ch, "STOPPING=1", 10*time.Second)
	if code := srv.wait(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
}

// migrate-v1 on a v1 tree laid out as v1 writes it (the email under acme:,
// beside leader:; the fixture of internal/cli) imports into a running core,
// which serves the certificate.
func TestLifecycleMigrateV1RealLayout(t *testing.T) {
	c := newLCCore(t)
	srv := c.spawn(t)
	const domain = "pryv.example.com"
	root := filepath.Join(c.dir, "v1")
	fixture, err := os.ReadFile(filepath.Join("..", "internal", "cli", "testdata", "v1", "tree", "config-leader", "ssl", "conf", "ssl-certificate.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(fixture), "\nleader:") || !strings.Contains(string(fixture), "\nacme:\n  isProduction: true\n  email: ops@pryv.example.com") {
		t.Fatalf("the fixture is not v1's layout:\n%s", fixture)
	}
	writeFile(t, filepath.Join(root, "config-leader", "ssl", "conf", "ssl-certificate.yml"), fixture, 0o644)
	is := c.pki.issue(t, devpki.Leaf{Names: []string{"*." + domain, domain}})
	writeFile(t, filepath.Join(root, "pryv", "nginx", "conf", "secret", domain+"-bundle.crt"), is.FullChain, 0o644)
	writeFile(t, filepath.Join(root, "pryv", "nginx", "conf", "secret", domain+"-key.pem"), is.KeyPEM, 0o600)

	// Run it while the core starts: it waits.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.cliCmd(ctx, "migrate-v1", "--conf-root", root).CombinedOutput()
	if code := exitOf(t, err); code != 0 {
		t.Fatalf("migrate-v1: exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"acme.email            ops@pryv.example.com  -> letsEncrypt.email",
		"acme.isProduction     true  -> letsEncrypt.staging: false",
		"  email: ops@pryv.example.com\n",
		"stored *." + domain + " in PlatformDB (serial " + serial(is),
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("migrate-v1 output lacks %q:\n%s", want, out)
		}
	}
	waitSerial(t, c.front, "a."+domain, c.pki.roots, serial(is))
	srv.signal(syscall.SIGTERM)
	if code := srv.wait(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
}
