package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/e2e/faults"
	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/acme/pebbledev"
	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/rqlite/rqlitetest"
)

// secretScan collects every text a scenario produced (logs, CLI output, API
// responses, metric scrapes) and the secrets it must never contain.
type secretScan struct {
	secrets map[string][]string // name -> the forms it could leak in
	texts   []scanned
}

type scanned struct{ what, text string }

func (s *secretScan) secret(name string, forms ...string) {
	for _, f := range forms {
		if len(f) >= 8 { // shorter forms would match by chance
			s.secrets[name] = append(s.secrets[name], f)
		}
	}
}

// key32 adds a 32-byte key in the encodings it could leak in.
func (s *secretScan) key32(name string, raw []byte) {
	b64 := base64.StdEncoding.EncodeToString(raw)
	s.secret(name, b64, strings.TrimRight(b64, "="), base64.RawURLEncoding.EncodeToString(raw), hex.EncodeToString(raw), string(raw))
}

// pemKey adds a PEM private key by the lines of its base64 body (a log
// quoting any part of it is a leak) and the whole DER in base64.
func (s *secretScan) pemKey(name string, pemText []byte) {
	for _, line := range strings.Split(string(pemText), "\n") {
		line = strings.TrimSpace(line)
		if len(line) >= 40 && !strings.HasPrefix(line, "-----") {
			s.secret(name, line)
		}
	}
}

func (s *secretScan) add(what, text string) { s.texts = append(s.texts, scanned{what, text}) }

// hits lists "<secret> in <what>" for every leak.
func (s *secretScan) hits() []string {
	var out []string
	for name, forms := range s.secrets {
		for _, tx := range s.texts {
			for _, f := range forms {
				if strings.Contains(tx.text, f) {
					out = append(out, fmt.Sprintf("%s in %s", name, tx.what))
					break
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func (s *secretScan) size() (n, bytes int) {
	for _, tx := range s.texts {
		n++
		bytes += len(tx.text)
	}
	return
}

// TestFaultsSecrets is issue 18's scenario 8: the main scenarios run with
// known secrets — a wildcard ordered from Pebble (DNS-01, atRestKey sealing
// the account and keys), users looked up in the core's rqlite with
// platform.piiHmacKey, admin API calls on the front (admin key) and the
// control socket (an imported private key), a join with a bundle
// passphrase, metrics scraped — and every log line, CLI output, API
// response and scrape is searched for them; then the modes of key files,
// data directories and the control socket, and the socket's peer check.
func TestFaultsSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("slow fault scenario (an ACME order and a join): runs without -short")
	}
	needRoot(t) // the control socket is tried as another user
	curl := needTool(t, "curl")
	const domain = "sec.example.com"
	scan := &secretScan{secrets: map[string][]string{}}
	random := func(n int) []byte {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	atRest, hmacKey := random(32), random(32)
	adminKey := "adm-" + hex.EncodeToString(random(16))
	scan.key32("atRestKey", atRest)
	scan.key32("platform.piiHmacKey", hmacKey)
	scan.secret("auth.adminAccessKey", adminKey)

	// The ports are picked once Pebble and the stand-in listen (they take
	// free ports too).
	dnsPort := freeUDPTCPPort(t)
	pebble := acmetest.Start(t, acmetest.Options{Options: pebbledev.Options{DNSServer: fmt.Sprintf("127.0.0.1:%d", dnsPort)}})
	node := rqlitetest.Start(t)
	ports := clusterPorts{front: freeClusterPort(t), dns: dnsPort, peer: freeClusterPort(t), client: freeClusterPort(t), join: freeClusterPort(t)}
	metrics1, metrics2 := freeClusterPort(t), freeClusterPort(t)
	root := t.TempDir()
	dir1, dir2 := filepath.Join(root, "core1"), filepath.Join(root, "core2")
	for _, d := range []string{dir1, dir2} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	front := func(ip string) string { return fmt.Sprintf("%s:%d", ip, ports.front) }
	cfg1 := filepath.Join(dir1, "default-config.yml")
	writeFile(t, cfg1, yamlConfig(
		fmt.Sprintf("http: {ip: 127.0.0.1, port: %d}", ports.front),
		"core: {id: core1, ip: 127.0.0.1, url: 'https://core1."+domain+"'}",
		fmt.Sprintf("dns: {active: true, domain: %s, ip: 127.0.0.1, port: %d, userLookup: {source: rqlite}}", domain, ports.dns),
		"storages: {engines: {rqlite: {url: '"+node.URL+"'}}}",
		"platform: {piiMode: hashed, piiHmacKey: '"+base64.StdEncoding.EncodeToString(hmacKey)+"'}",
		"letsEncrypt:",
		"  enabled: true",
		"  email: ops@"+domain,
		"  atRestKey: '"+base64.StdEncoding.EncodeToString(atRest)+"'",
		"  certRenewer: true",
		"  directoryUrl: "+pebble.DirectoryURL,
		"  directoryCaFile: "+pebble.CAFile,
		"  http01Port: "+itoa(pebble.HTTPPort),
		"  profile: shortlived",
		"auth: {adminAccessKey: '"+adminKey+"'}",
		fmt.Sprintf("platformDB: {peerAddress: '127.0.0.1:%d', clientAddress: '127.0.0.1:%d'}", ports.peer, ports.client),
		fmt.Sprintf("cluster: {ca: {path: %s}, joinPort: %d}", filepath.Join(dir1, "ca"), ports.join),
		fmt.Sprintf("metrics: {listen: '127.0.0.1:%d'}", metrics1),
	), 0o600)
	roots := pebble.IssuerRoots(t)
	cliOut := func(what, dir string, args ...string) {
		t.Helper()
		scan.add("CLI "+what, mustCLI(t, dir, args...))
	}

	// A wildcard from Pebble, users from rqlite by HMAC token.
	began := time.Now()
	c1 := startCoreIn(t, dir1, front("127.0.0.1"), "--config", cfg1)
	wildcard := waitWildcard(t, front("127.0.0.1"), "alice."+domain, roots, 90*time.Second, c1)
	node.Set("user-core/"+piiToken(hmacKey, "hasheduser"), "core1")
	waitDNS(t, "127.0.0.1", ports.dns, "hasheduser."+domain, "127.0.0.1", 10*time.Second)
	cliOut("init-ca-holder", dir1, "bootstrap", "init-ca-holder", "--config", cfg1)
	args1 := []string{"--config", cfg1, "--config", filepath.Join(dir1, "cluster-config.yml")}
	c1.signal(syscall.SIGTERM)
	c1.wait(20 * time.Second)
	scan.add("core1 log (first run)", c1.logs.String())
	c1 = startCoreIn(t, dir1, front("127.0.0.1"), args1...)
	waitSerialNamed(t, front("127.0.0.1"), "alice."+domain, roots, wildcard, 15*time.Second)

	// A join with a bundle passphrase. new-core prints it once, for the
	// operator: that line is the one place it may appear.
	bundle := filepath.Join(dir2, "core2.bundle")
	out := mustCLI(t, dir1, append(append([]string{"bootstrap", "new-core"}, args1...),
		"--id", "core2", "--ip", "127.0.0.2", "--url", "https://core2."+domain, "--out", bundle)...)
	pass := passphraseFrom(t, out)
	scan.secret("bundle passphrase", pass)
	var rest []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "passphrase: ") {
			rest = append(rest, line)
		}
	}
	scan.add("CLI new-core (but its passphrase line)", strings.Join(rest, "\n"))
	if strings.Count(out, pass) != 1 {
		t.Errorf("new-core prints the passphrase %d times, want once on its own line", strings.Count(out, pass))
	}
	writeFile(t, filepath.Join(dir2, "pass"), []byte(pass+"\n"), 0o600)
	cfg2 := filepath.Join(dir2, "default-config.yml")
	// The core's own platform settings, the same on every core (as the
	// core's own configuration has them).
	writeFile(t, cfg2, yamlConfig(
		fmt.Sprintf("metrics: {listen: '127.0.0.2:%d'}", metrics2),
		"dns: {userLookup: {source: rqlite}}",
		"storages: {engines: {rqlite: {url: '"+node.URL+"'}}}",
		"platform: {piiMode: hashed, piiHmacKey: '"+base64.StdEncoding.EncodeToString(hmacKey)+"'}",
	), 0o600)
	c2 := startCoreIn(t, dir2, front("127.0.0.2"), "--config", cfg2, "--bootstrap", bundle, "--bootstrap-passphrase-file", filepath.Join(dir2, "pass"))
	waitSerialNamed(t, front("127.0.0.2"), "alice."+domain, roots, wildcard, 60*time.Second)
	waitDNS(t, "127.0.0.2", ports.dns, "hasheduser."+domain, "127.0.0.1", 10*time.Second)
	args2 := []string{"--config", cfg2, "--config", filepath.Join(dir2, "cluster-config.yml")}

	// The admin API on the front, with the key and with wrong ones.
	frontCall := func(method, path, key string, body []byte) {
		t.Helper()
		cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{ServerName: "alice." + domain, RootCAs: roots},
			DialContext: func(_ context.Context, network, _ string) (net.Conn, error) {
				return net.Dial(network, front("127.0.0.2"))
			},
		}}
		req, _ := http.NewRequest(method, "https://alice."+domain+path, bytes.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", key)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		scan.add(fmt.Sprintf("front %s %s (%s)", method, path, resp.Status), fmt.Sprint(resp.Header)+"\n"+string(b))
	}
	for _, path := range []string{admin.OwnPrefix + "/cores", admin.OwnPrefix + "/certs", admin.CorePrefix + "/certs", admin.OwnPrefix + "/status"} {
		frontCall("GET", path, adminKey, nil)
		frontCall("GET", path, adminKey+"x", nil)
		frontCall("GET", path, "", nil)
	}

	// The control socket: an import (a private key of its own), status, lists.
	sock1 := filepath.Join(dir1, "var-pryv/run/pryv-tls.sock")
	p := newPKI(t, root)
	imported := p.issue(t, devpki.Leaf{Names: []string{"imported." + domain}})
	scan.pemKey("an imported private key", imported.KeyPEM)
	code, body := socketImport(t, sock1, "imported."+domain, imported)
	scan.add("socket POST /certs", body)
	if code != 200 {
		t.Fatalf("import: %d %s", code, body)
	}
	bad := *imported
	bad.KeyPEM = p.issue(t, devpki.Leaf{Names: []string{"imported." + domain}}).KeyPEM // a key that does not match
	scan.pemKey("a mismatched private key sent to import", bad.KeyPEM)
	code, body = socketImport(t, sock1, "imported."+domain, &bad)
	scan.add("socket POST /certs (mismatched key)", body)
	if code == 200 {
		t.Errorf("an import whose key does not match its certificate was accepted")
	}
	waitSerialNamed(t, front("127.0.0.2"), "imported."+domain, p.roots, serial(imported), 10*time.Second)
	for _, path := range []string{"/status", "/certs"} {
		resp, err := admin.SocketClient(sock1).Get("http://pryv-tls" + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		scan.add("socket GET "+path, string(b))
	}
	// status exits 1 while something needs attention: core2 is promoted
	// from learner a moment after its join.
	sock2 := filepath.Join(dir2, "var-pryv/run/pryv-tls.sock")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if st, err := socketStatus(sock2, 2*time.Second); err == nil && st.Core.PlatformDB.Up {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("core2's PlatformDB member not up 30 s after its join")
		}
	}
	cliOut("status", dir1, append([]string{"status"}, args1...)...)
	cliOut("certs list", dir1, append([]string{"certs", "list"}, args1...)...)
	cliOut("users set-core", dir1, append(append([]string{"users", "set-core"}, args1...), "bob", "core2")...)
	cliOut("list-tokens", dir1, append([]string{"bootstrap", "list-tokens"}, args1...)...)
	cliOut("status (core2)", dir2, append([]string{"status"}, args2...)...)

	// Metrics and probes.
	for _, m := range []string{fmt.Sprintf("127.0.0.1:%d", metrics1), fmt.Sprintf("127.0.0.2:%d", metrics2)} {
		for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + m + path)
			if err != nil {
				t.Fatalf("%s%s: %v", m, path, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			scan.add("scrape "+m+path, string(b))
		}
	}

	// The socket as another user: refused by its mode, and by the peer
	// check once the mode is opened up (as a careless chmod would).
	t.Run("control socket", func(t *testing.T) {
		st, err := os.Stat(sock1)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode()&fs.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
			t.Errorf("control socket %s: mode %s, want a socket 0600", sock1, st.Mode())
		}
		dst, err := os.Stat(filepath.Dir(sock1))
		if err != nil {
			t.Fatal(err)
		}
		if dst.Mode().Perm()&0o077 != 0 {
			t.Errorf("control socket directory %s: mode %v, want 0700", filepath.Dir(sock1), dst.Mode())
		}
		curlAs := func(cred *syscall.Credential) (string, int) {
			cmd := exec.Command(curl, "-sS", "--max-time", "5", "--unix-socket", sock1, "http://pryv-tls/status")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
			b, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return string(b), ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			return string(b), 0
		}
		asNobody := func() (string, int) { return curlAs(&syscall.Credential{Uid: 65534, Gid: 65534}) }
		asRoot := func() (string, int) { return curlAs(nil) }
		out, code := asNobody()
		if code != 7 || strings.Contains(out, `"core"`) {
			t.Errorf("uid 65534 on the 0600 socket: curl exit %d (want 7, connect refused) %s", code, out)
		}
		// Open the socket and the directories above it to everyone: the
		// connection is then made, and the daemon's SO_PEERCRED check is
		// what refuses it.
		var restore []func()
		defer func() {
			for i := len(restore) - 1; i >= 0; i-- {
				restore[i]()
			}
		}()
		opened := func(p string, m os.FileMode) {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, m); err != nil {
				t.Fatal(err)
			}
			restore = append(restore, func() { _ = os.Chmod(p, st.Mode().Perm()) })
		}
		for d := filepath.Dir(sock1); strings.HasPrefix(d, root) || strings.HasPrefix(root, d+"/"); d = filepath.Dir(d) {
			if d == filepath.Dir(d) || d == os.TempDir() {
				break
			}
			if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o001 == 0 {
				opened(d, st.Mode().Perm()|0o011)
			}
		}
		opened(sock1, 0o666)
		// The first connect just after the chmod is sometimes refused
		// (curl exit 7) before any byte; a few tries, bounded.
		tries := 0
		for tries < 5 {
			tries++
			if out, code = asNobody(); code != 7 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if code == 7 || code == 0 || strings.Contains(out, `"core"`) {
			cmd := exec.Command("python3", "-c", "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.send(b'GET / HTTP/1.0\\r\\n\\r\\n'); print('recv', s.recv(100))", sock1)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			pout, _ := cmd.CombinedOutput()
			t.Errorf("uid 65534 on a socket opened to all: curl exit %d %s after %d tries; want the connection made (not 7) and closed by the peer check; python: %s", code, out, tries, pout)
		}
		for i := len(restore) - 1; i >= 0; i-- {
			restore[i]()
		}
		restore = nil
		peerOut := strings.TrimSpace(out)
		if out, code := asRoot(); code != 0 || !strings.Contains(out, `"core"`) {
			t.Errorf("root on the socket (modes restored): curl exit %d %s", code, out)
		}
		recordReliability(t, Row{Scenario: 8, Case: "control socket",
			Done:    "the control socket tried as uid 65534 (curl --unix-socket): as it is, then opened to all (socket 0666, the directories above it o+x), then as root",
			Figures: fmt.Sprintf("socket %s in a %s directory: uid 65534 refused at connect; opened to all, the connection is made and closed by the SO_PEERCRED check (%q); root answered", st.Mode().Perm(), dst.Mode().Perm(), peerOut),
			Outcome: faults.Held})
	})

	// Stop both (their shutdown lines are scanned too).
	c2.signal(syscall.SIGTERM)
	c2.wait(20 * time.Second)
	c1.signal(syscall.SIGTERM)
	c1.wait(20 * time.Second)
	scan.add("core1 log", c1.logs.String())
	scan.add("core2 log", c2.logs.String())

	// Every private key on disk is a secret too, and must be 0600; data
	// directories 0700.
	var keyFiles, loose []string
	for _, d := range []string{dir1, dir2} {
		_ = filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || e.Type()&fs.ModeSymlink != 0 || !e.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil || !bytes.Contains(b, []byte("PRIVATE KEY-----")) {
				return nil
			}
			rel, _ := filepath.Rel(root, path)
			keyFiles = append(keyFiles, rel)
			scan.pemKey("private key "+rel, b)
			if info, _ := e.Info(); info != nil && info.Mode().Perm()&0o077 != 0 {
				loose = append(loose, fmt.Sprintf("%s %s", rel, info.Mode().Perm()))
			}
			return nil
		})
	}
	// tlsDir is left 0755 by certstore (it holds the public chains too, which
	// other programs may read; each privkey.pem in it is 0600): reported,
	// not held to 0700.
	tlsMode := "?"
	if st, err := os.Stat(filepath.Join(dir1, "var-pryv/tls")); err == nil {
		tlsMode = st.Mode().Perm().String()
	}
	for _, d := range []string{filepath.Join(dir1, "ca"), filepath.Join(dir1, "var-pryv/platformdb"), filepath.Join(dir2, "var-pryv/platformdb"),
		filepath.Join(dir1, "var-pryv/platformdb-tls"), filepath.Join(dir2, "var-pryv/platformdb-tls"), filepath.Join(dir1, "var-pryv/run")} {
		st, err := os.Stat(d)
		if err != nil {
			t.Errorf("data directory %s: %v", d, err)
			continue
		}
		if st.Mode().Perm()&0o077 != 0 {
			rel, _ := filepath.Rel(root, d)
			loose = append(loose, fmt.Sprintf("%s/ %s", rel, st.Mode().Perm()))
		}
	}
	if len(keyFiles) < 4 {
		t.Errorf("only %d private key files found on disk (%v): the walk is not looking where the keys are", len(keyFiles), keyFiles)
	}
	if len(loose) > 0 {
		t.Errorf("key files or data directories readable by others: %v", loose)
	}
	leaks := scan.hits()
	if len(leaks) > 0 {
		t.Errorf("secrets out: %v", leaks)
	}
	n, size := scan.size()
	forms := 0
	for _, f := range scan.secrets {
		forms += len(f)
	}
	outcome := faults.Held
	if len(leaks) > 0 || len(loose) > 0 {
		outcome = faults.NotFixed
	}
	recordReliability(t, Row{Scenario: 8, Case: "secrets in outputs, modes on disk",
		Done: "a wildcard ordered from Pebble (DNS-01), users found in a stand-in rqlite by HMAC token, init-ca-holder, new-core and a join with a bundle passphrase, admin API on the front (right, wrong and no key) and on the socket (an import, a mismatched key, status, lists), CLI status/certs/users/list-tokens, metrics and probes of both cores, SIGTERM; every output searched for every secret",
		Figures: fmt.Sprintf("%d secrets (atRestKey, piiHmacKey, admin key, passphrase, %d private keys on disk + 2 sent) in %d forms, searched in %d outputs (%d KiB): %d hits; %d key files (0600) and 6 directories holding keys or data (0700): %d readable by others (tlsDir itself: %s); %s",
			len(scan.secrets), len(keyFiles), forms, n, size/1024, len(leaks), len(keyFiles), len(loose), tlsMode, time.Since(began).Round(time.Second)),
		Outcome: outcome})
}

// piiToken is the core's HMAC token of a username (open-pryv.io's PiiHasher).
func piiToken(key []byte, user string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("username\x00" + user))
	return hex.EncodeToString(m.Sum(nil))
}
