package authdns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawSocket is the UDP socket taken out of Go's netpoller: a blocking
// descriptor the readers call recvmmsg(2) on directly (decision 0032). A
// reader then sleeps in the kernel until a packet comes and is woken by
// the packet itself, not by epoll, a netpoller thread and the scheduler;
// and it replies to the raw addresses it received, with no net.UDPAddr
// made per packet.
type rawSocket struct {
	fd       int
	stopping atomic.Bool
	// refs counts who may still use fd (the readers, the replies waiting
	// for a user lookup): it is closed once they are done, never under
	// them (a closed number can be reused by the next open).
	refs   sync.WaitGroup
	closed chan struct{}
}

// open takes conn's socket over: a duplicate descriptor in blocking mode,
// then conn closed (which removes the socket from the netpoller's epoll).
// On error conn is left as it was.
func (r *rawSocket) open(conn *net.UDPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return err
	}
	if dupErr != nil {
		return fmt.Errorf("dup: %w", dupErr)
	}
	// Both calls with no message: 0 where the kernel (or a sandbox's
	// filter) has them, ENOSYS or EPERM where it does not.
	for _, trap := range []uintptr{unix.SYS_RECVMMSG, unix.SYS_SENDMMSG} {
		if _, _, errno := unix.Syscall6(trap, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0); errno != 0 {
			_ = unix.Close(fd)
			return fmt.Errorf("probe system call %d: %w", trap, errno)
		}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		_ = unix.Close(fd)
		return fmt.Errorf("set blocking: %w", err)
	}
	if err := conn.Close(); err != nil {
		_ = unix.Close(fd)
		return err
	}
	r.fd, r.closed = fd, make(chan struct{})
	return nil
}

// done is closed once the descriptor is (nil: the raw path is not used).
func (r *rawSocket) done() <-chan struct{} { return r.closed }

// close wakes the readers blocked in recvmmsg and closes the descriptor
// once nothing uses it any more. shutdown(2) on a UDP socket (which says
// ENOTCONN, an unconnected socket) still marks its receive side shut and
// wakes every waiter; from then on recvmmsg returns at once.
func (r *rawSocket) close() {
	if r.stopping.Swap(true) {
		return
	}
	_ = unix.Shutdown(r.fd, unix.SHUT_RD)
	go func() {
		r.refs.Wait()
		_ = unix.Close(r.fd)
		close(r.closed)
	}()
}

// rawWorker is one raw reader's state: udpBatch receive slots (packet,
// sender's address, control message) and the send headers of the replies.
// The headers point into the worker's own arrays, set once.
type rawWorker struct {
	udpWorker
	rd, wr [udpBatch]unix.Mmsghdr
	rdIov  [udpBatch]unix.Iovec
	wrIov  [udpBatch]unix.Iovec
	names  [udpBatch][sockaddrSize]byte
	oobs   [udpBatch][oobSize]byte
	ins    [udpBatch][udpReadSize]byte
	outs   [udpBatch][]byte
	from   [udpBatch]int // the receive slot of each reply
	// keep holds what the send headers point at beyond the worker (the
	// replies' control messages), so the collector sees it used.
	keep [udpBatch][]byte
	replies
}

func newRawWorker(u *udpServer) *rawWorker {
	w := new(rawWorker)
	for i := range udpBatch {
		w.rdIov[i].Base = &w.ins[i][0]
		w.rdIov[i].SetLen(udpReadSize)
		w.rd[i].Hdr.Iov = &w.rdIov[i]
		w.rd[i].Hdr.SetIovlen(1)
		w.rd[i].Hdr.Name = &w.names[i][0]
		w.wr[i].Hdr.Iov = &w.wrIov[i]
		w.wr[i].Hdr.SetIovlen(1)
		w.outs[i] = make([]byte, u.s.maxUDP)
	}
	return w
}

// reset makes the receive headers ready for the next recvmmsg (the kernel
// writes the lengths it used into them).
func (w *rawWorker) reset(session bool) {
	for i := range udpBatch {
		h := &w.rd[i].Hdr
		h.Namelen = sockaddrSize
		if session {
			h.Control = &w.oobs[i][0]
			h.SetControllen(oobSize)
		}
		h.Flags = 0
	}
}

func (u *udpServer) readRaw() {
	defer u.wg.Done()
	defer u.raw.refs.Done()
	w := newRawWorker(u)
	fd := u.raw.fd
	for !u.raw.stopping.Load() {
		w.reset(u.session)
		n, err := mmsg(unix.SYS_RECVMMSG, fd, w.rd[:], unix.MSG_WAITFORONE)
		if u.raw.stopping.Load() {
			return
		}
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			u.s.log.Error("dns: UDP read failed", "addr", u.addr, "err", err)
			time.Sleep(10 * time.Millisecond) // never spin on a persistent error
			continue
		}
		u.batchSeen(n)
		k := 0
		for i := range n {
			m := &w.rd[i]
			pkt := w.ins[i][:m.Len]
			// The kernel reports an address's full length even when the slot
			// held less of it (never for UDP's two families, all the same).
			m.Hdr.Namelen = min(m.Hdr.Namelen, sockaddrSize)
			name := w.names[i][:m.Hdr.Namelen]
			var in []byte
			if u.session {
				in = w.oobs[i][:m.Hdr.Controllen]
			}
			out := u.answer(&w.udpWorker, &w.outs[i], pkt, func() bool {
				return u.later(pkt, u.rawReply(name, m.Hdr.Namelen, w.replyOOB(u, in)))
			})
			if out == nil {
				continue
			}
			oob := w.replyOOB(u, in)
			r := &w.wr[k].Hdr
			w.wrIov[k].Base = &out[0]
			w.wrIov[k].SetLen(len(out))
			r.Name, r.Namelen, w.from[k] = m.Hdr.Name, m.Hdr.Namelen, i
			r.Control, w.keep[k] = nil, oob
			r.SetControllen(len(oob))
			if len(oob) > 0 {
				r.Control = &oob[0]
			}
			k++
		}
		sendAll(k, func(from int) (int, error) {
			return mmsg(unix.SYS_SENDMMSG, fd, w.wr[from:k], 0)
		}, func(i int, err error) {
			u.s.stats.writeErrors.Add(1)
			u.s.log.Debug("dns: write failed", "remote", sockaddrString(w.names[w.from[i]][:w.wr[i].Hdr.Namelen]), "err", err)
		})
	}
}

// mmsg calls recvmmsg or sendmmsg on msgs: how many were received or sent,
// -1 with the error when the first one failed.
func mmsg(trap uintptr, fd int, msgs []unix.Mmsghdr, flags int) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	//nolint:gosec // G103: the system call takes the headers' address; they and what they point at are the caller's, alive across the call
	n, _, errno := unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), uintptr(flags), 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}

// rawReply sends one reply later to the address name (a raw sockaddr of
// n bytes, copied: the reader's slot is the next batch's) with the control
// message oob.
func (u *udpServer) rawReply(name []byte, n uint32, oob []byte) func([]byte) error {
	var to [sockaddrSize]byte
	copy(to[:], name)
	return func(out []byte) error {
		iov := unix.Iovec{Base: &out[0]}
		iov.SetLen(len(out))
		h := unix.Msghdr{Name: &to[0], Namelen: n, Iov: &iov}
		h.SetIovlen(1)
		if len(oob) > 0 {
			h.Control = &oob[0]
			h.SetControllen(len(oob))
		}
		msgs := []unix.Mmsghdr{{Hdr: h}}
		if _, err := mmsg(unix.SYS_SENDMMSG, u.raw.fd, msgs, 0); err != nil {
			return fmt.Errorf("send to %s: %w", sockaddrString(to[:n]), err)
		}
		return nil
	}
}

// sockaddrSize holds a raw IPv4 or IPv6 socket address (sockaddr_in6 is
// the larger).
const sockaddrSize = unix.SizeofSockaddrInet6

// sockaddrString is a raw IPv4 or IPv6 socket address as text (logs only).
func sockaddrString(b []byte) string {
	if len(b) < 4 {
		return fmt.Sprintf("sockaddr(%d bytes)", len(b))
	}
	family := binary.NativeEndian.Uint16(b) // sa_family_t, host order
	port := binary.BigEndian.Uint16(b[2:])
	switch {
	case family == unix.AF_INET && len(b) >= unix.SizeofSockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port).String()
	case family == unix.AF_INET6 && len(b) >= unix.SizeofSockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), port).String()
	}
	return fmt.Sprintf("sockaddr(%d bytes)", len(b))
}
