package authdns

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// TestUDPBatches floods the server from several sockets at once, so that
// reads return several packets: every query gets its own answer (its id,
// its name, its address), whichever batch slot it went through — on a
// socket bound to an address and on one answering from the query's
// destination (IP_PKTINFO, the 0.0.0.0 default).
func TestUDPBatches(t *testing.T) {
	for _, session := range []bool{false, true} {
		t.Run(fmt.Sprintf("session=%v", session), func(t *testing.T) {
			sessionAlways = session
			t.Cleanup(func() { sessionAlways = false })
			s := startServer(t, userZone(t, 500, 1), ServerOptions{})
			if got := s.udps[0].session; got != session {
				t.Fatalf("session %v, want %v", got, session)
			}
			addr, _ := serverAddr(t, s)
			const clients, perClient = 8, 64
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- floodOne(addr, c, perClient)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			if n := s.udps[0].largest.Load(); n < 2 {
				t.Errorf("the largest read held %d packet(s): no batch was exercised", n)
			}
		})
	}
}

// floodOne sends n queries for distinct users without waiting, then reads
// n answers and checks each against its query.
func floodOne(addr string, client, n int) error {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	want := map[uint16]string{}
	for i := range n {
		name := fmt.Sprintf("user%d.mc.example.com.", (client*n+i)%500)
		m := query(name, dns.TypeA)
		m.Id = uint16(client<<8 | i)
		b, err := m.Pack()
		if err != nil {
			return err
		}
		want[m.Id] = name
		if _, err := conn.Write(b); err != nil {
			return err
		}
	}
	buf := make([]byte, 4096)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for range n {
		k, err := conn.Read(buf)
		if err != nil {
			return fmt.Errorf("client %d: %d answers missing: %w", client, len(want), err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:k]); err != nil {
			return err
		}
		name, ok := want[r.Id]
		if !ok {
			return fmt.Errorf("client %d: answer with id %d it did not ask (or twice)", client, r.Id)
		}
		delete(want, r.Id)
		if len(r.Question) != 1 || r.Question[0].Name != name || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].Header().Name != name {
			return fmt.Errorf("client %d: query %s got %v", client, name, r)
		}
	}
	return nil
}

// scriptedBatcher answers WriteBatch as scripted: how many it sent, and an
// error, per call (recvmmsg is not used).
type scriptedBatcher struct {
	script []struct {
		n   int
		err error
	}
	calls [][]string // the messages offered at each call
}

func (b *scriptedBatcher) ReadBatch([]ipv4.Message, int) (int, error) { return 0, nil }

func (b *scriptedBatcher) WriteBatch(ms []ipv4.Message, _ int) (int, error) {
	var offered []string
	for _, m := range ms {
		offered = append(offered, string(m.Buffers[0]))
	}
	b.calls = append(b.calls, offered)
	step := b.script[0]
	b.script = b.script[1:]
	return step.n, step.err
}

// A refused reply is skipped and reported, whether it is first in the batch
// (sendmmsg returns -1) or further on, and the others are still sent.
func TestSendAllSkipsRefused(t *testing.T) {
	msgs := func() []ipv4.Message {
		var ms []ipv4.Message
		for _, s := range []string{"a", "b", "c", "d"} {
			ms = append(ms, ipv4.Message{Buffers: [][]byte{[]byte(s)}})
		}
		return ms
	}
	einval := errors.New("sendmmsg: invalid argument")
	type step = struct {
		n   int
		err error
	}
	for _, tc := range []struct {
		name    string
		script  []step
		refused string
		calls   int
	}{
		{"all at once", []step{{4, nil}}, "", 1},
		{"the first refused", []step{{-1, einval}, {3, nil}}, "a", 2},
		{"one in the middle", []step{{2, nil}, {-1, einval}, {1, nil}}, "c", 3},
		{"every one", []step{{-1, einval}, {-1, einval}, {-1, einval}, {-1, einval}}, "abcd", 4},
		{"partial, then the rest", []step{{1, nil}, {3, nil}}, "", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &scriptedBatcher{script: tc.script}
			var refused string
			sendAll(b, msgs(), func(m *ipv4.Message, err error) {
				if !errors.Is(err, einval) {
					t.Errorf("refused with %v", err)
				}
				refused += string(m.Buffers[0])
			})
			if refused != tc.refused || len(b.calls) != tc.calls || len(b.script) != 0 {
				t.Fatalf("refused %q in %d calls (%d scripted left), want %q in %d", refused, len(b.calls), len(b.script), tc.refused, tc.calls)
			}
		})
	}
}
