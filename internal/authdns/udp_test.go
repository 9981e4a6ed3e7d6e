package authdns

import (
	"testing"

	"github.com/miekg/dns"
)

// TestHandleUDPReusesWorker runs different packets through one worker: each
// answer must depend only on its own packet (the request Msg is reused).
func TestHandleUDPReusesWorker(t *testing.T) {
	s := NewServer(ServerOptions{})
	s.Swap(testZone(t))
	w := &udpWorker{out: make([]byte, 16)} // small: PackBuffer must grow it
	pack := func(m *dns.Msg) []byte { return mustPack(t, m) }
	reply := func(pkt []byte) *dns.Msg {
		t.Helper()
		out, _ := s.handleUDP(w, pkt)
		if out == nil {
			return nil
		}
		r := new(dns.Msg)
		if err := r.Unpack(out); err != nil {
			t.Fatal(err)
		}
		return r
	}
	e := ednsQuery("alice.mc.example.com.", dns.TypeA, 4096)
	if r := reply(pack(e)); r == nil || len(r.Answer) != 1 || r.IsEdns0() == nil {
		t.Fatalf("EDNS query: %v", r)
	}
	q := query("nobody.mc.example.com.", dns.TypeA)
	if r := reply(pack(q)); r == nil || r.Rcode != dns.RcodeNameError || r.IsEdns0() != nil || r.Id != q.Id {
		t.Fatalf("plain query after an EDNS one: %v", r)
	}
	if r := reply([]byte{1, 2, 3}); r != nil {
		t.Fatalf("answered 3 bytes: %v", r)
	}
	resp := query("alice.mc.example.com.", dns.TypeA)
	resp.Response = true
	if r := reply(pack(resp)); r != nil {
		t.Fatalf("answered a response: %v", r)
	}
	hdr := pack(query("alice.mc.example.com.", dns.TypeA))[:12]
	if r := reply(append(hdr, 0xff, 0xff)); r == nil || r.Rcode != dns.RcodeFormatError || len(r.Answer) != 0 {
		t.Fatalf("garbage body: %v", r)
	}
	if r := reply(pack(query("alice.mc.example.com.", dns.TypeA))); r == nil || len(r.Answer) != 1 {
		t.Fatalf("query after garbage: %v", r)
	}
	st := s.Stats()
	if st.Queries != 3 || st.Dropped != 1 || st.Malformed != 2 || st.NoError != 2 || st.NXDomain != 1 {
		t.Fatalf("stats: %+v", st)
	}
}
