package dnsdata

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/authdns"
	"github.com/pryv/pryv-tls/internal/platformdb"
	"github.com/pryv/pryv-tls/internal/testutil"
)

// testDomain is the platform domain of every test.
const testDomain = "mc.example.com"

// ---- pure helpers (Build) ----

// ask answers one query from z the way the server does, over TCP (no
// truncation), without a network.
func ask(z *authdns.Zone, name string, qtype uint16) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.RecursionDesired = false
	return authdns.Answer(z, q, dns.MaxMsgSize, true)
}

// rdata returns the presentation-format rdata of the records of type t in
// rrs, sorted.
func rdata(rrs []dns.RR, t uint16) []string {
	out := []string{}
	for _, rr := range rrs {
		if rr.Header().Rrtype == t {
			out = append(out, strings.TrimPrefix(rr.String(), rr.Header().String()))
		}
	}
	sort.Strings(out)
	return out
}

// txtValues returns the TXT values (strings of one record joined) in rrs, sorted.
func txtValues(rrs []dns.RR) []string {
	out := []string{}
	for _, rr := range rrs {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	sort.Strings(out)
	return out
}

func soaOf(rrs []dns.RR) *dns.SOA {
	for _, rr := range rrs {
		if s, ok := rr.(*dns.SOA); ok {
			return s
		}
	}
	return nil
}

// mustBuild builds and fails the test on error.
func mustBuild(t testing.TB, st Static, r *rows, serial uint32) (*authdns.Zone, []string) {
	t.Helper()
	z, warnings, err := Build(st, r, serial)
	if err != nil {
		t.Fatalf("Build: %v (warnings %q)", err, warnings)
	}
	if z == nil {
		t.Fatal("Build returned a nil zone and no error")
	}
	return z, warnings
}

// warningWith returns the first warning containing every part, or "".
func warningWith(warnings []string, parts ...string) string {
	for _, w := range warnings {
		ok := true
		for _, p := range parts {
			if !strings.Contains(w, p) {
				ok = false
				break
			}
		}
		if ok {
			return w
		}
	}
	return ""
}

// ---- PlatformDB ----

// testCtx bounds a test's PlatformDB calls (a minute: a loaded machine).
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// ---- logs ----

// logRecorder is a slog.Handler that keeps every record as one line.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	s := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool {
		s += " " + a.Key + "=" + a.Value.String()
		return true
	})
	h.mu.Lock()
	h.lines = append(h.lines, s)
	h.mu.Unlock()
	return nil
}

func (h *logRecorder) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.lines)
}

// ---- a real DNS server fed by a real Watcher ----

// harness is an authdns.Server on 127.0.0.1 (UDP and TCP, same port) whose zone
// a Watcher swaps.
type harness struct {
	t     *testing.T
	db    *platformdb.Etcd
	rows  Rows
	srv   *authdns.Server
	w     *Watcher
	addr  string // host:port, UDP and TCP
	swaps atomic.Int64
	logs  *logRecorder

	cancel context.CancelFunc
	done   chan struct{}
}

// staticConfig is the configuration part of the end-to-end zone.
func staticConfig() Static {
	return Static{
		Domain:   testDomain,
		TTL:      60,
		Root:     Records{A: []string{"192.0.2.1"}, TXT: []string{"v=spf1 -all"}},
		NSHostIP: "127.0.0.1",
		Entries:  []Entry{{Subdomain: "www", Records: Records{A: []string{"192.0.2.80"}}}},
	}
}

// newHarness serves the static zone (ServeStatic) on a fresh server; the
// watcher does not read PlatformDB until run.
func newHarness(t *testing.T, db *platformdb.Etcd, st Static) *harness {
	t.Helper()
	h := &harness{t: t, db: db, rows: Rows{KV: db}, logs: &logRecorder{}}
	h.srv = authdns.NewServer(authdns.ServerOptions{})
	h.w = &Watcher{
		Static: st,
		KV:     db,
		Swap: func(z *authdns.Zone) {
			h.swaps.Add(1)
			h.srv.Swap(z)
		},
		Logger: slog.New(h.logs),
	}
	if err := h.w.ServeStatic(); err != nil {
		t.Fatalf("ServeStatic: %v", err)
	}
	if err := h.srv.ListenAndServe("127.0.0.1:0"); err != nil {
		t.Fatalf("ListenAndServe: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.srv.Shutdown(ctx)
	})
	udp, tcp := h.srv.Addrs()
	if len(udp) != 1 || len(tcp) != 1 || udp[0].String() != tcp[0].String() {
		t.Fatalf("server addresses: udp %v tcp %v", udp, tcp)
	}
	h.addr = udp[0].String()
	return h
}

// run starts Watcher.Run; the test's cleanup (or stop) ends it.
func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan struct{})
	go func() {
		defer close(h.done)
		h.w.Run(ctx)
	}()
	h.t.Cleanup(h.stop)
}

// stop ends Run and waits for it (bounded).
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.t.Error("Watcher.Run did not return within 10 s of its context ending")
	}
	h.cancel = nil
}

// query sends one query over netw ("udp" or "tcp") to addr.
func query(netw, addr, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.RecursionDesired = false
	c := &dns.Client{Net: netw, Timeout: 2 * time.Second}
	resp, _, err := c.Exchange(q, addr)
	if err != nil {
		return nil, err
	}
	if resp.Id != q.Id {
		return nil, fmt.Errorf("response id %d for query id %d", resp.Id, q.Id)
	}
	return resp, nil
}

func mustQuery(t testing.TB, netw, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	resp, err := query(netw, addr, name, qtype)
	if err != nil {
		t.Fatalf("%s query %s %s to %s: %v", netw, name, dns.TypeToString[qtype], addr, err)
	}
	return resp
}

// answerA is the sorted A addresses answered for name over netw, or the
// rcode name when the answer is not NOERROR.
func answerA(netw, addr, name string) string {
	resp, err := query(netw, addr, name, dns.TypeA)
	if err != nil {
		return "error: " + err.Error()
	}
	if resp.Rcode != dns.RcodeSuccess {
		return dns.RcodeToString[resp.Rcode]
	}
	return strings.Join(rdata(resp.Answer, dns.TypeA), ",")
}

// waitA waits until name answers exactly want ("a,b" sorted, or an rcode
// name) over netw.
func (h *harness) waitA(netw, name, want string) {
	h.t.Helper()
	testutil.Eventually(h.t, 10*time.Second, fmt.Sprintf("%s A %s = %s", netw, name, want), func() (bool, string) {
		got := answerA(netw, h.addr, name)
		return got == want, got
	})
}

// serial is the SOA serial answered over UDP.
func (h *harness) serial() uint32 {
	h.t.Helper()
	resp := mustQuery(h.t, "udp", h.addr, testDomain, dns.TypeSOA)
	s := soaOf(resp.Answer)
	if s == nil {
		h.t.Fatalf("no SOA in %v", resp)
	}
	return s.Serial
}

// silentUDP is a UDP socket on 127.0.0.1 that reads and never answers.
func silentUDP(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}
