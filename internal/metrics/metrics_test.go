package metrics

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pryv/pryv-tls/internal/authdns"
	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/devpki"
)

// scrape GETs the handler over HTTP and parses the text exposition.
func scrape(t *testing.T, h http.Handler) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("scrape: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parsing the scrape: %v\n%s", err, body)
	}
	return fams, string(body)
}

// value returns the sample of family name whose labels include want (nil if none).
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func mustValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := value(fams, name, labels)
	if !ok {
		t.Fatalf("no %s%v in the scrape", name, labels)
	}
	return v
}

func TestScrape(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	ca, err := devpki.NewCA("metrics test CA")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := ca.Issue(devpki.Leaf{Names: []string{"mc.example.com", "*.mc.example.com"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := certs.ParsePair(iss.FullChain, iss.KeyPEM, now)
	if err != nil {
		t.Fatal(err)
	}
	store := certs.NewCache()
	store.Replace(certs.SourceStore, pair)
	for _, sni := range []string{"mc.example.com", "alice.mc.example.com", "bob.mc.example.com", "other.test"} {
		if _, err := store.GetCertificate(&tls.ClientHelloInfo{ServerName: sni}); err != nil {
			t.Fatal(err)
		}
	}

	srv := dnsServer(t)
	udp, _ := srv.Addrs()
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"alice.mc.example.com.", dns.TypeA}, {"mc.example.com.", dns.TypeSOA}, {"nope.mc.example.com.", dns.TypeAAAA}, {"mc.example.com.", dns.TypeNAPTR}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		if _, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, udp[0].String()); err != nil {
			t.Fatal(err)
		}
	}

	m := New("v-test")
	m.WatchCertificates(store, func() time.Time { return now })
	m.WatchDNS(srv)
	calls := 0
	m.WatchPlatformDB(func(ctx context.Context) PlatformDBHealth {
		calls++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the health function got a context without deadline")
		}
		return PlatformDBHealth{Up: true, Leader: true, MembersKnown: true, Healthy: 2, Unhealthy: 1}
	}, time.Second)

	m.ObserveProxy("api", 200, 30*time.Millisecond)
	m.ObserveProxy("api", 204, 10*time.Millisecond)
	m.ObserveProxy("hfs", 502, time.Millisecond)
	m.ObserveProxy("api", 499, time.Second)
	m.ObserveProxy("weird", 0, time.Millisecond)
	m.ObserveHandshake(tls.VersionTLS13, false)
	m.ObserveHandshake(tls.VersionTLS13, true)
	m.ObserveHandshake(tls.VersionTLS12, false)
	m.ObserveOrder("")
	m.ObserveOrder("rateLimited")
	m.ObserveOrder("rateLimited")
	m.ObserveRotation(7 * time.Millisecond)
	m.ObserveRotateScript(false, false)
	m.ObserveRotateScript(true, false)
	m.ObserveRotateScript(true, true)

	fams, body := scrape(t, m.Handler())
	notAfter := float64(now.Add(10 * 24 * time.Hour).Unix())
	for _, host := range []string{"mc.example.com", "*.mc.example.com"} {
		l := map[string]string{"hostname": host, "source": "platformdb"}
		if v := mustValue(t, fams, "pryvtls_certificate_not_after_timestamp_seconds", l); v != notAfter {
			t.Errorf("not_after %s = %v, want %v", host, v, notAfter)
		}
		if v := mustValue(t, fams, "pryvtls_certificate_expires_in_seconds", l); v != 10*24*3600 {
			t.Errorf("expires_in %s = %v, want 10 days", host, v)
		}
	}
	for match, want := range map[string]float64{"exact": 1, "wildcard": 2, "default": 1, "none": 0} {
		if v := mustValue(t, fams, "pryvtls_tls_certificate_lookups_total", map[string]string{"match": match}); v != want {
			t.Errorf("lookups %s = %v, want %v", match, v, want)
		}
	}
	for _, c := range []struct {
		qtype, rcode string
		want         float64
	}{{"A", "NOERROR", 1}, {"SOA", "NOERROR", 1}, {"AAAA", "NXDOMAIN", 1}, {"other", "NOERROR", 1}} {
		if v := mustValue(t, fams, "pryvtls_dns_queries_total", map[string]string{"qtype": c.qtype, "rcode": c.rcode}); v != c.want {
			t.Errorf("dns %s %s = %v, want %v", c.qtype, c.rcode, v, c.want)
		}
	}
	if n := len(fams["pryvtls_dns_queries_total"].Metric); n != 4 {
		t.Errorf("%d DNS series, want only the 4 pairs seen", n)
	}
	// Every lookup result is a series, at 0 on a server without lookups.
	for _, r := range authdns.LookupResults {
		if v := mustValue(t, fams, "pryvtls_dns_user_lookups_total", map[string]string{"result": r}); v != 0 {
			t.Errorf("user lookups %s = %v, want 0", r, v)
		}
	}
	for name, want := range map[string]float64{"pryvtls_platformdb_up": 1, "pryvtls_platformdb_is_leader": 1} {
		if v := mustValue(t, fams, name, nil); v != want {
			t.Errorf("%s = %v", name, v)
		}
	}
	for state, want := range map[string]float64{"healthy": 2, "unhealthy": 1, "learner": 0} {
		if v := mustValue(t, fams, "pryvtls_platformdb_members", map[string]string{"state": state}); v != want {
			t.Errorf("members %s = %v, want %v", state, v, want)
		}
	}
	if calls != 1 {
		t.Errorf("the health function was called %d times for one scrape", calls)
	}
	for _, c := range []struct {
		upstream, class string
		want            float64
	}{{"api", "2xx", 2}, {"hfs", "5xx", 1}, {"api", "4xx", 1}, {"other", "other", 1}} {
		if v := mustValue(t, fams, "pryvtls_proxy_request_duration_seconds", map[string]string{"upstream": c.upstream, "status_class": c.class}); v != c.want {
			t.Errorf("proxy %s %s: count %v, want %v", c.upstream, c.class, v, c.want)
		}
	}
	for _, m := range fams["pryvtls_proxy_request_duration_seconds"].Metric {
		if h := m.Histogram; h.GetSampleSum() <= 0 || math.IsNaN(h.GetSampleSum()) {
			t.Errorf("proxy histogram sum %v", h.GetSampleSum())
		}
	}
	for _, c := range []struct {
		version, resumed string
		want             float64
	}{{"1.3", "false", 1}, {"1.3", "true", 1}, {"1.2", "false", 1}} {
		if v := mustValue(t, fams, "pryvtls_tls_handshakes_total", map[string]string{"version": c.version, "resumed": c.resumed}); v != c.want {
			t.Errorf("handshakes %s %s = %v", c.version, c.resumed, v)
		}
	}
	if v := mustValue(t, fams, "pryvtls_acme_renewals_total", map[string]string{"result": "success"}); v != 1 {
		t.Errorf("renewals success = %v", v)
	}
	if v := mustValue(t, fams, "pryvtls_acme_renewals_total", map[string]string{"result": "failure"}); v != 2 {
		t.Errorf("renewals failure = %v", v)
	}
	if v := mustValue(t, fams, "pryvtls_acme_errors_total", map[string]string{"kind": "rateLimited"}); v != 2 {
		t.Errorf("acme errors rateLimited = %v", v)
	}
	if v := mustValue(t, fams, "pryvtls_certificate_rotation_duration_seconds", nil); v != 1 {
		t.Errorf("rotation count = %v", v)
	}
	for result, want := range map[string]float64{"ok": 1, "failed": 1, "timeout": 1} {
		if v := mustValue(t, fams, "pryvtls_rotate_script_runs_total", map[string]string{"result": result}); v != want {
			t.Errorf("rotate script %s = %v", result, v)
		}
	}
	if v := mustValue(t, fams, "pryvtls_build_info", map[string]string{"version": "v-test"}); v != 1 {
		t.Errorf("build_info = %v", v)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	// The scrape passes the lint of `promtool check metrics`: its promlint
	// package, linked here, so no tool is needed and nothing is skipped.
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("metrics lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("metrics lint (promtool check metrics): %s: %s", p.Metric, p.Text)
	}
}

// A fresh registry already shows the counters people alert on at zero.
func TestZeroSeries(t *testing.T) {
	fams, _ := scrape(t, New("dev").Handler())
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"pryvtls_acme_renewals_total", map[string]string{"result": "failure"}},
		{"pryvtls_acme_renewals_total", map[string]string{"result": "success"}},
		{"pryvtls_rotate_script_runs_total", map[string]string{"result": "failed"}},
		{"pryvtls_certificate_rotation_duration_seconds", nil},
	} {
		if v := mustValue(t, fams, c.name, c.labels); v != 0 {
			t.Errorf("%s%v = %v", c.name, c.labels, v)
		}
	}
}

// The hot paths allocate nothing once a label pair has been seen.
func TestObserversDoNotAllocate(t *testing.T) {
	m := New("dev")
	m.ObserveProxy("api", 200, time.Millisecond)
	m.ObserveHandshake(tls.VersionTLS13, true)
	if n := testing.AllocsPerRun(1000, func() { m.ObserveProxy("api", 200, time.Millisecond) }); n != 0 {
		t.Errorf("ObserveProxy allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1000, func() { m.ObserveHandshake(tls.VersionTLS13, true) }); n != 0 {
		t.Errorf("ObserveHandshake allocates %v times", n)
	}
	var nilM *Metrics // metrics off
	nilM.ObserveProxy("api", 200, time.Millisecond)
	nilM.ObserveOrder("network")
	nilM.WatchDNS(nil)
}

func BenchmarkObserveProxy(b *testing.B) {
	m := New("dev")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ObserveProxy("api", 200, 3*time.Millisecond)
		}
	})
}

func dnsServer(t *testing.T) *authdns.Server {
	t.Helper()
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	z, err := authdns.NewZone("mc.example.com", rr("mc.example.com. 3600 IN SOA ns1.mc.example.com. hostmaster.mc.example.com. 1 7200 900 1209600 60").(*dns.SOA),
		[]dns.RR{rr("mc.example.com. 3600 IN NS ns1.mc.example.com."), rr("ns1.mc.example.com. 300 IN A 192.0.2.11"),
			rr("alice.mc.example.com. 300 IN A 192.0.2.1")})
	if err != nil {
		t.Fatal(err)
	}
	s := authdns.NewServer(authdns.ServerOptions{})
	s.Swap(z)
	if err := s.ListenAndServe("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Error(err)
		}
	})
	return s
}
