// Command tlsload measures TLS handshakes per second against a server on
// loopback: -mode full opens every connection with no session cache (a full
// TLS 1.3 handshake: ECDHE + the server's ECDSA signature), -mode resume
// first gets a session ticket per worker, then opens every connection
// offering it (a PSK handshake; a connection that does not resume counts as
// an error). Each connection is closed right after the handshake.
//
// It is bounded in count (-n) and time (-d); it stops by itself. The client
// does not verify the chain (that is the client's CPU, not the server's,
// and the client shares two cores with the server): -check instead compares
// the leaf's first name with the SNI sent, which proves the SNI lookup.
//
// The result is one line of key=value pairs for bench/run:
//
//	ops=.. secs=.. rate=.. p50_ms=.. p99_ms=.. errors=.. first_error=..
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "server address (loopback)")
	sni := flag.String("sni", "bench.example.com", "server name sent")
	sniFile := flag.String("sni-file", "", "file of server names, one a line: each connection picks one at random (overrides -sni)")
	mode := flag.String("mode", "full", "full (no resumption) or resume")
	conc := flag.Int("c", 4, "concurrent connections")
	dur := flag.Duration("d", 10*time.Second, "how long to run at most")
	maxOps := flag.Int("n", 2_000_000, "how many handshakes at most")
	check := flag.Bool("check", false, "fail a handshake whose leaf does not name the SNI sent")
	curve := flag.String("curve", "x25519", "key exchange offered: x25519 (what OpenSSL 3.0 and Go agree on) or default (Go's, with X25519MLKEM768)")
	flag.Parse()
	if *maxOps <= 0 || *dur <= 0 || *dur > 10*time.Minute || *conc <= 0 || *conc > 256 {
		log.Fatal("tlsload: bad -n, -d or -c")
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("tlsload: %s is not a loopback address", *addr)
	}
	names := []string{*sni}
	if *sniFile != "" {
		b, err := os.ReadFile(*sniFile)
		if err != nil {
			log.Fatal(err)
		}
		names = strings.Fields(string(b))
		if len(names) == 0 {
			log.Fatalf("tlsload: %s has no names", *sniFile)
		}
	}
	// A watchdog: whatever happens, the process ends.
	time.AfterFunc(*dur+30*time.Second, func() { fmt.Println("ops=0 errors=1 first_error=watchdog"); os.Exit(3) })

	base := &tls.Config{
		InsecureSkipVerify: true, // see the package comment; -check looks at the leaf
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{"http/1.1"},
	}
	if *curve == "x25519" {
		base.CurvePreferences = []tls.CurveID{tls.X25519}
	}
	if *check {
		base.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !slices.Contains(cs.PeerCertificates[0].DNSNames, cs.ServerName) {
				return fmt.Errorf("leaf does not name %q", cs.ServerName)
			}
			return nil
		}
	}

	var (
		count, errs atomic.Int64
		firstErr    atomic.Value
		mu          sync.Mutex
		lat         []time.Duration
		wg          sync.WaitGroup
	)
	fail := func(err error) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	handshake := func(cfg *tls.Config) (*tls.Conn, time.Duration, error) {
		t0 := time.Now()
		raw, err := dialer.Dial("tcp", *addr)
		if err != nil {
			return nil, 0, err
		}
		c := tls.Client(raw, cfg)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if err := c.Handshake(); err != nil {
			c.Close()
			return nil, 0, err
		}
		return c, time.Since(t0), nil
	}
	// resumeWarmup makes a first connection and reads an HTTP answer, which
	// makes the client read (and cache) the server's session ticket.
	resumeWarmup := func(cfg *tls.Config) error {
		c, _, err := handshake(cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", cfg.ServerName); err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		return nil
	}

	deadline := time.Now().Add(*dur)
	start := time.Now()
	for w := range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano()))) //nolint:gosec // G115: a worker number and a seed, any bits do
			var cache tls.ClientSessionCache
			names := names // a resuming worker narrows it to one name
			if *mode == "resume" {
				cache = tls.NewLRUClientSessionCache(len(names))
				cfg := base.Clone()
				cfg.ClientSessionCache = cache
				cfg.ServerName = names[rng.IntN(len(names))]
				if err := resumeWarmup(cfg); err != nil {
					fail(err)
					return
				}
				names = []string{cfg.ServerName}
			}
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) && count.Add(1) <= int64(*maxOps) {
				cfg := base.Clone()
				cfg.ServerName = names[rng.IntN(len(names))]
				cfg.ClientSessionCache = cache // nil in full mode: nothing to resume
				c, d, err := handshake(cfg)
				if err != nil {
					fail(err)
					continue
				}
				if *mode == "resume" && !c.ConnectionState().DidResume {
					fail(errors.New("handshake did not resume"))
				} else if *mode == "full" && c.ConnectionState().DidResume {
					fail(errors.New("full handshake resumed"))
				} else {
					local = append(local, d)
				}
				c.Close()
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	fe, _ := firstErr.Load().(string)
	fmt.Printf("ops=%d secs=%.3f rate=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d first_error=%q\n",
		len(lat), secs, float64(len(lat))/secs, pct(0.50), pct(0.99), errs.Load(), fe)
}
