// Package health serves a core's liveness and readiness endpoints: /healthz
// and /readyz on the metrics listener, FrontLive and FrontReady on the front
// (where /healthz and /readyz belong to the Pryv API upstream). Both are
// cheap enough to poll every second: the checks read state the daemon keeps
// up to date in the background, never the store. It also judges a
// certificate against its own lifetime (Judge), for status, the admin API
// and the metrics alike.
package health

import (
	"encoding/json"
	"net/http"
)

// The paths on the front.
const (
	FrontLive  = "/system/pryv-tls/healthz"
	FrontReady = "/system/pryv-tls/readyz"
)

// Check is one readiness condition.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Report is the body of a readiness answer.
type Report struct {
	Ready  bool    `json:"ready"`
	Checks []Check `json:"checks"`
}

// Live answers 200 "ok": the process serves HTTP.
func Live() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !getOrHead(w, r) {
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
}

// Ready answers the Report of checks as JSON: 200 when every check is OK,
// else 503. checks runs on every request and must not do I/O.
func Ready(checks func() []Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !getOrHead(w, r) {
			return
		}
		rep := Report{Ready: true, Checks: checks()}
		if rep.Checks == nil {
			rep.Checks = []Check{}
		}
		for _, c := range rep.Checks {
			rep.Ready = rep.Ready && c.OK
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !rep.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rep)
	})
}

func getOrHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "only GET and HEAD are allowed here", http.StatusMethodNotAllowed)
	return false
}
