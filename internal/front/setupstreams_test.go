package front

import (
	"net/http"
	"testing"
)

// SetUpstreams (a reload): requests from then on go to the new upstreams,
// HFS paths included, over the same client connection; nil is refused and
// changes nothing.
func TestSetUpstreams(t *testing.T) {
	p := getPKI(t)
	a, b := newEchoUpstream(t, "A"), newEchoUpstream(t, "B")
	ah, bh := newEchoUpstream(t, "A-hfs"), newEchoUpstream(t, "B-hfs")
	tf := startFront(t, frontSetup{API: a.URL, HFS: ah.URL, GetCertificate: p.store.GetCertificate})
	c := httpsClient(t, tf.addr, false, nil)
	base := "https://" + testHost
	for _, tc := range []struct{ path, want string }{{"/events", "A"}, {"/alice/events/e1/series", "A-hfs"}} {
		if _, e := doEcho(t, c, http.MethodGet, base+tc.path, nil, nil); e.Upstream != tc.want {
			t.Fatalf("GET %s went to %s before, want %s", tc.path, e.Upstream, tc.want)
		}
	}
	if err := tf.f.SetUpstreams(nil, mustURL(t, bh.URL)); err == nil {
		t.Fatal("SetUpstreams(nil, ...) accepted")
	}
	if _, e := doEcho(t, c, http.MethodGet, base+"/events", nil, nil); e.Upstream != "A" {
		t.Fatalf("a refused SetUpstreams changed the upstream to %s", e.Upstream)
	}
	if err := tf.f.SetUpstreams(mustURL(t, b.URL), mustURL(t, bh.URL)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{{"/events", "B"}, {"/alice/events/e1/series", "B-hfs"}} {
		if _, e := doEcho(t, c, http.MethodGet, base+tc.path, nil, nil); e.Upstream != tc.want {
			t.Fatalf("GET %s went to %s after SetUpstreams, want %s", tc.path, e.Upstream, tc.want)
		}
	}
}
