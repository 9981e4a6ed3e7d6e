package e2e

// The renewer's fixes for issue 18, seen through the binary: a short-lived
// certificate renewed at its planned point by the daemon's own schedule (5
// minute checks), and a forced renewal that outlives the HTTP client that
// asked for it.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/acme/pebbledev"
)

// renewerCore starts a single Strategy A core ordering from pebble with the
// given profile, answering HTTP-01 on http01Port, and returns it with its
// address and the first certificate's serial once that is served.
func renewerCore(t *testing.T, pebble *acmetest.Pebble, profile string, http01Port int) (*core, string, string) {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	hook := filepath.Join(dir, "hooks", "reload.sh")
	writeFile(t, hook, []byte("#!/bin/sh\n"), 0o755)
	cfg := strategyA(t, dir, port, hook)
	acmeCfg := filepath.Join(dir, "acme.yml")
	writeFile(t, acmeCfg, yamlConfig(
		"letsEncrypt:",
		"  directoryUrl: "+pebble.DirectoryURL,
		"  directoryCaFile: "+pebble.CAFile,
		fmt.Sprintf("  http01Port: %d", http01Port),
		"  profile: "+profile,
	), 0o644)
	c := startCoreIn(t, dir, addr, append(cfg, "--config", acmeCfg)...)
	roots := pebble.IssuerRoots(t)
	deadline := time.Now().Add(60 * time.Second)
	for {
		s, err := servedSerial(t, addr, host, roots)
		if err == nil {
			return c, addr, s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate from Pebble served within 60s (last: %v)\n%s", err, c.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// adminClient talks to the core's admin API through addr, with timeout.
func adminClient(addr string, roots *x509.CertPool, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, n, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, n, addr)
		},
	}}
}

// nextRenewal is the admin API's nextRenewal for the primary certificate.
func nextRenewal(t *testing.T, addr string, roots *x509.CertPool) (time.Time, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://"+host+"/system/admin/certs", nil)
	req.Header.Set("Authorization", "e2e-admin-key")
	resp, err := adminClient(addr, roots, 5*time.Second).Do(req)
	if err != nil {
		return time.Time{}, ""
	}
	defer resp.Body.Close()
	var list struct {
		Certs []struct {
			Serial      string    `json:"serial"`
			NextRenewal time.Time `json:"nextRenewal"`
		} `json:"certs"`
	}
	if json.NewDecoder(resp.Body).Decode(&list) != nil || len(list.Certs) == 0 {
		return time.Time{}, ""
	}
	return list.Certs[0].NextRenewal, list.Certs[0].Serial
}

// TestRenewalOnTimeByTheDaemon: a 30-second certificate (Pebble profile)
// is replaced at the renewal point the admin API announces, although the
// daemon checks every 5 minutes (a 300 s certificate used to renew 82 s
// late, 18 s before expiry).
func TestRenewalOnTimeByTheDaemon(t *testing.T) {
	profiles := acmetest.DefaultProfiles()
	profiles["short30s"] = acmetest.Profile{Description: "30 seconds", ValidityPeriod: 30 * time.Second}
	pebble := acmetest.Start(t, acmetest.Options{Options: pebbledev.Options{Profiles: profiles}})
	roots := pebble.IssuerRoots(t)
	c, addr, first := renewerCore(t, pebble, "short30s", pebble.HTTPPort)

	// Follow the announced point until the served certificate changes.
	var point time.Time
	deadline := time.Now().Add(60 * time.Second)
	var changed time.Time
	for time.Now().Before(deadline) {
		if at, serial := nextRenewal(t, addr, roots); serial == first && !at.IsZero() {
			point = at
		}
		s, err := servedSerial(t, addr, host, roots)
		if err == nil && s != first {
			changed = time.Now()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if changed.IsZero() {
		t.Fatalf("the 30 s certificate was not renewed within 60 s\n%s", c.logs.String())
	}
	if point.IsZero() {
		t.Fatal("the admin API never announced a renewal point for the first certificate")
	}
	// When the renewer acted: its log line, timestamped by the daemon.
	due := dueTimes(t, c.logs.String())
	if len(due) < 2 {
		t.Fatalf("%d 'certificate due for renewal' lines, want the first issuance and the renewal\n%s", len(due), c.logs.String())
	}
	late, served := due[1].Sub(point), changed.Sub(point)
	t.Logf("renewal point %s (announced by the admin API); the renewer acted %v after it, the new certificate was served %v after it",
		point.Format(time.RFC3339Nano), late.Round(time.Millisecond), served.Round(time.Millisecond))
	if late < -50*time.Millisecond || late > 1500*time.Millisecond {
		t.Errorf("the renewer acted %v after the announced point, want within 1.5 s", late)
	}
	// Without Pebble's Retry-After shortcut lego polls the authorization
	// every few seconds: the order itself takes up to ~6 s.
	if served > 12*time.Second {
		t.Errorf("served %v after the announced point, want within the order's time", served)
	}
}

// dueTimes are the times of the renewer's "certificate due for renewal" lines.
func dueTimes(t *testing.T, logs string) []time.Time {
	t.Helper()
	var out []time.Time
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, `msg="certificate due for renewal"`) {
			continue
		}
		f := strings.Fields(strings.TrimSpace(line))
		if len(f) == 0 || !strings.HasPrefix(f[0], "time=") {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time="))
		if err != nil {
			t.Fatalf("log line time: %v in %q", err, line)
		}
		out = append(out, at)
	}
	return out
}

// TestForceRenewOutlivesItsClient: a force-renew whose HTTP client gives
// up after 300 ms, while the CA's validation is held up 2 s on its way to
// the core (a slow path between them), still ends with the new certificate
// served; the order used to be cut with the request.
func TestForceRenewOutlivesItsClient(t *testing.T) {
	// Pebble's VA dials the proxy, which waits, then forwards to the core.
	proxyLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	corePort := freePort(t)
	var slow atomic.Bool
	target, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", corePort))
	fwd := httputil.NewSingleHostReverseProxy(target)
	proxy := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			time.Sleep(2 * time.Second)
		}
		fwd.ServeHTTP(w, r)
	})}
	go func() { _ = proxy.Serve(proxyLn) }()
	t.Cleanup(func() { _ = proxy.Close() })

	pebble := acmetest.Start(t, acmetest.Options{Options: pebbledev.Options{HTTPPort: proxyLn.Addr().(*net.TCPAddr).Port}})
	roots := pebble.IssuerRoots(t)
	c, addr, first := renewerCore(t, pebble, "default", corePort)
	time.Sleep(500 * time.Millisecond) // the first order's bookkeeping is written

	slow.Store(true)
	req, _ := http.NewRequest("POST", "https://"+host+"/system/admin/certs/force-renew", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "e2e-admin-key")
	asked := time.Now()
	resp, err := adminClient(addr, roots, 300*time.Millisecond).Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("force-renew answered %d within 300 ms, though the validation is held 2 s", resp.StatusCode)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := servedSerial(t, addr, host, roots)
		if err == nil && s != first {
			t.Logf("the client gave up after 300 ms; the forced order went on: new certificate served %v after the request",
				time.Since(asked).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the forced order did not outlive its client (no new certificate within 30 s)\n%s", c.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
