package authdns

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestZoneRebuildUnderQueries rebuilds a 10,000-name zone several times and
// swaps it in while clients query, over UDP and directly. Every answer must
// be complete and consistent, and a client never sees an older zone after a
// newer one. Bounded: a fixed number of rebuilds, and query loops capped in
// count and time.
func TestZoneRebuildUnderQueries(t *testing.T) {
	const (
		users      = 10000
		rebuilds   = 10
		maxQueries = 20000 // per client
	)
	s := startServer(t, userZone(t, users, 1), ServerOptions{})
	udp, tcp := serverAddr(t, s)

	var done atomic.Bool
	deadline := time.Now().Add(60 * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 16)

	wg.Go(func() {
		defer done.Store(true)
		for gen := 2; gen <= rebuilds+1; gen++ {
			z, err := buildUserZone(users, gen)
			if err != nil {
				errs <- err
				return
			}
			s.Swap(z)
		}
	})

	check := func(r *dns.Msg, k int, lastGen *int) error {
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 1 {
			return fmt.Errorf("user%d: %v", k, r)
		}
		ip := r.Answer[0].(*dns.A).A.To4()
		gen := int(ip[1])
		if ip[0] != 10 || int(ip[2])<<8|int(ip[3]) != k || gen < 1 || gen > rebuilds+1 {
			return fmt.Errorf("user%d: wrong address %v", k, ip)
		}
		if gen < *lastGen {
			return fmt.Errorf("user%d: zone %d after zone %d", k, gen, *lastGen)
		}
		*lastGen = gen
		return nil
	}

	var total atomic.Int64
	for c := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			conn, err := net.Dial("udp", udp)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			dc := &dns.Conn{Conn: conn}
			lastGen := 0
			for i := 0; i < maxQueries && (i < 500 || !done.Load()) && time.Now().Before(deadline); i++ {
				k := rng.IntN(users)
				q := query(fmt.Sprintf("user%d.mc.example.com.", k), dns.TypeA)
				var r *dns.Msg
				if c%2 == 0 {
					_ = dc.SetDeadline(time.Now().Add(5 * time.Second))
					if err := dc.WriteMsg(q); err != nil {
						errs <- err
						return
					}
					if r, err = dc.ReadMsg(); err != nil {
						errs <- err
						return
					}
				} else {
					r = Answer(s.Zone(), q, DefaultMaxUDPSize, false)
				}
				if err := check(r, k, &lastGen); err != nil {
					errs <- err
					return
				}
				total.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := s.Zone().Serial(); got != rebuilds+1 {
		t.Fatalf("final serial %d, want %d", got, rebuilds+1)
	}
	// The final zone over TCP too.
	r := exchange(t, "tcp", tcp, query("user9999.mc.example.com.", dns.TypeA))
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != fmt.Sprintf("10.%d.39.15", rebuilds+1) {
		t.Fatalf("final zone: %v", r)
	}
	t.Logf("%d queries during %d rebuilds of %d names", total.Load(), rebuilds, users)
}
