package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/e2e/faults"
	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/devpki"
)

// Scenario 5 of issue 18: rotation and configuration reload under load, and
// a soak. The load is three kinds at once, each counted: full TLS handshakes
// (verified against the test CA, SNI the rotated name) each followed by one
// request, HTTP/2 keep-alive clients (Go), and h2load.

const rotName = "rot." + host

// rotLoad is the Go part of the load; its counters are read once it ended.
type rotLoad struct {
	stop               chan struct{}
	wg                 sync.WaitGroup
	handshakes, hsFail atomic.Int64
	requests, reqFail  atomic.Int64
	kaRequests, kaFail atomic.Int64
	mu                 sync.Mutex
	firstErr           string
	serials            map[string]bool
	upstreams          map[string]int
	h2load             *exec.Cmd
	h2out              bytes.Buffer
	h2done             chan error
}

// startRotLoad runs hs handshake loops and ka keep-alive clients against
// front until end (each loop also bounded in count), and h2load for secs
// seconds.
func startRotLoad(t *testing.T, c *reloadCore, h2load string, hs, ka int, d time.Duration) *rotLoad {
	t.Helper()
	l := &rotLoad{stop: make(chan struct{}), serials: map[string]bool{}, upstreams: map[string]int{}, h2done: make(chan error, 1)}
	deadline := time.Now().Add(d)
	fail := func(msg string) {
		l.mu.Lock()
		if l.firstErr == "" {
			l.firstErr = msg
		}
		l.mu.Unlock()
	}
	check := func(status int, body []byte) error {
		name, rest, _ := strings.Cut(string(body), " ")
		if status != 200 || (name != "A" && name != "B") || !strings.HasPrefix(rest, "/faults/ping") {
			return fmt.Errorf("status %d, body %q", status, body)
		}
		l.mu.Lock()
		l.upstreams[name]++
		l.mu.Unlock()
		return nil
	}
	stopped := func() bool {
		select {
		case <-l.stop:
			return true
		default:
			return !time.Now().Before(deadline)
		}
	}
	for range hs {
		l.wg.Go(func() {
			cfg := &tls.Config{ServerName: rotName, RootCAs: c.pki.roots, NextProtos: []string{"http/1.1"}}
			for i := 0; i < 100000 && !stopped(); i++ {
				l.handshakes.Add(1)
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", c.front, cfg)
				if err != nil {
					l.hsFail.Add(1)
					fail("handshake: " + err.Error())
					continue
				}
				l.mu.Lock()
				l.serials[conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)] = true
				l.mu.Unlock()
				l.requests.Add(1)
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprintf(conn, "GET /faults/ping HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", rotName)
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					err = check(resp.StatusCode, body)
				}
				if err != nil {
					l.reqFail.Add(1)
					fail("request after a full handshake: " + err.Error())
				}
				conn.Close()
				time.Sleep(5 * time.Millisecond) // steady, not a flood: 2 cores for 8 people
			}
		})
	}
	for range ka {
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: c.pki.roots, ServerName: rotName},
			ForceAttemptHTTP2: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, c.front)
			},
		}
		cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		l.wg.Go(func() {
			defer tr.CloseIdleConnections()
			for i := 0; i < 100000 && !stopped(); i++ {
				l.kaRequests.Add(1)
				resp, err := cl.Get("https://" + rotName + "/faults/ping")
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					err = check(resp.StatusCode, body)
				}
				if err != nil {
					l.kaFail.Add(1)
					fail("keep-alive request: " + err.Error())
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	_, port, _ := net.SplitHostPort(c.front)
	secs := max(1, int(d/time.Second))
	// 4 clients, 2 streams each, 40 requests/s each: bounded by rate and time.
	l.h2load = exec.Command(h2load, "--connect-to="+c.front, "-c", "4", "-m", "2", "--rps", "40",
		"-D", strconv.Itoa(secs), "https://"+rotName+":"+port+"/faults/ping")
	l.h2load.Stdout, l.h2load.Stderr = &l.h2out, &l.h2out
	if err := l.h2load.Start(); err != nil {
		t.Fatalf("starting h2load: %v", err)
	}
	go func() { l.h2done <- l.h2load.Wait() }()
	return l
}

// h2Result is h2load's summary line.
type h2Result struct {
	total, succeeded, failed, errored, timeout int
	codes                                      string
}

var (
	h2Requests = regexp.MustCompile(`requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2Codes    = regexp.MustCompile(`status codes: ([^\n]*)`)
)

// end stops the Go loops, waits for h2load (it ends by its own -D) and
// parses its summary.
func (l *rotLoad) end(t *testing.T) h2Result {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	select {
	case err := <-l.h2done:
		if err != nil {
			t.Errorf("h2load: %v\n%s", err, l.h2out.String())
		}
	case <-time.After(90 * time.Second):
		_ = l.h2load.Process.Kill()
		t.Fatalf("h2load did not end by its -D:\n%s", l.h2out.String())
	}
	m := h2Requests.FindStringSubmatch(l.h2out.String())
	if m == nil {
		t.Fatalf("no requests line in h2load's output:\n%s", l.h2out.String())
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	r := h2Result{total: n(m[1]), succeeded: n(m[2]), failed: n(m[3]), errored: n(m[4]), timeout: n(m[5])}
	if cm := h2Codes.FindStringSubmatch(l.h2out.String()); cm != nil {
		r.codes = strings.TrimSpace(cm[1])
	}
	return r
}

// summary is the figures of one load run, and whether anything failed.
func (l *rotLoad) summary(h2 h2Result) (string, bool) {
	bad := l.hsFail.Load()+l.reqFail.Load()+l.kaFail.Load() > 0 ||
		h2.failed+h2.errored+h2.timeout > 0 || h2.succeeded != h2.total || !strings.HasPrefix(h2.codes, fmt.Sprintf("%d 2xx", h2.total))
	return fmt.Sprintf("%d full handshakes (%d failed) each with a request (%d failed); %d HTTP/2 keep-alive requests (%d failed); h2load %d requests, %d succeeded, %d failed, %d errored, %d timeout (%s); %d distinct serials seen",
		l.handshakes.Load(), l.hsFail.Load(), l.reqFail.Load(), l.kaRequests.Load(), l.kaFail.Load(),
		h2.total, h2.succeeded, h2.failed, h2.errored, h2.timeout, h2.codes, len(l.serials)), bad
}

// procSample is what the soak watches: RSS from /proc, goroutines from
// the metrics endpoint, open descriptors.
type procSample struct {
	rssKiB, goroutines, fds int
}

var goroutinesLine = regexp.MustCompile(`(?m)^go_goroutines (\d+)$`)

func sampleProc(t *testing.T, pid int, metrics string) procSample {
	t.Helper()
	var s procSample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the core's /proc status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.rssKiB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("listing the core's descriptors: %v", err)
	}
	s.fds = len(fds)
	// No keep-alive: an idle scrape connection would hold a goroutine and
	// a descriptor of the core's until the next sample.
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatalf("scraping the metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := goroutinesLine.FindSubmatch(body)
	if m == nil || s.rssKiB == 0 {
		t.Fatalf("no go_goroutines in the metrics (%d bytes) or no VmRSS (%d)", len(body), s.rssKiB)
	}
	s.goroutines, _ = strconv.Atoi(string(m[1]))
	return s
}

func (s procSample) String() string {
	return fmt.Sprintf("RSS %.1f MiB, %d goroutines, %d fds", float64(s.rssKiB)/1024, s.goroutines, s.fds)
}

// rotator imports a fresh certificate for rotName through the control
// socket every gap until stop; it counts the imports and their failures.
type rotator struct {
	ok, failed atomic.Int64
	first      atomic.Value // string
	done       chan struct{}
}

func startRotator(t *testing.T, c *reloadCore, gap time.Duration, stop <-chan struct{}) *rotator {
	t.Helper()
	r := &rotator{done: make(chan struct{})}
	// One client, its connection closed at the end: the core's count of
	// goroutines and descriptors is what the soak watches.
	cl := admin.SocketClient(c.socket())
	cl.Timeout = 15 * time.Second
	go func() {
		defer close(r.done)
		defer cl.CloseIdleConnections()
		tick := time.NewTicker(gap)
		defer tick.Stop()
		for i := 0; i < 10000; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			is, err := c.pki.ca.Issue(devpki.Leaf{Names: []string{rotName}})
			code, body := 0, ""
			if err == nil {
				code, body = importWith(cl, is)
			} else {
				body = err.Error()
			}
			if code == 200 {
				r.ok.Add(1)
				continue
			}
			r.failed.Add(1)
			r.first.CompareAndSwap(nil, fmt.Sprintf("%d %s", code, body))
		}
	}()
	return r
}

// importWith is socketImport on a client of the caller's.
func importWith(cl *http.Client, is *devpki.Issued) (int, string) {
	body, _ := json.Marshal(admin.ImportRequest{Hostname: rotName, Chain: string(is.FullChain), Key: string(is.KeyPEM)})
	resp, err := cl.Post("http://pryv-tls/certs", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (r *rotator) wait() string {
	<-r.done
	first, _ := r.first.Load().(string)
	return first
}

// reloadEvery sends SIGHUP every gap (the file alternating the upstreams
// between A and B) until stop, each time waiting for READY=1; it returns
// how many reloads ended and the slowest.
func reloadEvery(t *testing.T, c *reloadCore, srv *core, ch <-chan string, confs [2]reloadConf, gap time.Duration, until time.Time) (int, time.Duration) {
	t.Helper()
	n := 0
	var slowest time.Duration
	for i := 0; i < 1000 && time.Now().Before(until); i++ {
		next := time.Now().Add(gap)
		c.write(t, confs[(i+1)%2])
		start := time.Now()
		hup(t, srv, ch)
		slowest = max(slowest, time.Since(start))
		n++
		time.Sleep(time.Until(next))
	}
	return n, slowest
}

// TestFaultsRotationReloadLoad: a certificate imported every 200 ms, then
// the configuration reloaded every 500 ms, each under a bounded load — no
// failed request, no failed handshake — then a soak with both at once, the
// core's RSS, goroutines and descriptors sampled before and after (60 s
// when e2e/faults/run records the rows, 10 s otherwise).
func TestFaultsRotationReloadLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("a load, reloads and a soak: a minute and more")
	}
	h2 := needTool(t, "h2load")
	a, b := upstream(t, "A", 0), upstream(t, "B", 0)
	c := newReloadCore(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	extra := []string{"metrics:", "  listen: " + metrics}
	confs := [2]reloadConf{
		{api: a, hfs: a, wwwA: "10.0.0.1", extra: extra},
		{api: b, hfs: b, wwwA: "10.0.0.2", extra: extra},
	}
	c.write(t, confs[0])
	env, ch := notifySocket(t)
	srv := c.spawn(t, env)
	awaitNotify(t, ch, "READY=1", 30*time.Second)
	first := c.pki.issue(t, devpki.Leaf{Names: []string{rotName}})
	if code, body := socketImport(t, c.socket(), rotName, first); code != 200 {
		t.Fatalf("first import: %d %s", code, body)
	}
	waitSerial(t, c.front, rotName, c.pki.roots, serial(first))
	pid := srv.cmd.Process.Pid

	// 1. Rotation every 200 ms under load.
	const phase = 6 * time.Second
	load := startRotLoad(t, c, h2, 3, 3, phase)
	stopRot := make(chan struct{})
	rot := startRotator(t, c, 200*time.Millisecond, stopRot)
	time.Sleep(phase)
	close(stopRot)
	rotErr := rot.wait()
	h2r := load.end(t)
	figures, bad := load.summary(h2r)
	figures = fmt.Sprintf("%d imports (%d refused); %s", rot.ok.Load(), rot.failed.Load(), figures)
	recordReliability(t, Row{Scenario: 5, Case: "certificate rotation every 200 ms under load",
		Done:    fmt.Sprintf("for %s a new certificate for %s imported through the control socket every 200 ms, while 3 clients made full verified handshakes with a request each, 3 HTTP/2 keep-alive clients and h2load (4 clients) sent requests through the proxy", phase, rotName),
		Figures: figures})
	if bad || rot.failed.Load() > 0 || rot.ok.Load() < 10 {
		t.Errorf("rotation under load: %s; first error: %s; first refused import: %s", figures, load.firstErr, rotErr)
	}
	if len(load.serials) < 5 {
		t.Errorf("the handshakes saw %d serials over %d imports: the rotations did not reach the wire", len(load.serials), rot.ok.Load())
	}

	// 2. SIGHUP every 500 ms under load, the file switching the upstreams.
	load = startRotLoad(t, c, h2, 3, 3, phase)
	n, slowest := reloadEvery(t, c, srv, ch, confs, 500*time.Millisecond, time.Now().Add(phase-time.Second))
	h2r = load.end(t)
	figures, bad = load.summary(h2r)
	st := lastReload(t, c.socket())
	figures = fmt.Sprintf("%d reloads (slowest %s from SIGHUP to READY=1), answers by upstream %v; %s", n, ms(slowest), load.upstreams, figures)
	recordReliability(t, Row{Scenario: 5, Case: "configuration reload every 500 ms under load",
		Done:    fmt.Sprintf("for %s SIGHUP every 500 ms, the file moving the API and HFS upstreams between A and B each time, under the same load", phase),
		Figures: figures})
	if bad || n < 5 || st == nil || !st.OK {
		t.Errorf("reload under load: %s; lastReload %+v; first error: %s", figures, st, load.firstErr)
	}
	if load.upstreams["A"] == 0 || load.upstreams["B"] == 0 {
		t.Errorf("answers by upstream %v: the reloads did not take effect under the load", load.upstreams)
	}

	// 3. Soak: both at once; the process sampled while quiet before and after.
	soak := 10 * time.Second
	if os.Getenv(faults.EnvDir) != "" {
		soak = 60 * time.Second
	}
	time.Sleep(2 * time.Second) // the keep-alive connections of phase 2 closed
	before := sampleProc(t, pid, metrics)
	load = startRotLoad(t, c, h2, 3, 3, soak)
	stopRot = make(chan struct{})
	rot = startRotator(t, c, 200*time.Millisecond, stopRot)
	mid := make(chan procSample, 1)
	go func() {
		// sampled from the /proc files only: scrapeMetrics may t.Fatal
		var p procSample
		for end := time.Now().Add(soak); time.Now().Before(end); time.Sleep(time.Second) {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
						kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
						p.rssKiB = max(p.rssKiB, kb)
					}
				}
			}
			if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
				p.fds = max(p.fds, len(fds))
			}
		}
		mid <- p
	}()
	reloads, _ := reloadEvery(t, c, srv, ch, confs, 500*time.Millisecond, time.Now().Add(soak-time.Second))
	close(stopRot)
	rotErr = rot.wait()
	h2r = load.end(t)
	peak := <-mid
	time.Sleep(2 * time.Second)
	after := sampleProc(t, pid, metrics)
	figures, bad = load.summary(h2r)
	figures = fmt.Sprintf("start (quiet): %s; end (quiet): %s; peak under load: RSS %.1f MiB, %d fds; %d imports (%d refused), %d reloads; %s",
		before, after, float64(peak.rssKiB)/1024, peak.fds, rot.ok.Load(), rot.failed.Load(), reloads, figures)
	recordReliability(t, Row{Scenario: 5, Case: fmt.Sprintf("soak, %s", soak),
		Done:    fmt.Sprintf("for %s the same load with a rotation every 200 ms and a reload every 500 ms at once; RSS (/proc VmRSS), go_goroutines (metrics) and open descriptors sampled with the load stopped, before and after", soak),
		Figures: figures})
	if bad || rot.failed.Load() > 0 {
		t.Errorf("soak: %s; first error: %s; first refused import: %s", figures, load.firstErr, rotErr)
	}
	// Flat: no goroutine or descriptor per request, rotation or reload
	// kept (hundreds of each were made), and no RSS growth beyond what the
	// heap settling takes.
	if after.goroutines > before.goroutines+10 || after.fds > before.fds+10 || after.rssKiB > before.rssKiB+32*1024 {
		t.Errorf("not flat over the soak: before %s, after %s", before, after)
	}
}
