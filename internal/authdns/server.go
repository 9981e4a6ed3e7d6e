package authdns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// ServerOptions configures a Server. The zero value is usable.
type ServerOptions struct {
	// Logger receives serve-loop errors and recovered panics (Error) and
	// failed writes (Debug). Nothing is logged per query. Default: discard.
	Logger *slog.Logger
	// MaxUDPSize is the largest UDP response, advertised in EDNS0
	// responses (clamped to 512..65535). Default DefaultMaxUDPSize (1232).
	MaxUDPSize int
	// TCPIdleTimeout closes a TCP connection idle for that long between
	// queries. Default 8 s.
	TCPIdleTimeout time.Duration
	// MaxTCPQueries closes a TCP connection after that many queries;
	// -1 means unlimited. Default 128.
	MaxTCPQueries int
	// Users, when set, is asked about names one label below the origin
	// that the zone does not hold (see Users): the zone's users are
	// answered from the zone, the platform's other users through Users.
	// Nil: such names are NXDOMAIN.
	Users Users
	// LookupWorkers bounds the queries waiting for Users.Resolve at once
	// (UDP and TCP together); a query over the bound gets SERVFAIL at once
	// and is counted "ratelimited". Default 256.
	LookupWorkers int
}

// udpReadSize is the read buffer for incoming UDP queries: large enough for
// any real query (a question plus an OPT with options).
const udpReadSize = 4096

// startTimeout bounds how long ListenAndServe waits for its serve loops.
const startTimeout = 10 * time.Second

// Server is an authoritative DNS server over UDP and TCP answering from the
// Zone most recently given to Swap. Create it with NewServer.
type Server struct {
	log           *slog.Logger
	maxUDP        int
	idle          time.Duration
	maxTCPQueries int

	zone atomic.Pointer[Zone]

	users    Users
	cache    UserCache     // users, or nil: never a typed nil in the interface
	slots    chan struct{} // one per query waiting for a lookup
	lookCtx  context.Context
	lookStop context.CancelFunc
	lookWG   sync.WaitGroup // UDP queries answered by a lookup goroutine

	mu      sync.Mutex
	servers []*dns.Server // TCP
	udps    []*udpServer
	udp     []net.Addr
	tcp     []net.Addr
	closed  bool

	stats counters
}

// NewServer returns a server that does not listen yet and, until the first
// Swap, answers SERVFAIL to every query for any name.
func NewServer(opts ServerOptions) *Server {
	s := &Server{
		log:           opts.Logger,
		maxUDP:        opts.MaxUDPSize,
		idle:          opts.TCPIdleTimeout,
		maxTCPQueries: opts.MaxTCPQueries,
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.maxUDP == 0 {
		s.maxUDP = DefaultMaxUDPSize
	}
	s.maxUDP = min(max(s.maxUDP, minUDPSize), dns.MaxMsgSize)
	if s.idle <= 0 {
		s.idle = 8 * time.Second
	}
	if s.maxTCPQueries == 0 {
		s.maxTCPQueries = 128
	}
	if opts.Users != nil {
		s.users, s.cache = opts.Users, opts.Users
		n := opts.LookupWorkers
		if n <= 0 {
			n = 256
		}
		s.slots = make(chan struct{}, n)
	}
	s.lookCtx, s.lookStop = context.WithCancel(context.Background())
	return s
}

// Swap makes z the zone every following query is answered from. z may be
// nil (queries then get SERVFAIL). Queries in flight finish with the zone
// they started with.
func (s *Server) Swap(z *Zone) { s.zone.Store(z) }

// Zone returns the zone being served, or nil.
func (s *Server) Zone() *Zone { return s.zone.Load() }

// Serving reports whether the server listens (and is not shut down) and has
// a zone to answer from.
func (s *Server) Serving() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && len(s.servers)+len(s.udps) > 0 && s.zone.Load() != nil
}

// ListenAndServe binds UDP and TCP on every address ("0.0.0.0:53",
// "[::]:53", "127.0.0.1:0") and serves them in goroutines. It returns once
// every socket is bound and served, or with the first error, naming the
// address; on error nothing it bound stays open. An IPv4 literal binds IPv4
// only and an IPv6 literal IPv6 only, so "0.0.0.0:53" and "[::]:53" can be
// used together. With port 0, TCP gets the same port as UDP. It may be
// called more than once; Shutdown stops everything.
func (s *Server) ListenAndServe(addrs ...string) error {
	if len(addrs) == 0 {
		return errors.New("dns: no address to listen on")
	}
	type bound struct {
		pc net.PacketConn
		l  net.Listener
	}
	var all []bound
	closeAll := func() {
		for _, b := range all {
			_ = b.pc.Close()
			_ = b.l.Close()
		}
	}
	for _, addr := range addrs {
		pc, l, err := listenPair(addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("dns: listen on %s: %w", addr, err)
		}
		all = append(all, bound{pc, l})
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		closeAll()
		return errors.New("dns: server is shut down")
	}
	accept := func(dh dns.Header) dns.MsgAcceptAction {
		if dh.Bits&(1<<15) != 0 { // QR: a response, never answered
			s.stats.dropped.Add(1)
			return dns.MsgIgnore
		}
		return dns.MsgAccept // Answer decides everything else
	}
	invalid := func(m []byte, err error) { s.stats.malformed.Add(1) }
	var started []*dns.Server
	for i, b := range all {
		// TCP goes through miekg/dns's Server; UDP through our own readers
		// (udp.go), started once every socket is bound and TCP is served.
		for _, srv := range []*dns.Server{
			{Listener: b.l, IdleTimeout: func() time.Duration { return s.idle }, MaxTCPQueries: s.maxTCPQueries},
		} {
			up, done := make(chan struct{}), make(chan error, 1)
			srv.Handler = s
			srv.MsgAcceptFunc = accept
			srv.MsgInvalidFunc = invalid
			srv.NotifyStartedFunc = func() { close(up) }
			addr := addrs[i] //nolint:gosec // G602: all has one entry per addr (the loop above)
			go func() {
				err := srv.ActivateAndServe()
				if err != nil {
					s.log.Error("dns: serve loop stopped", "addr", addr, "err", err)
				}
				done <- err
			}()
			select {
			case <-up:
				started = append(started, srv)
			case err := <-done:
				s.stopLocked(started)
				closeAll()
				return fmt.Errorf("dns: serve %s: %w", addr, err)
			case <-time.After(startTimeout):
				s.stopLocked(started)
				closeAll()
				return fmt.Errorf("dns: serve %s: did not start within %s", addr, startTimeout)
			}
		}
	}
	s.servers = append(s.servers, started...)
	for _, b := range all {
		s.udps = append(s.udps, s.startUDP(b.pc.(*net.UDPConn)))
	}
	for _, b := range all {
		s.udp = append(s.udp, b.pc.LocalAddr())
		s.tcp = append(s.tcp, b.l.Addr())
	}
	return nil
}

func (s *Server) stopLocked(srvs []*dns.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, srv := range srvs {
		_ = srv.ShutdownContext(ctx)
	}
}

// listenPair binds UDP and TCP on addr; with port 0, both on the same port.
func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	udpNet, tcpNet := "udp", "tcp"
	if ip := net.ParseIP(host); ip != nil {
		if ip.To4() != nil {
			udpNet, tcpNet = "udp4", "tcp4"
		} else {
			udpNet, tcpNet = "udp6", "tcp6"
		}
	}
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket(udpNet, addr)
		if err != nil {
			return nil, nil, err
		}
		tcpAddr := addr
		if port == "0" {
			tcpAddr = pc.LocalAddr().String()
		}
		l, err := net.Listen(tcpNet, tcpAddr)
		if err == nil {
			return pc, l, nil
		}
		_ = pc.Close()
		lastErr = err
		if port != "0" {
			break
		}
	}
	return nil, nil, lastErr
}

// Addrs returns the bound UDP and TCP addresses, in ListenAndServe order.
func (s *Server) Addrs() (udp, tcp []net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Addr(nil), s.udp...), append([]net.Addr(nil), s.tcp...)
}

// Shutdown stops every listener, waits (until ctx is done) for the queries in
// flight and returns ctx's error if it had to stop waiting. The server cannot
// serve again afterwards.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srvs, udps := s.servers, s.udps
	s.servers, s.udps = nil, nil
	s.closed = true
	s.mu.Unlock()
	// Queries waiting for a lookup are answered SERVFAIL at once.
	s.lookStop()
	var errs []error
	for _, u := range udps {
		_ = u.close()
	}
	for _, u := range udps {
		if !u.wait(ctx.Done()) {
			errs = append(errs, ctx.Err())
			break
		}
	}
	if len(errs) == 0 && !waitGroup(&s.lookWG, ctx.Done()) {
		errs = append(errs, ctx.Err())
	}
	for _, srv := range srvs {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ServeDNS answers one query (dns.Handler): Answer on the current zone, then
// one write. It never panics: a panic is logged and answered with SERVFAIL.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	s.stats.queries.Add(1)
	defer func() {
		if p := recover(); p != nil {
			s.stats.panics.Add(1)
			s.log.Error("dns: panic answering a query", "panic", p, "remote", w.RemoteAddr())
			if r != nil {
				fail := new(dns.Msg)
				fail.Id = r.Id
				fail.Response = true
				fail.Opcode = r.Opcode
				fail.Rcode = dns.RcodeServerFailure
				_ = w.WriteMsg(fail)
			}
		}
	}()
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	m, lk := s.zone.Load().answer(r, s.maxUDP, tcp, s.cache)
	s.stats.lookup(lk)
	if lk == LookupMiss {
		// This connection's goroutine waits (miekg/dns serves each TCP
		// connection in its own), within the pool's bound.
		m = s.waitLookup(r, tcp)
	}
	if m == nil {
		s.stats.dropped.Add(1)
		return
	}
	s.stats.count(m)
	if err := w.WriteMsg(m); err != nil {
		s.stats.writeErrors.Add(1)
		s.log.Debug("dns: write failed", "remote", w.RemoteAddr(), "err", err)
	}
}

// Stats are counters since NewServer.
type Stats struct {
	Queries     uint64 // messages handed to the handler
	Dropped     uint64 // responses (QR set) ignored
	Malformed   uint64 // messages miekg/dns could not parse (answered FORMERR when the header was readable)
	Truncated   uint64 // responses sent with TC
	WriteErrors uint64
	Panics      uint64
	// Rcodes counts responses by RCODE (extended ones included: BADVERS is 16).
	NoError, FormErr, ServFail, NXDomain, NotImp, Refused, BadVers uint64
	// ByType counts responses by query type (the index in QTypes) and RCODE
	// (0..16, see RcodeName).
	ByType [len(QTypes)][NumRcodes]uint64
	// Lookups counts the queries for users the zone does not hold, by
	// result (the index in LookupResults).
	Lookups [len(LookupResults)]uint64
}

// LookupResults name Stats.Lookups: answered from the cache (hit: the user
// exists; negative: it does not), after a lookup (miss-ok: found;
// miss-unknown: no such user), or SERVFAIL (error: the upstream failed;
// timeout: no answer within dns.userLookup.timeout; ratelimited: over
// dns.userLookup.maxPerSecond, or too many queries waiting already).
var LookupResults = [...]string{"hit", "negative", "miss-ok", "miss-unknown", "error", "timeout", "ratelimited"}

const (
	lookupHit = iota
	lookupNegative
	lookupMissOK
	lookupMissUnknown
	lookupError
	lookupTimeout
	lookupRateLimited
)

// QTypes are the query types Stats.ByType counts by name; every other type
// (and a message without a question) is counted as the last, "other".
var QTypes = [...]string{"A", "AAAA", "CNAME", "MX", "NS", "SOA", "TXT", "CAA", "SRV", "PTR", "DS", "DNSKEY", "HTTPS", "ANY", "other"}

// NumRcodes bounds the RCODEs counted (extended ones included: BADVERS is 16).
const NumRcodes = 17

// RcodeName is an RCODE's mnemonic ("NOERROR", "NXDOMAIN", ...).
func RcodeName(rcode int) string {
	if rcode == dns.RcodeBadVers { // 16 is also TSIG's BADSIG; here it is only ever EDNS
		return "BADVERS"
	}
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return "RCODE" + strconv.Itoa(rcode)
}

func qtypeIndex(m *dns.Msg) int {
	if len(m.Question) == 0 {
		return len(QTypes) - 1
	}
	switch m.Question[0].Qtype {
	case dns.TypeA:
		return 0
	case dns.TypeAAAA:
		return 1
	case dns.TypeCNAME:
		return 2
	case dns.TypeMX:
		return 3
	case dns.TypeNS:
		return 4
	case dns.TypeSOA:
		return 5
	case dns.TypeTXT:
		return 6
	case dns.TypeCAA:
		return 7
	case dns.TypeSRV:
		return 8
	case dns.TypePTR:
		return 9
	case dns.TypeDS:
		return 10
	case dns.TypeDNSKEY:
		return 11
	case dns.TypeHTTPS:
		return 12
	case dns.TypeANY:
		return 13
	}
	return len(QTypes) - 1
}

type counters struct {
	queries, dropped, malformed, truncated, writeErrors, panics atomic.Uint64
	rcode                                                       [NumRcodes]atomic.Uint64
	byType                                                      [len(QTypes)][NumRcodes]atomic.Uint64
	lookups                                                     [len(LookupResults)]atomic.Uint64
}

// lookup counts an answer from the cache (a miss is counted once resolved).
func (c *counters) lookup(lk Lookup) {
	switch lk {
	case LookupFound:
		c.lookups[lookupHit].Add(1)
	case LookupAbsent:
		c.lookups[lookupNegative].Add(1)
	}
}

// countFast counts a NOERROR answer of fastAnswer (A or AAAA).
func (c *counters) countFast(qtype uint16) {
	c.rcode[dns.RcodeSuccess].Add(1)
	i := 0
	if qtype == dns.TypeAAAA {
		i = 1
	}
	c.byType[i][dns.RcodeSuccess].Add(1)
}

func (c *counters) count(m *dns.Msg) {
	if m.Truncated {
		c.truncated.Add(1)
	}
	if m.Rcode >= 0 && m.Rcode < len(c.rcode) {
		c.rcode[m.Rcode].Add(1)
		c.byType[qtypeIndex(m)][m.Rcode].Add(1)
	}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	var byType [len(QTypes)][NumRcodes]uint64
	for i := range c.byType {
		for rc := range c.byType[i] {
			byType[i][rc] = c.byType[i][rc].Load()
		}
	}
	var lookups [len(LookupResults)]uint64
	for i := range c.lookups {
		lookups[i] = c.lookups[i].Load()
	}
	return Stats{
		ByType:      byType,
		Lookups:     lookups,
		Queries:     c.queries.Load(),
		Dropped:     c.dropped.Load(),
		Malformed:   c.malformed.Load(),
		Truncated:   c.truncated.Load(),
		WriteErrors: c.writeErrors.Load(),
		Panics:      c.panics.Load(),
		NoError:     c.rcode[dns.RcodeSuccess].Load(),
		FormErr:     c.rcode[dns.RcodeFormatError].Load(),
		ServFail:    c.rcode[dns.RcodeServerFailure].Load(),
		NXDomain:    c.rcode[dns.RcodeNameError].Load(),
		NotImp:      c.rcode[dns.RcodeNotImplemented].Load(),
		Refused:     c.rcode[dns.RcodeRefused].Load(),
		BadVers:     c.rcode[dns.RcodeBadVers].Load(),
	}
}

// waitLookup answers req once Users.Resolve has, holding one of the pool's
// slots meanwhile: SERVFAIL at once when none is free.
func (s *Server) waitLookup(req *dns.Msg, tcp bool) *dns.Msg {
	select {
	case s.slots <- struct{}{}:
	default:
		s.stats.lookups[lookupRateLimited].Add(1)
		return Answer(nil, req, s.maxUDP, tcp)
	}
	defer func() { <-s.slots }()
	return s.lookupAnswer(req, tcp)
}

// lookupAnswer resolves the user req asks for and answers it: from the
// zone as it is now (the user may have been written to it meanwhile), else
// with what the lookup found; SERVFAIL when it failed.
func (s *Server) lookupAnswer(req *dns.Msg, tcp bool) *dns.Msg {
	z := s.zone.Load()
	if z == nil || len(req.Question) != 1 {
		return Answer(z, req, s.maxUDP, tcp)
	}
	qname := asciiLower(req.Question[0].Name)
	label, ok := z.lookupLabel(qname)
	if !ok || !inZone(qname, z.origin) {
		return Answer(z, req, s.maxUDP, tcp)
	}
	h, lk, err := s.users.Resolve(s.lookCtx, label)
	switch {
	case err == nil && lk == LookupFound:
		s.stats.lookups[lookupMissOK].Add(1)
	case err == nil && lk == LookupAbsent:
		s.stats.lookups[lookupMissUnknown].Add(1)
	case errors.Is(err, ErrLookupLimited):
		s.stats.lookups[lookupRateLimited].Add(1)
	case errors.Is(err, context.DeadlineExceeded):
		s.stats.lookups[lookupTimeout].Add(1)
	default:
		s.stats.lookups[lookupError].Add(1)
	}
	if err != nil || (lk != LookupFound && lk != LookupAbsent) {
		return Answer(nil, req, s.maxUDP, tcp)
	}
	m, _ := s.zone.Load().answer(req, s.maxUDP, tcp, &Resolved{Host: h, Lookup: lk})
	if m == nil {
		return Answer(nil, req, s.maxUDP, tcp)
	}
	return m
}

// waitGroup waits for wg, or until done is closed.
func waitGroup(wg *sync.WaitGroup, done <-chan struct{}) bool {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return true
	case <-done:
		return false
	}
}
