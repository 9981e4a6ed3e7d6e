// Command rotload measures certificate rotation latency: from the write into
// PlatformDB until the new certificate is on the wire, on one core or on
// every core of a cluster.
//
// Each rotation imports a fresh certificate for -host through the control
// socket of the core it writes on (POST /certs, admin.ImportRequest: what
// "pryv-tls certs import" sends), and meanwhile makes TLS handshakes with SNI
// -host on every address of -fronts until each serves a leaf with the new
// certificate's SHA-256 fingerprint. A rotation's latency runs from just
// before the POST until the last front's matching handshake completed (the
// client has the new certificate): the max over the fronts. The clock starts
// before the POST, and the handshakes start with it, since a core may serve
// the record before the writer has its answer. Resolution: -poll plus one
// handshake. The handshakes are full ones (no session cache: a resumed one
// carries no certificate) and the client does not verify the chain (its CPU
// is not what is measured); the fingerprint is the check.
//
// The first -warmup rotations (more time each: -warmup-timeout) are not
// counted: they make sure every front already serves -host from PlatformDB.
// Rotations are -gap apart, so each one meets a settled core (the files and
// the rotation hook of the previous one done), as a real rotation would.
//
// One line of key=value pairs for bench/run:
//
//	asked=.. ops=.. p50_ms=.. p99_ms=.. max_ms=.. first_p50_ms=.. write_p50_ms=.. write_p99_ms=.. front_p50_ms=a/b/c front_p99_ms=a/b/c errors=.. first_error=..
//
// ops is the number of rotations served everywhere in time (fewer than asked
// when -max cut the run short); p50/p99/max over
// those (nearest rank); first_ is the first front to serve it; write_ is the
// POST's round trip (the record committed by PlatformDB's quorum); front_ is
// per front, in -fronts order. A rotation not served by every front within
// -timeout is an error, and not in the percentiles.
//
// With -wait it only waits until every front serves a leaf naming -host
// (whatever its issuer; no import) and prints "wait_s=..": bench/run uses it
// to know a joining core has caught up.
//
// Bounded: -n rotations, -timeout each, -max overall (no rotation starts
// after it), and a watchdog. Only loopback fronts.
package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/devpki"
)

func main() {
	sock := flag.String("socket", "", "control socket of the core that writes (required unless -wait)")
	frontList := flag.String("fronts", "", "comma-separated loopback HTTPS addresses that must serve the new certificate")
	host := flag.String("host", "rotation.bench.example.com", "hostname rotated, and the SNI sent")
	n := flag.Int("n", 100, "rotations measured")
	warmup := flag.Int("warmup", 2, "rotations made first, not measured")
	timeout := flag.Duration("timeout", 5*time.Second, "a rotation not served by every front within this long is an error")
	warmupTimeout := flag.Duration("warmup-timeout", 60*time.Second, "the same for a warm-up rotation")
	maxDur := flag.Duration("max", 90*time.Second, "no rotation starts after this long")
	gap := flag.Duration("gap", 100*time.Millisecond, "pause between rotations")
	poll := flag.Duration("poll", 3*time.Millisecond, "pause between two handshakes to one front")
	samplesFile := flag.String("samples", "", "also write each measured rotation here: ms since the start of the run, write, served by all, by each front (tab-separated)")
	wait := flag.Bool("wait", false, "only wait until every front serves a leaf naming -host (for -timeout); prints wait_s")
	flag.Parse()

	var fronts []string
	for _, f := range strings.Split(*frontList, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		h, _, err := net.SplitHostPort(f)
		if err != nil || net.ParseIP(h) == nil || !net.ParseIP(h).IsLoopback() {
			log.Fatalf("rotload: front %q is not a loopback host:port", f)
		}
		fronts = append(fronts, f)
	}
	switch {
	case len(fronts) == 0 || len(fronts) > 16:
		log.Fatal("rotload: -fronts needs 1 to 16 addresses")
	case *host == "" || strings.ContainsAny(*host, "*/ "):
		log.Fatal("rotload: -host must be a plain hostname")
	case *n < 0 || *n > 10000 || *warmup < 0 || *warmup > 100:
		log.Fatal("rotload: -n must be in [0, 10000] and -warmup in [0, 100]")
	case *timeout <= 0 || *timeout > 5*time.Minute || *warmupTimeout <= 0 || *warmupTimeout > 10*time.Minute:
		log.Fatal("rotload: -timeout and -warmup-timeout must be positive, at most 5 and 10 minutes")
	case *maxDur <= 0 || *maxDur > 30*time.Minute || *gap < 0 || *gap > time.Minute || *poll < 0 || *poll > time.Second:
		log.Fatal("rotload: bad -max, -gap or -poll")
	case !*wait && *sock == "":
		log.Fatal("rotload: -socket is required")
	}

	if *wait {
		time.AfterFunc(*timeout+10*time.Second, func() { log.Fatal("rotload: watchdog") })
		start := time.Now()
		names := func(leaf []byte, dns []string) bool { return slices.Contains(dns, *host) }
		errs := waitAll(fronts, *host, names, start.Add(*timeout), *poll)
		for i, err := range errs {
			if err != nil {
				log.Fatalf("rotload: %s does not serve %s: %v", fronts[i], *host, err)
			}
		}
		fmt.Printf("wait_s=%.3f\n", time.Since(start).Seconds())
		return
	}

	// The watchdog: whatever happens, the process ends.
	worst := *maxDur + time.Duration(*warmup)*(*warmupTimeout) + *timeout + 30*time.Second
	time.AfterFunc(worst, func() { fmt.Println("ops=0 errors=1 first_error=watchdog"); os.Exit(3) })

	// Every certificate is made before the clock runs.
	root, err := devpki.NewCA("pryv-tls rotload root")
	check(err)
	inter, err := root.NewIntermediate("pryv-tls rotload intermediate")
	check(err)
	issued := make([]*devpki.Issued, *warmup+*n)
	for i := range issued {
		issued[i], err = inter.Issue(devpki.Leaf{Names: []string{*host}, KeyType: "ec256"})
		check(err)
	}

	client := admin.SocketClient(*sock)
	var samples *os.File
	if *samplesFile != "" {
		samples, err = os.Create(*samplesFile)
		check(err)
		defer func() { check(samples.Close()) }()
		_, err = fmt.Fprintf(samples, "# at_ms\twrite_ms\tall_ms\t%s (ms)\n", strings.Join(fronts, "\t"))
		check(err)
	}
	var (
		total, first, write []time.Duration
		perFront            = make([][]time.Duration, len(fronts))
		errCount            int
		firstErr            string
	)
	fail := func(i int, err error) {
		errCount++
		if firstErr == "" {
			firstErr = strings.ReplaceAll(fmt.Sprintf("rotation %d: %v", i, err), " ", "_")
		}
	}
	begin := time.Now()
	for i, is := range issued {
		measured := i >= *warmup
		if measured && time.Since(begin) > *maxDur {
			break // fewer than asked: ops < asked says so
		}
		limit := *timeout
		if !measured {
			limit = *warmupTimeout
		}
		at := time.Since(begin)
		r, err := rotate(client, fronts, *host, is, limit, *poll)
		switch {
		case err != nil && measured:
			fail(i-*warmup, err)
		case err != nil:
			log.Fatalf("rotload: warm-up rotation %d: %v", i, err)
		case measured:
			total = append(total, r.total)
			first = append(first, r.first)
			write = append(write, r.write)
			for f, d := range r.fronts {
				perFront[f] = append(perFront[f], d)
			}
			if samples != nil {
				line := []string{ms(at), ms(r.write), ms(r.total)}
				for _, d := range r.fronts {
					line = append(line, ms(d))
				}
				_, err := fmt.Fprintln(samples, strings.Join(line, "\t"))
				check(err)
			}
		}
		time.Sleep(*gap)
	}

	var fp50, fp99 []string
	for _, d := range perFront {
		fp50, fp99 = append(fp50, ms(pct(d, 0.50))), append(fp99, ms(pct(d, 0.99)))
	}
	fmt.Printf("asked=%d ops=%d p50_ms=%s p99_ms=%s max_ms=%s first_p50_ms=%s write_p50_ms=%s write_p99_ms=%s front_p50_ms=%s front_p99_ms=%s errors=%d first_error=%s\n",
		*n, len(total), ms(pct(total, 0.50)), ms(pct(total, 0.99)), ms(pct(total, 1)), ms(pct(first, 0.50)),
		ms(pct(write, 0.50)), ms(pct(write, 0.99)), strings.Join(fp50, "/"), strings.Join(fp99, "/"), errCount, firstErr)
}

type rotation struct {
	total, first, write time.Duration
	fronts              []time.Duration
}

// rotate imports is and waits until every front serves it.
func rotate(client *http.Client, fronts []string, host string, is *devpki.Issued, limit, poll time.Duration) (rotation, error) {
	want := sha256.Sum256(is.Cert.Raw)
	body, err := json.Marshal(admin.ImportRequest{Hostname: host, Chain: string(is.FullChain), Key: string(is.KeyPEM), Source: "import"})
	if err != nil {
		return rotation{}, err
	}
	client.Timeout = limit
	start := time.Now()
	deadline := start.Add(limit)

	type result struct {
		errs []error
		at   []time.Duration
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.at = make([]time.Duration, len(fronts))
		match := func(leaf []byte, _ []string) bool { return sha256.Sum256(leaf) == want }
		r.errs = waitAllTimed(fronts, host, match, deadline, poll, start, r.at)
		done <- r
	}()

	var writeErr error
	resp, err := client.Post("http://pryv-tls/certs", "application/json", bytes.NewReader(body))
	// The control socket answers "503 starting" until the core is wired
	// (decision 0019): a core still starting is waited for, bounded.
	for err == nil && resp.StatusCode == http.StatusServiceUnavailable && time.Now().Before(deadline) {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if !bytes.Contains(msg, []byte(`"starting"`)) {
			resp.Body = io.NopCloser(bytes.NewReader(msg))
			break
		}
		time.Sleep(100 * time.Millisecond)
		resp, err = client.Post("http://pryv-tls/certs", "application/json", bytes.NewReader(body))
	}
	writeTook := time.Since(start)
	if err != nil {
		writeErr = err
	} else {
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			writeErr = fmt.Errorf("import: %s: %s", resp.Status, bytes.TrimSpace(msg))
		}
		resp.Body.Close()
	}
	r := <-done // bounded by the deadline
	if writeErr != nil {
		return rotation{}, writeErr
	}
	for i, err := range r.errs {
		if err != nil {
			return rotation{}, fmt.Errorf("%s: %w", fronts[i], err)
		}
	}
	return rotation{total: slices.Max(r.at), first: slices.Min(r.at), write: writeTook, fronts: r.at}, nil
}

// waitAll waits until every front's leaf for host satisfies ok.
func waitAll(fronts []string, host string, ok func(leaf []byte, dnsNames []string) bool, deadline time.Time, poll time.Duration) []error {
	return waitAllTimed(fronts, host, ok, deadline, poll, time.Now(), make([]time.Duration, len(fronts)))
}

// waitAllTimed is waitAll that also records, in at, when (since start) each
// front's first satisfying handshake completed.
func waitAllTimed(fronts []string, host string, ok func(leaf []byte, dnsNames []string) bool, deadline time.Time, poll time.Duration, start time.Time, at []time.Duration) []error {
	errs := make([]error, len(fronts))
	var wg sync.WaitGroup
	for i, addr := range fronts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := errors.New("no handshake made")
			for time.Now().Before(deadline) {
				leaf, dns, err := leafOf(addr, host, deadline)
				if err == nil && ok(leaf, dns) {
					at[i] = time.Since(start)
					return
				}
				if err != nil {
					last = err
				} else {
					last = errors.New("still the previous certificate")
				}
				time.Sleep(poll)
			}
			errs[i] = fmt.Errorf("not served in time (%w)", last)
		}()
	}
	wg.Wait()
	return errs
}

var base = &tls.Config{
	InsecureSkipVerify: true, // see the package comment: the fingerprint is the check
	MinVersion:         tls.VersionTLS13,
	CurvePreferences:   []tls.CurveID{tls.X25519},
	NextProtos:         []string{"http/1.1"},
}

// leafOf makes one full handshake and returns the leaf the front sent.
func leafOf(addr, host string, deadline time.Time) ([]byte, []string, error) {
	d := &net.Dialer{Timeout: 2 * time.Second, Deadline: deadline}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	defer raw.Close()
	cfg := base.Clone()
	cfg.ServerName = host
	c := tls.Client(raw, cfg)
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if err := c.Handshake(); err != nil {
		return nil, nil, err
	}
	pc := c.ConnectionState().PeerCertificates
	if len(pc) == 0 {
		return nil, nil, errors.New("no certificate")
	}
	return pc[0].Raw, pc[0].DNSNames, nil
}

// pct is the nearest-rank percentile (q = 1: the max); 0 for no samples.
func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func check(err error) {
	if err != nil {
		log.Fatal("rotload: ", err)
	}
}
