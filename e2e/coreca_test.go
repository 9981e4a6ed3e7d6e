package e2e

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/clusterca"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/join"
)

// TestClusterOnCoreCA: pryv-tls beside an open-pryv.io core whose bootstrap
// made the cluster CA (/etc/pryv/ca: ca.key, ca.crt, ca.srl, by the same
// openssl commands). init-ca-holder and serve use that CA as it is; the
// PlatformDB listeners present node certificates that chain to ca.crt;
// the core's own node certificate is accepted as a PlatformDB client; a
// second core joins with a bundle carrying ca.crt; the CA directory is
// byte-for-byte what the core left.
func TestClusterOnCoreCA(t *testing.T) {
	openssl := needTool(t, "openssl")
	const domain = "mc.example.com"
	root := t.TempDir()
	caDir := filepath.Join(root, "etc-pryv-ca")
	if err := os.Mkdir(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ossl := func(dir string, args ...string) {
		t.Helper()
		out, err := run(t, 30*time.Second, "sh", "-c", fmt.Sprintf("cd %s && %s %s", dir, openssl, strings.Join(args, " ")))
		if err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	// As ClusterCA.ensure() makes it...
	ossl(caDir, "ecparam -name prime256v1 -genkey -noout -out ca.key")
	if err := os.Chmod(filepath.Join(caDir, "ca.key"), 0o600); err != nil {
		t.Fatal(err)
	}
	ossl(caDir, "req -x509 -new -key ca.key -days 3650 -out ca.crt -subj /CN=pryv-cluster-ca")
	// ...and a node certificate as ClusterCA.issueNodeCert() signs it (ca.srl appears).
	nodeDir := filepath.Join(root, "core-node")
	if err := os.Mkdir(nodeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ossl(nodeDir, "ecparam -name prime256v1 -genkey -noout -out node.key")
	ossl(nodeDir, "req -new -key node.key -out node.csr -subj /CN=core-x")
	writeFile(t, filepath.Join(nodeDir, "node.ext"), []byte("subjectAltName = DNS:core-x, DNS:core-x."+domain+", IP:127.0.0.1\n"), 0o600)
	ossl(nodeDir, "x509 -req -in node.csr -CA "+caDir+"/ca.crt -CAkey "+caDir+"/ca.key -CAcreateserial -CAserial "+caDir+"/ca.srl -days 365 -out node.crt -extfile node.ext")
	before := caDirState(t, caDir)
	if !strings.Contains(before, "ca.srl") {
		t.Fatalf("openssl wrote no ca.srl:\n%s", before)
	}
	caPool, caDER := certPool(t, filepath.Join(caDir, "ca.crt"))

	ports := clusterPorts{freeUDPTCPPort(t), freeUDPTCPPort(t), freePort(t), freePort(t), freePort(t)}
	dirs := map[string]string{"core1": filepath.Join(root, "core1"), "core2": filepath.Join(root, "core2")}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg1 := filepath.Join(dirs["core1"], "default-config.yml")
	writeFile(t, cfg1, yamlConfig(
		"http: {ip: 127.0.0.1, port: "+itoa(ports.front)+"}",
		"core: {id: core1, ip: 127.0.0.1}",
		"dns: {active: true, domain: "+domain+", ip: 127.0.0.1, port: "+itoa(ports.dns)+"}",
		"auth: {adminAccessKey: cluster-admin}",
		"platformDB: {peerAddress: '127.0.0.1:"+itoa(ports.peer)+"', clientAddress: '127.0.0.1:"+itoa(ports.client)+"'}",
		"cluster: {ca: {path: "+caDir+"}, joinPort: "+itoa(ports.join)+"}",
	), 0o600)

	out := mustCLI(t, dirs["core1"], "bootstrap", "init-ca-holder", "--config", cfg1)
	if want := "certificate " + filepath.Join(caDir, "ca.crt") + ", key " + filepath.Join(caDir, "ca.key"); !strings.Contains(out, want) {
		t.Fatalf("init-ca-holder does not say it uses the core's CA (%q):\n%s", want, out)
	}
	override1 := filepath.Join(dirs["core1"], "cluster-config.yml")
	c1 := startCoreIn(t, dirs["core1"], "127.0.0.1:"+itoa(ports.front), "--config", cfg1, "--config", override1)
	waitLog(t, c1, "CA holder: answering joining cores", 20*time.Second)

	clientAddr, peerAddr := "127.0.0.1:"+itoa(ports.client), "127.0.0.1:"+itoa(ports.peer)
	t.Run("listeners chain to ca.crt", func(t *testing.T) {
		coreCert := filepath.Join(nodeDir, "node.crt")
		coreKey := filepath.Join(nodeDir, "node.key")
		// openssl, trusting only ca.crt, presenting the core's node certificate.
		out, err := run(t, 15*time.Second, "sh", "-c", fmt.Sprintf(
			"%s s_client -connect %s -CAfile %s -verify_return_error -verify_ip 127.0.0.1 -cert %s -key %s </dev/null 2>&1",
			openssl, clientAddr, filepath.Join(caDir, "ca.crt"), coreCert, coreKey))
		if err != nil || !strings.Contains(out, "Verify return code: 0 (ok)") || !strings.Contains(out, "CN = pryv-cluster-ca") {
			t.Fatalf("openssl s_client to the PlatformDB client listener: %v\n%s", err, out)
		}
		// Go, the same trust, on both listeners: the chain ends at ca.crt.
		pair, err := tls.LoadX509KeyPair(coreCert, coreKey)
		if err != nil {
			t.Fatal(err)
		}
		for _, addr := range []string{clientAddr, peerAddr} {
			conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "127.0.0.1", RootCAs: caPool, Certificates: []tls.Certificate{pair}})
			if err != nil {
				t.Fatalf("%s: %v", addr, err)
			}
			chains := conn.ConnectionState().VerifiedChains
			conn.Close()
			if len(chains) != 1 || len(chains[0]) != 2 || !bytes.Equal(chains[0][1].Raw, caDER) {
				t.Fatalf("%s: verified chains %d, want node certificate -> ca.crt", addr, len(chains))
			}
		}
		// The core's node certificate (subjectAltName only, no key usages)
		// is a PlatformDB client like any other of this CA...
		if code, body := etcdVersion(t, clientAddr, caPool, pair); code != http.StatusOK || !strings.Contains(body, "etcdserver") {
			t.Fatalf("GET /version with the core's node certificate: %d %s", code, body)
		}
		// ...and one from another CA is not.
		foreign, _ := devpki.NewCA("foreign")
		fl, _ := foreign.Issue(devpki.Leaf{Names: []string{"core-x", "127.0.0.1"}})
		fpair, err := tls.X509KeyPair(fl.FullChain, fl.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		if code, _ := etcdVersion(t, clientAddr, caPool, fpair); code == http.StatusOK {
			t.Fatal("a client certificate from another CA was accepted by PlatformDB")
		}
	})

	t.Run("a core joins with a bundle of the core's CA", func(t *testing.T) {
		bundle := filepath.Join(dirs["core2"], "core2.bundle")
		out := mustCLI(t, dirs["core1"], "bootstrap", "new-core", "--config", cfg1, "--config", override1,
			"--id", "core2", "--ip", "127.0.0.2", "--out", bundle)
		pass := filepath.Join(dirs["core2"], "pass")
		writeFile(t, pass, []byte(passphraseFrom(t, out)+"\n"), 0o600)
		b, err := join.ReadBundle(bundle, pass, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if blk, _ := pem.Decode([]byte(b.CACert)); blk == nil || !bytes.Equal(blk.Bytes, caDER) {
			t.Fatal("the bundle does not carry ca.crt")
		}
		own := filepath.Join(dirs["core2"], "default-config.yml")
		writeFile(t, own, yamlConfig("cluster: {ca: {path: "+filepath.Join(dirs["core2"], "no-ca")+"}}"), 0o600)
		c2 := startCoreIn(t, dirs["core2"], "127.0.0.2:"+itoa(ports.front), "--config", own, "--bootstrap", bundle, "--bootstrap-passphrase-file", pass)
		mustCLI(t, dirs["core1"], "users", "set-core", "--config", cfg1, "--config", override1, "alice", "core1")
		waitDNS(t, "127.0.0.2", ports.dns, "alice."+domain, "127.0.0.1", 30*time.Second)

		tlsDir := filepath.Join(dirs["core2"], "var-pryv", "platformdb-tls")
		if _, der := certPool(t, filepath.Join(tlsDir, "cluster-ca.pem")); !bytes.Equal(der, caDER) {
			t.Fatal("core2 trusts another CA than ca.crt")
		}
		nodePEM, err := os.ReadFile(filepath.Join(tlsDir, "node.pem"))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(nodePEM)
		leaf, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: caPool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("core2's node certificate does not chain to ca.crt: %v", err)
		}
		c2.signal(syscall.SIGTERM)
		c2.wait(20 * time.Second)
	})

	c1.signal(syscall.SIGTERM)
	c1.wait(20 * time.Second)
	if after := caDirState(t, caDir); after != before {
		t.Fatalf("the core's CA directory changed:\nbefore:\n%safter:\n%s", before, after)
	}
}

// caDirState is a directory's names, modes, modification times and
// content hashes.
func caDirState(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %v %s %x\n", e.Name(), fi.Mode(), fi.ModTime().Format(time.RFC3339Nano), sha256.Sum256(data))
	}
	return b.String()
}

// certPool reads a PEM certificate file: a pool of it alone, and its DER.
func certPool(t *testing.T, path string) (*x509.CertPool, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AddCert(c)
	return p, c.Raw
}

// etcdVersion is GET /version on a PlatformDB client listener with a client
// certificate: the status (0 when refused at the TLS level) and the body.
func etcdVersion(t *testing.T, addr string, roots *x509.CertPool, cert tls.Certificate) (int, string) {
	t.Helper()
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: "127.0.0.1", RootCAs: roots, Certificates: []tls.Certificate{cert}},
		DialContext:     (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
	}}
	defer cl.CloseIdleConnections()
	resp, err := cl.Get("https://" + addr + "/version")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(body)
}

// waitLog waits for a line containing s in a core's output.
func waitLog(t *testing.T, c *core, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(c.logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log within %s:\n%s", s, d, c.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestInitCAHolderFirstLayout: a CA of pryv-tls's first layout (ca.pem +
// ca.key) gets the ca.crt open-pryv.io's bootstrap looks for when
// init-ca-holder runs again; when it cannot be added, the command says
// what to copy (without it, the core's bootstrap would write a new ca.key).
func TestInitCAHolderFirstLayout(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if _, err := clusterca.LoadOrCreateCA(caDir); err != nil {
		t.Fatal(err)
	}
	crt, pemFile := filepath.Join(caDir, "ca.crt"), filepath.Join(caDir, "ca.pem")
	if err := os.Remove(crt); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yml")
	writeFile(t, cfg, yamlConfig("core: {id: core1, ip: 127.0.0.1}", "cluster: {ca: {path: "+caDir+"}}"), 0o600)

	out := mustCLI(t, dir, "bootstrap", "init-ca-holder", "--config", cfg)
	if !strings.Contains(out, "certificate "+crt+",") || strings.Contains(out, "cp -p") {
		t.Fatalf("init-ca-holder on ca.pem + ca.key:\n%s", out)
	}
	a, _ := os.ReadFile(pemFile)
	b, err := os.ReadFile(crt)
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("ca.crt is not ca.pem's copy: %v", err)
	}

	// A name that cannot be written (a dangling link stands in for a
	// directory this user may not write: root writes anywhere).
	if err := os.Remove(crt); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "nowhere", "ca.crt"), crt); err != nil {
		t.Fatal(err)
	}
	out = mustCLI(t, dir, "bootstrap", "init-ca-holder", "--config", cfg)
	if want := "give it this CA: cp -p " + pemFile + " " + crt + " (it would otherwise write a new ca.key over this one)"; !strings.Contains(out, want) {
		t.Fatalf("init-ca-holder without a ca.crt it can add: want %q in\n%s", want, out)
	}
}
