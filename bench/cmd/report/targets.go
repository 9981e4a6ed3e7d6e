package main

import (
	"fmt"
	"slices"
	"strings"
)

// target is one of the goals the project set itself (issue 7), checked
// against this run's numbers: what was measured, and whether it holds.
type target struct {
	goal, measured string
	met            *bool // nil: not measured in this run
}

// targets computes the goals from the medians of the throughput runs and the
// scale rows (measure -> system -> value).
func targets(res map[string]map[string][]result, scale map[string]map[string]string, meta map[string]string) []target {
	var ts []target
	pair := func(wl, peer string) (pt, p sum, ok bool) {
		pt, ok1 := summary(res[wl]["pryv-tls"])
		p, ok2 := summary(res[wl][peer])
		return pt, p, ok1 && ok2 && p.rate > 0 && p.cpu > 0
	}
	add := func(goal, measured string, met bool, ok bool) {
		if !ok {
			ts = append(ts, target{goal: goal, measured: "not measured in this run"})
			return
		}
		ts = append(ts, target{goal, measured, &met})
	}

	nSNI := meta["n_handshake-sni"]
	if nSNI == "" {
		nSNI = "N"
	}
	for _, wl := range []struct{ id, what string }{{"handshake", "1 certificate"}, {"handshake-sni", nSNI + " certificates"}} {
		pt, ng, ok := pair(wl.id, "nginx")
		add("full TLS 1.3 handshake ("+wl.what+"): server CPU ≤ nginx's",
			fmt.Sprintf("%.2f× nginx (%.0f vs %.0f µs)", pt.cpu/ng.cpu, pt.cpu, ng.cpu), pt.cpu <= ng.cpu, ok)
	}
	for _, wl := range []struct{ id, what string }{{"http1", "HTTP/1.1"}, {"http2", "HTTP/2"}} {
		pt, cd, okC := pair(wl.id, "caddy")
		_, ng, okN := pair(wl.id, "nginx")
		add("proxy, "+wl.what+": requests/s ≥ 1.2× Caddy's",
			fmt.Sprintf("%.2f× (%.0f vs %.0f)", pt.rate/cd.rate, pt.rate, cd.rate), pt.rate >= 1.2*cd.rate, okC)
		add("proxy, "+wl.what+": requests/s ≥ 0.6× nginx's",
			fmt.Sprintf("%.2f× (%.0f vs %.0f; CPU/request %.2f× nginx's)", pt.rate/ng.rate, pt.rate, ng.rate, pt.cpu/ng.cpu), pt.rate >= 0.6*ng.rate, okN)
		add("proxy, "+wl.what+": p99 no worse than Caddy's",
			fmt.Sprintf("%.1f vs %.1f ms", pt.p99, cd.p99), pt.p99 <= cd.p99, okC)
	}
	pt, kn, ok := pair("dns", "knot")
	add("DNS: server CPU per query ≤ 1.3× knot's",
		fmt.Sprintf("%.2f× (%.1f vs %.1f µs)", pt.cpu/kn.cpu, pt.cpu, kn.cpu), pt.cpu <= 1.3*kn.cpu, ok)
	signed, okS := summary(res["dns-do"]["pryv-tls"])
	add("DNSSEC: a signed answer's server CPU per query ≤ 1.5× the unsigned one's",
		fmt.Sprintf("%.2f× (%.1f vs %.1f µs)", signed.cpu/pt.cpu, signed.cpu, pt.cpu), signed.cpu <= 1.5*pt.cpu, okS && pt.cpu > 0)

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

	rss, ok := scaleValue(scale, "idle RSS", "pryv-tls")
	add("idle RSS of a whole core (front + DNS + embedded etcd) ≤ 40 MB",
		fmt.Sprintf("%.1f MiB = %.1f MB", rss, rss*1.048576), rss*1.048576 <= 40, ok)
	zone, ok := scaleValue(scale, "00,000-user zone: one change until answered", "pryv-tls")
	add("100,000-user zone: rebuilt (a change answered) in < 1 s", fmt.Sprintf("%.2f s", zone), zone < 1, ok)
	return ts
}

// scaleValue is the value of the first scale row whose measure contains sub.
func scaleValue(scale map[string]map[string]string, sub, sys string) (float64, bool) {
	for _, m := range sortedKeys(scale) {
		if strings.Contains(m, sub) {
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
	w("The goals set for this round (issue 7), against this run's medians. On a shared 2-core machine a ratio near its bound can fall either side from one run to the next.\n\n")
	w("| target | this run | met |\n|---|---|---|\n")
	for _, t := range ts {
		met := "—"
		if t.met != nil {
			met = "no"
			if *t.met {
				met = "yes"
			}
		}
		w("| %s | %s | %s |\n", t.goal, t.measured, met)
	}
	w("\n")
}
