package authdns

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestUDPBatches floods the server from several sockets at once, so that
// reads return several packets: every query gets its own answer (its id,
// its name, its address), whichever batch slot it went through — on a
// socket bound to an address and on one answering from the query's
// destination (IP_PKTINFO, the 0.0.0.0 default).
func TestUDPBatches(t *testing.T) {
	forUDPPaths(t, func(t *testing.T) {
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
	})
}

// forUDPPaths runs f on each UDP reader path this platform has: the
// blocking one (Linux) and the netpoller's, and checks the path was taken.
func forUDPPaths(t *testing.T, f func(t *testing.T)) {
	paths := []bool{false}
	if runtime.GOOS == "linux" {
		paths = append(paths, true)
	}
	for _, blocking := range paths {
		t.Run(fmt.Sprintf("blocking=%v", blocking), func(t *testing.T) {
			udpBlocking = blocking
			t.Cleanup(func() { udpBlocking = true })
			probe := startServer(t, testZone(t), ServerOptions{})
			if got := probe.udps[0].conn == nil; got != blocking {
				t.Fatalf("blocking path taken: %v, want %v", got, blocking)
			}
			f(t)
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

// scriptedWriter answers write calls as scripted: how many it sent, and an
// error, per call.
type scriptedWriter struct {
	script []struct {
		n   int
		err error
	}
	calls [][]string // the messages offered at each call
}

func (b *scriptedWriter) write(ms []string, from int) (int, error) {
	b.calls = append(b.calls, ms[from:])
	step := b.script[0]
	b.script = b.script[1:]
	return step.n, step.err
}

// A refused reply is skipped and reported, whether it is first in the batch
// (sendmmsg returns -1) or further on, and the others are still sent.
func TestSendAllSkipsRefused(t *testing.T) {
	msgs := []string{"a", "b", "c", "d"}
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
			b := &scriptedWriter{script: tc.script}
			var refused string
			sendAll(len(msgs), func(from int) (int, error) { return b.write(msgs, from) }, func(i int, err error) {
				if !errors.Is(err, einval) {
					t.Errorf("refused with %v", err)
				}
				refused += msgs[i]
			})
			if refused != tc.refused || len(b.calls) != tc.calls || len(b.script) != 0 {
				t.Fatalf("refused %q in %d calls (%d scripted left), want %q in %d", refused, len(b.calls), len(b.script), tc.refused, tc.calls)
			}
		})
	}
}
