package metrics

import (
	"context"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pryv/pryv-tls/internal/authdns"
	"github.com/pryv/pryv-tls/internal/certs"
)

var (
	notAfterDesc = prometheus.NewDesc(ns+"_certificate_not_after_timestamp_seconds",
		"Expiry (notAfter, Unix time) of the certificate this core serves for each hostname; source is files (http.ssl), platformdb (ACME or imported) or placeholder (self-signed: no real certificate yet).",
		[]string{"hostname", "source"}, nil)
	expiresInDesc = prometheus.NewDesc(ns+"_certificate_expires_in_seconds",
		"Time left until that certificate expires (negative once expired); divide by 86400 for days left.",
		[]string{"hostname", "source"}, nil)
	lookupsDesc = prometheus.NewDesc(ns+"_tls_certificate_lookups_total",
		"Certificate lookups by SNI (one per handshake that is not resumed) by match: exact, wildcard, default (no name matched, or no SNI) or none (no certificate: the handshake failed).",
		[]string{"match"}, nil)
	dnsQueriesDesc = prometheus.NewDesc(ns+"_dns_queries_total",
		"DNS queries answered by the embedded server, by query type (a fixed set, else other) and response code.",
		[]string{"qtype", "rcode"}, nil)
	dnsLookupsDesc = prometheus.NewDesc(ns+"_dns_user_lookups_total",
		"Queries for users the zone does not hold (dns.userLookup), by result: hit / negative (answered from the cache), miss-ok / miss-unknown (answered after a lookup), error / timeout / ratelimited (answered SERVFAIL).",
		[]string{"result"}, nil)
	pdbUpDesc = prometheus.NewDesc(ns+"_platformdb_up",
		"1 when this core's PlatformDB member answers a quorum read.", nil, nil)
	pdbLeaderDesc = prometheus.NewDesc(ns+"_platformdb_is_leader",
		"1 when this core's PlatformDB member is the raft leader.", nil, nil)
	pdbAlarmDesc = prometheus.NewDesc(ns+"_platformdb_alarm",
		"1 when etcd holds that alarm on this core's PlatformDB member: NOSPACE (the store is full and refuses writes until compacted, defragmented and disarmed), CORRUPT.",
		[]string{"alarm"}, nil)
	pdbMembersDesc = prometheus.NewDesc(ns+"_platformdb_members",
		"PlatformDB members by state: healthy or unhealthy voting members (answering a status request or not), learners (joining).",
		[]string{"state"}, nil)
)

// certCollector reads the certificates served and the lookup counters.
type certCollector struct {
	cache *certs.Cache
	now   func() time.Time
}

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- notAfterDesc
	ch <- expiresInDesc
	ch <- lookupsDesc
}

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	for _, s := range c.cache.Served() {
		if s.Leaf == nil {
			continue
		}
		src := s.Source.String()
		ch <- prometheus.MustNewConstMetric(notAfterDesc, prometheus.GaugeValue, float64(s.Leaf.NotAfter.Unix()), s.Name, src)
		ch <- prometheus.MustNewConstMetric(expiresInDesc, prometheus.GaugeValue, s.Leaf.NotAfter.Sub(now).Seconds(), s.Name, src)
	}
	l := c.cache.Lookups()
	for _, v := range []struct {
		match string
		n     uint64
	}{{"exact", l.Exact}, {"wildcard", l.Wildcard}, {"default", l.Default}, {"none", l.None}} {
		ch <- prometheus.MustNewConstMetric(lookupsDesc, prometheus.CounterValue, float64(v.n), v.match)
	}
}

// dnsCollector reads authdns.Server.Stats.
type dnsCollector struct{ s *authdns.Server }

func (c *dnsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- dnsQueriesDesc
	ch <- dnsLookupsDesc
}

func (c *dnsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	for qt, byRcode := range st.ByType {
		for rc, n := range byRcode {
			// Only the pairs seen: 15 types x 17 codes of zeros would be noise.
			if n > 0 {
				ch <- prometheus.MustNewConstMetric(dnsQueriesDesc, prometheus.CounterValue, float64(n), authdns.QTypes[qt], authdns.RcodeName(rc))
			}
		}
	}
	for i, n := range st.Lookups {
		ch <- prometheus.MustNewConstMetric(dnsLookupsDesc, prometheus.CounterValue, float64(n), authdns.LookupResults[i])
	}
}

// platformDBCollector reads the (cached) PlatformDB health.
type platformDBCollector struct {
	health  func(ctx context.Context) PlatformDBHealth
	timeout time.Duration
}

func (c *platformDBCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pdbUpDesc
	ch <- pdbLeaderDesc
	ch <- pdbAlarmDesc
	ch <- pdbMembersDesc
}

func (c *platformDBCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	h := c.health(ctx)
	ch <- prometheus.MustNewConstMetric(pdbUpDesc, prometheus.GaugeValue, b2f(h.Up))
	ch <- prometheus.MustNewConstMetric(pdbLeaderDesc, prometheus.GaugeValue, b2f(h.Leader))
	// Both known alarms always, 0 or 1, so that an alert has a series to watch.
	for _, a := range []string{"NOSPACE", "CORRUPT"} {
		ch <- prometheus.MustNewConstMetric(pdbAlarmDesc, prometheus.GaugeValue, b2f(slices.Contains(h.Alarms, a)), a)
	}
	if h.MembersKnown {
		ch <- prometheus.MustNewConstMetric(pdbMembersDesc, prometheus.GaugeValue, float64(h.Healthy), "healthy")
		ch <- prometheus.MustNewConstMetric(pdbMembersDesc, prometheus.GaugeValue, float64(h.Unhealthy), "unhealthy")
		ch <- prometheus.MustNewConstMetric(pdbMembersDesc, prometheus.GaugeValue, float64(h.Learners), "learner")
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
