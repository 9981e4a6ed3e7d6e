package authdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeUsers knows some labels at once (cached) and answers others through
// Resolve (slow), which waits on gate when it is set.
type fakeUsers struct {
	mu       sync.Mutex
	cached   map[string]Resolved
	slow     map[string]Resolved
	errs     map[string]error
	gate     chan struct{}
	asked    atomic.Int64 // Cached calls
	resolves atomic.Int64
	waiting  chan string // if set, receives each label Resolve starts waiting for
	// linger: Resolve returns that long after its context is cancelled
	// (a lookup that ends after the readers have).
	linger time.Duration
}

func (f *fakeUsers) Cached(label string) (UserHost, Lookup) {
	f.asked.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.cached[label]; ok {
		return r.Host, r.Lookup
	}
	return UserHost{}, LookupMiss
}

func (f *fakeUsers) Resolve(ctx context.Context, label string) (UserHost, Lookup, error) {
	f.resolves.Add(1)
	f.mu.Lock()
	r, ok := f.slow[label]
	err := f.errs[label]
	gate, waiting := f.gate, f.waiting
	f.mu.Unlock()
	if waiting != nil {
		waiting <- label
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			time.Sleep(f.linger)
			return UserHost{}, LookupMiss, ctx.Err()
		}
	}
	if err != nil {
		return UserHost{}, LookupMiss, err
	}
	if !ok {
		return UserAbsent(0), LookupAbsent, nil
	}
	return r.Host, r.Lookup, nil
}

func userAt(t testing.TB, name string) UserHost {
	t.Helper()
	h, err := UserAt(name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestUserHosts(t *testing.T) {
	if _, err := UserWith(nil); err == nil {
		t.Error("UserWith(nil): no error")
	}
	for _, rrs := range [][]dns.RR{
		{mustRR(t, "x. 300 IN NS ns.example.org.")},
		{mustRR(t, "x. 300 IN CNAME a.example.org."), mustRR(t, "x. 300 IN A 192.0.2.1")},
	} {
		if _, err := UserWith(rrs); err == nil {
			t.Errorf("UserWith(%v): no error", rrs)
		}
	}
	if _, err := UserAt("bad..name"); err == nil {
		t.Error("UserAt(bad..name): no error")
	}
	if h := userAt(t, "Core2.MC.example.com"); h.String() != "as core2.mc.example.com." {
		t.Errorf("UserAt: %s", h)
	}
}

func TestAnswerUsers(t *testing.T) {
	z := testZone(t) // negative SOA TTL: min(3600, 60) = 60
	own, err := UserWith([]dns.RR{mustRR(t, "ignored.example.org. 300 IN A 198.51.100.4")})
	if err != nil {
		t.Fatal(err)
	}
	users := &fakeUsers{cached: map[string]Resolved{
		"carol": {userAt(t, "bob.mc.example.com"), LookupFound},
		"dave":  {own, LookupFound},
		"erin":  {userAt(t, "www.mc.example.com"), LookupFound}, // a CNAME to alice
		"frank": {UserAbsent(30), LookupAbsent},
		"fritz": {UserAbsent(0), LookupAbsent},
		"franz": {UserAbsent(600), LookupAbsent},
		"gina":  {userAt(t, "nothere.mc.example.com"), LookupFound},
		"hugo":  {userAt(t, "elsewhere.example.org"), LookupFound},
		"alice": {UserAbsent(30), LookupAbsent}, // the zone's: never asked
	}}
	for _, c := range []struct {
		name   string
		qtype  uint16
		want   string // rcode, then each answer and authority record
		lookup Lookup
		asked  bool
	}{
		{"carol.mc.example.com.", dns.TypeA, "NOERROR carol.mc.example.com.\t300\tIN\tA\t192.0.2.102", LookupFound, true},
		{"CaRoL.mc.EXAMPLE.com.", dns.TypeA, "NOERROR CaRoL.mc.EXAMPLE.com.\t300\tIN\tA\t192.0.2.102", LookupFound, true},
		{"carol.mc.example.com.", dns.TypeAAAA, "NOERROR | mc.example.com.\t60\tIN\tSOA", LookupFound, true},
		{"carol.mc.example.com.", dns.TypeANY, "NOERROR carol.mc.example.com.\t3600\tIN\tHINFO", LookupFound, true},
		{"dave.mc.example.com.", dns.TypeA, "NOERROR dave.mc.example.com.\t300\tIN\tA\t198.51.100.4", LookupFound, true},
		{"erin.mc.example.com.", dns.TypeA, "NOERROR erin.mc.example.com.\t300\tIN\tCNAME\talice.mc.example.com. alice.mc.example.com.\t300\tIN\tA\t192.0.2.101", LookupFound, true},
		{"frank.mc.example.com.", dns.TypeA, "NXDOMAIN | mc.example.com.\t30\tIN\tSOA", LookupAbsent, true},
		{"fritz.mc.example.com.", dns.TypeA, "NXDOMAIN | mc.example.com.\t60\tIN\tSOA", LookupAbsent, true},
		{"franz.mc.example.com.", dns.TypeA, "NXDOMAIN | mc.example.com.\t60\tIN\tSOA", LookupAbsent, true},
		{"gina.mc.example.com.", dns.TypeA, "SERVFAIL", LookupFound, true},
		{"hugo.mc.example.com.", dns.TypeA, "SERVFAIL", LookupFound, true},
		{"hank.mc.example.com.", dns.TypeA, "nil", LookupMiss, true},
		// Not asked: the zone's names, names of two labels, delegations.
		{"alice.mc.example.com.", dns.TypeA, "NOERROR alice.mc.example.com.\t300\tIN\tA\t192.0.2.101", NotLookedUp, false},
		{"a.mc.example.com.", dns.TypeA, "NOERROR | mc.example.com.\t60\tIN\tSOA", NotLookedUp, false}, // an empty non-terminal exists
		{"x.carol.mc.example.com.", dns.TypeA, "NXDOMAIN | mc.example.com.\t60\tIN\tSOA", NotLookedUp, false},
		{"carol.sub.mc.example.com.", dns.TypeA, "NOERROR | sub.mc.example.com.\t300\tIN\tNS", NotLookedUp, false},
		{"mc.example.com.", dns.TypeSOA, "NOERROR mc.example.com.\t3600\tIN\tSOA", NotLookedUp, false},
		{"carol.example.org.", dns.TypeA, "REFUSED", NotLookedUp, false},
	} {
		t.Run(fmt.Sprintf("%s/%s", c.name, dns.TypeToString[c.qtype]), func(t *testing.T) {
			before := users.asked.Load()
			m, lk := z.AnswerUsers(query(c.name, c.qtype), DefaultMaxUDPSize, false, users)
			if lk != c.lookup {
				t.Errorf("lookup %v, want %v", lk, c.lookup)
			}
			if asked := users.asked.Load() != before; asked != c.asked {
				t.Errorf("users asked: %v, want %v", asked, c.asked)
			}
			got := "nil"
			if m != nil {
				got = summary(packs(t, m))
			}
			if !strings.HasPrefix(got, c.want) {
				t.Fatalf("got  %q\nwant %q...", got, c.want)
			}
		})
	}
	// Without users, a name the zone does not hold is NXDOMAIN as before.
	if m, lk := z.AnswerUsers(query("carol.mc.example.com.", dns.TypeA), DefaultMaxUDPSize, false, nil); m.Rcode != dns.RcodeNameError || lk != NotLookedUp {
		t.Fatalf("no users: %v %v", m, lk)
	}
}

// summary is the rcode, the answer records and, after "|", the authority
// records, in presentation format.
func summary(m *dns.Msg) string {
	parts := []string{dns.RcodeToString[m.Rcode]}
	for _, rr := range m.Answer {
		parts = append(parts, rr.String())
	}
	if len(m.Ns) > 0 {
		parts = append(parts, "|")
		for _, rr := range m.Ns {
			parts = append(parts, rr.String())
		}
	}
	return strings.Join(parts, " ")
}

// waitLabel waits for a lookup to start waiting, 5 s at most.
func waitLabel(t *testing.T, ch chan string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no lookup started within 5s")
	}
}

// lookupServer serves testZone with users, on loopback.
func lookupServer(t *testing.T, users Users, workers int) (s *Server, udp, tcp string) {
	t.Helper()
	s = startServer(t, testZone(t), ServerOptions{Users: users, LookupWorkers: workers})
	udp, tcp = serverAddr(t, s)
	return s, udp, tcp
}

// sendUDP sends q from conn without waiting.
func sendUDP(t *testing.T, conn net.Conn, name string, id uint16) {
	t.Helper()
	q := query(name, dns.TypeA)
	q.Id = id
	wire, _ := q.Pack()
	if _, err := conn.Write(wire); err != nil {
		t.Fatal(err)
	}
}

// readUDP reads one response from conn.
func readUDP(t *testing.T, conn net.Conn, within time.Duration) *dns.Msg {
	t.Helper()
	buf := make([]byte, 4096)
	_ = conn.SetReadDeadline(time.Now().Add(within))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no response within %s: %v", within, err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	return m
}

// Queries waiting for lookups — more than there are UDP readers — do not
// keep the readers from answering others; each is answered by the goroutine
// that waited, to its sender, with its ID. Over a socket bound to an
// unspecified address too (the reply's source control message).
func TestUDPLookupsDoNotBlockTheReaders(t *testing.T) {
	for _, session := range []bool{false, true} {
		t.Run(fmt.Sprintf("session=%v", session), func(t *testing.T) {
			sessionAlways = session
			t.Cleanup(func() { sessionAlways = false })
			const slow = 12
			users := &fakeUsers{slow: map[string]Resolved{}, gate: make(chan struct{}), waiting: make(chan string, slow)}
			for i := range slow {
				users.slow[fmt.Sprintf("slow%d", i)] = Resolved{userAt(t, "bob.mc.example.com"), LookupFound}
			}
			s, udp, _ := lookupServer(t, users, 64)
			if slow <= udpReaders() {
				t.Fatalf("%d slow queries for %d readers: the test proves nothing", slow, udpReaders())
			}
			conn, err := net.Dial("udp", udp)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			for i := range slow {
				sendUDP(t, conn, fmt.Sprintf("slow%d.mc.example.com.", i), uint16(100+i))
			}
			for range slow {
				waitLabel(t, users.waiting) // every one is waiting for its lookup
			}
			sendUDP(t, conn, "alice.mc.example.com.", 7)
			if m := readUDP(t, conn, 2*time.Second); m.Id != 7 || len(m.Answer) != 1 {
				t.Fatalf("the zone's answer while lookups wait: %v", m)
			}
			close(users.gate)
			seen := map[uint16]bool{}
			for range slow {
				m := readUDP(t, conn, 5*time.Second)
				if m.Id < 100 || m.Id >= 100+slow || len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "192.0.2.102" ||
					m.Answer[0].Header().Name != fmt.Sprintf("slow%d.mc.example.com.", m.Id-100) {
					t.Fatalf("a looked-up answer: %v", m)
				}
				seen[m.Id] = true
			}
			if len(seen) != slow {
				t.Fatalf("%d distinct answers of %d", len(seen), slow)
			}
			if got := s.Stats().Lookups[lookupMissOK]; got != slow {
				t.Fatalf("miss-ok %d, want %d", got, slow)
			}
		})
	}
}

// Over the pool's bound, a query gets SERVFAIL at once, counted.
func TestLookupPoolBound(t *testing.T) {
	users := &fakeUsers{gate: make(chan struct{}), waiting: make(chan string, 3)}
	s, udp, tcp := lookupServer(t, users, 2)
	conn, err := net.Dial("udp", udp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sendUDP(t, conn, "slow1.mc.example.com.", 1)
	sendUDP(t, conn, "slow2.mc.example.com.", 2)
	waitLabel(t, users.waiting)
	waitLabel(t, users.waiting)
	sendUDP(t, conn, "slow3.mc.example.com.", 3)
	if m := readUDP(t, conn, 2*time.Second); m.Id != 3 || m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("over the bound (UDP): %v", m)
	}
	if m := exchange(t, "tcp", tcp, query("slow4.mc.example.com.", dns.TypeA)); m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("over the bound (TCP): %v", m)
	}
	if got := s.Stats().Lookups[lookupRateLimited]; got != 2 {
		t.Fatalf("ratelimited %d, want 2", got)
	}
	close(users.gate)
	for range 2 {
		if m := readUDP(t, conn, 5*time.Second); m.Rcode != dns.RcodeNameError {
			t.Fatalf("after the gate: %v", m)
		}
	}
	if got := s.Stats().Lookups[lookupMissUnknown]; got != 2 {
		t.Fatalf("miss-unknown %d, want 2", got)
	}
}

// Each outcome of a lookup, over UDP and TCP, and what it is counted as.
func TestLookupOutcomes(t *testing.T) {
	users := &fakeUsers{
		cached: map[string]Resolved{"hitme": {userAt(t, "bob.mc.example.com"), LookupFound}, "nobody": {UserAbsent(30), LookupAbsent}},
		slow:   map[string]Resolved{"found": {userAt(t, "bob.mc.example.com"), LookupFound}},
		errs: map[string]error{
			"broken":  errors.New("upstream answered 500"),
			"late":    fmt.Errorf("no answer within 1s: %w", context.DeadlineExceeded),
			"limited": ErrLookupLimited,
		},
	}
	s, udp, tcp := lookupServer(t, users, 8)
	for _, c := range []struct {
		label string
		rcode int
		stat  int
	}{
		{"hitme", dns.RcodeSuccess, lookupHit},
		{"nobody", dns.RcodeNameError, lookupNegative},
		{"found", dns.RcodeSuccess, lookupMissOK},
		{"unknown", dns.RcodeNameError, lookupMissUnknown},
		{"broken", dns.RcodeServerFailure, lookupError},
		{"late", dns.RcodeServerFailure, lookupTimeout},
		{"limited", dns.RcodeServerFailure, lookupRateLimited},
	} {
		for _, nw := range []struct{ name, addr string }{{"udp", udp}, {"tcp", tcp}} {
			before := s.Stats().Lookups
			q := ednsQuery(c.label+".mc.example.com.", dns.TypeA, 1232)
			m := exchange(t, nw.name, nw.addr, q)
			if m.Rcode != c.rcode || m.Id != q.Id || len(m.Question) != 1 || m.IsEdns0() == nil {
				t.Errorf("%s over %s: %v", c.label, nw.name, m)
			}
			after := s.Stats().Lookups
			for i := range after {
				want := before[i]
				if i == c.stat {
					want++
				}
				if after[i] != want {
					t.Errorf("%s over %s: %s counted %d, want %d", c.label, nw.name, LookupResults[i], after[i]-before[i], want-before[i])
				}
			}
		}
	}
	if st := s.Stats(); st.ServFail != 6 || st.NXDomain != 4 {
		t.Errorf("rcodes: %d SERVFAIL, %d NXDOMAIN", st.ServFail, st.NXDomain)
	}
}

// A shutdown does not wait for lookups: they end, answered SERVFAIL.
func TestShutdownEndsWaitingLookups(t *testing.T) {
	users := &fakeUsers{gate: make(chan struct{}), waiting: make(chan string, 1)}
	s := NewServer(ServerOptions{Users: users})
	s.Swap(testZone(t))
	if err := s.ListenAndServe("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	udp, _ := serverAddr(t, s)
	conn, err := net.Dial("udp", udp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sendUDP(t, conn, "slow1.mc.example.com.", 1)
	waitLabel(t, users.waiting)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	begin := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Fatalf("shutdown took %s", took)
	}
	if got := s.Stats().Lookups[lookupError]; got != 1 {
		t.Fatalf("the waiting query: error counted %d, want 1", got)
	}
}
