// Command certgen makes the certificates of bench/run with internal/devpki:
// a throwaway root and intermediate (so every server sends a two-certificate
// chain, as with Let's Encrypt), the main ECDSA P-256 certificate every
// system serves, and -n SNI certificates, one per hostname h<i>.<sni-domain>,
// each with its own P-256 key.
//
// Layout under -dir:
//
//	ca.pem                      the root, for clients that verify
//	main/fullchain.pem          leaf + intermediate (nginx, Caddy, pryv-tls http.ssl)
//	main/privkey.pem
//	sni/<host>/fullchain.pem    per SNI hostname: the layout of pryv-tls's
//	sni/<host>/privkey.pem      letsEncrypt.tlsDir and of certbot's live/
//	sni-bundles/<host>.pem      chain + key in one file (Caddy's tls { load })
//	sni.txt                     the SNI hostnames, one a line
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/pryv/pryv-tls/internal/devpki"
)

func main() {
	dir := flag.String("dir", "", "output directory (required)")
	names := flag.String("names", "bench.example.com,*.bench.example.com,127.0.0.1", "comma-separated names of the main certificate")
	n := flag.Int("n", 0, "number of SNI certificates")
	sniDomain := flag.String("sni-domain", "sni.example.net", "SNI hostnames are h<i>.<sni-domain>")
	flag.Parse()
	if *dir == "" || *n < 0 || *n > 1_000_000 {
		log.Fatal("certgen: -dir is required and -n must be in [0, 1000000]")
	}
	root, err := devpki.NewCA("pryv-tls bench root")
	check(err)
	inter, err := root.NewIntermediate("pryv-tls bench intermediate")
	check(err)
	check(os.MkdirAll(*dir, 0o755))
	check(os.WriteFile(filepath.Join(*dir, "ca.pem"), root.CertPEM(), 0o644))

	main, err := inter.Issue(devpki.Leaf{Names: strings.Split(*names, ","), KeyType: "ec256"})
	check(err)
	writePair(filepath.Join(*dir, "main"), main)

	if *n == 0 {
		return
	}
	check(os.MkdirAll(filepath.Join(*dir, "sni-bundles"), 0o755))
	hosts := make([]string, *n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("h%d.%s", i, *sniDomain)
	}
	var wg sync.WaitGroup
	work := make(chan string)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range work {
				iss, err := inter.Issue(devpki.Leaf{Names: []string{h}, KeyType: "ec256"})
				check(err)
				writePair(filepath.Join(*dir, "sni", h), iss)
				bundle := append(append([]byte{}, iss.FullChain...), iss.KeyPEM...)
				check(os.WriteFile(filepath.Join(*dir, "sni-bundles", h+".pem"), bundle, 0o600))
			}
		}()
	}
	for _, h := range hosts {
		work <- h
	}
	close(work)
	wg.Wait()
	check(os.WriteFile(filepath.Join(*dir, "sni.txt"), []byte(strings.Join(hosts, "\n")+"\n"), 0o644))
}

func writePair(dir string, iss *devpki.Issued) {
	check(os.MkdirAll(dir, 0o755))
	check(os.WriteFile(filepath.Join(dir, "fullchain.pem"), iss.FullChain, 0o644))
	check(os.WriteFile(filepath.Join(dir, "privkey.pem"), iss.KeyPEM, 0o600))
}

func check(err error) {
	if err != nil {
		log.Fatal("certgen: ", err)
	}
}
