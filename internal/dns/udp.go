package dns

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
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
type udpServer struct {
	s    *Server
	conn *net.UDPConn
	// session: the socket is bound to an unspecified address (0.0.0.0, ::),
	// so replies must carry the query's destination address as their source
	// (IP_PKTINFO), as miekg/dns does.
	session bool
	wg      sync.WaitGroup
}

// udpRecvBuffer is the socket receive buffer asked for (SO_RCVBUF).
const udpRecvBuffer = 1 << 20

// udpReaders is the number of reader goroutines per UDP socket.
func udpReaders() int { return max(runtime.GOMAXPROCS(0), 2) }

func (s *Server) startUDP(conn *net.UDPConn) *udpServer {
	u := &udpServer{s: s, conn: conn}
	// Best effort: a larger receive queue absorbs bursts (the kernel caps it
	// at net.core.rmem_max).
	_ = conn.SetReadBuffer(udpRecvBuffer)
	if ap, ok := conn.LocalAddr().(*net.UDPAddr); ok && ap.IP.IsUnspecified() {
		// Try both families and ignore the errors unless both fail (then
		// replies simply get the kernel's choice of source address).
		err6 := ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		err4 := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		u.session = err4 == nil || err6 == nil
	}
	n := udpReaders()
	u.wg.Add(n)
	for range n {
		go u.read()
	}
	return u
}

// close closes the socket; the readers exit after the packet they handle.
func (u *udpServer) close() error { return u.conn.Close() }

// wait waits for the readers to exit, or until done is closed.
func (u *udpServer) wait(done <-chan struct{}) bool {
	ch := make(chan struct{})
	go func() { u.wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return true
	case <-done:
		return false
	}
}

// udpWorker is one reader's reusable state.
type udpWorker struct {
	in  [udpReadSize]byte
	out []byte
	req dns.Msg
}

func (u *udpServer) read() {
	defer u.wg.Done()
	w := &udpWorker{out: make([]byte, u.s.maxUDP)}
	for {
		var (
			n       int
			addr    netip.AddrPort
			session *dns.SessionUDP
			err     error
		)
		if u.session {
			n, session, err = dns.ReadFromSessionUDP(u.conn, w.in[:])
		} else {
			n, addr, err = u.conn.ReadFromUDPAddrPort(w.in[:])
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			u.s.log.Error("dns: UDP read failed", "addr", u.conn.LocalAddr(), "err", err)
			time.Sleep(10 * time.Millisecond) // never spin on a persistent error
			continue
		}
		if out := u.s.handleUDP(w, w.in[:n]); out != nil {
			if session != nil {
				_, err = dns.WriteToSessionUDP(u.conn, out, session)
			} else {
				_, err = u.conn.WriteToUDPAddrPort(out, addr)
			}
			if err != nil {
				u.s.stats.writeErrors.Add(1)
				u.s.log.Debug("dns: write failed", "remote", addr, "err", err)
			}
		}
	}
}

// handleUDP turns one UDP packet into the wire response to send (in w.out's
// storage), or nil when nothing must be sent. It has ServeDNS's semantics,
// plus miekg/dns's handling of packets that cannot be parsed: a packet
// shorter than a header is dropped, a response (QR set) is dropped before
// parsing, an unparsable body gets FORMERR.
func (s *Server) handleUDP(w *udpWorker, pkt []byte) (out []byte) {
	if len(pkt) < 12 {
		s.stats.malformed.Add(1)
		return nil
	}
	if pkt[2]&0x80 != 0 { // QR: a response, never answered
		s.stats.dropped.Add(1)
		return nil
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
		return s.pack(w, req)
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
	m := Answer(s.zone.Load(), req, s.maxUDP, false)
	if m == nil {
		s.stats.dropped.Add(1)
		return nil
	}
	s.stats.count(m)
	return s.pack(w, m)
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
