package authdns

import (
	"bytes"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpServer serves one UDP socket with a fixed set of reader goroutines, each
// owning its buffers and request message, so the steady-state path (read,
// unpack, Answer, pack, write) starts no goroutine and allocates only what
// unpacking and Answer need. miekg/dns's Server, used for TCP, would start a
// goroutine and allocate a response writer per packet.
//
// On Linux the readers block in recvmmsg(2) on the socket itself, each on
// its own OS thread, and reply with sendmmsg(2) to the raw addresses they
// received (udp_raw_linux.go, decision 0032); elsewhere, or when that cannot
// be set up, they go through Go's netpoller (x/net's ReadBatch/WriteBatch).
type udpServer struct {
	s    *Server
	conn *net.UDPConn // the netpoller path; nil on the raw path
	addr net.Addr
	// session: the socket is bound to an unspecified address (0.0.0.0, ::),
	// so replies must carry the query's destination address as their source
	// (IP_PKTINFO), as miekg/dns does.
	session bool
	wg      sync.WaitGroup
	// largest is the most packets one read has returned (tests check that
	// batches of several are answered right).
	largest atomic.Int64
	raw     rawSocket // the raw path's socket (its zero value: not used)
}

// sessionAlways makes every socket take the path of one bound to an
// unspecified address (tests: they may only bind loopback addresses).
var sessionAlways = false

// udpBlocking chooses the raw path where the platform has one (tests turn it
// off to exercise the netpoller path on Linux too).
var udpBlocking = true

// udpRecvBuffer is the socket receive buffer asked for (SO_RCVBUF).
const udpRecvBuffer = 1 << 20

// udpReaders is the number of netpoller reader goroutines per UDP socket.
func udpReaders() int { return max(runtime.GOMAXPROCS(0), 2) }

// rawReaders is the number of blocking readers per UDP socket: one. Two
// readers blocked on one socket split its queue, each woken for a packet or
// two while the other works; one reader finds the packets that came while
// it answered queued and takes them in one recvmmsg, answers them in one
// sendmmsg. On this 2-core machine one reader costs 1.6 µs of CPU a query
// where two cost 2.3-2.7 (decision 0032); the one reader answered 235,000
// queries a second there, sharing the cores with the load tool, far beyond
// what a core's users ask. Lookups wait in goroutines of their own, never
// in the reader.
const rawReaders = 1

func (s *Server) startUDP(conn *net.UDPConn) *udpServer {
	u := &udpServer{s: s, conn: conn, addr: conn.LocalAddr()}
	// Best effort: a larger receive queue absorbs bursts (the kernel caps it
	// at net.core.rmem_max).
	_ = conn.SetReadBuffer(udpRecvBuffer)
	if ap, ok := conn.LocalAddr().(*net.UDPAddr); ok && (ap.IP.IsUnspecified() || sessionAlways) {
		// Try both families and ignore the errors unless both fail (then
		// replies simply get the kernel's choice of source address).
		err6 := ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		err4 := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		u.session = err4 == nil || err6 == nil
	}
	n := udpReaders()
	read := u.read
	if udpBlocking {
		if err := u.raw.open(conn); err != nil {
			s.log.Debug("dns: UDP readers go through the netpoller", "addr", u.addr, "err", err)
		} else {
			u.conn, read, n = nil, u.readRaw, rawReaders
		}
	}
	u.wg.Add(n)
	u.raw.refs.Add(n)
	for range n {
		go read()
	}
	return u
}

// close stops the readers; they exit after the batch they handle.
func (u *udpServer) close() error {
	if u.conn == nil {
		u.raw.close()
		return nil
	}
	return u.conn.Close()
}

// wait waits for the readers to exit (and on the raw path for the socket
// to be closed), or until done is closed.
func (u *udpServer) wait(done <-chan struct{}) bool {
	if !waitGroup(&u.wg, done) {
		return false
	}
	if u.conn != nil {
		return true
	}
	select {
	case <-u.raw.done():
		return true
	case <-done:
		return false
	}
}

// udpWorker is one reader's reusable state for one packet.
type udpWorker struct {
	out []byte
	req dns.Msg
}

// udpBatch is how many packets one reader takes from the socket in one
// recvmmsg(2) and answers in one sendmmsg(2). Under load the queue holds
// several and a batch saves that many system calls each way, which is most
// of a query's cost (knot does the same); idle, a batch is one packet.
const udpBatch = 16

// oobSize holds an IP_PKTINFO / IPV6_PKTINFO control message.
const oobSize = 128

// replies remembers the last query control message seen and its reply's:
// a socket on 0.0.0.0 mostly hears queries for one address, and the
// reply's source is then worked out (parsed, marshalled) once, not per
// packet. A new one replaces both slices, never writes into them: a batch
// being sent may still hold the old reply's.
type replies struct{ lastIn, lastOut []byte }

// batchWorker is one netpoller reader's reusable state: udpBatch receive
// slots, each with its packet, control message and answer buffer.
type batchWorker struct {
	udpWorker // req, and out while one packet is answered
	rd, wr    []ipv4.Message
	outs      [][]byte
	replies
}

// batcher is the recvmmsg/sendmmsg pair of the socket's address family
// (ipv4.Message and ipv6.Message are the same type).
type batcher interface {
	ReadBatch([]ipv4.Message, int) (int, error)
	WriteBatch([]ipv4.Message, int) (int, error)
}

func (u *udpServer) batcher() batcher {
	if ap, ok := u.addr.(*net.UDPAddr); ok && ap.IP.To4() == nil {
		return ipv6.NewPacketConn(u.conn)
	}
	return ipv4.NewPacketConn(u.conn)
}

// answer turns one packet into the reply to send in its slot's buffer
// (*out, kept when it grows), or nil; a query waiting for a user lookup is
// handed to later, or answered SERVFAIL when later cannot take it.
func (u *udpServer) answer(w *udpWorker, out *[]byte, pkt []byte, later func() bool) []byte {
	w.out = *out
	reply, miss := u.s.handleUDP(w, pkt)
	if miss && !later() {
		fail := Answer(nil, &w.req, u.s.maxUDP, false)
		u.s.stats.count(fail)
		reply = u.s.pack(w, fail)
	}
	*out = w.out[:cap(w.out)] // keep a grown buffer
	return reply
}

// batchSeen records a read of n packets.
func (u *udpServer) batchSeen(n int) {
	if int64(n) > u.largest.Load() {
		u.largest.Store(int64(n))
	}
}

func (u *udpServer) read() {
	defer u.wg.Done()
	defer u.raw.refs.Done()
	w := &batchWorker{
		rd:   make([]ipv4.Message, udpBatch),
		wr:   make([]ipv4.Message, udpBatch),
		outs: make([][]byte, udpBatch),
	}
	ins := make([]byte, udpBatch*udpReadSize)
	for i := range udpBatch {
		w.rd[i].Buffers = [][]byte{ins[i*udpReadSize : (i+1)*udpReadSize : (i+1)*udpReadSize]}
		if u.session {
			w.rd[i].OOB = make([]byte, oobSize)
		}
		w.wr[i].Buffers = make([][]byte, 1)
		w.outs[i] = make([]byte, u.s.maxUDP)
	}
	b := u.batcher()
	for {
		for i := range w.rd {
			if u.session {
				w.rd[i].OOB = w.rd[i].OOB[:oobSize]
			}
		}
		n, err := b.ReadBatch(w.rd, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			u.s.log.Error("dns: UDP read failed", "addr", u.addr, "err", err)
			time.Sleep(10 * time.Millisecond) // never spin on a persistent error
			continue
		}
		u.batchSeen(n)
		k := 0
		for i := range n {
			m := &w.rd[i]
			pkt := m.Buffers[0][:m.N]
			out := u.answer(&w.udpWorker, &w.outs[i], pkt, func() bool {
				return u.later(pkt, u.goReply(m.Addr, w.replyOOB(u, m.OOB[:m.NN])))
			})
			if out == nil {
				continue
			}
			r := &w.wr[k]
			r.Buffers[0], r.Addr, r.OOB = out, m.Addr, w.replyOOB(u, m.OOB[:m.NN])
			k++
		}
		msgs := w.wr[:k]
		sendAll(k, func(from int) (int, error) { return b.WriteBatch(msgs[from:], 0) }, func(i int, err error) {
			u.s.stats.writeErrors.Add(1)
			u.s.log.Debug("dns: write failed", "remote", msgs[i].Addr, "err", err)
		})
	}
}

// goReply sends one reply later through the netpoller's socket.
func (u *udpServer) goReply(addr net.Addr, oob []byte) func([]byte) error {
	if ua, ok := addr.(*net.UDPAddr); ok {
		ua = &net.UDPAddr{IP: bytes.Clone(ua.IP), Port: ua.Port, Zone: ua.Zone}
		return func(out []byte) error {
			_, _, err := u.conn.WriteMsgUDP(out, oob, ua)
			return err
		}
	}
	return func(out []byte) error {
		_, err := u.conn.WriteTo(out, addr)
		return err
	}
}

// replyOOB is the control message a reply to a query that came with in
// must carry: its source address on a socket bound to an unspecified
// address, else none. The slice returned is never written afterwards (a
// lookup goroutine may keep it).
func (w *replies) replyOOB(u *udpServer, in []byte) []byte {
	if !u.session {
		return nil
	}
	if !bytes.Equal(in, w.lastIn) {
		w.lastIn, w.lastOut = bytes.Clone(in), replySource(in)
	}
	return w.lastOut
}

// later hands a query that waits for a user lookup to a goroutine of its
// own, which answers it through reply: the reader goes on with the batch.
// It reports false, and starts nothing, when the pool is full.
func (u *udpServer) later(pkt []byte, reply func([]byte) error) bool {
	s := u.s
	select {
	case s.slots <- struct{}{}:
	default:
		s.stats.lookups[lookupRateLimited].Add(1)
		return false
	}
	pkt = bytes.Clone(pkt) // the reader's buffer is the next batch's
	s.lookWG.Add(1)
	u.raw.refs.Add(1) // the socket stays open until this reply is sent
	go func() {
		defer s.lookWG.Done()
		defer u.raw.refs.Done()
		defer func() { <-s.slots }()
		u.answerLater(pkt, reply)
	}()
	return true
}

// answerLater answers one query after its lookup and sends the reply.
func (u *udpServer) answerLater(pkt []byte, reply func([]byte) error) {
	s := u.s
	req := new(dns.Msg)
	if err := req.Unpack(pkt); err != nil {
		return // it was unpacked once already: cannot happen
	}
	m := func() (m *dns.Msg) {
		defer func() {
			if p := recover(); p != nil {
				s.stats.panics.Add(1)
				s.log.Error("dns: panic answering a query", "panic", p)
				m = Answer(nil, req, s.maxUDP, false)
			}
		}()
		return s.lookupAnswer(req, false)
	}()
	s.stats.count(m)
	out, err := m.Pack()
	if err == nil {
		err = reply(out)
	}
	if err != nil {
		s.stats.writeErrors.Add(1)
		s.log.Debug("dns: write failed", "err", err)
	}
}

// sendAll sends n replies in as few write calls as it takes; write(from)
// sends those from index from on and returns how many went. The kernel
// sends in order and stops at a message it refuses (a spoofed source port
// 0, a firewall's EPERM): that one is reported to refused and skipped, the
// rest go on.
func sendAll(n int, write func(from int) (int, error), refused func(int, error)) {
	for sent := 0; sent < n; {
		c, err := write(sent)
		sent += max(c, 0) // -1 when the first one fails (the raw system call's result)
		if err != nil && sent < n {
			refused(sent, err)
			sent++
		}
	}
}

// replySource turns a query's control message (the address it was sent
// to) into the reply's (send from that address), as miekg/dns's
// WriteToSessionUDP does: a socket bound to 0.0.0.0 or :: must answer from
// the address the client asked.
func replySource(oob []byte) []byte {
	var dst net.IP
	cm6 := new(ipv6.ControlMessage)
	if cm6.Parse(oob) == nil && cm6.Dst != nil {
		dst = cm6.Dst
	} else {
		cm4 := new(ipv4.ControlMessage)
		if cm4.Parse(oob) == nil && cm4.Dst != nil {
			dst = cm4.Dst
		}
	}
	if dst == nil {
		return nil
	}
	if dst.To4() == nil {
		return (&ipv6.ControlMessage{Src: dst}).Marshal()
	}
	return (&ipv4.ControlMessage{Src: dst}).Marshal()
}

// handleUDP turns one UDP packet into the wire response to send (in w.out's
// storage), or nil when nothing must be sent; miss when the query waits for
// a user lookup (w.req then holds it). It has ServeDNS's semantics,
// plus miekg/dns's handling of packets that cannot be parsed: a packet
// shorter than a header is dropped, a response (QR set) is dropped before
// parsing, an unparsable body gets FORMERR.
func (s *Server) handleUDP(w *udpWorker, pkt []byte) (out []byte, miss bool) {
	if len(pkt) < 12 {
		s.stats.malformed.Add(1)
		return nil, false
	}
	if pkt[2]&0x80 != 0 { // QR: a response, never answered
		s.stats.dropped.Add(1)
		return nil, false
	}
	z := s.zone.Load()
	if out, qtype, ok := z.fastAnswer(pkt, w.out, s.maxUDP); ok {
		s.stats.queries.Add(1)
		s.stats.countFast(qtype)
		return out, false
	}
	req := &w.req
	*req = dns.Msg{}
	if err := req.Unpack(pkt); err != nil {
		s.stats.malformed.Add(1)
		// As miekg/dns: FORMERR with the header and whatever question was
		// parsed; no RR sections.
		req.Rcode = dns.RcodeFormatError
		req.Opcode = dns.OpcodeQuery
		req.Response = true
		req.Authoritative = false
		req.Zero = false
		req.Answer, req.Ns, req.Extra = nil, nil, nil
		return s.pack(w, req), false
	}
	s.stats.queries.Add(1)
	defer func() {
		if p := recover(); p != nil {
			s.stats.panics.Add(1)
			s.log.Error("dns: panic answering a query", "panic", p)
			fail := new(dns.Msg)
			fail.Id = req.Id
			fail.Response = true
			fail.Opcode = req.Opcode
			fail.Rcode = dns.RcodeServerFailure
			out = s.pack(w, fail)
		}
	}()
	m, lk := z.answer(req, s.maxUDP, false, s.cache)
	s.stats.lookup(lk)
	if lk == LookupMiss {
		return nil, true
	}
	if m == nil {
		s.stats.dropped.Add(1)
		return nil, false
	}
	s.stats.count(m)
	return s.pack(w, m), false
}

// pack packs m into w.out, keeping a grown buffer for the next packets.
func (s *Server) pack(w *udpWorker, m *dns.Msg) []byte {
	out, err := m.PackBuffer(w.out)
	if err != nil {
		s.stats.writeErrors.Add(1)
		s.log.Debug("dns: pack failed", "err", err)
		return nil
	}
	if cap(out) > cap(w.out) {
		w.out = out[:cap(out)]
	}
	return out
}
