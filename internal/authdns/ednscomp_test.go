package authdns

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

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

// digResult is what dig printed about one response.
type digResult struct {
	out      string
	status   string
	flags    []string
	mbz      bool // a header bit that must be zero was set
	edns     bool
	version  int
	ednsFlag []string
	ednsMBZ  bool // an EDNS flag that must be zero was set
	udp      int
	options  []string // EDNS option names (COOKIE, NSID, ...)
	answer   int
	size     int
}

var (
	digStatus  = regexp.MustCompile(`status: ([A-Z]+),`)
	digFlags   = regexp.MustCompile(`(?m)^;; flags:([^;]*);( MBZ: 0x[0-9a-f]+;)? QUERY: \d+, ANSWER: (\d+),`)
	digEDNS    = regexp.MustCompile(`(?m)^; EDNS: version: (\d+), flags:([^;]*);( MBZ: (0x[0-9a-f]+),)? udp: (\d+)`)
	digOption  = regexp.MustCompile(`(?m)^; ([A-Z][A-Z0-9-]*):`)
	digMsgSize = regexp.MustCompile(`MSG SIZE  rcvd: (\d+)`)
)

// dig runs dig against addr ("127.0.0.1:port") and parses its report of
// the response.
func dig(t *testing.T, addr string, args ...string) digResult {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	all := append([]string{"@" + host, "-p", port, "+norec", "+tries=1", "+time=3"}, args...)
	out, err := exec.Command(needTool(t, "dig"), all...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(all, " "), err, out)
	}
	r := digResult{out: string(out)}
	s := r.out
	if m := digStatus.FindStringSubmatch(s); m != nil {
		r.status = m[1]
	} else {
		t.Fatalf("dig %s: no status in\n%s", strings.Join(all, " "), s)
	}
	if m := digFlags.FindStringSubmatch(s); m != nil {
		r.flags = strings.Fields(m[1])
		r.mbz = m[2] != ""
		r.answer, _ = strconv.Atoi(m[3])
	}
	if m := digEDNS.FindStringSubmatch(s); m != nil {
		r.edns = true
		r.version, _ = strconv.Atoi(m[1])
		r.ednsFlag = strings.Fields(m[2])
		r.ednsMBZ = m[4] != "" && m[4] != "0x0000"
		r.udp, _ = strconv.Atoi(m[5])
		_, opts, _ := strings.Cut(s, "OPT PSEUDOSECTION:")
		opts, _, _ = strings.Cut(opts, ";; QUESTION SECTION:")
		for _, o := range digOption.FindAllStringSubmatch(opts, -1) {
			if o[1] != "EDNS" {
				r.options = append(r.options, o[1])
			}
		}
	}
	if m := digMsgSize.FindStringSubmatch(s); m != nil {
		r.size, _ = strconv.Atoi(m[1])
	}
	return r
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestEDNSCompliance is ISC's EDNS compliance test set (the queries of its
// genreport tool, with the answers it accepts; knot answers every one of
// them "ok"), sent by the real dig to the real server over UDP, and over
// TCP for the cases that also hold there.
func TestEDNSCompliance(t *testing.T) {
	s := startServer(t, testZone(t), ServerOptions{})
	udp, tcp := serverAddr(t, s)
	const zone = "mc.example.com."
	// ok is what genreport accepts for every case: an authoritative answer
	// (BADVERS comes before the zone is looked at), no header bit that
	// must be zero set, an OPT of version 0 (when present) without
	// must-be-zero flags.
	ok := func(t *testing.T, r digResult) {
		t.Helper()
		if (r.status == "NOERROR" && !has(r.flags, "aa")) || r.mbz {
			t.Errorf("header flags %v (MBZ set: %v), want aa and no MBZ", r.flags, r.mbz)
		}
		if r.edns && (r.version != 0 || r.ednsMBZ) {
			t.Errorf("OPT version %d, MBZ %v: want version 0, no MBZ", r.version, r.ednsMBZ)
		}
	}
	soaAnswer := func(t *testing.T, r digResult) {
		t.Helper()
		if r.status != "NOERROR" || r.answer != 1 {
			t.Errorf("status %s with %d answers, want NOERROR with the SOA", r.status, r.answer)
		}
	}
	withOPT := func(t *testing.T, r digResult) {
		t.Helper()
		if !r.edns {
			t.Fatalf("no OPT in the response")
		}
		if r.udp != DefaultMaxUDPSize {
			t.Errorf("advertised UDP size %d, want ours (%d)", r.udp, DefaultMaxUDPSize)
		}
	}
	for _, c := range []struct {
		name  string
		args  []string
		tcp   bool // also over TCP
		check func(t *testing.T, r digResult)
	}{
		{"dns", []string{"+noedns", "soa", zone}, true, func(t *testing.T, r digResult) {
			soaAnswer(t, r)
			if r.edns {
				t.Error("an OPT in the answer to a query without one")
			}
		}},
		{"edns", []string{"+edns=0", "+nocookie", "soa", zone}, true, func(t *testing.T, r digResult) {
			soaAnswer(t, r)
			withOPT(t, r)
			if has(r.ednsFlag, "do") || len(r.options) != 0 {
				t.Errorf("EDNS flags %v, options %v: want none", r.ednsFlag, r.options)
			}
		}},
		{"edns1", []string{"+edns=1", "+noednsneg", "+nocookie", "soa", zone}, true, func(t *testing.T, r digResult) {
			if r.status != "BADVERS" || r.answer != 0 {
				t.Errorf("status %s with %d answers, want BADVERS and no answer", r.status, r.answer)
			}
			withOPT(t, r)
		}},
		{"edns@512", []string{"+edns=0", "+dnssec", "+bufsize=512", "+ignore", "dnskey", zone}, false, func(t *testing.T, r digResult) {
			if r.status != "NOERROR" {
				t.Errorf("status %s, want NOERROR", r.status)
			}
			withOPT(t, r)
			if r.size > 512 && !has(r.flags, "tc") {
				t.Errorf("%d bytes without TC to a 512-byte buffer", r.size)
			}
		}},
		{"ednsopt", []string{"+edns=0", "+noednsneg", "+nocookie", "+ednsopt=100", "soa", zone}, true, func(t *testing.T, r digResult) {
			soaAnswer(t, r)
			withOPT(t, r)
			if len(r.options) != 0 {
				t.Errorf("options %v echoed, want none", r.options)
			}
		}},
		{"edns1opt", []string{"+edns=1", "+noednsneg", "+nocookie", "+ednsopt=100", "soa", zone}, true, func(t *testing.T, r digResult) {
			if r.status != "BADVERS" || r.answer != 0 || len(r.options) != 0 {
				t.Errorf("status %s, %d answers, options %v: want BADVERS, nothing else", r.status, r.answer, r.options)
			}
			withOPT(t, r)
		}},
		{"ednsflags", []string{"+edns=0", "+noednsneg", "+nocookie", "+ednsflags=0x80", "soa", zone}, true, func(t *testing.T, r digResult) {
			soaAnswer(t, r)
			withOPT(t, r)
		}},
		{"optlist", []string{"+edns=0", "+noednsneg", "+nsid", "+subnet=0.0.0.0/0", "+expire", "+cookie=0102030405060708", "soa", zone}, true, func(t *testing.T, r digResult) {
			soaAnswer(t, r)
			withOPT(t, r)
			if len(r.options) != 0 {
				t.Errorf("options %v in the answer: none is implemented, so none may be sent", r.options)
			}
		}},
		{"docookie", []string{"+edns=0", "+noednsneg", "+cookie", "soa", zone}, true, func(t *testing.T, r digResult) {
			soaAnswer(t, r)
			withOPT(t, r)
		}},
		{"zflag", []string{"+edns=0", "+noednsneg", "+nocookie", "+zflag", "soa", zone}, true, func(t *testing.T, r digResult) {
			soaAnswer(t, r)
			withOPT(t, r)
		}},
		{"ednstcp", []string{"+edns=0", "+noednsneg", "+nocookie", "+tcp", "soa", zone}, false, func(t *testing.T, r digResult) {
			soaAnswer(t, r)
			withOPT(t, r)
		}},
		{"do", []string{"+edns=0", "+noednsneg", "+nocookie", "+dnssec", "soa", zone}, true, func(t *testing.T, r digResult) {
			soaAnswer(t, r)
			withOPT(t, r)
			if !has(r.ednsFlag, "do") {
				t.Errorf("EDNS flags %v: DO not copied (RFC 3225 §3)", r.ednsFlag)
			}
		}},
	} {
		transports := []string{"udp"}
		if c.tcp {
			transports = append(transports, "tcp")
		}
		for _, tr := range transports {
			t.Run(c.name+"/"+tr, func(t *testing.T) {
				addr, args := udp, c.args
				if tr == "tcp" {
					addr, args = tcp, append([]string{"+tcp"}, c.args...)
				}
				r := dig(t, addr, args...)
				ok(t, r)
				c.check(t, r)
				if t.Failed() {
					t.Logf("dig said:\n%s", r.out)
				}
			})
		}
	}
}

// TestCompactAnswers checks, with dig, that answers are as small and as
// case-faithful as knot's: every name compressed (the answer's owner is a
// pointer to the question), the owner spelled as the query spelled it.
func TestCompactAnswers(t *testing.T) {
	s := startServer(t, testZone(t), ServerOptions{})
	udp, tcp := serverAddr(t, s)
	const name = "alice.mc.example.com." // 22 bytes on the wire
	// header 12 + question 22+4 + answer (pointer 2 + type, class, TTL,
	// length 10 + address) + OPT 11.
	const aaaaSize = 12 + 26 + 2 + 10 + 16 + 11
	for _, c := range []struct {
		name, addr string
		args       []string
		size       int
		answer     string // a line the answer section must hold
	}{
		{"AAAA udp", udp, []string{"aaaa", name}, aaaaSize, "alice.mc.example.com.\t300\tIN\tAAAA\t2001:db8::101"},
		{"AAAA tcp", tcp, []string{"+tcp", "aaaa", name}, aaaaSize, "alice.mc.example.com.\t300\tIN\tAAAA\t2001:db8::101"},
		{"AAAA 0x20", udp, []string{"aaaa", "AlIcE.Mc.eXample.COM."}, aaaaSize, "AlIcE.Mc.eXample.COM.\t300\tIN\tAAAA\t2001:db8::101"},
		// 60 TXT records: 60 owners of 2 bytes each instead of 20.
		{"TXT60 tcp", tcp, []string{"+tcp", "txt", "big.mc.example.com."}, 12 + 24 + 60*(2+10+1+48) + 11, `big.mc.example.com.	300	IN	TXT	"record number 07, long enough to need many bytes"`},
		// NS targets and glue owners compressed against the apex; the
		// zone spells one target "NS2", so its glue's "ns2" label is
		// written out (4 bytes): miekg/dns compresses names case-sensitively.
		{"NS with glue", udp, []string{"ns", "mc.example.com."}, 12 + 20 + (2+10+6)*2 + (2+10+4)*2 + 4 + (2 + 10 + 16) + 11, "ns1.mc.example.com.\t300\tIN\tAAAA\t2001:db8::11"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := dig(t, c.addr, c.args...)
			if r.size != c.size {
				t.Errorf("%d bytes, want %d (compressed)", r.size, c.size)
			}
			if !strings.Contains(r.out, "\n"+c.answer+"\n") {
				t.Errorf("no %q in the answer", c.answer)
			}
			if t.Failed() {
				t.Logf("dig said:\n%s", r.out)
			}
		})
	}
}

// startKnot serves records (the test zone) with knotd on a free loopback
// port and returns its address. knotd is the reference the answers are
// compared with: missing, the test skips on a developer's machine and fails
// in CI, where .ci/run installs Debian's knot.
func startKnot(t *testing.T, soa dns.RR, rrs []dns.RR) string {
	t.Helper()
	knotd, err := exec.LookPath("knotd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("knotd is required in CI (.ci/run installs Debian's knot) but is not on PATH")
		}
		t.Skip("knotd not installed (Debian: apt-get install knot)")
	}
	dir := t.TempDir()
	var zone strings.Builder
	zone.WriteString(soa.String() + "\n")
	for _, rr := range rrs {
		zone.WriteString(rr.String() + "\n")
	}
	if err := os.MkdirAll(filepath.Join(dir, "zones"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "zones", "mc.example.com.zone"), []byte(zone.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freeLoopbackPort(t)
	conf := fmt.Sprintf(`server:
    rundir: "%[1]s"
    listen: 127.0.0.1@%[2]d
database:
    storage: "%[1]s/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "%[1]s/zones"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: mc.example.com
    file: "mc.example.com.zone"
`, dir, port)
	if err := os.WriteFile(filepath.Join(dir, "knot.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(knotd, "-c", filepath.Join(dir, "knot.conf"))
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if r, _, err := c.Exchange(query(testOrigin, dns.TypeSOA), addr); err == nil && r.Rcode == dns.RcodeSuccess {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("knotd does not answer on %s:\n%s", addr, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeLoopbackPort is a port free for UDP and TCP on 127.0.0.1 (when
// looked at).
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// TestConformanceLikeKnot sends the EDNS compliance cases and the size
// cases with dig to pryv-tls and to knotd serving the same zone, and
// expects the same status, flags, OPT and answer count, and a response no
// larger than knot's.
func TestConformanceLikeKnot(t *testing.T) {
	needTool(t, "dig")
	s := startServer(t, testZone(t), ServerOptions{})
	ours, _ := serverAddr(t, s)
	knot := startKnot(t, testSOA(t), testRecords(t))
	const zone = "mc.example.com."
	for _, args := range [][]string{
		{"+noedns", "soa", zone},
		{"+edns=0", "+nocookie", "soa", zone},
		{"+edns=1", "+noednsneg", "+nocookie", "soa", zone},
		{"+edns=0", "+dnssec", "+bufsize=512", "+ignore", "dnskey", zone},
		{"+edns=0", "+noednsneg", "+nocookie", "+ednsopt=100", "soa", zone},
		{"+edns=1", "+noednsneg", "+nocookie", "+ednsopt=100", "soa", zone},
		{"+edns=0", "+noednsneg", "+nocookie", "+ednsflags=0x80", "soa", zone},
		{"+edns=0", "+noednsneg", "+nocookie", "+zflag", "soa", zone},
		{"+edns=0", "+noednsneg", "+nocookie", "+tcp", "soa", zone},
		{"+edns=0", "+noednsneg", "+nocookie", "+dnssec", "soa", zone},
		{"aaaa", "alice.mc.example.com."},
		{"aaaa", "AlIcE.Mc.eXample.COM."},
		{"+tcp", "txt", "big.mc.example.com."},
		{"a", "www.mc.example.com."},
		{"a", "nobody.mc.example.com."},
		{"txt", "alice.mc.example.com."},
		{"a", "x.wild.mc.example.com."},
		{"mx", "mc.example.com."},
	} {
		name := strings.Join(args, " ")
		t.Run(name, func(t *testing.T) {
			a, b := dig(t, ours, args...), dig(t, knot, args...)
			flag := func(r digResult, f string) bool { return has(r.flags, f) }
			type view struct {
				Status      string
				AA, TC, MBZ bool
				EDNS        bool
				Version     int
				DO          bool
				Options     string
				Answer      int
			}
			v := func(r digResult) view {
				return view{r.status, flag(r, "aa"), flag(r, "tc"), r.mbz, r.edns, r.version, has(r.ednsFlag, "do"), strings.Join(r.options, ","), r.answer}
			}
			if v(a) != v(b) {
				t.Errorf("pryv-tls %+v\nknot     %+v", v(a), v(b))
			}
			if sa, sb := answerLines(a.out), answerLines(b.out); sa != sb {
				t.Errorf("answer section\npryv-tls %q\nknot     %q", sa, sb)
			}
			if a.size > b.size {
				t.Errorf("pryv-tls's response is %d bytes, knot's %d", a.size, b.size)
			}
			t.Logf("%d bytes (knot %d)", a.size, b.size)
			if t.Failed() {
				t.Logf("pryv-tls:\n%s\nknot:\n%s", a.out, b.out)
			}
		})
	}
}

// answerLines is dig's answer section, sorted (servers may order an RRset
// differently).
func answerLines(out string) string {
	_, sec, ok := strings.Cut(out, ";; ANSWER SECTION:\n")
	if !ok {
		return ""
	}
	sec, _, _ = strings.Cut(sec, "\n\n")
	lines := strings.Split(sec, "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
