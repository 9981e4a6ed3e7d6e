package pebbledev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// dnsResponder is the built-in DNS server Pebble's VA resolves through when
// Options.DNSServer is empty. It listens on one 127.0.0.1 port for both UDP
// and TCP (Pebble's VA queries a custom resolver over TCP; tests may use
// either) and answers, for every name:
//
//   - A: 127.0.0.1 (so the VA dials HTTP-01 and TLS-ALPN-01 on this host),
//     or the address set with SetA for that name (another loopback address:
//     another core);
//   - AAAA: NOERROR with no answer (so the VA never tries [::1]);
//   - TXT: the values set with SetTXT for that name, or NOERROR/empty;
//   - SOA: a synthetic record for names of one or two labels ("example.com."),
//     so a client that walks up a name looking for its zone (lego's
//     FindZoneByFqdn) finds "example.com." as the zone of any name under it;
//   - anything else: NOERROR with no answer.
//
// Every answer has TTL 0 and the AA bit set.
type dnsResponder struct {
	addr string // host:port, same port for UDP and TCP
	udp  *dns.Server
	tcp  *dns.Server

	mu  sync.Mutex
	txt map[string][]string // canonical name (lower case, trailing dot) -> values
	a   map[string]net.IP   // canonical name -> its A, when not 127.0.0.1
}

// startDNSResponder listens on 127.0.0.1 (UDP and TCP on the same port) and
// serves until stop.
func startDNSResponder() (*dnsResponder, error) {
	r := &dnsResponder{txt: map[string][]string{}, a: map[string]net.IP{}}
	var pc net.PacketConn
	var l net.Listener
	var err error
	// The UDP port is picked by the kernel; the TCP one must then be the
	// same, which another process may hold: try a few times.
	for range 20 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("dns responder: %w", err)
		}
		l, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		_ = pc.Close()
		pc = nil
	}
	if pc == nil {
		return nil, fmt.Errorf("dns responder: no port free for both UDP and TCP: %w", err)
	}
	r.addr = pc.LocalAddr().String()

	udpUp, tcpUp := make(chan struct{}), make(chan struct{})
	r.udp = &dns.Server{PacketConn: pc, Handler: r, NotifyStartedFunc: func() { close(udpUp) }}
	r.tcp = &dns.Server{Listener: l, Handler: r, NotifyStartedFunc: func() { close(tcpUp) }}
	errc := make(chan error, 2)
	go func() { errc <- r.udp.ActivateAndServe() }()
	go func() { errc <- r.tcp.ActivateAndServe() }()
	for _, up := range []chan struct{}{udpUp, tcpUp} {
		select {
		case <-up:
		case err := <-errc:
			r.stop()
			return nil, fmt.Errorf("dns responder: %w", err)
		case <-time.After(10 * time.Second):
			r.stop()
			return nil, errors.New("dns responder: did not start within 10 s")
		}
	}
	return r, nil
}

// stop shuts both servers down; it tolerates servers that never started.
func (r *dnsResponder) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range []*dns.Server{r.udp, r.tcp} {
		if s == nil {
			continue
		}
		if err := s.ShutdownContext(ctx); err != nil {
			// Not started (or already stopped): close the socket ourselves.
			if s.PacketConn != nil {
				_ = s.PacketConn.Close()
			}
			if s.Listener != nil {
				_ = s.Listener.Close()
			}
		}
	}
}

func canonicalName(name string) string {
	return dns.CanonicalName(strings.TrimSpace(name))
}

func (r *dnsResponder) setTXT(name, value string) {
	n := canonicalName(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Contains(r.txt[n], value) {
		r.txt[n] = append(r.txt[n], value)
	}
}

func (r *dnsResponder) removeTXT(name, value string) {
	n := canonicalName(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.txt[n] = slices.DeleteFunc(r.txt[n], func(v string) bool { return v == value })
	if len(r.txt[n]) == 0 {
		delete(r.txt, n)
	}
}

func (r *dnsResponder) clearTXT(name string) {
	n := canonicalName(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.txt, n)
}

func (r *dnsResponder) setA(name string, ip net.IP) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.a[canonicalName(name)] = ip.To4()
}

func (r *dnsResponder) aOf(name string) net.IP {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ip, ok := r.a[canonicalName(name)]; ok {
		return ip
	}
	return net.IPv4(127, 0, 0, 1).To4()
}

func (r *dnsResponder) txtValues(name string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.txt[canonicalName(name)])
}

// ServeDNS implements dns.Handler.
func (r *dnsResponder) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		_ = w.WriteMsg(m)
		return
	}
	for _, q := range req.Question {
		if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
			continue
		}
		hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 0}
		switch q.Qtype {
		case dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: r.aOf(q.Name)})
		case dns.TypeTXT:
			for _, v := range r.txtValues(q.Name) {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: splitTXT(v)})
			}
		case dns.TypeSOA:
			if labels := dns.CountLabel(q.Name); labels >= 1 && labels <= 2 {
				m.Answer = append(m.Answer, &dns.SOA{
					Hdr:     hdr,
					Ns:      "ns." + dns.Fqdn(q.Name),
					Mbox:    "hostmaster." + dns.Fqdn(q.Name),
					Serial:  1,
					Refresh: 60, Retry: 60, Expire: 60, Minttl: 0,
				})
			}
		}
	}
	_ = w.WriteMsg(m)
}

// splitTXT cuts a value into the 255-byte character-strings a TXT record
// holds; a reader joins them back (Pebble does).
func splitTXT(v string) []string {
	if v == "" {
		return []string{""}
	}
	var parts []string
	for len(v) > 255 {
		parts = append(parts, v[:255])
		v = v[255:]
	}
	return append(parts, v)
}
