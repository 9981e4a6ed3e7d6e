package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/e2e/faults"
	"github.com/pryv/pryv-tls/internal/devpki"
)

// faultCluster is three cores on 127.0.0.1-3 (same ports, one address
// each), core1 the CA holder, core2 and core3 joined with bundles, all
// serving faultHost from PlatformDB; each core runs in a cgroup of its own
// so that iptables can cut one off on loopback.
type faultCluster struct {
	t     *testing.T
	ports clusterPorts
	p     *pki
	dirs  [3]string
	args  [3][]string // serve arguments once joined
	cg    [3]*cgroup
	cores [3]*core
}

const faultHost = "rot.faults.example.com"

func (fc *faultCluster) front(i int) string { return fmt.Sprintf("127.0.0.%d:%d", i+1, fc.ports.front) }
func (fc *faultCluster) sock(i int) string  { return filepath.Join(fc.dirs[i], "run", "pryv-tls.sock") }
func (fc *faultCluster) fronts(is ...int) []string {
	var out []string
	for _, i := range is {
		out = append(out, fc.front(i))
	}
	return out
}

func startFaultCluster(t *testing.T) *faultCluster {
	t.Helper()
	root := t.TempDir()
	fc := &faultCluster{t: t, p: newPKI(t, root),
		ports: clusterPorts{front: freeClusterPort(t), peer: freeClusterPort(t), client: freeClusterPort(t), join: freeClusterPort(t)}}
	api := upstream(t, "api", 0)
	main := fc.p.issue(t, devpki.Leaf{Names: []string{"faults.example.com"}})
	writeFile(t, filepath.Join(root, "main", "fullchain.pem"), main.FullChain, 0o644)
	writeFile(t, filepath.Join(root, "main", "privkey.pem"), main.KeyPEM, 0o600)
	for i := range fc.dirs {
		fc.dirs[i] = filepath.Join(root, fmt.Sprintf("core%d", i+1))
		fc.cg[i] = newCgroup(t, fmt.Sprintf("core%d", i+1))
		lines := []string{
			"http: {ssl: {certFile: " + filepath.Join(root, "main", "fullchain.pem") + ", keyFile: " + filepath.Join(root, "main", "privkey.pem") + "}}",
			"letsEncrypt: {tlsDir: " + filepath.Join(fc.dirs[i], "tls") + "}",
			"platformDB: {dataDir: " + filepath.Join(fc.dirs[i], "platformdb") + "}",
			"cluster: {ca: {path: " + filepath.Join(fc.dirs[i], "ca") + "}}",
			"control: {socket: " + fc.sock(i) + "}",
			"upstreams: {api: '" + api + "', hfs: '" + api + "'}",
		}
		if i == 0 {
			lines = append(lines, "core: {id: core1, ip: 127.0.0.1}")
		}
		writeFile(t, filepath.Join(fc.dirs[i], "cfg.yml"), yamlConfig(lines...), 0o600)
	}
	key := strings.TrimSpace(mustOut(t, binary, "keygen"))
	writeFile(t, filepath.Join(fc.dirs[0], "shared.yml"), yamlConfig(
		fmt.Sprintf("http: {ip: 127.0.0.1, port: %d}", fc.ports.front),
		"letsEncrypt: {atRestKey: '"+key+"'}",
		fmt.Sprintf("platformDB: {peerAddress: 127.0.0.1:%d, clientAddress: 127.0.0.1:%d}", fc.ports.peer, fc.ports.client),
		fmt.Sprintf("cluster: {joinPort: %d}", fc.ports.join),
	), 0o600)
	cfg1 := []string{"--config", filepath.Join(fc.dirs[0], "cfg.yml"), "--config", filepath.Join(fc.dirs[0], "shared.yml")}
	mustCLI(t, fc.dirs[0], append([]string{"bootstrap", "init-ca-holder"}, append(cfg1, "--out", filepath.Join(fc.dirs[0], "cluster-config.yml"))...)...)
	fc.args[0] = append(cfg1, "--config", filepath.Join(fc.dirs[0], "cluster-config.yml"))
	fc.start(0)
	first := fc.p.issue(t, devpki.Leaf{Names: []string{faultHost}})
	fc.importOn(0, first, 30*time.Second)
	waitSerialNamed(t, fc.front(0), faultHost, fc.p.roots, serial(first), 10*time.Second)
	for i := 1; i < 3; i++ {
		id, ip := fmt.Sprintf("core%d", i+1), fmt.Sprintf("127.0.0.%d", i+1)
		bundle := filepath.Join(fc.dirs[i], "join.bundle")
		out := mustCLI(t, fc.dirs[0], append([]string{"bootstrap", "new-core"}, append(fc.args[0], "--id", id, "--ip", ip, "--out", bundle)...)...)
		pass := filepath.Join(fc.dirs[i], "pass")
		writeFile(t, pass, []byte(passphraseFrom(t, out)+"\n"), 0o600)
		own := filepath.Join(fc.dirs[i], "cfg.yml")
		fc.args[i] = []string{"--config", own, "--bootstrap", bundle, "--bootstrap-passphrase-file", pass}
		fc.start(i)
		waitSerialNamed(t, fc.front(i), faultHost, fc.p.roots, serial(first), 60*time.Second)
		fc.args[i] = []string{"--config", own, "--config", filepath.Join(fc.dirs[i], "cluster-config.yml")}
	}
	fc.waitHealthy(60 * time.Second)
	return fc
}

func (fc *faultCluster) start(i int) {
	fc.t.Helper()
	fc.cores[i] = startCoreCg(fc.t, fc.dirs[i], fc.front(i), fc.cg[i], fc.args[i]...)
}

// importOn stores is for faultHost through core i's socket, retrying a
// refusal (a starting core, an election) up to d; it returns how long it took.
func (fc *faultCluster) importOn(i int, is *devpki.Issued, d time.Duration) time.Duration {
	fc.t.Helper()
	start := time.Now()
	for {
		code, body := socketImport(fc.t, fc.sock(i), faultHost, is)
		if code == 200 {
			return time.Since(start)
		}
		if time.Since(start) > d {
			fc.t.Fatalf("import on core%d not accepted within %s: %d %s", i+1, d, code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitHealthy waits until every running core answers a quorum read and
// exactly one is the leader; it returns the leader's index.
func (fc *faultCluster) waitHealthy(d time.Duration) int {
	fc.t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for {
		leader, up, running := -1, 0, 0
		var states []string
		for i, c := range fc.cores {
			if c == nil || c.exited() {
				continue
			}
			running++
			st, err := socketStatus(fc.sock(i), 2*time.Second)
			if err != nil {
				states = append(states, fmt.Sprintf("core%d: %v", i+1, err))
				continue
			}
			states = append(states, fmt.Sprintf("core%d: up %v leader %v", i+1, st.Core.PlatformDB.Up, st.Core.PlatformDB.Leader))
			if st.Core.PlatformDB.Up {
				up++
			}
			if st.Core.PlatformDB.Leader {
				if leader >= 0 {
					leader = -2
				} else if leader == -1 {
					leader = i
				}
			}
		}
		if up == running && leader >= 0 {
			return leader
		}
		last = strings.Join(states, "; ")
		if time.Now().After(deadline) {
			fc.t.Fatalf("cluster not healthy within %s: %s", d, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// exited reports whether the core's process has ended (without waiting).
func (c *core) exited() bool {
	select {
	case err := <-c.done:
		c.done <- err
		return true
	default:
		return false
	}
}

func others(n int, not ...int) []int {
	var out []int
next:
	for i := 0; i < n; i++ {
		for _, x := range not {
			if x == i {
				continue next
			}
		}
		out = append(out, i)
	}
	return out
}

// TestFaultsCluster is issue 18's scenario 3 on a real 3-core cluster:
// kill -9 of a follower and of the etcd leader under a handshake + request
// load, a partition of one core (iptables on loopback, the core matched by
// its cgroup) with a rotation made meanwhile, and the loss of quorum.
func TestFaultsCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("slow fault scenario (~1 min): runs without -short")
	}
	needRoot(t)
	fw := newFirewall(t)
	began := time.Now()
	fc := startFaultCluster(t)
	t.Logf("cluster of 3 up in %s", time.Since(began).Round(time.Millisecond))

	// The phases run one after the other on the same cluster (each needs
	// the one before it to have ended well), in the test's own goroutine.
	phase := func(name string, f func()) {
		t.Logf("--- %s", name)
		f()
	}

	// kill9Under kills core victim while every other core is under load,
	// restarts it, and records the load's figures.
	kill9Under := func(name string, victim int) {
		t.Helper()
		survivors := others(3, victim)
		l := startLoad(t, fc.fronts(survivors...), faultHost, fc.p.roots, 5000, 60*time.Second)
		time.Sleep(500 * time.Millisecond)
		fc.cores[victim].kill9()
		killed := time.Now()
		// A write on a survivor: accepted once a leader is (still or
		// again) there.
		next := fc.p.issue(t, devpki.Leaf{Names: []string{faultHost}})
		firstWrite := fc.importOn(survivors[0], next, 30*time.Second)
		for _, i := range survivors {
			waitSerialNamed(t, fc.front(i), faultHost, fc.p.roots, serial(next), 10*time.Second)
		}
		time.Sleep(time.Until(killed.Add(3 * time.Second)))
		stats := l.end()
		hs, hsFailed, reqFailed, text := loadSummary(stats)
		if hs < 20 || hsFailed > 0 || reqFailed > 0 {
			t.Errorf("%s: %s; first error: %s", name, text, firstErr(stats))
		}
		restart := time.Now()
		fc.start(victim)
		waitSerialNamed(t, fc.front(victim), faultHost, fc.p.roots, serial(next), 30*time.Second)
		back := time.Since(restart)
		fc.waitHealthy(60 * time.Second)
		var note string
		if firstWrite > 2*time.Second {
			// The write sent as the leader died is not retried by etcd: it
			// waits out PlatformDB's request timeout (5 s); the next is
			// accepted by the new leader.
			note = "a write in flight when the leader dies waits out the 5 s request timeout, the next one goes through"
		}
		recordReliability(t, Row{Scenario: 3, Case: name, Note: note,
			Done: fmt.Sprintf("kill -9 of core%d while the 2 other cores took full TLS handshakes + one proxied request each, then a write on core%d, then core%d restarted", victim+1, survivors[0]+1, victim+1),
			Figures: fmt.Sprintf("surviving cores: %s; first write accepted %s after the kill; restarted core served the rotation made while it was down %s after its start",
				text, ms(firstWrite), ms(back)),
			Outcome: faults.Held})
	}

	phase("kill -9 of a follower", func() {
		leader := fc.waitHealthy(30 * time.Second)
		kill9Under("kill -9 of a follower", others(3, leader)[len(others(3, leader))-1])
	})
	phase("kill -9 of the etcd leader", func() {
		kill9Under("kill -9 of the etcd leader", fc.waitHealthy(30*time.Second))
	})

	phase("partition", func() {
		fc.waitHealthy(30 * time.Second)
		const cut = 2 // core3
		ss := needTool(t, "ss")
		before := fc.p.issue(t, devpki.Leaf{Names: []string{faultHost}})
		fc.importOn(0, before, 10*time.Second)
		for i := range 3 {
			waitSerialNamed(t, fc.front(i), faultHost, fc.p.roots, serial(before), 10*time.Second)
		}
		ports := fmt.Sprintf("%d,%d", fc.ports.peer, fc.ports.client)
		partition := func() {
			// New connections between core3 and the others' PlatformDB
			// listeners are dropped from their first packet, whichever side
			// dials (on loopback core3 dials from 127.0.0.1 as the others
			// do: its sockets are told apart by cgroup). core3's own
			// connections to itself are left alone: a cut-off member still
			// talks to itself. Then the established ones are destroyed
			// (ss -K), as a partition ends them by timeout: every
			// reconnection meets the rules (core1-core2 reconnect at once).
			fw.add("-m", "cgroup", "--path", fc.cg[cut].path, "!", "-d", "127.0.0.3", "-p", "tcp", "-m", "multiport", "--dports", ports, "-j", "DROP")
			fw.add("-m", "cgroup", "!", "--path", fc.cg[cut].path, "-d", "127.0.0.3", "-p", "tcp", "-m", "multiport", "--dports", ports, "-j", "DROP")
			filter := fmt.Sprintf("( sport = :%d or dport = :%d or sport = :%d or dport = :%d ) and ( dst 127.0.0.1 or dst 127.0.0.2 or dst 127.0.0.3 )",
				fc.ports.peer, fc.ports.peer, fc.ports.client, fc.ports.client)
			if out, err := exec.Command(ss, "-K", "-t", filter).CombinedOutput(); err != nil {
				t.Fatalf("ss -K %s: %v\n%s", filter, err, out)
			}
		}
		// Several cuts: the catch-up after a heal depends on where the
		// cut-off core's retries stand when it comes, so one sample says little.
		const cycles, cutFor = 3, 5 * time.Second
		l := startLoad(t, fc.fronts(cut), faultHost, fc.p.roots, 10000, 90*time.Second)
		t.Cleanup(fw.flush)
		var caught []time.Duration
		var writes []time.Duration
		var statusTook time.Duration
		var statusSays string
		for c := range cycles {
			partition()
			cutAt := time.Now()
			// The majority side goes on: a rotation is written there.
			during := fc.p.issue(t, devpki.Leaf{Names: []string{faultHost}})
			writes = append(writes, fc.importOn(0, during, 20*time.Second))
			for _, i := range []int{0, 1} {
				waitSerialNamed(t, fc.front(i), faultHost, fc.p.roots, serial(during), 10*time.Second)
			}
			// status on the cut-off core answers, bounded, and says so (it
			// used to hang for more than 10 s on a partitioned core). The
			// 10 s client timeout is the hang guard; the time it took is a
			// figure of the scenario, not an assertion.
			if c == 0 {
				begin := time.Now()
				st, err := socketStatus(fc.sock(cut), 10*time.Second)
				statusTook = time.Since(begin)
				switch {
				case err != nil:
					t.Errorf("status on the cut-off core: %v after %s", err, statusTook)
				case len(st.Problems) == 0:
					t.Errorf("status on the cut-off core names no problem: %+v", st)
				default:
					statusSays = strings.Join(st.Problems, "; ")
				}
			}
			// core3 keeps serving its last certificate, and does not see the new one.
			stillServes(t, fc.front(cut), faultHost, fc.p.roots, serial(before), time.Until(cutAt.Add(cutFor)))
			fw.flush()
			healed := time.Now()
			deadline := healed.Add(30 * time.Second)
			for {
				if s, err := servedSerial(t, fc.front(cut), faultHost, fc.p.roots); err == nil && s == serial(during) {
					caught = append(caught, time.Since(healed))
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("cut %d: core3 did not serve the rotation made during the partition within 30 s of the heal", c+1)
				}
				time.Sleep(5 * time.Millisecond)
			}
			before = during
			fc.waitHealthy(30 * time.Second)
		}
		stats := l.end()
		_, hsFailed, reqFailed, text := loadSummary(stats)
		if hsFailed > 0 || reqFailed > 0 {
			t.Errorf("core3 during the partitions: %s; first error: %s", text, firstErr(stats))
		}
		var each []string
		for _, d := range caught {
			each = append(each, ms(d))
		}
		worst := percentile(caught, 1)
		// Fixed: a PlatformDB watch backed off to 2 s between retries while
		// the member had no leader, so the catch-up took up to 2.3 s.
		outcome, note := faults.Fixed, "platformdb's watch retry capped at 250 ms (was 2 s: 0.5-2.3 s after a heal)"
		if worst > time.Second {
			outcome, note = faults.NotFixed, "above the 1 s target"
			t.Errorf("a rotation made during a partition reached core3 %s after the heal (each: %s); the target is 1 s", worst, strings.Join(each, ", "))
		}
		recordReliability(t, Row{Scenario: 3, Case: "partition of one core, rotation meanwhile, heal",
			Done: fmt.Sprintf("%d times: iptables DROP between core3 and the others' PlatformDB ports for %s (core3's sockets matched by its cgroup, established connections destroyed with ss -K), a rotation written on core1 during the cut, rules removed; handshakes + requests on core3 throughout", cycles, cutFor),
			Figures: fmt.Sprintf("core3: %s, served its last certificate during every cut; the rotation written on the majority side (accepted in %s at worst) reached core3 after the heal in %s (worst %s, target 1 s); status on core3 during the first cut answered in %s: %q",
				text, ms(percentile(writes, 1)), strings.Join(each, ", "), ms(worst), ms(statusTook), statusSays),
			Outcome: outcome, Note: note})
	})

	phase("quorum lost, then back", func() {
		fc.waitHealthy(30 * time.Second)
		const survivor = 2
		l := startLoad(t, fc.fronts(survivor), faultHost, fc.p.roots, 5000, 90*time.Second)
		fc.cores[0].kill9()
		fc.cores[1].kill9()
		down := time.Now()
		// A write on the survivor is refused, with an error that says why.
		refused := fc.p.issue(t, devpki.Leaf{Names: []string{faultHost}})
		code, body := socketImport(t, fc.sock(survivor), faultHost, refused)
		refusedIn := time.Since(down)
		if code == 200 {
			t.Fatalf("a write without quorum was accepted")
		}
		if !strings.Contains(strings.ToLower(body), "quorum") && !strings.Contains(strings.ToLower(body), "unavailable") {
			t.Errorf("the refusal without quorum does not say why: %d %s", code, body)
		}
		stillServes(t, fc.front(survivor), faultHost, fc.p.roots, servedNow(t, fc, survivor), 2*time.Second)
		fc.start(0)
		fc.start(1)
		restarted := time.Now()
		after := fc.p.issue(t, devpki.Leaf{Names: []string{faultHost}})
		firstWrite := fc.importOn(survivor, after, 60*time.Second)
		writeBack := time.Since(restarted)
		for i := range 3 {
			waitSerialNamed(t, fc.front(i), faultHost, fc.p.roots, serial(after), 10*time.Second)
		}
		stats := l.end()
		_, hsFailed, reqFailed, text := loadSummary(stats)
		if hsFailed > 0 || reqFailed > 0 {
			t.Errorf("core3 without quorum: %s; first error: %s", text, firstErr(stats))
		}
		fc.waitHealthy(60 * time.Second)
		_ = firstWrite
		recordReliability(t, Row{Scenario: 3, Case: "quorum lost (2 of 3 killed), then back",
			Done: "kill -9 of core1 and core2; core3 under handshakes + requests; a write on core3; core1 and core2 restarted; a write on core3 again",
			Figures: fmt.Sprintf("core3: %s; the write without quorum refused in %s with %d %q; after the restart the first write was accepted %s after the two cores were started, and served by all 3",
				text, ms(refusedIn), code, strings.TrimSpace(body), ms(writeBack)),
			Outcome: faults.Held})
	})
	t.Logf("scenario 3 took %s", time.Since(began).Round(time.Second))
}

func servedNow(t *testing.T, fc *faultCluster, i int) string {
	t.Helper()
	s, err := servedSerial(t, fc.front(i), faultHost, fc.p.roots)
	if err != nil {
		t.Fatalf("core%d: %v", i+1, err)
	}
	return s
}

func firstErr(stats []*loadStats) string {
	for _, s := range stats {
		if s.firstErr != "" {
			return s.addr + ": " + s.firstErr
		}
	}
	return "none"
}
