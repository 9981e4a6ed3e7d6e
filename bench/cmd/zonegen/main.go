// Command zonegen writes, for knotd, the zone pryv-tls's embedded DNS builds
// for -users users on one core: the apex SOA and NS, core.<domain>, the core's
// own name, the reserved names (lsc, reg, access, mfa) and user<i>.<domain>
// A <ip> for i in [0, users). bench/dnsload loads the same users into
// pryv-tls (user<i> -> core1, whose ip is the same).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"os"
)

func main() {
	out := flag.String("out", "", "zone file to write (required)")
	domain := flag.String("domain", "bench.example.com", "the zone")
	users := flag.Int("users", 10000, "number of users")
	ip := flag.String("ip", "127.0.0.10", "the core's address every user answers")
	core := flag.String("core", "core1", "the core's id")
	ttl := flag.Int("ttl", 300, "TTL (dns.defaultTTL)")
	serial := flag.Int("serial", 1, "SOA serial")
	flag.Parse()
	if *out == "" || *users < 0 || *users > 10_000_000 {
		log.Fatal("zonegen: -out is required, -users in [0, 10000000]")
	}
	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	// w keeps its first write error and Flush returns it: the Fprintf
	// answers below add nothing.
	w := bufio.NewWriterSize(f, 1<<20)
	_, _ = fmt.Fprintf(w, "$ORIGIN %s.\n$TTL %d\n", *domain, *ttl)
	_, _ = fmt.Fprintf(w, "@ IN SOA core.%s. hostmaster.%s. %d 3600 600 1209600 %d\n", *domain, *domain, *serial, *ttl)
	_, _ = fmt.Fprintf(w, "@ IN NS core.%s.\n", *domain)
	for _, n := range []string{"core", *core, "lsc", "reg", "access", "mfa"} {
		_, _ = fmt.Fprintf(w, "%s IN A %s\n", n, *ip)
	}
	for i := range *users {
		_, _ = fmt.Fprintf(w, "user%d IN A %s\n", i, *ip)
	}
	if err := w.Flush(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}
