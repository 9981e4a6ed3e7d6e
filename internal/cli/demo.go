package cli

import (
	"context"
	_ "embed"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/template"
	"time"

	"github.com/pryv/pryv-tls/internal/daemon"
	"github.com/pryv/pryv-tls/internal/devpki"
)

//go:embed demo.yml
var demoConfig string

// demo runs the real front, on the real configuration loader, against two
// small in-process upstreams standing in for the Pryv API and HFS, with a
// certificate from a throwaway local CA: everything pryv-tls does on a core
// except talking to the internet.
func demo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8443", "address of the HTTPS front")
	dir := fs.String("dir", "", "`DIR` for the demo's files (default var-pryv/demo, or var-pryv/demo-acme with --acme)")
	withACME := fs.Bool("acme", false, "Strategy A: obtain the certificate from an in-process Pebble (a real ACME server) instead of files; in a -tags demo build only")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *dir == "" {
		*dir = "var-pryv/demo"
		if *withACME {
			*dir = "var-pryv/demo-acme"
		}
	}
	if *withACME {
		return demoACME(*addr, *dir, stdout, stderr)
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		fmt.Fprintf(stderr, "demo: --addr %q: %v\n", *addr, err)
		return exitUsage
	}
	log, _ := newLogger(stderr, "text", "info")
	absDir, err := filepath.Abs(*dir)
	if err == nil {
		err = writeDemoPKI(absDir)
	}
	if err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return exitFailed
	}

	apiAddr, stopAPI, err := demoUpstream("api")
	if err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return exitFailed
	}
	defer stopAPI()
	hfsAddr, stopHFS, err := demoUpstream("hfs")
	if err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return exitFailed
	}
	defer stopHFS()

	cfgPath := filepath.Join(absDir, "demo.yml")
	f, err := os.Create(cfgPath)
	if err == nil {
		err = template.Must(template.New("demo").Parse(demoConfig)).Execute(f, map[string]string{
			"IP": host, "Port": port, "Dir": absDir, "API": apiAddr, "HFS": hfsAddr,
		})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "demo: writing configuration:", err)
		return exitFailed
	}
	cfg, code := loadConfig([]string{cfgPath}, stderr)
	if cfg == nil {
		return code
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ca := filepath.Join(*dir, "ca.pem")
	err = daemon.Run(ctx, cfg, daemon.Options{Logger: log, Ready: func(bound string) {
		_, p, _ := net.SplitHostPort(bound)
		base := "https://localhost:" + p
		fmt.Fprintf(stdout, `
pryv-tls demo: HTTPS front on %[1]s, certificate from %[2]s
  configuration: %[3]s
  curl --cacert %[4]s %[1]s/alice/events                 # -> the API upstream
  curl --cacert %[4]s %[1]s/alice/events/e1/series       # -> the HFS upstream
  Replace %[2]s/fullchain.pem and privkey.pem (or delete them and run the demo
  again): new handshakes get the new certificate without a restart.
  Ctrl-C to stop.

`, base, *dir, cfgPath, ca)
	}})
	if err != nil {
		log.Error("demo failed", "error", err.Error())
		return exitFailed
	}
	return exitOK
}

// writeDemoPKI makes a local CA and a localhost certificate, unless a
// previous run left them (so a browser exception survives restarts).
func writeDemoPKI(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "fullchain.pem")); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := devpki.NewCA("pryv-tls demo CA")
	if err != nil {
		return err
	}
	leaf, err := ca.Issue(devpki.Leaf{Names: []string{"localhost", "127.0.0.1", "::1"}})
	if err != nil {
		return err
	}
	for _, w := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"ca.pem", ca.CertPEM(), 0o644},
		{"privkey.pem", leaf.KeyPEM, 0o600},
		{"fullchain.pem", leaf.FullChain, 0o644},
	} {
		if err := os.WriteFile(filepath.Join(dir, w.name), w.data, w.mode); err != nil {
			return err
		}
	}
	return nil
}

// demoUpstream stands in for the Pryv API or HFS: it answers with what it
// received, so the routing and the forwarded headers can be seen.
func demoUpstream(name string) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"servedBy":          "demo " + name + " upstream, through pryv-tls",
			"method":            r.Method,
			"path":              r.URL.Path,
			"host":              r.Host,
			"x-forwarded-for":   r.Header.Get("X-Forwarded-For"),
			"x-forwarded-proto": r.Header.Get("X-Forwarded-Proto"),
			"protocol":          r.Proto,
		})
	})}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}
