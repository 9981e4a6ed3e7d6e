package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCoreClusterCA: a cluster CA made the way open-pryv.io's bin/bootstrap.js
// makes it (openssl ecparam + req -x509, ca.crt, SEC 1 ca.key, ca.srl) becomes
// pryv-tls's cluster CA through init-ca-holder: the PlatformDB listener then
// presents a node certificate that verifies against ca.crt, and the core's
// files are left byte for byte as they were.
func TestCoreClusterCA(t *testing.T) {
	openssl := needTool(t, "openssl")
	dir := t.TempDir()
	caDir := filepath.Join(dir, "etc-pryv-ca")
	if err := os.Mkdir(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	caKey, caCrt := filepath.Join(caDir, "ca.key"), filepath.Join(caDir, "ca.crt")
	mustOut(t, openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", caKey)
	if err := os.Chmod(caKey, 0o600); err != nil {
		t.Fatal(err)
	}
	mustOut(t, openssl, "req", "-x509", "-new", "-key", caKey, "-days", "3650", "-out", caCrt, "-subj", "/CN=pryv-cluster-ca")
	writeFile(t, filepath.Join(caDir, "ca.srl"), []byte("01\n"), 0o600)
	before := map[string][]byte{}
	for _, n := range []string{"ca.key", "ca.crt", "ca.srl"} {
		b, err := os.ReadFile(filepath.Join(caDir, n))
		if err != nil {
			t.Fatal(err)
		}
		before[n] = b
	}

	front, client, peer, join := freePort(t), freePort(t), freePort(t), freePort(t)
	cfg := filepath.Join(dir, "default-config.yml")
	key := strings.TrimSpace(mustOut(t, binary, "keygen"))
	writeFile(t, cfg, yamlConfig(
		"http: {ip: 127.0.0.1, port: "+itoa(front)+"}",
		"letsEncrypt: {atRestKey: '"+key+"'}", // PlatformDB runs to keep imported certificates
		"core: {id: core1, ip: 127.0.0.1}",
		"platformDB: {peerAddress: '127.0.0.1:"+itoa(peer)+"', clientAddress: '127.0.0.1:"+itoa(client)+"'}",
		"cluster: {ca: {path: "+caDir+"}, joinPort: "+itoa(join)+"}",
	), 0o600)

	out := mustCLI(t, dir, "bootstrap", "init-ca-holder", "--config", cfg)
	if !strings.Contains(out, "fingerprint") {
		t.Fatalf("init-ca-holder: %s", out)
	}
	c := startCoreIn(t, dir, "127.0.0.1:"+itoa(front), "--config", cfg, "--config", filepath.Join(dir, "cluster-config.yml"))

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(before["ca.crt"]) {
		t.Fatal("ca.crt does not parse")
	}
	// Full verification against ca.crt alone, for the IP SAN 127.0.0.1.
	addr := net.JoinHostPort("127.0.0.1", itoa(client))
	deadline := time.Now().Add(20 * time.Second)
	var leaf *x509.Certificate
	for leaf == nil {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr,
			&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
		if err == nil {
			leaf = conn.ConnectionState().PeerCertificates[0]
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PlatformDB client listener %s: no certificate that chains to ca.crt: %v\n%s", addr, err, c.logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if leaf.Issuer.CommonName != "pryv-cluster-ca" {
		t.Errorf("node certificate issued by %q, want the core's pryv-cluster-ca", leaf.Issuer)
	}

	c.signal(syscall.SIGTERM)
	c.wait(20 * time.Second)
	entries, err := os.ReadDir(caDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(before) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("the core's CA directory now holds %v, want only %d files", names, len(before))
	}
	for n, b := range before {
		if got, _ := os.ReadFile(filepath.Join(caDir, n)); !bytes.Equal(got, b) {
			t.Errorf("%s was modified", n)
		}
	}
}
