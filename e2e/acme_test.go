package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
)

// TestStrategyAWithPebble runs the spec's single-core Strategy A config
// against a real ACME server: placeholder first, then the real certificate
// without a restart, written to http.ssl.* and tlsDir, the hook run, the
// admin API showing the renewal plan, and a forced renewal.
func TestStrategyAWithPebble(t *testing.T) {
	curl := needTool(t, "curl")
	pebble := acmetest.Start(t, acmetest.Options{})
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	hookOut := filepath.Join(dir, "hook.log")
	hook := filepath.Join(dir, "hooks", "reload.sh")
	writeFile(t, hook, []byte("#!/bin/sh\necho \"$PRYV_CERT_HOSTNAME\" >> "+hookOut+"\n"), 0o755)
	cfg := strategyA(t, dir, port, hook)
	acmeCfg := filepath.Join(dir, "acme.yml")
	writeFile(t, acmeCfg, yamlConfig(
		"letsEncrypt:",
		"  directoryUrl: "+pebble.DirectoryURL,
		"  directoryCaFile: "+pebble.CAFile,
		fmt.Sprintf("  http01Port: %d", pebble.HTTPPort),
		"  profile: shortlived",
	), 0o644)
	cfg = append(cfg, "--config", acmeCfg)

	start := time.Now()
	c := startCoreIn(t, dir, addr, cfg...)
	roots := pebble.IssuerRoots(t)

	// The real certificate replaces the placeholder with no restart.
	var leaf *x509.Certificate
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr,
			&tls.Config{ServerName: host, RootCAs: roots})
		if err == nil {
			leaf = conn.ConnectionState().PeerCertificates[0]
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate from Pebble served within 60s (last: %v)\n%s", err, c.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("start -> real certificate served: %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(c.logs.String(), "PLACEHOLDER") {
		t.Error("the placeholder should have served until the first certificate")
	}

	// Written to http.ssl.* (here the same files as tlsDir/your-domain.com).
	deadline = time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(hookOut)
		if strings.Contains(string(b), host) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("onRotateScript did not run:\n%s", c.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	chain, err := os.ReadFile(filepath.Join(dir, "var-pryv/tls/your-domain.com/fullchain.pem"))
	if err != nil || !strings.Contains(string(chain), "BEGIN CERTIFICATE") {
		t.Fatalf("http.ssl.certFile not written: %v", err)
	}

	// Every other request on the HTTP-01 port goes to HTTPS.
	out, err := run(t, 10*time.Second, curl, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
		"-H", "Host: "+host, fmt.Sprintf("http://127.0.0.1:%d/alice/events?x=1", pebble.HTTPPort))
	if err != nil || out != fmt.Sprintf("308 https://%s:%d/alice/events?x=1", host, port) {
		t.Fatalf("HTTP-01 port redirect: %q %v", out, err)
	}

	admin := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, fmt.Sprintf("https://%s:%d%s", host, port, path), strings.NewReader(body))
		req.Header.Set("Authorization", "e2e-admin-key")
		cl := &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots},
			DialContext: func(ctx context.Context, n, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, n, addr)
			},
		}}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	code, list := admin("GET", "/system/admin/certs", "")
	certsList, _ := list["certs"].([]any)
	if code != 200 || len(certsList) != 1 {
		t.Fatalf("admin certs: %d %v", code, list)
	}
	entry := certsList[0].(map[string]any)
	if entry["source"] != "acme" || entry["nextRenewal"] == nil {
		t.Fatalf("admin certs entry lacks source acme or nextRenewal: %v", entry)
	}

	renewStart := time.Now()
	code, res := admin("POST", "/system/admin/certs/force-renew", `{"hostname":"your-domain.com"}`)
	if code != 200 || res["ok"] != true {
		t.Fatalf("force-renew: %d %v", code, res)
	}
	var serialAfter string
	deadline = time.Now().Add(10 * time.Second)
	for {
		s, err := servedSerial(t, addr, host, roots)
		if err == nil && s != leaf.SerialNumber.Text(16) {
			serialAfter = s
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("force-renewed certificate not served")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("force-renew -> new certificate served: %s (serial %s)", time.Since(renewStart).Round(time.Millisecond), serialAfter)

	// Clicked again at once: one forced renewal per name per minute, said
	// with a 429 and when to come back, whatever ignoreBackoff says.
	req, _ := http.NewRequest("POST", fmt.Sprintf("https://%s:%d/system/admin/certs/force-renew?ignoreBackoff=true", host, port),
		strings.NewReader(`{"hostname":"your-domain.com"}`))
	req.Header.Set("Authorization", "e2e-admin-key")
	cl := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, n, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, n, addr)
		},
	}}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var again map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&again)
	resp.Body.Close()
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || ra < 1 || ra > 60 || again["ok"] != false {
		t.Errorf("force-renew again at once: %d Retry-After %q %v; want 429 with Retry-After <= 60", resp.StatusCode, resp.Header.Get("Retry-After"), again)
	}
	t.Logf("force-renew again at once: %d, Retry-After %ds: %v", resp.StatusCode, ra, again["error"])

	c.signal(syscall.SIGTERM)
	if code := c.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
