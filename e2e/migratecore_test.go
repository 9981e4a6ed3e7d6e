package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/corerows/corerowstest"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/rqlite/rqlitetest"
)

// TestMigrateCore takes over an open-pryv.io core's own Strategy A: its
// rqlite (a stand-in speaking rqlite's wire format) holds the rows its
// letsEncrypt wrote, sealed as it seals them, and its Let's Encrypt account
// is registered at Pebble by another ACME client, as the core's was.
// migrate-core --dry-run imports nothing; migrate-core imports; the front
// then serves the core's exact certificate; and once pryv-tls is the
// certRenewer, a renewal orders from Pebble with the core's account, with no
// new registration.
func TestMigrateCore(t *testing.T) {
	pebble := acmetest.Start(t, acmetest.Options{})
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := newPKI(t, dir)
	rq := rqlitetest.Start(t)

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keyB64 := base64.StdEncoding.EncodeToString(key)

	// The core's account, registered by a client that is not lego, with an
	// RSA 2048 key as acme-client makes it (PKCS#8 PEM).
	acctKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ac := &xacme.Client{Key: acctKey, DirectoryURL: pebble.DirectoryURL, HTTPClient: pebble.HTTPClient()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acct, err := ac.Register(ctx, &xacme.Account{Contact: []string{"mailto:ops@your-domain.com"}}, xacme.AcceptTOS)
	if err != nil {
		t.Fatalf("registering the core's account at Pebble: %v", err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(acctKey)
	acctPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})

	// The core's rows.
	coreCert := p.issue(t, devpki.Leaf{Names: []string{host}, KeyType: "rsa2048"})
	rq.Set("tls-cert/"+host, corerowstest.CertValue(key, coreCert.FullChain, coreCert.KeyPEM))
	rq.Set("tls-acme-account", corerowstest.AccountValue(key, acctPEM, acct.URI, "ops@your-domain.com"))
	rq.Set("user-core/alice", "core1")

	// The core's own file: pryv-tls takes storages.engines.rqlite.url and
	// dnsLess from it, and skips its http and letsEncrypt.
	coreFile := filepath.Join(dir, "core-override.yml")
	writeFile(t, coreFile, yamlConfig(
		"http:",
		"  ip: 127.0.0.1",
		"  port: 3000",
		"dnsLess:",
		"  isActive: true",
		"  publicUrl: https://"+host,
		"letsEncrypt:",
		"  enabled: false",
		"  atRestKey: '"+keyB64+"'",
		"storages:",
		"  engines:",
		"    rqlite:",
		"      url: "+rq.URL,
	), 0o600)
	own := filepath.Join(dir, "pryv-tls.yml")
	writeFile(t, own, yamlConfig(
		"http:",
		"  ip: 127.0.0.1",
		fmt.Sprintf("  port: %d", port),
		"  ssl:",
		"    keyFile: var-pryv/tls/"+host+"/privkey.pem",
		"    certFile: var-pryv/tls/"+host+"/fullchain.pem",
		"letsEncrypt:",
		"  enabled: true",
		"  email: ops@your-domain.com",
		"  atRestKey: '"+keyB64+"'",
		"  certRenewer: false",
		"  directoryUrl: "+pebble.DirectoryURL,
		"  directoryCaFile: "+pebble.CAFile,
		fmt.Sprintf("  http01Port: %d", pebble.HTTPPort),
		"auth:",
		"  adminAccessKey: e2e-admin-key",
		"platformDB:",
		fmt.Sprintf("  peerAddress: 127.0.0.1:%d", freePort(t)),
		fmt.Sprintf("  clientAddress: 127.0.0.1:%d", freePort(t)),
	), 0o600)
	cfg := []string{"--core-config", coreFile, "--config", own}

	// 1. pryv-tls runs, not yet the renewer (so it registers nothing), and
	// serves the placeholder.
	c := startCoreIn(t, dir, addr, cfg...)
	if got := storedCerts(t, dir); len(got) != 0 {
		t.Fatalf("certificates stored before the migration: %+v", got)
	}
	if _, err := servedSerial(t, addr, host, p.roots); err == nil {
		t.Fatal("the core's certificate is served before the migration")
	}

	// 2. A dry run reads and reports, and imports nothing.
	out, code := cli(t, dir, append([]string{"migrate-core", "--dry-run"}, cfg...)...)
	if code != 0 {
		t.Fatalf("migrate-core --dry-run: exit %d\n%s", code, out)
	}
	for _, want := range []string{"rqlite at " + rq.URL, "tls-cert/" + host, "-> import as " + host + ", source core",
		"account " + acct.URI, "directory " + pebble.DirectoryURL + " (from letsEncrypt.directoryUrl)", "dry run: nothing imported"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, keyB64) {
		t.Fatalf("key material in the output:\n%s", out)
	}
	if got := storedCerts(t, dir); len(got) != 0 {
		t.Fatalf("after the dry run, certificates stored: %+v", got)
	}
	if info := accountInfo(t, dir, pebble.DirectoryURL); info != nil {
		t.Fatalf("after the dry run, an account is stored: %+v", info)
	}
	if _, err := servedSerial(t, addr, host, p.roots); err == nil {
		t.Fatal("the dry run made the front serve the core's certificate")
	}

	// 3. The migration.
	out, code = cli(t, dir, append([]string{"migrate-core"}, cfg...)...)
	if code != 0 {
		t.Fatalf("migrate-core: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "stored "+host+" (serial "+serial(coreCert)) || !strings.Contains(out, "stored the ACME account "+acct.URI) {
		t.Fatalf("migrate-core output:\n%s", out)
	}
	took := waitSerial(t, addr, host, p.roots, serial(coreCert))
	t.Logf("migrate-core -> the core's certificate served: %s later", took.Round(time.Millisecond))

	// Served as the core served it: the same leaf, the same issuers.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{ServerName: host, RootCAs: p.roots})
	if err != nil {
		t.Fatal(err)
	}
	peers := conn.ConnectionState().PeerCertificates
	conn.Close()
	if sha256.Sum256(peers[0].Raw) != sha256.Sum256(coreCert.Cert.Raw) {
		t.Fatal("the leaf served is not the core's")
	}
	var chain bytes.Buffer
	for _, pc := range peers {
		chain.Write(devpki.EncodeCert(pc))
	}
	if chain.String() != string(coreCert.FullChain) {
		t.Fatalf("served chain of %d certificates differs from the core's", len(peers))
	}
	if got := storedCerts(t, dir); len(got) != 1 || got[0].Hostname != host || got[0].Source != "core" || got[0].Serial != serial(coreCert) {
		t.Fatalf("stored after the migration: %+v", got)
	}
	info := accountInfo(t, dir, pebble.DirectoryURL)
	if info == nil || info.URI != acct.URI || info.KeyType != "RSA 2048" || info.Email != "ops@your-domain.com" {
		t.Fatalf("stored account: %+v", info)
	}

	// 4. Again: nothing to do.
	out, code = cli(t, dir, append([]string{"migrate-core"}, cfg...)...)
	if code != 0 || !strings.Contains(out, "-> unchanged: pryv-tls already holds this certificate") ||
		!strings.Contains(out, ": unchanged") {
		t.Fatalf("second migrate-core: exit %d\n%s", code, out)
	}

	// 5. pryv-tls becomes the certRenewer; a renewal uses the core's account.
	c.signal(syscall.SIGTERM)
	if code := c.wait(15 * time.Second); code != 0 {
		t.Fatalf("serve exit %d", code)
	}
	renewer := filepath.Join(dir, "renewer.yml")
	writeFile(t, renewer, yamlConfig("letsEncrypt:", "  certRenewer: true"), 0o600)
	cfg = append(cfg, "--config", renewer)
	c = startCoreIn(t, dir, addr, cfg...)
	waitSerial(t, addr, host, p.roots, serial(coreCert))
	status, body := adminCall(t, addr, p.roots, "POST", "/system/admin/certs/force-renew", `{"hostname":"`+host+`"}`)
	if status != 200 {
		t.Fatalf("force-renew: %d %s\n%s", status, body, c.logs.String())
	}
	var renewed string
	pebbleRoots := pebble.IssuerRoots(t)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if renewed, err = servedSerial(t, addr, host, pebbleRoots); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate from Pebble served after force-renew: %v\n%s", err, c.logs.String())
		}
	}
	if logs := c.logs.String(); strings.Contains(logs, "ACME account registered") {
		t.Fatalf("pryv-tls registered an account of its own:\n%s", logs)
	}
	if info := accountInfo(t, dir, pebble.DirectoryURL); info == nil || info.URI != acct.URI {
		t.Fatalf("after the renewal, account %+v; want the core's %s", info, acct.URI)
	}
	t.Logf("renewed with the core's account %s: serial %s", acct.URI, renewed)
	c.signal(syscall.SIGTERM)
	if code := c.wait(15 * time.Second); code != 0 {
		t.Fatalf("serve exit %d", code)
	}
}

// socketGet asks the running core's control socket (status, body).
func socketGet(t *testing.T, dir, path string) (int, []byte, error) {
	t.Helper()
	sock := filepath.Join(dir, "var-pryv/run/pryv-tls.sock")
	resp, err := admin.SocketClient(sock).Get("http://pryv-tls" + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, nil
}

// storedCerts is what GET /certs on the control socket lists, bounded: it
// waits until the socket answers (PlatformDB open).
func storedCerts(t *testing.T, dir string) []admin.CertInfo {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, b, err := socketGet(t, dir, "/certs")
		if err == nil && status == http.StatusOK {
			var res struct {
				Certs []admin.CertInfo `json:"certs"`
			}
			if err := json.Unmarshal(b, &res); err != nil {
				t.Fatalf("GET /certs: %s", b)
			}
			return res.Certs
		}
		if time.Now().After(deadline) {
			t.Fatalf("the control socket did not answer GET /certs within 20s: %d %s %v", status, b, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type accountView struct {
	URI, Email, KeyType string
}

// accountInfo asks the running core's control socket for the directory's
// account (which opens its key to answer); nil if there is none.
func accountInfo(t *testing.T, dir, directory string) *accountView {
	t.Helper()
	status, b, err := socketGet(t, dir, "/acme/account?directory="+url.QueryEscape(directory))
	if err != nil {
		t.Fatalf("control socket: %v", err)
	}
	if status == http.StatusNotFound {
		return nil
	}
	var v accountView
	if status != http.StatusOK || json.Unmarshal(b, &v) != nil {
		t.Fatalf("GET /acme/account: %d %s", status, b)
	}
	return &v
}

func adminCall(t *testing.T, addr string, roots *x509.CertPool, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "https://"+host+path, strings.NewReader(body))
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
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
