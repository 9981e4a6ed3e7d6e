package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/acme/pebbledev"
	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/health"
)

// TestMonitoring runs a multi-core-topology core (embedded DNS, wildcard
// certificate by DNS-01 from Pebble) with metrics.listen set, and checks the
// operator's view: /readyz 503 until the first certificate, 200 after; the
// Prometheus scrape after real activity (an issuance, a proxied request, DNS
// queries), with no secret in it; "pryv-tls status" healthy, with a
// certificate about to expire, and after a failed renewal. The steps run in
// order on one core, each a method of monitoringCore.
func TestMonitoring(t *testing.T) {
	m := startMonitoringCore(t)
	t.Run("not ready before the first certificate", m.notReadyBeforeCertificate)
	var notAfter time.Time
	t.Run("ready once Pebble's certificate is served", func(t *testing.T) { notAfter = m.readyOnceServed(t) })
	m.activity(t)
	t.Run("scrape", func(t *testing.T) { m.scrape(t, notAfter) })
	t.Run("status healthy", m.statusHealthy)
	t.Run("status with a certificate expiring in 3 days", m.statusExpiring)
	t.Run("status after a failed renewal", m.statusFailedRenewal)
	t.Run("not ready while draining", m.notReadyWhileDraining)
}

const monDomain = "mc.example.com"

// monitoringCore is TestMonitoring's core and what its steps reach it by.
type monitoringCore struct {
	dir, addr, metricsAddr, dnsAddr string
	cfg                             []string // the core's --config flags
	pebble                          *acmetest.Pebble
	roots                           *x509.CertPool // Pebble's
	core                            *core
	firstReady                      chan [2]string // the first /readyz answer: status, body
}

// startMonitoringCore starts Pebble and the core, and watches /readyz from
// before the core opens PlatformDB.
func startMonitoringCore(t *testing.T) *monitoringCore {
	dir := t.TempDir()
	dnsPort := freeUDPTCPPort(t)
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", dnsPort)
	pebble := acmetest.Start(t, acmetest.Options{Options: pebbledev.Options{DNSServer: dnsAddr}})
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	api := upstream(t, "api", 0)
	slowHFS := upstream(t, "hfs", 3*time.Second) // holds a request in flight while draining
	cfg := strategyA(t, dir, port, "/bin/true")
	mc := filepath.Join(dir, "monitoring.yml")
	writeFile(t, mc, yamlConfig(
		"dnsLess:",
		"  isActive: false",
		"core:",
		"  id: core1",
		"  ip: 127.0.0.1",
		"  url: https://core1."+monDomain,
		"dns:",
		"  active: true",
		"  domain: "+monDomain,
		"  ip: 127.0.0.1",
		fmt.Sprintf("  port: %d", dnsPort),
		"letsEncrypt:",
		"  directoryUrl: "+pebble.DirectoryURL,
		"  directoryCaFile: "+pebble.CAFile,
		fmt.Sprintf("  http01Port: %d", pebble.HTTPPort),
		"  profile: default", // 90 days (Pebble picks a random profile when none is named)
		"upstreams:",
		"  api: "+api,
		"  hfs: "+slowHFS,
		"metrics:",
		"  listen: "+metricsAddr,
	), 0o644)
	cfg = append(cfg, "--config", mc)
	// The metrics listener is up before PlatformDB opens, so before the
	// renewer can order anything: its first readyz answer predates any
	// certificate.
	firstReady := make(chan [2]string, 1)
	go func() {
		cl := &http.Client{Timeout: time.Second}
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			resp, err := cl.Get("http://" + metricsAddr + "/readyz")
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			firstReady <- [2]string{resp.Status, string(b)}
			return
		}
		firstReady <- [2]string{"no answer within 20s", ""}
	}()
	c := startCoreIn(t, dir, addr, cfg...)
	return &monitoringCore{dir: dir, addr: addr, metricsAddr: metricsAddr, dnsAddr: dnsAddr, cfg: cfg,
		pebble: pebble, roots: pebble.IssuerRoots(t), core: c, firstReady: firstReady}
}

// get is a plain GET (the metrics listener).
func (m *monitoringCore) get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// front is a client of the front for name, trusting Pebble's roots (or
// anything, as for the placeholder).
func (m *monitoringCore) front(name string, trust bool) *http.Client {
	cfg := &tls.Config{ServerName: name, InsecureSkipVerify: !trust}
	if trust {
		cfg.RootCAs = m.roots
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: cfg,
		DialContext: func(ctx context.Context, n, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, n, m.addr)
		},
	}}
}

func (m *monitoringCore) frontGet(t *testing.T, cl *http.Client, name, path string) (int, string) {
	t.Helper()
	resp, err := cl.Get("https://" + name + path)
	if err != nil {
		t.Fatalf("GET %s on the front: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// status runs pryv-tls status against the core.
func (m *monitoringCore) status(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, code := cli(t, m.dir, append(append([]string{"status"}, m.cfg...), args...)...)
	return code, out
}

func (m *monitoringCore) statusJSON(t *testing.T) (int, admin.Status) {
	t.Helper()
	code, out := m.status(t, "--json")
	var st admin.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return code, st
}

// notReadyBeforeCertificate: /readyz 503 naming the placeholder, /healthz ok.
func (m *monitoringCore) notReadyBeforeCertificate(t *testing.T) {
	first := <-m.firstReady
	status, body := first[0], first[1]
	var rep health.Report
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("readyz: %s %q: %v", status, body, err)
	}
	if status != "503 Service Unavailable" || rep.Ready {
		t.Fatalf("readyz before any certificate: %s %s", status, body)
	}
	t.Logf("first readyz: %s %s", status, strings.TrimSpace(body))
	for _, ch := range rep.Checks {
		if ch.Name == "certificate" && (ch.OK || !strings.Contains(ch.Detail, "placeholder")) {
			t.Errorf("certificate check %+v", ch)
		}
	}
	if code, body := m.get(t, "http://"+m.metricsAddr+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
	// The front's copy, most likely still before the certificate (the
	// order takes a while): 503, or 200 once it is served.
	if code, body := m.frontGet(t, m.front("core1."+monDomain, false), "core1."+monDomain, health.FrontReady); code != http.StatusServiceUnavailable && code != http.StatusOK {
		t.Errorf("front readyz: %d %s", code, body)
	} else {
		t.Logf("front %s: %d %s", health.FrontReady, code, strings.TrimSpace(body))
	}
}

// readyOnceServed waits for Pebble's certificate and checks both readyz
// copies; it returns the certificate's notAfter.
func (m *monitoringCore) readyOnceServed(t *testing.T) (notAfter time.Time) {
	deadline := time.Now().Add(90 * time.Second)
	for {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", m.addr, &tls.Config{ServerName: "alice." + monDomain, RootCAs: m.roots})
		if err == nil {
			notAfter = conn.ConnectionState().PeerCertificates[0].NotAfter
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate from Pebble within 90s: %v\n%s", err, m.core.logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, body := m.get(t, "http://"+m.metricsAddr+"/readyz"); code != 200 || !strings.Contains(body, `"ready":true`) {
		t.Fatalf("readyz with a certificate: %d %s", code, body)
	}
	cl := m.front("core1."+monDomain, true)
	if code, body := m.frontGet(t, cl, "core1."+monDomain, health.FrontReady); code != 200 || !strings.Contains(body, `"ready":true`) {
		t.Errorf("front %s: %d %s", health.FrontReady, code, body)
	}
	if code, body := m.frontGet(t, cl, "core1."+monDomain, health.FrontLive); code != 200 || body != "ok\n" {
		t.Errorf("front %s: %d %q", health.FrontLive, code, body)
	}
	// /healthz and /readyz on the front are the API's.
	if code, body := m.frontGet(t, cl, "core1."+monDomain, "/readyz"); code != 200 || !strings.HasPrefix(body, "api /readyz") {
		t.Errorf("front /readyz should reach the API upstream: %d %q", code, body)
	}
	return notAfter
}

// activity makes what the scrape counts: a proxied request and DNS queries.
func (m *monitoringCore) activity(t *testing.T) {
	if code, body := m.frontGet(t, m.front("alice."+monDomain, true), "alice."+monDomain, "/alice/events"); code != 200 || !strings.HasPrefix(body, "api /alice/events") {
		t.Fatalf("proxied request: %d %q", code, body)
	}
	for _, qt := range []uint16{dns.TypeA, dns.TypeA, dns.TypeSOA} {
		q := new(dns.Msg)
		q.SetQuestion("core1."+monDomain+".", qt)
		if _, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(q, m.dnsAddr); err != nil {
			t.Fatal(err)
		}
	}
}

// scrape checks the Prometheus exposition after that activity, and that no
// secret is in it.
func (m *monitoringCore) scrape(t *testing.T, notAfter time.Time) {
	var fams map[string]*dto.MetricFamily
	var body string
	// The rotation hook runs in the background after the certificate is served.
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams, body = scrapeMetrics(t, "http://"+m.metricsAddr+"/metrics")
		if v, _ := sample(fams, "pryvtls_rotate_script_runs_total", map[string]string{"result": "ok"}); v >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no onRotateScript run counted within 10s:\n%s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	check := func(name string, labels map[string]string, ok func(float64) bool, what string) {
		t.Helper()
		v, found := sample(fams, name, labels)
		if !found {
			t.Errorf("no %s%v in the scrape", name, labels)
			return
		}
		if !ok(v) {
			t.Errorf("%s%v = %v, want %s", name, labels, v, what)
		}
		t.Logf("%s%v = %v", name, labels, v)
	}
	atLeast := func(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }
	for _, host := range []string{"*." + monDomain, monDomain} {
		l := map[string]string{"hostname": host, "source": "platformdb"}
		check("pryvtls_certificate_not_after_timestamp_seconds", l, func(v float64) bool { return v == float64(notAfter.Unix()) }, "the served notAfter")
		check("pryvtls_certificate_expires_in_seconds", l, func(v float64) bool { return v > 80*86400 && v <= 90*86400 }, "80 to 90 days")
	}
	if v, ok := sample(fams, "pryvtls_certificate_not_after_timestamp_seconds", map[string]string{"source": "placeholder"}); ok {
		t.Errorf("the placeholder is still exported (%v) after the real certificate", v)
	}
	check("pryvtls_acme_renewals_total", map[string]string{"result": "success"}, atLeast(1), ">= 1")
	check("pryvtls_acme_renewals_total", map[string]string{"result": "failure"}, func(v float64) bool { return v == 0 }, "0")
	check("pryvtls_certificate_rotation_duration_seconds", nil, atLeast(1), "a count >= 1")
	if h := fams["pryvtls_certificate_rotation_duration_seconds"].Metric[0].Histogram; h.GetSampleSum() < 0 || h.GetSampleSum() > 10 {
		t.Errorf("rotation took %vs in all", h.GetSampleSum())
	}
	check("pryvtls_tls_handshakes_total", map[string]string{"version": "1.3", "resumed": "false"}, atLeast(3), ">= 3")
	check("pryvtls_tls_certificate_lookups_total", map[string]string{"match": "wildcard"}, atLeast(1), ">= 1")
	check("pryvtls_tls_certificate_lookups_total", map[string]string{"match": "none"}, func(v float64) bool { return v == 0 }, "0")
	check("pryvtls_proxy_request_duration_seconds", map[string]string{"upstream": "api", "status_class": "2xx"}, atLeast(2), "a count >= 2")
	check("pryvtls_dns_queries_total", map[string]string{"qtype": "A", "rcode": "NOERROR"}, atLeast(2), ">= 2")
	check("pryvtls_dns_queries_total", map[string]string{"qtype": "SOA", "rcode": "NOERROR"}, atLeast(1), ">= 1")
	check("pryvtls_dns_queries_total", map[string]string{"qtype": "TXT", "rcode": "NOERROR"}, atLeast(1), ">= 1 (DNS-01 validation)")
	check("pryvtls_platformdb_up", nil, func(v float64) bool { return v == 1 }, "1")
	check("pryvtls_platformdb_is_leader", nil, func(v float64) bool { return v == 1 }, "1")
	check("pryvtls_platformdb_members", map[string]string{"state": "healthy"}, func(v float64) bool { return v == 1 }, "1")
	check("pryvtls_platformdb_members", map[string]string{"state": "unhealthy"}, func(v float64) bool { return v == 0 }, "0")
	check("pryvtls_build_info", nil, func(v float64) bool { return v == 1 }, "1")

	key := make([]byte, 32) // strategyA's atRestKey
	for i := range key {
		key[i] = byte(i * 7)
	}
	for _, secret := range []string{base64.StdEncoding.EncodeToString(key), "e2e-admin-key", "PRIVATE KEY", "/alice/events"} {
		if strings.Contains(body, secret) {
			t.Errorf("the scrape contains %q", secret)
		}
	}
}

func (m *monitoringCore) statusHealthy(t *testing.T) {
	code, out := m.status(t)
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	for _, want := range []string{"This core: core1 (renewer, not the CA holder); PlatformDB up (leader); DNS serving",
		"core1  healthy", "*." + monDomain, "acme", "Next renewal: *." + monDomain, "Last error:   none", "All fine."} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("colour codes in piped output:\n%q", out)
	}
	t.Logf("pryv-tls status:\n%s", out)
	code, st := m.statusJSON(t)
	if code != 0 || st.Core.ID != "core1" || !st.Core.Renewer || len(st.Problems) != 0 || len(st.Certs) != 1 ||
		st.Certs[0].DaysUntilExpiry < 80 || st.NextRenewal == nil || st.LastError != nil {
		t.Errorf("status --json: exit %d %+v", code, st)
	}
}

// statusExpiring imports a certificate expiring in 3 days: a problem, exit
// 1, exported at once; deleted, status is healthy again.
func (m *monitoringCore) statusExpiring(t *testing.T) {
	ca, err := devpki.NewCA("e2e expiring CA")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	iss, err := ca.Issue(devpki.Leaf{Names: []string{"legacy.example.org"}, NotBefore: now.Add(-80 * 24 * time.Hour), NotAfter: now.Add(3*24*time.Hour + time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(m.dir, "in", "legacy.pem"), iss.FullChain, 0o644)
	writeFile(t, filepath.Join(m.dir, "in", "legacy-key.pem"), iss.KeyPEM, 0o600)
	if out, code := cli(t, m.dir, append(append([]string{"certs", "import"}, m.cfg...), "--cert", "in/legacy.pem", "--key", "in/legacy-key.pem")...); code != 0 {
		t.Fatalf("certs import: %d %s", code, out)
	}
	code, out := m.status(t, "--no-color")
	if code != 1 || !strings.Contains(out, "legacy.example.org  3 ") || !strings.Contains(out, "certificate legacy.example.org expires in 3 day(s)") {
		t.Fatalf("status: exit %d, want 1 naming the expiring certificate\n%s", code, out)
	}
	t.Logf("pryv-tls status:\n%s", out)
	if code, st := m.statusJSON(t); code != 1 || len(st.Problems) != 1 {
		t.Errorf("status --json: exit %d, problems %q", code, st.Problems)
	}
	// Exported as soon as it is served.
	deadline := time.Now().Add(5 * time.Second)
	for {
		fams, _ := scrapeMetrics(t, "http://"+m.metricsAddr+"/metrics")
		if v, ok := sample(fams, "pryvtls_certificate_expires_in_seconds", map[string]string{"hostname": "legacy.example.org"}); ok {
			if v < 3*86400 || v > 4*86400 {
				t.Errorf("expires_in legacy.example.org = %v", v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the imported certificate is not exported")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, code := cli(t, m.dir, append(append([]string{"certs", "delete"}, m.cfg...), "legacy.example.org")...); code != 0 {
		t.Fatalf("certs delete: %d %s", code, out)
	}
	if code, out := m.status(t); code != 0 {
		t.Fatalf("status after deleting it: exit %d\n%s", code, out)
	}
}

// statusFailedRenewal stops Pebble and forces a renewal: a warning, not a
// problem (decision 0025), counted in the metrics.
func (m *monitoringCore) statusFailedRenewal(t *testing.T) {
	m.pebble.Stop() // the CA is gone
	sock := admin.SocketClient(filepath.Join(m.dir, "var-pryv/run/pryv-tls.sock"))
	resp, err := sock.Post("http://pryv-tls/certs/force-renew", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"ok":false`) {
		t.Fatalf("force-renew with the CA down: %d %s", resp.StatusCode, b)
	}
	// A failure the renewer retries long before the certificate's
	// deadline is a warning (exit 0), not a problem (decision 0025).
	code, out := m.status(t, "--no-color")
	if code != 0 || !strings.Contains(out, "Worth a look (1):\n  - renewal of *."+monDomain+" failed at") || !strings.Contains(out, "Last error:   *."+monDomain+" at ") {
		t.Fatalf("status: exit %d, want 0 with the failed renewal as a warning\n%s", code, out)
	}
	t.Logf("pryv-tls status:\n%s", out)
	code, st := m.statusJSON(t)
	if code != 0 || st.LastError == nil || st.LastError.Hostname != "*."+monDomain || time.Since(st.LastError.At) > time.Minute ||
		len(st.Warnings) != 1 || len(st.Problems) != 0 {
		t.Errorf("status --json: exit %d, lastError %+v, warnings %q, problems %q", code, st.LastError, st.Warnings, st.Problems)
	}
	fams, _ := scrapeMetrics(t, "http://"+m.metricsAddr+"/metrics")
	if v, _ := sample(fams, "pryvtls_acme_renewals_total", map[string]string{"result": "failure"}); v != 1 {
		t.Errorf("renewals failure = %v, want 1", v)
	}
	kinds := fams["pryvtls_acme_errors_total"]
	if kinds == nil || len(kinds.Metric) != 1 || kinds.Metric[0].Counter.GetValue() != 1 {
		t.Fatalf("acme errors: %v", kinds)
	}
	t.Logf("ACME error kind with the CA down: %s", kinds.Metric[0].Label[0].GetValue())
}

// notReadyWhileDraining: on SIGTERM /readyz says shutdown while an
// in-flight request still completes.
func (m *monitoringCore) notReadyWhileDraining(t *testing.T) {
	inFlight := make(chan int, 1)
	go func() {
		resp, err := m.front("alice."+monDomain, true).Get("https://alice." + monDomain + "/alice/events/e1/series")
		if err != nil {
			inFlight <- 0
			return
		}
		resp.Body.Close()
		inFlight <- resp.StatusCode
	}()
	time.Sleep(500 * time.Millisecond) // the request reached the slow HFS
	m.core.signal(syscall.SIGTERM)
	deadline := time.Now().Add(2 * time.Second)
	for {
		code, body := m.get(t, "http://"+m.metricsAddr+"/readyz")
		if code == http.StatusServiceUnavailable && strings.Contains(body, `"shutdown"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz while draining: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := <-inFlight; code != 200 {
		t.Errorf("the in-flight request got %d, want 200 (drained)", code)
	}
	if code := m.core.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// scrapeMetrics GETs a /metrics endpoint and parses its text exposition.
func scrapeMetrics(t *testing.T, url string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return fams, string(b)
}

// sample is the value of the first sample of name whose labels include
// want (a histogram's is its count).
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
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
