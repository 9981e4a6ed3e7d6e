// Command dnsprobe asks a DNS server for a name's A record over UDP until it
// answers with one (every 10 ms, bounded by -timeout), and prints how long
// that took: "wait_s=..". bench/run uses it to time a zone load or rebuild:
// the command after the flags, if any, makes the change (a PUT on pryv-tls's
// control socket, "knotc zone-reload"); the clock starts before it runs.
//
//	dnsprobe -server 127.0.0.1:5353 -name user5.example.com [-- CMD ARGS...]
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/miekg/dns"
)

func main() {
	server := flag.String("server", "127.0.0.1:5353", "DNS server (loopback)")
	name := flag.String("name", "", "name to ask for (required)")
	want := flag.String("want", "", "answer to wait for (empty: any A record)")
	timeout := flag.Duration("timeout", 2*time.Minute, "give up after this long")
	flag.Parse()
	host, _, err := net.SplitHostPort(*server)
	if err != nil || !net.ParseIP(host).IsLoopback() || *name == "" {
		log.Fatal("dnsprobe: -server must be a loopback host:port and -name is required")
	}
	c := &dns.Client{Net: "udp", Timeout: 500 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(*name), dns.TypeA)
	start := time.Now()
	if args := flag.Args(); len(args) > 0 {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			log.Fatalf("dnsprobe: %v: %v", args, err)
		}
	}
	for time.Since(start) < *timeout {
		if r, _, err := c.Exchange(m, *server); err == nil {
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); ok && (*want == "" || a.A.String() == *want) {
					fmt.Printf("wait_s=%.3f\n", time.Since(start).Seconds())
					return
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	log.Fatalf("dnsprobe: no A record for %s from %s in %s", *name, *server, *timeout)
}
