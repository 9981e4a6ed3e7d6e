// Command dnsload writes user -> core rows (user<from> .. user<from+users-1>)
// through a running core's control socket, -c at a time, and a dnsperf query
// file of random users among user0 .. user<from+users-1>, for bench/run.
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
	"time"

	"github.com/pryv/pryv-tls/internal/admin"
)

func main() {
	sock := flag.String("socket", "", "control socket of the running core")
	n := flag.Int("users", 10000, "number of users")
	from := flag.Int("from", 0, "first user number")
	conc := flag.Int("c", 16, "concurrent requests")
	core := flag.String("core", "core1", "core id the users are put on")
	domain := flag.String("domain", "mc.example.com", "the zone")
	queries := flag.String("queries", "", "write a dnsperf query file here")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	time.AfterFunc(*timeout, func() { log.Fatal("dnsload: timeout") })
	client := admin.SocketClient(*sock)
	var wg sync.WaitGroup
	work := make(chan int)
	for range max(1, *conc) {
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
	start := time.Now()
	for i := range *n {
		work <- *from + i
	}
	close(work)
	wg.Wait()
	fmt.Printf("users=%d load_s=%.3f\n", *n, time.Since(start).Seconds())
	if *queries != "" {
		var b bytes.Buffer
		for range 100000 {
			fmt.Fprintf(&b, "user%d.%s A\n", rand.IntN(*from+*n), *domain)
		}
		if err := os.WriteFile(*queries, b.Bytes(), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
