package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Renewal is one certificate's renewal as exported: the renewer's plan, the
// CA's window and whether it is overdue by the certificate's own lifetime
// (health.Judge), so an alert needs no fixed number of days.
type Renewal struct {
	Hostname         string
	NextRenewal      time.Time // zero: none planned yet
	Overdue          bool
	ARIStart, ARIEnd time.Time // zero: the CA gave no window for the certificate served
	Failures         int       // consecutive failed orders
	Paused           bool      // the CA paused the account for it: nothing is retried
}

var (
	nextRenewalDesc = prometheus.NewDesc(ns+"_acme_next_renewal_timestamp_seconds",
		"When the renewer plans to renew each certificate (Unix time): a point in the CA's ARI window, or the schedule (two thirds of the lifetime, or renewBeforeDays, never before half).",
		[]string{"hostname"}, nil)
	overdueDesc = prometheus.NewDesc(ns+"_acme_renewal_overdue",
		"1 when a certificate's renewal is overdue by its own lifetime: past the end of the CA's window, or a tenth of the lifetime past the planned renewal (or it expired).",
		[]string{"hostname"}, nil)
	ariStartDesc = prometheus.NewDesc(ns+"_acme_ari_window_start_timestamp_seconds",
		"Start of the CA's suggested renewal window (ARI, RFC 9773) for the certificate served (Unix time); absent when the CA gave none.",
		[]string{"hostname"}, nil)
	ariEndDesc = prometheus.NewDesc(ns+"_acme_ari_window_end_timestamp_seconds",
		"End of that window (Unix time): a certificate not renewed by then is overdue.",
		[]string{"hostname"}, nil)
	failuresDesc = prometheus.NewDesc(ns+"_acme_consecutive_failures",
		"Failed orders in a row for each certificate (0 after a success).",
		[]string{"hostname"}, nil)
	pausedDesc = prometheus.NewDesc(ns+"_acme_paused",
		"1 when the CA has paused the account for the certificate's names (Let's Encrypt: too many failed validations); nothing is retried until the operator unpauses and forces a renewal.",
		[]string{"hostname"}, nil)
)

// WatchRenewals exports the renewal state of every certificate; list is
// called at scrape time with a context bounded by timeout (it reads
// PlatformDB). Nothing is exported when it fails: pryvtls_platformdb_up says
// why.
func (m *Metrics) WatchRenewals(list func(ctx context.Context) ([]Renewal, error), timeout time.Duration) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&renewalCollector{list: list, timeout: timeout})
}

type renewalCollector struct {
	list    func(ctx context.Context) ([]Renewal, error)
	timeout time.Duration
}

func (c *renewalCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{nextRenewalDesc, overdueDesc, ariStartDesc, ariEndDesc, failuresDesc, pausedDesc} {
		ch <- d
	}
}

func (c *renewalCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	rs, err := c.list(ctx)
	if err != nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, host string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, host)
	}
	for _, r := range rs {
		if !r.NextRenewal.IsZero() {
			gauge(nextRenewalDesc, float64(r.NextRenewal.Unix()), r.Hostname)
		}
		gauge(overdueDesc, b2f(r.Overdue), r.Hostname)
		if !r.ARIStart.IsZero() {
			gauge(ariStartDesc, float64(r.ARIStart.Unix()), r.Hostname)
			gauge(ariEndDesc, float64(r.ARIEnd.Unix()), r.Hostname)
		}
		gauge(failuresDesc, float64(r.Failures), r.Hostname)
		gauge(pausedDesc, b2f(r.Paused), r.Hostname)
	}
}
