package authdns

import (
	"testing"

	"github.com/miekg/dns"
)

// FuzzAnswer: any message miekg/dns can unpack gets a response that packs
// and fits its size limit (or is dropped, for a response), and Answer never
// panics.
func FuzzAnswer(f *testing.F) {
	z := testZone(f)
	seedAnswer(f)
	f.Fuzz(func(t *testing.T, data []byte, maxUDP uint16, tcp bool) { checkAnswer(t, z, data, maxUDP, tcp) })
}

// FuzzAnswerSigned is FuzzAnswer on the zone signed (queries with DO get
// RRSIGs and NSEC records): the same guarantees, sizes included.
func FuzzAnswerSigned(f *testing.F) {
	z := signedZone(f, []Key{testKey(f)}, nil)
	seedAnswer(f)
	f.Fuzz(func(t *testing.T, data []byte, maxUDP uint16, tcp bool) { checkAnswer(t, z, data, maxUDP, tcp) })
}

func seedAnswer(f *testing.F) {
	seed := func(m *dns.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(1232), false)
		f.Add(b, uint16(512), true)
	}
	for _, c := range queryCases {
		seed(c.msg(true))
		m := c.msg(false)
		m.SetEdns0(4096, true)
		seed(m)
	}
	for _, m := range []*dns.Msg{
		query("big.mc.example.com.", dns.TypeTXT),
		ednsQuery("big.mc.example.com.", dns.TypeTXT, 1232),
		ednsQuery("mc.example.com.", dns.TypeNS, 600),
		ednsQuery("sub.mc.example.com.", dns.TypeA, 512),
		new(dns.Msg),
	} {
		seed(m)
	}
	notify := query("mc.example.com.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	seed(notify)
	v1 := ednsQuery("alice.mc.example.com.", dns.TypeA, 1232)
	v1.IsEdns0().SetVersion(3)
	seed(v1)
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, uint16(0), false)
}

func checkAnswer(t *testing.T, z *Zone, data []byte, maxUDP uint16, tcp bool) {
	req := new(dns.Msg)
	if err := req.Unpack(data); err != nil {
		return
	}
	resp := Answer(z, req, int(maxUDP), tcp)
	if resp == nil {
		if !req.Response {
			t.Fatalf("no response to a query: %v", req)
		}
		return
	}
	b, err := resp.Pack()
	if err != nil {
		t.Fatalf("response does not pack: %v\nquery: %v\nresponse: %v", err, req, resp)
	}
	limit := 65535
	if !tcp {
		limit = 512
		if o := req.IsEdns0(); o != nil && resp.IsEdns0() != nil {
			limit = min(max(int(o.UDPSize()), 512), max(int(maxUDP), 512))
		}
	}
	if len(b) > limit {
		t.Fatalf("response of %d bytes over a limit of %d", len(b), limit)
	}
	if resp.Id != req.Id || !resp.Response || resp.RecursionAvailable || resp.RecursionDesired != req.RecursionDesired {
		t.Fatalf("bad header: %v", resp)
	}
	back := new(dns.Msg)
	if err := back.Unpack(b); err != nil {
		t.Fatalf("packed response does not unpack: %v", err)
	}
}
