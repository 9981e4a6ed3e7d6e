// Package metrics is a core's Prometheus registry: the collectors that read
// the subsystems' plain counters at scrape time (certs.Cache, authdns.Server,
// PlatformDB health) and the observers the daemon hooks into the front, the
// renewer, the materialiser and onRotateScript. It and internal/daemon are
// the only packages that import prometheus.
//
// Names follow the Prometheus conventions (pryvtls_ prefix, _total for
// counters, _seconds and base units). Labels are bounded: hostnames come
// from the topology (the certificates served), everything else from fixed
// sets; no username, path or secret is ever a label or a value.
package metrics

import (
	"context"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pryv/pryv-tls/internal/authdns"
	"github.com/pryv/pryv-tls/internal/certs"
)

const ns = "pryvtls"

// Buckets of the proxy's latency histogram (seconds).
var proxyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Buckets of the rotation histogram: from a record stored in PlatformDB to
// the certificate served by this core (milliseconds on a healthy cluster).
var rotationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Bounded label values of the hot-path observers.
var (
	upstreams      = [...]string{"api", "hfs", "other"}
	statusClasses  = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"}
	tlsVersions    = [...]string{"1.2", "1.3", "other"}
	resumedValues  = [...]string{"false", "true"}
	rotateResults  = [...]string{"ok", "failed", "timeout"}
	renewalResults = [...]string{"success", "failure"}
)

// Metrics is one core's registry. A nil *Metrics is valid: every method is
// then a no-op (metrics.listen is off).
type Metrics struct {
	reg *prometheus.Registry

	renewals     *prometheus.CounterVec
	acmeErrors   *prometheus.CounterVec
	rotation     prometheus.Histogram
	rotateScript *prometheus.CounterVec
	failureHook  *prometheus.CounterVec
	proxyVec     *prometheus.HistogramVec
	handshakeVec *prometheus.CounterVec

	// Children resolved once, on first use: the hot paths then do an
	// atomic load and the observation, with no lookup and no allocation.
	proxy      [len(upstreams)][len(statusClasses)]lazy[prometheus.Observer]
	handshakes [len(tlsVersions)][len(resumedValues)]lazy[prometheus.Counter]
}

type lazy[T any] struct {
	once sync.Once
	v    T
}

func (l *lazy[T]) get(make func() T) T {
	l.once.Do(func() { l.v = make() })
	return l.v
}

// New returns a registry with the process and Go runtime collectors, the
// build info and the event metrics (which need no source).
func New(version string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "build_info",
		Help: "Always 1; the labels say which pryv-tls build runs.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)

	m.renewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: "acme", Name: "renewals_total",
		Help: "ACME orders run by this core (the certRenewer), by result.",
	}, []string{"result"})
	for _, r := range renewalResults {
		m.renewals.WithLabelValues(r)
	}
	m.acmeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: "acme", Name: "errors_total",
		Help: "Failed ACME orders by kind: the ACME problem type (rateLimited, rejectedIdentifier, connection, ...), lockLost, network or other.",
	}, []string{"kind"})
	m.rotation = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: "certificate", Name: "rotation_duration_seconds",
		Help:    "Time from a certificate record written to PlatformDB (by the writer's clock) to this core serving it.",
		Buckets: rotationBuckets,
	})
	m.rotateScript = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: "rotate_script", Name: "runs_total",
		Help: "letsEncrypt.onRotateScript runs by result: ok (exit 0), failed (non-zero exit or not started), timeout (killed).",
	}, []string{"result"})
	for _, r := range rotateResults {
		m.rotateScript.WithLabelValues(r)
	}
	m.failureHook = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: "failure_hook", Name: "runs_total",
		Help: "letsEncrypt.onFailureScript (hook=script) and onFailureWebhook (hook=webhook) runs, once per failure streak of a renewal, by result: ok, or failed (non-zero exit, timeout, no 2xx).",
	}, []string{"hook", "result"})
	for _, h := range []string{"script", "webhook"} {
		for _, r := range []string{"ok", "failed"} {
			m.failureHook.WithLabelValues(h, r)
		}
	}
	m.proxyVec = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: "proxy", Name: "request_duration_seconds",
		Help:    "Requests proxied by the front, from the request to the end of the response, by upstream and status class (499: the client went away; 101: a WebSocket, timed until it closes). Its _count is the number of requests.",
		Buckets: proxyBuckets,
	}, []string{"upstream", "status_class"})
	m.handshakeVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: "tls", Name: "handshakes_total",
		Help: "TLS handshakes on the front by protocol version and whether the session was resumed.",
	}, []string{"version", "resumed"})
	m.reg.MustRegister(build, m.renewals, m.acmeErrors, m.rotation, m.rotateScript, m.failureHook, m.proxyVec, m.handshakeVec)
	return m
}

// Handler serves the registry in the Prometheus text exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry is the underlying registry (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveProxy records one proxied request (front.Options.Observe). It
// allocates nothing and takes no lock once the upstream/class pair was seen.
func (m *Metrics) ObserveProxy(upstream string, status int, d time.Duration) {
	if m == nil {
		return
	}
	u := len(upstreams) - 1
	switch upstream {
	case "api":
		u = 0
	case "hfs":
		u = 1
	}
	c := len(statusClasses) - 1
	if k := status / 100; k >= 1 && k <= 5 {
		c = k - 1
	}
	o := m.proxy[u][c].get(func() prometheus.Observer { return m.proxyVec.WithLabelValues(upstreams[u], statusClasses[c]) })
	o.Observe(d.Seconds())
}

// ObserveHandshake records one TLS handshake (front.Options.OnHandshake).
func (m *Metrics) ObserveHandshake(version uint16, resumed bool) {
	if m == nil {
		return
	}
	v := len(tlsVersions) - 1
	switch version {
	case 0x0303: // tls.VersionTLS12
		v = 0
	case 0x0304: // tls.VersionTLS13
		v = 1
	}
	r := 0
	if resumed {
		r = 1
	}
	m.handshakes[v][r].get(func() prometheus.Counter {
		return m.handshakeVec.WithLabelValues(tlsVersions[v], resumedValues[r])
	}).Inc()
}

// ObserveOrder records an ACME order's outcome: kind "" is a success,
// anything else the failure's kind (acme.ErrorKind, a bounded set).
func (m *Metrics) ObserveOrder(kind string) {
	if m == nil {
		return
	}
	if kind == "" {
		m.renewals.WithLabelValues("success").Inc()
		return
	}
	m.renewals.WithLabelValues("failure").Inc()
	m.acmeErrors.WithLabelValues(kind).Inc()
}

// ObserveRotation records the time from a record stored to it being served.
func (m *Metrics) ObserveRotation(d time.Duration) {
	if m == nil {
		return
	}
	m.rotation.Observe(d.Seconds())
}

// ObserveRotateScript records one onRotateScript run: failed when it did
// not exit 0 (or did not start), timedOut when it was killed.
func (m *Metrics) ObserveRotateScript(failed, timedOut bool) {
	if m == nil {
		return
	}
	result := "ok"
	switch {
	case timedOut:
		result = "timeout"
	case failed:
		result = "failed"
	}
	m.rotateScript.WithLabelValues(result).Inc()
}

// ObserveFailureHook records one run of a failure hook ("script" or
// "webhook").
func (m *Metrics) ObserveFailureHook(hook string, ok bool) {
	if m == nil {
		return
	}
	result := "ok"
	if !ok {
		result = "failed"
	}
	m.failureHook.WithLabelValues(hook, result).Inc()
}

// WatchCertificates exports what store serves, read at scrape time: each
// name's certificate expiry and the SNI lookup counters.
func (m *Metrics) WatchCertificates(cache *certs.Cache, now func() time.Time) {
	if m == nil {
		return
	}
	if now == nil {
		now = time.Now
	}
	m.reg.MustRegister(&certCollector{cache: cache, now: now})
}

// WatchDNS exports the DNS server's counters, read at scrape time.
func (m *Metrics) WatchDNS(s *authdns.Server) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&dnsCollector{s: s})
}

// PlatformDBHealth is what the PlatformDB collector exports.
type PlatformDBHealth struct {
	Up     bool     // this core's member answers a quorum read
	Leader bool     // this core's member leads the cluster
	Alarms []string // etcd's alarms on this core's member (NOSPACE, CORRUPT)
	// Members are counted only when the member list could be read.
	MembersKnown                 bool
	Healthy, Unhealthy, Learners int
}

// WatchPlatformDB exports PlatformDB's health; health is called at scrape
// time with a context bounded by timeout (its caller caches it).
func (m *Metrics) WatchPlatformDB(health func(ctx context.Context) PlatformDBHealth, timeout time.Duration) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&platformDBCollector{health: health, timeout: timeout})
}
