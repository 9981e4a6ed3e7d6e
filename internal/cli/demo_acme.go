//go:build demo

package cli

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"

	"github.com/pryv/pryv-tls/internal/acme/pebbledev"
	"github.com/pryv/pryv-tls/internal/daemon"
	"github.com/pryv/pryv-tls/internal/devpki"
)

// Pebble is linked only into a build with -tags demo (decision 0028): the
// production binary carries no CA of its own.

//go:embed demo-acme.yml
var demoACMEConfig string

//go:embed demo-acme-override.yml
var demoACMEOverride string

// demoACME runs Strategy A end to end on this machine: Pebble in-process
// (with a DNS responder pointing every name at 127.0.0.1), the spec's
// minimum single-core configuration verbatim plus a loopback override, and
// the real daemon, which registers, orders, answers HTTP-01 and swaps the
// placeholder for the issued certificate.
func demoACME(addr, dir string, stdout, stderr io.Writer) int {
	log, _ := newLogger(stderr, "text", "info")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintf(stderr, "demo: --addr %q: %v\n", addr, err)
		return exitUsage
	}
	absDir, err := filepath.Abs(dir)
	if err == nil {
		err = os.MkdirAll(absDir, 0o700)
	}
	if err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return exitFailed
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "demo:", err)
		return exitFailed
	}
	pebble, err := pebbledev.Start(pebbledev.Options{Dir: absDir, Logger: log, LogLevel: slog.LevelDebug})
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := pebble.Close(); err != nil {
			log.Warn("stopping the demo's Pebble", "error", err.Error())
		}
	}()
	roots, err := pebble.IssuerRootCerts()
	if err != nil {
		return fail(err)
	}
	var rootsPEM []byte
	for _, c := range roots {
		rootsPEM = append(rootsPEM, devpki.EncodeCert(c)...)
	}
	rootsFile := filepath.Join(absDir, "pebble-roots.pem")
	if err := os.WriteFile(rootsFile, rootsPEM, 0o644); err != nil { //nolint:gosec // G306: CA certificates, public, for the operator's clients
		return fail(err)
	}
	apiAddr, stopAPI, err := demoUpstream("api")
	if err != nil {
		return fail(err)
	}
	defer stopAPI()
	hfsAddr, stopHFS, err := demoUpstream("hfs")
	if err != nil {
		return fail(err)
	}
	defer stopHFS()
	key, err := demoKey(filepath.Join(absDir, "atRestKey"))
	if err != nil {
		return fail(err)
	}
	ports, err := freePorts(2)
	if err != nil {
		return fail(err)
	}
	vals := map[string]any{"AtRestKey": key, "IP": host, "Port": port, "Directory": pebble.DirectoryURL,
		"DirectoryCA": pebble.CAFile, "HTTP01Port": pebble.HTTPPort, "PeerPort": ports[0], "ClientPort": ports[1],
		"API": apiAddr, "HFS": hfsAddr}
	files := []string{filepath.Join(absDir, "default-config.yml"), filepath.Join(absDir, "override-config.yml")}
	for i, tmpl := range []string{demoACMEConfig, demoACMEOverride} {
		var b strings.Builder
		if err := template.Must(template.New("demo").Parse(tmpl)).Execute(&b, vals); err != nil {
			return fail(err)
		}
		if err := os.WriteFile(files[i], []byte(b.String()), 0o600); err != nil {
			return fail(err)
		}
	}
	// The spec's relative paths (var-pryv/...) resolve against the demo directory.
	if err := os.Chdir(absDir); err != nil {
		return fail(err)
	}
	cfg, code := loadConfig(files, stderr)
	if cfg == nil {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = daemon.Run(ctx, cfg, daemon.Options{Logger: log, Ready: func(bound string) {
		_, p, _ := net.SplitHostPort(bound)
		fmt.Fprintf(stdout, `
pryv-tls demo --acme: Strategy A against Pebble, a real ACME server, in this process.
  configuration: %[1]s (the spec's, verbatim) + %[2]s
  The front starts with a self-signed placeholder; in a few seconds the
  renewer registers, orders, answers HTTP-01 and the issued certificate
  replaces it (watch for "certificate materialised" below). Then:
  curl --cacert %[3]s --resolve your-domain.com:%[4]s:127.0.0.1 https://your-domain.com:%[4]s/alice/events
  Force a renewal:
  curl --cacert %[3]s --resolve your-domain.com:%[4]s:127.0.0.1 -X POST https://your-domain.com:%[4]s/system/admin/certs/force-renew -H 'Authorization: demo-admin'
  Ctrl-C to stop.

`, files[0], files[1], rootsFile, p)
	}})
	if err != nil {
		log.Error("demo failed", "error", err.Error())
		return exitFailed
	}
	return exitOK
}

// demoKey keeps one atRestKey per demo directory, so a second run opens
// what the first stored.
func demoKey(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return "", err
	}
	s := base64.StdEncoding.EncodeToString(k[:])
	return s, os.WriteFile(path, []byte(s+"\n"), 0o600)
}

func freePorts(n int) ([]int, error) {
	var out []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}
