package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/devpki"
)

// The fault scenarios' tools: root (iptables, mounts, cgroups), a cgroup
// per core so that iptables can tell cores apart on loopback, a chain of
// rules of the test's own, a bounded handshake + request load.

// needRoot skips a scenario that needs root on a developer's machine and
// fails it in CI (which runs as root).
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this fault scenario needs root (iptables, mounts, cgroups): CI runs as root")
		}
		t.Skip("needs root")
	}
}

// cgroupRoot is where cgroup v2 is mounted ("" if it is not).
func cgroupRoot() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts ... - fstype source superopts
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4]
			}
		}
	}
	return ""
}

// cgroup is a cgroup v2 directory of the test's own: a core started in it
// (from its first instruction, so every socket it opens is in it) can be
// matched by iptables' -m cgroup --path.
type cgroup struct {
	path string // relative to the cgroup2 root, for iptables
	dir  string
}

var cgroupSeq atomic.Int32

func newCgroup(t *testing.T, name string) *cgroup {
	t.Helper()
	root := cgroupRoot()
	if root == "" {
		t.Fatal("no cgroup v2 hierarchy mounted (/proc/self/mountinfo): the partition scenario matches a core's sockets by cgroup")
	}
	rel := fmt.Sprintf("pryv-tls-e2e-%d-%d-%s", os.Getpid(), cgroupSeq.Add(1), name)
	cg := &cgroup{path: rel, dir: filepath.Join(root, rel)}
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		t.Fatalf("creating cgroup %s: %v", cg.dir, err)
	}
	t.Cleanup(func() {
		// The processes in it are gone by now (cleanups run in reverse
		// order: the cores started after it were killed first).
		for i := 0; i < 50; i++ {
			if err := os.Remove(cg.dir); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("cgroup %s not removed (a process still in it?)", cg.dir)
	})
	return cg
}

// firewall is an iptables chain of the test's own, jumped to from OUTPUT
// (on loopback every packet goes through OUTPUT), removed at cleanup.
type firewall struct {
	t     *testing.T
	ipt   string
	chain string
}

func newFirewall(t *testing.T) *firewall {
	t.Helper()
	needRoot(t)
	fw := &firewall{t: t, ipt: needTool(t, "iptables"), chain: fmt.Sprintf("PRYVTLS-%d-%d", os.Getpid()%100000, cgroupSeq.Add(1))}
	fw.must("-N", fw.chain)
	fw.must("-I", "OUTPUT", "-j", fw.chain)
	t.Cleanup(func() {
		// Best effort: -X below fails, and says so, if these did.
		_, _ = fw.do("-D", "OUTPUT", "-j", fw.chain)
		_, _ = fw.do("-F", fw.chain)
		if out, err := fw.do("-X", fw.chain); err != nil {
			t.Errorf("removing iptables chain %s: %v %s", fw.chain, err, out)
		}
	})
	return fw
}

func (fw *firewall) do(args ...string) (string, error) {
	out, err := exec.Command(fw.ipt, append([]string{"-w", "5"}, args...)...).CombinedOutput()
	return string(out), err
}

func (fw *firewall) must(args ...string) {
	fw.t.Helper()
	if out, err := fw.do(args...); err != nil {
		fw.t.Fatalf("iptables %v: %v\n%s", args, err, out)
	}
}

// add appends one rule to the chain.
func (fw *firewall) add(rule ...string) {
	fw.t.Helper()
	fw.must(append([]string{"-A", fw.chain}, rule...)...)
}

// flush removes every rule of the chain (the chain stays until cleanup).
func (fw *firewall) flush() { fw.t.Helper(); fw.must("-F", fw.chain) }

// startCoreCg is startCoreIn with the process placed in cg from its start
// (cg nil: as startCoreIn).
func startCoreCg(t *testing.T, dir, addr string, cg *cgroup, args ...string) *core {
	t.Helper()
	if cg == nil {
		return startCoreIn(t, dir, addr, args...)
	}
	fd, err := syscall.Open(cg.dir, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("opening cgroup %s: %v", cg.dir, err)
	}
	defer syscall.Close(fd)
	c := &core{t: t, addr: addr, logs: &syncBuffer{}, done: make(chan error, 1)}
	c.cmd = exec.Command(binary, append([]string{"serve"}, args...)...)
	c.cmd.Dir = dir
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	c.cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting a core in cgroup %s: %v", cg.dir, err)
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
			t.Logf("pryv-tls output (%s):\n%s", addr, c.logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return c
		}
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("pryv-tls exited before listening (%v):\n%s", err, c.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pryv-tls did not listen on %s within 30s:\n%s", addr, c.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill9 kills a core with SIGKILL and waits for it.
func (c *core) kill9() {
	c.t.Helper()
	c.signal(syscall.SIGKILL)
	c.wait(10 * time.Second)
}

// loadStats is what a load run saw on one front.
type loadStats struct {
	addr                 string
	handshakes, hsFailed int
	requests, reqFailed  int
	firstErr             string
	serials              map[string]int
}

// load makes full TLS handshakes (SNI name, verified against roots), each
// followed by one HTTPS request through the proxy, on every front until
// stop is closed — bounded by max handshakes per front and by limit.
type load struct {
	stop  chan struct{}
	wg    sync.WaitGroup
	stats []*loadStats
}

func startLoad(t *testing.T, fronts []string, name string, roots *x509.CertPool, max int, limit time.Duration) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	deadline := time.Now().Add(limit)
	for _, addr := range fronts {
		st := &loadStats{addr: addr, serials: map[string]int{}}
		l.stats = append(l.stats, st)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			cfg := &tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{"http/1.1"}}
			fail := func(msg string) {
				if st.firstErr == "" {
					st.firstErr = msg
				}
			}
			for i := 0; i < max && time.Now().Before(deadline); i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				st.handshakes++
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
				if err != nil {
					st.hsFailed++
					fail(fmt.Sprintf("handshake %d: %v", i, err))
					time.Sleep(10 * time.Millisecond)
					continue
				}
				st.serials[conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)]++
				st.requests++
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprintf(conn, "GET /faults/ping HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", name)
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || !bytes.HasPrefix(body, []byte("api /faults/ping")) {
						err = fmt.Errorf("%s %q", resp.Status, body)
					}
				}
				if err != nil {
					st.reqFailed++
					fail(fmt.Sprintf("request %d: %v", i, err))
				}
				conn.Close()
				time.Sleep(5 * time.Millisecond) // a steady load, not a flood: 2 cores for 8 people
			}
		}()
	}
	return l
}

// end stops the load and returns its stats, fronts in order.
func (l *load) end() []*loadStats {
	close(l.stop)
	l.wg.Wait()
	return l.stats
}

// sum is "N handshakes (F failed), M requests (G failed)" over stats.
func loadSummary(stats []*loadStats) (hs, hsFailed, reqFailed int, text string) {
	var parts []string
	req := 0
	for _, s := range stats {
		hs += s.handshakes
		hsFailed += s.hsFailed
		req += s.requests
		reqFailed += s.reqFailed
		parts = append(parts, fmt.Sprintf("%s %d/%d", s.addr, s.handshakes-s.hsFailed, s.handshakes))
	}
	return hs, hsFailed, reqFailed, fmt.Sprintf("%d handshakes (%d failed), %d requests (%d failed) [%s]", hs, hsFailed, req, reqFailed, strings.Join(parts, ", "))
}

// socketImport stores a pair through a core's control socket; it returns
// the HTTP status and body.
func socketImport(t *testing.T, sock, hostname string, is *devpki.Issued) (int, string) {
	t.Helper()
	body, _ := json.Marshal(admin.ImportRequest{Hostname: hostname, Chain: string(is.FullChain), Key: string(is.KeyPEM)})
	cl := admin.SocketClient(sock)
	cl.Timeout = 15 * time.Second
	resp, err := cl.Post("http://pryv-tls/certs", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// socketStatus reads GET /status through a control socket (bounded).
func socketStatus(sock string, timeout time.Duration) (*admin.Status, error) {
	cl := admin.SocketClient(sock)
	cl.Timeout = timeout
	resp, err := cl.Get("http://pryv-tls/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	var st admin.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// percentile of sorted durations, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s))*p+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

// freeClusterPort is a TCP port free on 127.0.0.1, 127.0.0.2 and 127.0.0.3
// (every core of a loopback cluster uses the same ports).
func freeClusterPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		p := freePort(t)
		ok := true
		for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
			ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, p))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no port free on 127.0.0.1-3 after 50 tries")
	return 0
}
