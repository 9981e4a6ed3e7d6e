// Command report turns bench/run's raw results into the Markdown of
// docs/BENCHMARKS.md (also printed to stdout): per workload and system the
// median, min–max, p99 latency, the server's CPU time per operation and its
// RSS, with the ratios pryv-tls/peer; then the scale and memory figures.
//
// Inputs (tab-separated, written by bench/run):
//
//	-results: workload system run ops_per_s p99_ms cpu_us_per_op rss_kb errors
//	-scale:   measure system value unit
//	-meta:    key=value lines (date, machine, versions, mode ...)
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"strconv"
	"strings"
)

// workloads in table order, with what each measures.
var workloads = []struct{ id, title, measures string }{
	{"handshake", "full TLS 1.3 handshakes, 1 certificate",
		"new connections per second, each a full TLS 1.3 handshake (X25519 + the server's ECDSA P-256 signature, no resumption: no session cache in the client), closed right after; bench/cmd/tlsload; p99 is the connect + handshake time"},
	{"handshake-sni", "full TLS 1.3 handshakes, SNI set of N certificates",
		"the same with each connection asking for a random one of N hostnames, each with its own certificate and key; the client checks the leaf names the SNI it sent"},
	{"resume", "resumed TLS 1.3 handshakes",
		"new connections per second resuming a session ticket (PSK + ECDHE, no certificate, no signature); a connection that does not resume is an error"},
	{"http1", "HTTPS keep-alive requests, HTTP/1.1, through the reverse proxy",
		"wrk, 1 thread, 32 keep-alive connections, GET / proxied to the same small keep-alive backend on 127.0.0.1 (nginx: upstream keepalive; Caddy: reverse_proxy); p99 from wrk --latency"},
	{"http2", "HTTPS requests, HTTP/2, through the reverse proxy",
		"h2load, 1 thread, 8 connections x 16 concurrent streams, same backend; p99 from h2load's per-request log"},
	{"dns", "DNS A queries, random users among N",
		"dnsperf, UDP, 4 clients, up to 200 outstanding, random user<i>.<domain> A queries among the N users of the zone; pryv-tls's embedded DNS vs knotd serving the same zone. dnsperf 2.10 reports no percentile: the latency column is its mean (marked avg); errors are queries it counted lost (no answer within 1 s) or answered with another code than NOERROR"},
}

func init() {
	workloads = append(workloads, struct{ id, title, measures string }{"dns-do", "DNSSEC: DNS A queries with DO, random users among N",
		"the same queries with the DO bit (dnsperf -D): pryv-tls's zone is signed (dns.dnssec: true; one signature per answer RRset, made once per user and kept: a first pass through the queries made them), so every answer carries an RRSIG; knot's zone is not signed (its answers are the plain ones, with DO echoed), the reference for the cost of a DO query alone"})
}

var systems = []string{"pryv-tls", "nginx", "caddy", "knot"}

type result struct {
	rate, p99, cpu, rss float64
	errors              int64
	avg                 bool // p99 is a mean (dnsperf)
}

func main() {
	resultsFile := flag.String("results", "", "results.tsv")
	scaleFile := flag.String("scale", "", "scale.tsv")
	metaFile := flag.String("meta", "", "meta.txt")
	out := flag.String("out", "", "also write the Markdown here")
	flag.Parse()

	meta := map[string]string{}
	for _, f := range readTSV(*metaFile, "=") {
		if len(f) == 2 {
			meta[f[0]] = f[1]
		}
	}
	res := map[string]map[string][]result{} // workload -> system -> runs
	for _, f := range readTSV(*resultsFile, "\t") {
		if len(f) < 8 {
			continue
		}
		r := result{rate: num(f[3]), cpu: num(f[5]), rss: num(f[6])}
		p := f[4]
		if s, ok := strings.CutPrefix(p, "avg:"); ok {
			p, r.avg = s, true
		}
		r.p99 = num(p)
		r.errors, _ = strconv.ParseInt(f[7], 10, 64)
		if res[f[0]] == nil {
			res[f[0]] = map[string][]result{}
		}
		res[f[0]][f[1]] = append(res[f[0]][f[1]], r)
	}
	type scaleRow struct{ measure, unit string }
	var scaleOrder []scaleRow
	scale := map[string]map[string]string{}
	for _, f := range readTSV(*scaleFile, "\t") {
		if len(f) < 4 {
			continue
		}
		if scale[f[0]] == nil {
			scale[f[0]] = map[string]string{}
			scaleOrder = append(scaleOrder, scaleRow{f[0], f[3]})
		}
		scale[f[0]][f[1]] = f[2]
	}

	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# Benchmarks\n\n")
	w("pryv-tls against what a user would otherwise run on a core — nginx (+ certbot), Caddy, Knot DNS — on one machine, loopback only, ")
	w("with the same ECDSA P-256 certificate (leaf + intermediate), the same backend and the same zone. Made by `bench/run%s` ", meta["args"])
	w("(%s: %s s per run, %s run(s) per system, systems alternating).\n\n", meta["mode"], meta["secs"], meta["runs"])
	w("| | |\n|---|---|\n")
	for _, k := range []string{"date", "machine", "cpu", "nproc", "go", "pryv-tls", "nginx", "caddy", "knot", "wrk", "h2load", "dnsperf", "unavailable", "note"} {
		if v := meta[k]; v != "" {
			w("| %s | %s |\n", k, strings.ReplaceAll(v, "|", "\\|"))
		}
	}
	w("\n")
	w("Load generator, servers and backend share the machine's %s cores, so on most workloads the load generator is the bottleneck ", meta["nproc"])
	w("and ops/s says little: the **server CPU µs/op** column (utime+stime of the server's processes from /proc/<pid>/stat over the run, divided by the operations) ")
	w("is the fairer comparison. RSS is the server's resident memory at the end of its last run (nginx: master + 2 workers, summed, so pages they share are counted up to three times; the PSS rows below split shared pages among the processes). ")
	w("Ratios are pryv-tls ÷ peer: above 1 on ops/s and below 1 on CPU/op mean pryv-tls does better. ")
	w("The machine may be shared with other work (see the load average above): runs of one system can differ by a third in ops/s (the min–max column), ")
	w("far less in CPU/op; read a ratio inside that spread as a tie.\n\n")

	w("## Throughput and latency\n\n")
	w("| workload | system | ops/s median | min–max | p99 ms | server CPU µs/op | RSS MiB | pryv-tls ÷ peer (ops/s, CPU/op) |\n")
	w("|---|---|---:|---:|---:|---:|---:|---|\n")
	for _, wl := range workloads {
		bySys := res[wl.id]
		if len(bySys) == 0 {
			continue
		}
		title := wl.title
		if n := meta["n_"+wl.id]; n != "" {
			title = strings.Replace(title, " N", " "+n, 1)
		}
		ref, haveRef := summary(bySys["pryv-tls"])
		for _, sys := range systems {
			runs, ok := bySys[sys]
			if !ok {
				continue
			}
			s, _ := summary(runs)
			ratio := "—"
			if sys != "pryv-tls" && haveRef && s.rate > 0 && s.cpu > 0 {
				ratio = fmt.Sprintf("%.2f× ops/s, %.2f× CPU/op", ref.rate/s.rate, ref.cpu/s.cpu)
			}
			lat := fmt.Sprintf("%.2f", s.p99)
			if s.avg {
				lat += " (avg)"
			}
			errs := ""
			if s.errors > 0 {
				errs = fmt.Sprintf(" (%d errors)", s.errors)
			}
			w("| %s | %s | %.0f%s | %.0f–%.0f | %s | %.1f | %.1f | %s |\n", title, sys, s.rate, errs, s.min, s.max, lat, s.cpu, s.rss/1024, ratio)
			title = "″"
		}
	}
	w("\n")

	if len(scaleOrder) > 0 {
		w("## Scale and memory\n\n")
		w("| measure | unit | pryv-tls | nginx | caddy | knot |\n|---|---|---:|---:|---:|---:|\n")
		for _, r := range scaleOrder {
			row := scale[r.measure]
			w("| %s | %s |", r.measure, r.unit)
			for _, sys := range systems {
				v := row[sys]
				if v == "" {
					v = "—"
				}
				w(" %s |", v)
			}
			w("\n")
		}
		w("\n")
	}

	writeTargets(w, targets(res, scale, meta))

	w("## What each workload measures\n\n")
	for _, wl := range workloads {
		w("- **%s** (`%s`): %s.\n", wl.title, wl.id, wl.measures)
	}
	w("- **scale** (`scale-certs`, `scale-zone`): pryv-tls gets the SNI certificates through its control socket (POST /certs, what `pryv-tls certs import` does, 8 at a time): " +
		"\"import\" is until the last one is stored, \"served\" until the front answers every 50th hostname and the last one with its own certificate (the materialiser writes each one under letsEncrypt.tlsDir and swaps the SNI set); " +
		"\"restart\" is from the process start until the same. nginx gets one server block per hostname, Caddy one `tls { load }` folder of bundles; their \"restart\" is the same start-until-served. " +
		"The zone: users are written through the control socket (PUT /users/<name>, 32 at a time); \"one change\" is from a PUT of one more user (pryv-tls publishes a new zone: its own names rebuilt, the users' map shared with the watcher, copied once per burst) or a `knotc zone-reload` after appending a line to the zone file (knot reloads the whole zone; `knotc zone-set` would be incremental) until the name answers; " +
		"\"restart\" is from the process start until the last user answers.\n")
	w("- **certificate rotation** (`rotation`, in the scale table): bench/cmd/rotload imports a new certificate (ECDSA P-256, its own key) for one hostname through a core's control socket " +
		"(POST /certs, what `pryv-tls certs import` sends) and meanwhile makes full TLS handshakes with that SNI to each front, every 3 ms, until each one sends the new leaf (same SHA-256 fingerprint): " +
		"a rotation lasts from just before the import until the last front's matching handshake completed; 2 warm-up rotations, then N, 100 ms apart; p50/p99 by nearest rank. " +
		"The path measured: the PlatformDB write (an etcd commit: with 3 cores, 2 of the 3 members have the entry in their WAL, fsynced), the watch on each core, opening and checking the record, the swap of the SNI set; " +
		"the files under letsEncrypt.tlsDir and the rotation hook come after the swap and are not on this path. " +
		"\"of which the import\" is the POST's round trip alone (the write committed). 1 core: the pryv-tls above. " +
		"3 cores: a cluster on 127.0.0.1, 127.0.0.2 and 127.0.0.3 made as an operator makes one (`bootstrap init-ca-holder` on core1, then `bootstrap new-core` and `serve --bootstrap` per core, files for http.ssl, no ACME); " +
		"the import goes to core1 and a rotation lasts until all three serve it. The three members share this machine's one disk and 2 cores, which a real cluster does not. The target is a p99 under 250 ms on every core.\n")
	w("- **idle RSS**: right after start and the first users load, before any traffic: pryv-tls is a whole core (front + DNS + embedded etcd); nginx is master + 2 workers; the core replaces nginx + certbot + knot.\n")

	md := b.String()
	fmt.Print(md)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

type sum struct {
	rate, min, max, p99, cpu, rss float64
	errors                        int64
	avg                           bool
}

func summary(runs []result) (sum, bool) {
	if len(runs) == 0 {
		return sum{}, false
	}
	var rates, p99s, cpus []float64
	var s sum
	for _, r := range runs {
		rates, p99s, cpus = append(rates, r.rate), append(p99s, r.p99), append(cpus, r.cpu)
		s.errors += r.errors
		s.avg = s.avg || r.avg
	}
	s.rate, s.p99, s.cpu = median(rates), median(p99s), median(cpus)
	s.min, s.max = slices.Min(rates), slices.Max(rates)
	s.rss = runs[len(runs)-1].rss
	return s, true
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func num(s string) float64 {
	f, _ := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f
}

func readTSV(path, sep string) [][]string {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		log.Fatal(err)
	}
	defer func() { _ = f.Close() }() // read only
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if sep == "=" {
			k, v, _ := strings.Cut(line, "=")
			out = append(out, []string{k, v})
			continue
		}
		out = append(out, strings.Split(line, sep))
	}
	return out
}
