// Command certload gives a running pryv-tls the SNI certificates of certgen
// through its control socket: POST /certs (admin.ImportRequest), -c at a
// time. That is what "pryv-tls certs import" does, one process per
// certificate; this is the same path without 10,000 process starts. Each
// record goes to PlatformDB, and the materialiser writes it under
// letsEncrypt.tlsDir and swaps it into the SNI set.
//
// Then (or with -import=false, only) it waits until the front serves the
// right certificate for every -every'th hostname and the last one, by TLS
// handshakes on -front. It prints one line for bench/run:
//
//	imported=.. import_s=.. served_s=..
//
// served_s counts from the start of the command. Bounded: -timeout.
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pryv/pryv-tls/internal/admin"
)

func main() {
	sock := flag.String("socket", "", "control socket of the running core")
	dir := flag.String("dir", "", "certgen's output directory")
	front := flag.String("front", "", "the core's HTTPS address, to wait until it serves them (empty: do not wait)")
	doImport := flag.Bool("import", true, "import (false: only wait until they are served)")
	conc := flag.Int("c", 8, "concurrent imports")
	every := flag.Int("every", 50, "wait for every N-th hostname (and the last)")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	if *front != "" {
		host, _, err := net.SplitHostPort(*front)
		if err != nil || !net.ParseIP(host).IsLoopback() {
			log.Fatalf("certload: -front %s is not a loopback address", *front)
		}
	}
	b, err := os.ReadFile(filepath.Join(*dir, "sni.txt"))
	if err != nil {
		log.Fatal(err)
	}
	hosts := strings.Fields(string(b))
	start := time.Now()
	deadline := start.Add(*timeout)
	time.AfterFunc(*timeout+10*time.Second, func() { log.Fatal("certload: timeout") })

	importSecs := 0.0
	if *doImport {
		client := admin.SocketClient(*sock)
		client.Timeout = time.Minute
		var wg sync.WaitGroup
		work := make(chan string)
		for range *conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for h := range work {
					if err := importOne(client, *dir, h); err != nil {
						log.Fatalf("certload: %s: %v", h, err)
					}
				}
			}()
		}
		for _, h := range hosts {
			if time.Now().After(deadline) {
				log.Fatal("certload: timeout while importing")
			}
			work <- h
		}
		close(work)
		wg.Wait()
		importSecs = time.Since(start).Seconds()
	}

	servedSecs := 0.0
	if *front != "" {
		var want []string
		for i := 0; i < len(hosts); i += max(1, *every) {
			want = append(want, hosts[i])
		}
		want = append(want, hosts[len(hosts)-1])
		for len(want) > 0 {
			if time.Now().After(deadline) {
				log.Fatalf("certload: %d hostnames still not served (e.g. %s)", len(want), want[0])
			}
			var left []string
			for _, h := range want {
				if !serves(*front, h) {
					left = append(left, h)
				}
			}
			want = left
			if len(want) > 0 {
				time.Sleep(50 * time.Millisecond)
			}
		}
		servedSecs = time.Since(start).Seconds()
	}
	fmt.Printf("imported=%d import_s=%.3f served_s=%.3f\n", map[bool]int{true: len(hosts)}[*doImport], importSecs, servedSecs)
}

func importOne(client *http.Client, dir, host string) error {
	chain, err := os.ReadFile(filepath.Join(dir, "sni", host, "fullchain.pem"))
	if err != nil {
		return err
	}
	key, err := os.ReadFile(filepath.Join(dir, "sni", host, "privkey.pem"))
	if err != nil {
		return err
	}
	body, _ := json.Marshal(admin.ImportRequest{Hostname: host, Chain: string(chain), Key: string(key), Source: "import"})
	resp, err := client.Post("http://pryv-tls/certs", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s", resp.Status, msg)
	}
	return nil
}

// serves reports whether the front answers host's SNI with host's certificate.
func serves(addr, host string) bool {
	d := &net.Dialer{Timeout: 2 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: host, InsecureSkipVerify: true})
	if err != nil {
		return false
	}
	defer c.Close()
	pc := c.ConnectionState().PeerCertificates
	return len(pc) > 0 && slices.Contains(pc[0].DNSNames, host)
}
