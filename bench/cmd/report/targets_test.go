package main

import (
	"strings"
	"testing"
)

// TestTargets checks each of this round's goals against numbers on both
// sides of its bound, and that a row absent from the run is "not measured"
// rather than met or missed.
func TestTargets(t *testing.T) {
	run := func(rate, cpu float64) []result { return []result{{rate: rate, cpu: cpu, p99: 1}} }
	res := map[string]map[string][]result{
		"http1":     {"pryv-tls": run(800, 14.9), "nginx": run(1000, 10), "caddy": run(500, 30)},
		"http2":     {"pryv-tls": run(700, 18.1), "nginx": run(1000, 10)},
		"handshake": {"pryv-tls": run(100, 85), "nginx": run(100, 100)},
		"dns":       {"pryv-tls": run(100, 3), "knot": run(100, 2.9)},
	}
	scale := map[string]map[string]string{
		"idle RSS: 1 certificate, 10,000 users in the zone (pryv-tls, knot)": {"pryv-tls": "39.9", "knot": "11.7"},
		"100,000-user zone: RSS":                                 {"pryv-tls": "90.0", "knot": "71.1"},
		"100,000-user zone: RSS after restart":                   {"pryv-tls": "72.5", "knot": "39.7"},
		"100,000-user zone: restart until the last user answers": {"pryv-tls": "0.50", "knot": "0.11"},
		"10,000 certificates: RSS after restart":                 {"pryv-tls": "110", "caddy": "113"},
	}
	got := map[string]string{}
	for _, tg := range targets(res, scale, map[string]string{"n_scale-zone": "100,000", "n_scale-certs": "10,000"}) {
		met := "—"
		if tg.met != nil {
			met = map[bool]string{true: "yes", false: "no"}[*tg.met]
		}
		got[tg.goal] = met + " | " + tg.measured
	}
	for _, c := range []struct{ goal, want string }{
		{"proxy, HTTP/1.1, per request: server CPU ≤ 1.5× nginx's", "yes | 1.49× nginx"},
		{"proxy, HTTP/2, per request: server CPU ≤ 1.8× nginx's", "no | 1.81× nginx"},
		{"proxy, HTTP/1.1: requests/s ≥ 0.8× nginx's", "yes | 0.80×"},
		{"full TLS 1.3 handshake (1 certificate): server CPU ≤ 0.85× nginx's", "yes | 0.85× nginx"},
		{"DNS A query: server CPU ≤ 1× knot's", "no | 1.03× knot"},
		{"idle RSS of a whole core (front + DNS + embedded etcd, 10,000 users) ≤ 40 MiB", "yes | 39.9 MiB"},
		{"100,000-user zone: idle RSS (after a restart) ≤ 72 MiB", "no | 72.5 MiB (knot 71.1 after its reload)"},
		{"100,000-user zone: restart until the last user answers ≤ 0.5 s", "yes | 0.50 s (knot 0.11)"},
		{"10,000 certificates: RSS after restart ≤ Caddy's", "yes | 110.0 vs 113.0 MiB"},
		{"proxy, HTTP/2: requests/s ≥ 1.2× Caddy's", "— | not measured"},
		{"DNSSEC: a signed answer's server CPU per query ≤ 1.5× the unsigned one's", "— | not measured"},
	} {
		g, ok := got[c.goal]
		if !ok {
			t.Errorf("no target %q; have %v", c.goal, got)
			continue
		}
		if !strings.HasPrefix(g, c.want) {
			t.Errorf("%s: got %q, want it to start with %q", c.goal, g, c.want)
		}
	}
}
