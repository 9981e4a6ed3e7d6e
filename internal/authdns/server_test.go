package authdns

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestServerQueries(t *testing.T) {
	s := startServer(t, testZone(t), ServerOptions{})
	udp, tcp := serverAddr(t, s)
	for _, c := range queryCases {
		t.Run(c.name, func(t *testing.T) {
			for _, tr := range []struct{ netw, addr string }{{"udp", udp}, {"tcp", tcp}} {
				for _, rd := range []bool{false, true} {
					req := c.msg(rd)
					resp := exchange(t, tr.netw, tr.addr, req)
					c.check(t, req, resp)
					if t.Failed() {
						t.Fatalf("over %s (RD %v)", tr.netw, rd)
					}
				}
				// The same with EDNS: same sections, plus an OPT.
				req := c.msg(true)
				req.SetEdns0(4096, false)
				resp := exchange(t, tr.netw, tr.addr, req)
				c.check(t, req, resp)
				if opt := resp.IsEdns0(); opt == nil || opt.UDPSize() != DefaultMaxUDPSize {
					t.Fatalf("over %s: OPT %v", tr.netw, opt)
				}
			}
		})
	}
}

func TestServerUDPAndTCPSharePort(t *testing.T) {
	s := startServer(t, testZone(t), ServerOptions{})
	if err := s.ListenAndServe("127.0.0.1:0", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	udp, tcp := s.Addrs()
	if len(udp) != 3 || len(tcp) != 3 {
		t.Fatalf("Addrs: %v %v", udp, tcp)
	}
	for i := range udp {
		u, c := udp[i].(*net.UDPAddr), tcp[i].(*net.TCPAddr)
		if u.Port != c.Port || !u.IP.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Fatalf("pair %d: udp %v tcp %v", i, u, c)
		}
		r := exchange(t, "udp", u.String(), query("alice.mc.example.com.", dns.TypeA))
		if len(r.Answer) != 1 {
			t.Fatalf("%v: %v", u, r)
		}
		r = exchange(t, "tcp", c.String(), query("alice.mc.example.com.", dns.TypeA))
		if len(r.Answer) != 1 {
			t.Fatalf("%v: %v", c, r)
		}
	}
}

func TestServerTruncation(t *testing.T) {
	s := startServer(t, testZone(t), ServerOptions{})
	udp, tcp := serverAddr(t, s)
	for _, req := range []*dns.Msg{query("big.mc.example.com.", dns.TypeTXT), ednsQuery("big.mc.example.com.", dns.TypeTXT, 4096)} {
		r := exchange(t, "udp", udp, req)
		checkHeader(t, req, r)
		if !r.Truncated || len(r.Answer) != 0 || !r.Authoritative {
			t.Fatalf("UDP: TC %v, %d answers", r.Truncated, len(r.Answer))
		}
		r = exchange(t, "tcp", tcp, req)
		checkHeader(t, req, r)
		if r.Truncated || len(r.Answer) != 60 {
			t.Fatalf("TCP: TC %v, %d answers", r.Truncated, len(r.Answer))
		}
	}
	// The client library retries over TCP by itself when asked to.
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	r, _, err := c.Exchange(query("big.mc.example.com.", dns.TypeTXT), udp)
	if err != nil || !r.Truncated {
		t.Fatalf("plain UDP exchange: %v %v", err, r)
	}
	if got := s.Stats().Truncated; got < 3 {
		t.Fatalf("Stats.Truncated = %d", got)
	}

	// A larger UDP limit lets it through over UDP.
	big := startServer(t, testZone(t), ServerOptions{MaxUDPSize: 8192})
	udp, _ = serverAddr(t, big)
	r = exchange(t, "udp", udp, ednsQuery("big.mc.example.com.", dns.TypeTXT, 8192))
	if r.Truncated || len(r.Answer) != 60 || r.IsEdns0().UDPSize() != 8192 {
		t.Fatalf("UDP 8192: TC %v, %d answers, %v", r.Truncated, len(r.Answer), r.IsEdns0())
	}
}

// rawUDP sends b and returns the response, or nil after wait.
func rawUDP(t *testing.T, conn net.Conn, b []byte, wait time.Duration) *dns.Msg {
	t.Helper()
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := conn.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		t.Fatal(err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatalf("response does not unpack: %v", err)
	}
	return m
}

func mustPack(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestServerOddPacketsUDP(t *testing.T) {
	s := startServer(t, testZone(t), ServerOptions{})
	udp, _ := serverAddr(t, s)
	conn, err := net.Dial("udp", udp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const quiet = 300 * time.Millisecond
	alive := func() {
		t.Helper()
		q := query("alice.mc.example.com.", dns.TypeA)
		if r := rawUDP(t, conn, mustPack(t, q), 5*time.Second); r == nil || r.Id != q.Id || len(r.Answer) != 1 {
			t.Fatalf("server no longer answers: %v", r)
		}
	}

	// A response (QR set) is dropped.
	resp := query("alice.mc.example.com.", dns.TypeA)
	resp.Response = true
	if r := rawUDP(t, conn, mustPack(t, resp), quiet); r != nil {
		t.Fatalf("answered a response: %v", r)
	}
	alive()

	// Shorter than a header: dropped.
	if r := rawUDP(t, conn, []byte{1, 2, 3, 4, 5}, quiet); r != nil {
		t.Fatalf("answered 5 bytes: %v", r)
	}
	alive()

	// A header announcing a question that is not there: FORMERR.
	hdr := mustPack(t, query("alice.mc.example.com.", dns.TypeA))[:12]
	if r := rawUDP(t, conn, hdr, 5*time.Second); r == nil || r.Rcode != dns.RcodeFormatError {
		t.Fatalf("truncated body: %v", r)
	}
	// Garbage after a valid header.
	garbage := append(append([]byte{}, hdr...), strings.Repeat("\xff", 40)...)
	if r := rawUDP(t, conn, garbage, 5*time.Second); r == nil || r.Rcode != dns.RcodeFormatError {
		t.Fatalf("garbage body: %v", r)
	}
	alive()

	// No question, two questions, NOTIFY, UPDATE.
	none := new(dns.Msg)
	none.Id = 4242
	if r := rawUDP(t, conn, mustPack(t, none), 5*time.Second); r == nil || r.Rcode != dns.RcodeFormatError || r.Id != 4242 {
		t.Fatalf("no question: %v", r)
	}
	two := query("alice.mc.example.com.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	if r := rawUDP(t, conn, mustPack(t, two), 5*time.Second); r == nil || r.Rcode != dns.RcodeFormatError {
		t.Fatalf("two questions: %v", r)
	}
	for _, op := range []int{dns.OpcodeNotify, dns.OpcodeUpdate} {
		q := query("mc.example.com.", dns.TypeSOA)
		q.Opcode = op
		r := rawUDP(t, conn, mustPack(t, q), 5*time.Second)
		if r == nil || r.Rcode != dns.RcodeNotImplemented || r.Opcode != op || len(r.Question) != 1 {
			t.Fatalf("opcode %d: %v", op, r)
		}
	}
	// EDNS version 1.
	q := ednsQuery("alice.mc.example.com.", dns.TypeA, 1232)
	q.IsEdns0().SetVersion(1)
	if r := rawUDP(t, conn, mustPack(t, q), 5*time.Second); r == nil || r.Rcode != dns.RcodeBadVers || r.IsEdns0() == nil {
		t.Fatalf("EDNS version 1: %v", r)
	}
	alive()

	st := s.Stats()
	if st.Dropped < 1 || st.Malformed < 2 || st.NotImp < 2 || st.FormErr < 2 || st.BadVers < 1 || st.NoError < 4 || st.Panics != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestServerOddPacketsTCP(t *testing.T) {
	s := startServer(t, testZone(t), ServerOptions{TCPIdleTimeout: time.Second})
	_, tcp := serverAddr(t, s)

	// A client that sends one byte and stalls does not stall others.
	stalled, err := net.Dial("tcp", tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if _, err := stalled.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	if r := exchange(t, "tcp", tcp, query("alice.mc.example.com.", dns.TypeA)); len(r.Answer) != 1 {
		t.Fatalf("%v", r)
	}

	// Garbage with a length prefix: FORMERR or a closed connection, never a hang.
	conn, err := net.Dial("tcp", tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hdr := mustPack(t, query("alice.mc.example.com.", dns.TypeA))[:12]
	body := append(append([]byte{}, hdr...), strings.Repeat("\xfe", 30)...)
	frame := binary.BigEndian.AppendUint16(nil, uint16(len(body)))
	if _, err := conn.Write(append(frame, body...)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var n uint16
	if err := binary.Read(conn, binary.BigEndian, &n); err != nil {
		t.Fatalf("reading the FORMERR: %v", err)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf); err != nil || r.Rcode != dns.RcodeFormatError {
		t.Fatalf("got %v %v", err, r)
	}

	// Several queries on one TCP connection (RFC 7766 pipelining).
	dc, err := dns.Dial("tcp", tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	_ = dc.SetDeadline(time.Now().Add(5 * time.Second))
	for i := range 5 {
		q := query("bob.mc.example.com.", dns.TypeA)
		q.Id = uint16(1000 + i)
		if err := dc.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		r, err := dc.ReadMsg()
		if err != nil || len(r.Answer) != 1 || r.Id < 1000 || r.Id >= 1005 {
			t.Fatalf("pipelined: %v %v", err, r)
		}
	}
}

func TestServerSwapAndNoZone(t *testing.T) {
	s := NewServer(ServerOptions{})
	if err := s.ListenAndServe("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Shutdown(context.Background()) }()
	udp, tcp := serverAddr(t, s)
	for _, a := range []struct{ n, addr string }{{"udp", udp}, {"tcp", tcp}} {
		if r := exchange(t, a.n, a.addr, query("alice.mc.example.com.", dns.TypeA)); r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("no zone over %s: %v", a.n, r)
		}
	}
	if s.Zone() != nil {
		t.Fatal("Zone() before Swap")
	}
	z1 := userZone(t, 10, 1)
	s.Swap(z1)
	if s.Zone() != z1 {
		t.Fatal("Zone() is not the swapped zone")
	}
	r := exchange(t, "udp", udp, query("user3.mc.example.com.", dns.TypeA))
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.1.0.3" {
		t.Fatalf("zone 1: %v", r)
	}
	s.Swap(userZone(t, 10, 2))
	r = exchange(t, "tcp", tcp, query("user3.mc.example.com.", dns.TypeA))
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.2.0.3" {
		t.Fatalf("zone 2: %v", r)
	}
	r = exchange(t, "udp", udp, query("mc.example.com.", dns.TypeSOA))
	if r.Answer[0].(*dns.SOA).Serial != 2 {
		t.Fatalf("serial: %v", r)
	}
}

func TestServerListenErrors(t *testing.T) {
	s := NewServer(ServerOptions{})
	if err := s.ListenAndServe(); err == nil {
		t.Fatal("no error without addresses")
	}
	if err := s.ListenAndServe("127.0.0.1"); err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("missing port: %v", err)
	}
	// A UDP port in use: the error names the address, nothing stays bound.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	busy := pc.LocalAddr().String()
	err = s.ListenAndServe("127.0.0.1:0", busy)
	if err == nil || !strings.Contains(err.Error(), busy) {
		t.Fatalf("busy port: %v", err)
	}
	if u, c := s.Addrs(); len(u)+len(c) != 0 {
		t.Fatalf("addresses after a failed ListenAndServe: %v %v", u, c)
	}
	// A TCP port in use.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = s.ListenAndServe(l.Addr().String())
	if err == nil || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Fatalf("busy TCP port: %v", err)
	}
	// Shut down: no more serving.
	if err := s.ListenAndServe("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.ListenAndServe("127.0.0.1:0"); err == nil {
		t.Fatal("ListenAndServe after Shutdown")
	}
}

func TestServerShutdownStopsServing(t *testing.T) {
	s := NewServer(ServerOptions{})
	s.Swap(testZone(t))
	if err := s.ListenAndServe("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	udp, tcp := serverAddr(t, s)
	exchange(t, "udp", udp, query("alice.mc.example.com.", dns.TypeA))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", tcp); err == nil {
		t.Fatal("TCP still accepts after Shutdown")
	}
	c := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
	if _, _, err := c.Exchange(query("alice.mc.example.com.", dns.TypeA), udp); err == nil {
		t.Fatal("UDP still answers after Shutdown")
	}
}

// panicWriter panics on its first write.
type panicWriter struct {
	dns.ResponseWriter
	mu      sync.Mutex
	writes  int
	written *dns.Msg
}

func (w *panicWriter) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
}
func (w *panicWriter) WriteMsg(m *dns.Msg) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	if w.writes == 1 {
		panic("boom")
	}
	w.written = m
	return nil
}

func TestServeDNSRecovers(t *testing.T) {
	s := NewServer(ServerOptions{})
	s.Swap(testZone(t))
	w := &panicWriter{}
	q := query("alice.mc.example.com.", dns.TypeA)
	s.ServeDNS(w, q)
	if w.written == nil || w.written.Rcode != dns.RcodeServerFailure || w.written.Id != q.Id {
		t.Fatalf("after a panic: %v", w.written)
	}
	if s.Stats().Panics != 1 {
		t.Fatalf("stats: %+v", s.Stats())
	}
}

// Stats counts responses by query type (a bounded set) and RCODE, and
// Serving follows the server's life.
func TestServerStatsByTypeAndServing(t *testing.T) {
	s := NewServer(ServerOptions{})
	if s.Serving() {
		t.Fatal("Serving before ListenAndServe")
	}
	s.Swap(testZone(t))
	if err := s.ListenAndServe("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if !s.Serving() {
		t.Fatal("not Serving after ListenAndServe")
	}
	udp, tcp := serverAddr(t, s)
	exchange(t, "udp", udp, query("alice.mc.example.com.", dns.TypeA))
	exchange(t, "tcp", tcp, query("alice.mc.example.com.", dns.TypeA))
	exchange(t, "udp", udp, query("nobody.mc.example.com.", dns.TypeAAAA))
	exchange(t, "udp", udp, query("alice.mc.example.com.", dns.TypeNAPTR))
	exchange(t, "udp", udp, query("example.org.", dns.TypeTXT))

	idx := func(name string) int {
		for i, q := range QTypes {
			if q == name {
				return i
			}
		}
		t.Fatalf("no qtype %s", name)
		return -1
	}
	st := s.Stats()
	for _, c := range []struct {
		qtype string
		rcode int
		want  uint64
	}{
		{"A", dns.RcodeSuccess, 2},
		{"AAAA", dns.RcodeNameError, 1},
		{"other", dns.RcodeSuccess, 1},
		{"TXT", dns.RcodeRefused, 1},
	} {
		if got := st.ByType[idx(c.qtype)][c.rcode]; got != c.want {
			t.Errorf("ByType[%s][%s] = %d, want %d", c.qtype, RcodeName(c.rcode), got, c.want)
		}
	}
	if RcodeName(dns.RcodeNameError) != "NXDOMAIN" || RcodeName(dns.RcodeBadVers) != "BADVERS" {
		t.Errorf("RcodeName: %s %s", RcodeName(dns.RcodeNameError), RcodeName(dns.RcodeBadVers))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Serving() {
		t.Fatal("Serving after Shutdown")
	}
}
