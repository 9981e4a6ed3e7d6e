// Command dnsload writes N user -> core rows through a running core's
// control socket and a dnsperf query file of random users, for bench/dns.sh.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"

	"github.com/pryv/pryv-tls/internal/admin"
)

func main() {
	sock := flag.String("socket", "", "control socket of the running core")
	n := flag.Int("users", 10000, "number of users")
	core := flag.String("core", "core1", "core id the users are put on")
	domain := flag.String("domain", "mc.example.com", "the zone")
	queries := flag.String("queries", "", "write a dnsperf query file here")
	flag.Parse()
	client := admin.SocketClient(*sock)
	var wg sync.WaitGroup
	work := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				body := bytes.NewReader([]byte(fmt.Sprintf(`{"core":%q}`, *core)))
				req, _ := http.NewRequest("PUT", fmt.Sprintf("http://pryv-tls/users/user%d", i), body)
				resp, err := client.Do(req)
				if err != nil {
					log.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					log.Fatalf("user%d: %s", i, resp.Status)
				}
			}
		}()
	}
	for i := range *n {
		work <- i
	}
	close(work)
	wg.Wait()
	if *queries != "" {
		var b bytes.Buffer
		for range 100000 {
			fmt.Fprintf(&b, "user%d.%s A\n", rand.IntN(*n), *domain)
		}
		if err := os.WriteFile(*queries, b.Bytes(), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
