package main

import (
	"fmt"
	"slices"
	"strings"
)

// target is one of the goals the project set itself, checked against this
// run's numbers: what was measured, and whether it holds. round says which
// issue set it: this round's (issue 16) first, then the earlier ones kept.
type target struct {
	goal, measured string
	round          string
	met            *bool // nil: not measured in this run
}

// thisRound names the issue whose column the first targets are.
const thisRound = "issue 16"

// targets computes the goals from the medians of the throughput runs and the
// scale rows (measure -> system -> value).
func targets(res map[string]map[string][]result, scale map[string]map[string]string, meta map[string]string) []target {
	var ts []target
	pair := func(wl, peer string) (pt, p sum, ok bool) {
		pt, ok1 := summary(res[wl]["pryv-tls"])
		p, ok2 := summary(res[wl][peer])
		return pt, p, ok1 && ok2 && p.rate > 0 && p.cpu > 0
	}
	round := thisRound
	add := func(goal, measured string, met bool, ok bool) {
		if !ok {
			ts = append(ts, target{goal: goal, measured: "not measured in this run", round: round})
			return
		}
		ts = append(ts, target{goal, measured, round, &met})
	}
	cpuRatio := func(wl, what, peer string, bound float64) {
		pt, p, ok := pair(wl, peer)
		add(fmt.Sprintf("%s: server CPU ≤ %.2g× %s's", what, bound, peer),
			fmt.Sprintf("%.2f× %s (%.1f vs %.1f µs)", pt.cpu/p.cpu, peer, pt.cpu, p.cpu), pt.cpu <= bound*p.cpu, ok)
	}

	// This round's column (issue 16).
	cpuRatio("http1", "proxy, HTTP/1.1, per request", "nginx", 1.5)
	cpuRatio("http2", "proxy, HTTP/2, per request", "nginx", 1.8)
	pt, ng, ok := pair("http1", "nginx")
	add("proxy, HTTP/1.1: requests/s ≥ 0.8× nginx's",
		fmt.Sprintf("%.2f× (%.0f vs %.0f)", pt.rate/ng.rate, pt.rate, ng.rate), pt.rate >= 0.8*ng.rate, ok)
	cpuRatio("handshake", "full TLS 1.3 handshake (1 certificate)", "nginx", 0.85)
	cpuRatio("dns", "DNS A query", "knot", 1.0)
	rss, ok := scaleValue(scale, "idle RSS", "pryv-tls")
	add("idle RSS of a whole core (front + DNS + embedded etcd, 10,000 users) ≤ 40 MiB",
		fmt.Sprintf("%.1f MiB", rss), rss <= 40, ok)
	nb := meta["n_scale-zone"]
	if nb == "" {
		nb = "N"
	}
	zrss, ok := scaleSuffix(scale, "-user zone: RSS after restart", "pryv-tls")
	kn, _ := scaleSuffix(scale, "-user zone: RSS", "knot")
	add(nb+"-user zone: idle RSS (after a restart) ≤ 72 MiB",
		fmt.Sprintf("%.1f MiB (knot %.1f after its reload)", zrss, kn), zrss <= 72, ok)
	zt, ok := scaleSuffix(scale, "-user zone: restart until the last user answers", "pryv-tls")
	kt, _ := scaleSuffix(scale, "-user zone: restart until the last user answers", "knot")
	add(nb+"-user zone: restart until the last user answers ≤ 0.5 s",
		fmt.Sprintf("%.2f s (knot %.2f)", zt, kt), zt <= 0.5, ok)
	crss, ok1 := scaleSuffix(scale, "certificates: RSS after restart", "pryv-tls")
	ccd, ok2 := scaleSuffix(scale, "certificates: RSS after restart", "caddy")
	nc := meta["n_scale-certs"]
	if nc == "" {
		nc = "N"
	}
	add(nc+" certificates: RSS after restart ≤ Caddy's",
		fmt.Sprintf("%.1f vs %.1f MiB (%.2f×)", crss, ccd, crss/ccd), crss <= ccd, ok1 && ok2 && ccd > 0)

	// Kept from earlier rounds (issues 7 and 15).
	round = "earlier"
	nSNI := meta["n_handshake-sni"]
	if nSNI == "" {
		nSNI = "N"
	}
	cpuRatio("handshake-sni", "full TLS 1.3 handshake ("+nSNI+" certificates)", "nginx", 1)
	for _, wl := range []struct{ id, what string }{{"http1", "HTTP/1.1"}, {"http2", "HTTP/2"}} {
		pt, cd, okC := pair(wl.id, "caddy")
		add("proxy, "+wl.what+": requests/s ≥ 1.2× Caddy's",
			fmt.Sprintf("%.2f× (%.0f vs %.0f)", pt.rate/cd.rate, pt.rate, cd.rate), pt.rate >= 1.2*cd.rate, okC)
		add("proxy, "+wl.what+": p99 no worse than Caddy's",
			fmt.Sprintf("%.1f vs %.1f ms", pt.p99, cd.p99), pt.p99 <= cd.p99, okC)
	}
	unsigned, okU := summary(res["dns"]["pryv-tls"])
	signed, okS := summary(res["dns-do"]["pryv-tls"])
	add("DNSSEC: a signed answer's server CPU per query ≤ 1.5× the unsigned one's",
		fmt.Sprintf("%.2f× (%.1f vs %.1f µs)", signed.cpu/unsigned.cpu, signed.cpu, unsigned.cpu), signed.cpu <= 1.5*unsigned.cpu, okS && okU && unsigned.cpu > 0)

	// Rotation: the p99 of each "certificate rotation, ... (p50 / p99 / max ...)" row.
	var rot []string
	worst, seen := 0.0, false
	for _, m := range sortedKeys(scale) {
		if !strings.HasPrefix(m, "certificate rotation, ") || !strings.Contains(m, "(p50 / p99 / max") {
			continue
		}
		f := strings.Split(scale[m]["pryv-tls"], "/")
		if len(f) < 2 {
			continue
		}
		p99 := num(f[1])
		seen = true
		worst = max(worst, p99)
		where, _, _ := strings.Cut(strings.TrimPrefix(m, "certificate rotation, "), " (")
		rot = append(rot, fmt.Sprintf("%s: %.0f ms", where, p99))
	}
	add("certificate rotation: p99 < 250 ms to every core", strings.Join(rot, "; "), worst < 250, seen)
	zone, ok := scaleSuffix(scale, "-user zone: one change until answered", "pryv-tls")
	add(nb+"-user zone: rebuilt (a change answered) in < 1 s", fmt.Sprintf("%.2f s", zone), zone < 1, ok)
	return ts
}

// scaleValue is the value of the first scale row whose measure contains sub.
func scaleValue(scale map[string]map[string]string, sub, sys string) (float64, bool) {
	return scaleFirst(scale, sys, func(m string) bool { return strings.Contains(m, sub) })
}

// scaleSuffix is the value of the first scale row whose measure ends with
// suffix: "-user zone: RSS" is not "-user zone: RSS after restart".
func scaleSuffix(scale map[string]map[string]string, suffix, sys string) (float64, bool) {
	return scaleFirst(scale, sys, func(m string) bool { return strings.HasSuffix(m, suffix) })
}

func scaleFirst(scale map[string]map[string]string, sys string, match func(string) bool) (float64, bool) {
	for _, m := range sortedKeys(scale) {
		if match(m) {
			if v, ok := scale[m][sys]; ok && v != "" {
				return num(v), true
			}
		}
	}
	return 0, false
}

func sortedKeys(m map[string]map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func writeTargets(w func(string, ...any), ts []target) {
	w("## Targets\n\n")
	w("This round's goals (%s's column) first, then the goals of earlier rounds that still hold, against this run's medians. "+
		"Ratios are pryv-tls ÷ peer. On a shared 2-core machine a ratio near its bound can fall either side from one run to the next.\n\n", thisRound)
	w("| round | target | this run | met |\n|---|---|---|---|\n")
	for _, t := range ts {
		met := "—"
		if t.met != nil {
			met = "no"
			if *t.met {
				met = "yes"
			}
		}
		w("| %s | %s | %s | %s |\n", t.round, t.goal, t.measured, met)
	}
	w("\n")
}
