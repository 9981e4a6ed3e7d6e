package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/pryv/pryv-tls/internal/acme"
	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/health"
	"github.com/pryv/pryv-tls/internal/metrics"
	"github.com/pryv/pryv-tls/internal/rotatehook"
)

// The lifetime hooks (decision 0025): what the admin API, the metrics and
// /readyz need of the renewer's state, and the failure hooks. Each is one
// call from the subsystem that owns the moment.

// renewalState is what the admin API shows of a certificate's renewal state.
func renewalState(s acme.State) admin.RenewalState {
	rs := admin.RenewalState{NextRenewal: s.NextRenewal, LastError: s.LastError, LastErrorAt: s.LastErrorAt,
		RenewalDetail: admin.RenewalDetail{ARIStart: s.ARIStart, ARIEnd: s.ARIEnd, ARISerial: s.ARISerial,
			Failures: s.Failures, UnpauseURL: s.UnpauseURL, RenewedBy: s.RenewedBy, RenewedWhy: s.RenewedWhy}}
	if p := s.Problem; p != nil {
		rs.Problem = &admin.Problem{Type: p.Type, Detail: p.Detail, Status: p.Status}
		for _, sp := range p.Subproblems {
			rs.Problem.Subproblems = append(rs.Problem.Subproblems, admin.Subproblem(sp))
		}
	}
	return rs
}

// onFailure is the renewer's OnFailure: letsEncrypt.onFailureScript and
// onFailureWebhook as configured when the failure happens (a reload
// changes them without a new renewer), run in the background (the renewer
// goes on), bounded by their own timeouts.
func (a *acmeSys) onFailure(*config.Config) func(context.Context, acme.Failure) {
	return func(_ context.Context, f acme.Failure) {
		le := a.cfg.Load().LetsEncrypt
		cfg := acmeFailureHooks{script: le.OnFailureScript, webhook: le.OnFailureWebhook.Reveal(), tlsDir: le.TLSDir}
		if cfg.script == "" && cfg.webhook == "" {
			return
		}
		n := &rotatehook.Notifier{Script: rotatehook.Runner{Script: cfg.script, Logger: a.log}, Webhook: cfg.webhook, Logger: a.log}
		dir := filepath.Join(cfg.tlsDir, certstore.DirName(f.Hostname))
		hf := rotatehook.Failure{Hostname: f.Hostname, Error: f.Error, At: f.At.UTC(), Failures: f.Failures,
			Unpause: f.UnpauseURL, CertPath: filepath.Join(dir, "fullchain.pem"), KeyPath: filepath.Join(dir, "privkey.pem")}
		if f.Problem != nil {
			hf.Problem = f.Problem
		}
		a.w.run.Go(func(ctx context.Context) {
			out := n.Notify(ctx, hf)
			if cfg.script != "" {
				a.metrics.ObserveFailureHook("script", out.Script.Err == nil)
			}
			if cfg.webhook != "" {
				a.metrics.ObserveFailureHook("webhook", out.WebhookErr == nil)
			}
		})
	}
}

// acmeFailureHooks are the failure hooks' settings.
type acmeFailureHooks struct{ script, webhook, tlsDir string }

// expiryCheck is the readiness condition that no certificate served is
// expired: a core that hands clients a certificate they refuse is not
// ready, and status says the same (it lists the failed check).
func (o *observability) expiryCheck(now time.Time) health.Check {
	var expired []string
	for _, sv := range o.cache.Served() {
		if sv.Source != certs.SourcePlaceholder && sv.Leaf != nil && !now.Before(sv.Leaf.NotAfter) {
			expired = append(expired, fmt.Sprintf("%s (expired %s)", sv.Name, sv.Leaf.NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	if len(expired) == 0 {
		return health.Check{Name: "expiry", OK: true, Detail: "no certificate served is expired"}
	}
	return health.Check{Name: "expiry", OK: false,
		Detail: "serving an expired certificate for " + strings.Join(expired, ", ") + ": clients refuse it; renew or replace it"}
}

// watchRenewals exports the renewal state of the certificates this core
// serves (every core reads it from PlatformDB, so a dead renewer shows on
// the others), judged by their own lifetime.
func (o *observability) watchRenewals() {
	o.metrics.WatchRenewals(func(ctx context.Context) ([]metrics.Renewal, error) {
		db := o.db.Load()
		if db == nil {
			return nil, fmt.Errorf("PlatformDB not open yet")
		}
		states, err := acme.LoadStates(ctx, db)
		if err != nil {
			return nil, err
		}
		served := map[string]certs.Served{}
		for _, sv := range o.cache.Served() {
			served[sv.Name] = sv
		}
		now := time.Now()
		out := make([]metrics.Renewal, 0, len(states))
		for host, s := range states {
			r := metrics.Renewal{Hostname: host, NextRenewal: s.NextRenewal, Failures: s.Failures, Paused: s.UnpauseURL != ""}
			if sv, ok := served[host]; ok && sv.Leaf != nil {
				c := health.Cert{NotBefore: sv.Leaf.NotBefore, NotAfter: sv.Leaf.NotAfter, Renewed: true, NextRenewal: s.NextRenewal}
				if s.ARISerial == sv.Leaf.SerialNumber.Text(16) && !s.ARIStart.IsZero() {
					r.ARIStart, r.ARIEnd, c.ARIEnd = s.ARIStart, s.ARIEnd, s.ARIEnd
				}
				r.Overdue = health.Judge(c, now).Attention
			}
			out = append(out, r)
		}
		return out, nil
	}, healthTimeout)
}
