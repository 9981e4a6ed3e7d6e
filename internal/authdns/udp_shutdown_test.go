package authdns

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Shutdown wakes the readers blocked in their read (the blocking path's
// recvmmsg does not return when its descriptor is closed), answers the query
// still waiting for a lookup, and releases the port; the wake-up is not
// counted as a packet.
func TestUDPShutdownWhileBlocked(t *testing.T) {
	forUDPPaths(t, func(t *testing.T) {
		users := &fakeUsers{gate: make(chan struct{}), waiting: make(chan string, 1), linger: 100 * time.Millisecond}
		s := NewServer(ServerOptions{Users: users})
		s.Swap(testZone(t))
		if err := s.ListenAndServe("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		udp, _ := serverAddr(t, s)
		exchange(t, "udp", udp, query("alice.mc.example.com.", dns.TypeA))
		conn, err := net.Dial("udp", udp)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		sendUDP(t, conn, "slow1.mc.example.com.", 7)
		waitLabel(t, users.waiting)
		// Every reader is back in its read, idle, when Shutdown starts.
		time.Sleep(50 * time.Millisecond)
		blocking := s.udps[0].conn == nil
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v (readers not woken?)", err)
		}
		if blocking {
			// The descriptor outlives the readers until the waiting reply
			// is sent (the netpoller path closes its socket under it).
			r := readUDP(t, conn, 5*time.Second)
			if r.Id != 7 || r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("the waiting query: id %d %s, want id 7 SERVFAIL", r.Id, dns.RcodeToString[r.Rcode])
			}
		}
		pc, err := net.ListenPacket("udp4", udp)
		if err != nil {
			t.Fatalf("the port is still held after Shutdown: %v", err)
		}
		_ = pc.Close()
		st := s.Stats()
		if st.Malformed != 0 || st.Queries != 2 {
			t.Fatalf("stats after Shutdown: %d queries, %d malformed; want 2, 0", st.Queries, st.Malformed)
		}
		if blocking && st.WriteErrors != 0 {
			t.Fatalf("%d write errors after Shutdown", st.WriteErrors)
		}
	})
}

// The same floods on an IPv6 socket (its sockaddr_in6 addresses, and
// IPV6_PKTINFO for the reply's source), on both paths.
func TestUDPBatchesIPv6(t *testing.T) {
	if pc, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	} else {
		_ = pc.Close()
	}
	forUDPPaths(t, func(t *testing.T) {
		for _, session := range []bool{false, true} {
			sessionAlways = session
			t.Cleanup(func() { sessionAlways = false })
			s := NewServer(ServerOptions{})
			s.Swap(userZone(t, 500, 1))
			if err := s.ListenAndServe("[::1]:0"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
			if s.udps[0].session != session {
				t.Fatalf("session %v, want %v", s.udps[0].session, session)
			}
			udp, _ := serverAddr(t, s)
			for c := range 4 {
				if err := floodOne(udp, c, 64); err != nil {
					t.Fatalf("session=%v: %v", session, err)
				}
			}
		}
	})
}
