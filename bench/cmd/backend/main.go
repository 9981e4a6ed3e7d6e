// Command backend is the small upstream every system proxies to in bench/run:
// HTTP/1.1 keep-alive on loopback, answering every request with the same
// small JSON body (the size of a typical Pryv API error or short answer). It
// runs until killed, or -max at most.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"strconv"
	"time"
)

const body = `{"meta":{"apiVersion":"1.9.0","serverTime":1700000000.0},"events":[{"id":"e1","streamIds":["bench"],"type":"note/txt","content":"hello"}]}`

func main() {
	addr := flag.String("addr", "127.0.0.1:3000", "listen address (loopback)")
	maxLife := flag.Duration("max", 2*time.Hour, "exit after this long whatever happens")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("backend: %s is not a loopback address", *addr)
	}
	time.AfterFunc(*maxLife, func() { log.Fatal("backend: -max reached") })
	length := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd["Content-Type"] = []string{"application/json"}
		hd["Content-Length"] = []string{length}
		_, _ = w.Write([]byte(body))
	})
	srv := &http.Server{Addr: *addr, Handler: h, IdleTimeout: 5 * time.Minute, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
