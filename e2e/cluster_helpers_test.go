package e2e

import (
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/acme/pebbledev"
	"github.com/pryv/pryv-tls/internal/admin"
)

// clusterOptions are what differs between the clusters the tests make. The
// zero value is three DNS-less cores with no ACME.
type clusterOptions struct {
	// cores is how many: 0 means 3 (core1 on 127.0.0.1, coreN on 127.0.0.N).
	cores int
	// dns makes core1 authoritative for mc.example.com (dns.active, on a
	// port of its own), the joiners' bundles naming their core.url; without
	// it the domain is example.org and each joiner's own configuration names
	// its core.url and listener, as a DNS-less core's does.
	dns bool
	// dnsExtra is added inside core1's dns: {...} (e.g. "dnssec: true").
	dnsExtra string
	// acme runs Pebble and makes core1 the certRenewer (letsEncrypt on):
	// its first certificate is waited for, and each joiner serves it.
	acme bool
	// profile is letsEncrypt.profile ("" leaves the default).
	profile string
	// challenge is letsEncrypt.challenge; "tls-alpn-01" points Pebble's
	// validations at the front's port, nothing listening on its HTTP-01 one.
	challenge string
	// joinerConfig are lines added to every joiner's own configuration.
	joinerConfig []string
}

// cluster is a platform made as an operator makes one (the README's
// cluster walkthrough): core1 alone first, then `bootstrap init-ca-holder`
// on it, a restart with the override, and one `bootstrap new-core` bundle
// per other core, each started with --bootstrap.
type cluster struct {
	t      *testing.T
	opts   clusterOptions
	domain string
	ports  clusterPorts
	pebble *acmetest.Pebble // nil without acme
	roots  *x509.CertPool   // Pebble's issuer roots
	root   string
	dirs   map[string]string // core id -> its directory
	// cfg1 is core1's own configuration, override1 what init-ca-holder
	// wrote beside it (there once join ran).
	cfg1, override1 string
	cores           map[string]*core // the running cores, by id
	// first is the serial of core1's first certificate (acme), firstTook
	// how long after core1's start it was served.
	first     string
	firstTook time.Duration
	// caHolder is what init-ca-holder printed.
	caHolder string
}

// startCluster makes the ports, Pebble, the directories and core1's
// configuration, starts core1 alone and, with acme, waits until it serves
// its first certificate. join makes the cluster.
func startCluster(t *testing.T, opts clusterOptions) *cluster {
	t.Helper()
	if opts.cores == 0 {
		opts.cores = 3
	}
	cl := &cluster{t: t, opts: opts, domain: "example.org", root: t.TempDir(), dirs: map[string]string{}, cores: map[string]*core{}}
	cl.ports = clusterPorts{front: freePort(t), peer: freePort(t), client: freePort(t), join: freePort(t)}
	if opts.dns {
		cl.domain = "mc.example.com"
		cl.ports.dns = freeUDPTCPPort(t)
	}
	for _, id := range cl.ids() {
		cl.dirs[id] = filepath.Join(cl.root, id)
		if err := os.MkdirAll(cl.dirs[id], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	key := strings.TrimSpace(mustOut(t, binary, "keygen"))
	lines := []string{
		"http: {ip: 127.0.0.1, port: " + itoa(cl.ports.front) + "}",
		"core: {id: core1, ip: 127.0.0.1, url: 'https://core1." + cl.domain + "'}",
	}
	if opts.dns {
		extra := ""
		if opts.dnsExtra != "" {
			extra = ", " + opts.dnsExtra
		}
		lines = append(lines, "dns: {active: true, domain: "+cl.domain+", ip: 127.0.0.1, port: "+itoa(cl.ports.dns)+extra+"}")
	}
	if opts.acme {
		lines = append(lines, cl.startPebble(key)...)
	} else {
		lines = append(lines, "letsEncrypt: {atRestKey: '"+key+"'}")
	}
	lines = append(lines,
		"auth: {adminAccessKey: cluster-admin}",
		"platformDB: {peerAddress: '127.0.0.1:"+itoa(cl.ports.peer)+"', clientAddress: '127.0.0.1:"+itoa(cl.ports.client)+"'}",
		"cluster: {ca: {path: "+filepath.Join(cl.dirs["core1"], "ca")+"}, joinPort: "+itoa(cl.ports.join)+"}",
	)
	cl.cfg1 = filepath.Join(cl.dirs["core1"], "default-config.yml")
	cl.override1 = filepath.Join(cl.dirs["core1"], "cluster-config.yml")
	writeFile(t, cl.cfg1, yamlConfig(lines...), 0o600)

	begin := time.Now()
	cl.cores["core1"] = startCoreIn(t, cl.dirs["core1"], cl.front("core1"), "--config", cl.cfg1)
	if opts.acme {
		cl.first = waitWildcard(t, cl.front("core1"), cl.probe(), cl.roots, cl.firstWait(), cl.cores["core1"])
		cl.firstTook = time.Since(begin)
	}
	return cl
}

// startPebble starts Pebble for the cluster and returns core1's
// letsEncrypt section.
func (cl *cluster) startPebble(atRestKey string) []string {
	t, opts := cl.t, cl.opts
	var po pebbledev.Options
	if opts.dns {
		po.DNSServer = fmt.Sprintf("127.0.0.1:%d", cl.ports.dns) // DNS-01 through core1's DNS
	}
	if opts.challenge == "tls-alpn-01" {
		po.HTTPPort = freePort(t) // nothing may listen there
		po.TLSALPNPort = cl.ports.front
	}
	cl.pebble = acmetest.Start(t, acmetest.Options{Options: po})
	if !opts.dns {
		for _, id := range cl.ids()[1:] { // Pebble's responder: coreN.example.org is 127.0.0.N
			cl.pebble.SetA(t, id+"."+cl.domain, cl.ip(id))
		}
	}
	cl.roots = cl.pebble.IssuerRoots(t)
	lines := []string{
		"letsEncrypt:",
		"  enabled: true",
		"  email: ops@" + cl.domain,
		"  atRestKey: '" + atRestKey + "'",
		"  certRenewer: true",
		"  directoryUrl: " + cl.pebble.DirectoryURL,
		"  directoryCaFile: " + cl.pebble.CAFile,
		"  http01Port: " + itoa(cl.pebble.HTTPPort),
	}
	if opts.profile != "" {
		lines = append(lines, "  profile: "+opts.profile)
	}
	if opts.challenge != "" {
		lines = append(lines, "  challenge: "+opts.challenge)
	}
	return lines
}

// join makes core1 the CA holder, restarts it with the override (it serves
// its first certificate again), and joins the other cores one by one with
// bundles, each ready before the next: serving core1's first certificate
// from replication with acme, else answering core1's name in its DNS. A
// copy of each bundle is kept as <bundle>.copy, since the join deletes it.
func (cl *cluster) join() {
	t := cl.t
	t.Helper()
	cl.caHolder = mustCLI(t, cl.dirs["core1"], "bootstrap", "init-ca-holder", "--config", cl.cfg1)
	c1 := cl.cores["core1"]
	c1.signal(syscall.SIGTERM)
	c1.wait(20 * time.Second)
	cl.cores["core1"] = startCoreIn(t, cl.dirs["core1"], cl.front("core1"), "--config", cl.cfg1, "--config", cl.override1)
	if cl.opts.acme {
		waitSerialNamed(t, cl.front("core1"), cl.probe(), cl.roots, cl.first, 15*time.Second)
	}
	for _, id := range cl.ids()[1:] {
		dir, ip := cl.dirs[id], cl.ip(id)
		bundle := filepath.Join(dir, id+".bundle")
		args := []string{"bootstrap", "new-core", "--config", cl.cfg1, "--config", cl.override1, "--id", id, "--ip", ip, "--out", bundle}
		own := cl.opts.joinerConfig
		if cl.opts.dns {
			args = append(args, "--url", "https://"+id+"."+cl.domain)
		} else { // the bundle names no core.url: the core's own files do
			own = append([]string{"core: {url: 'https://" + id + "." + cl.domain + "'}", "http: {ip: " + ip + ", port: " + itoa(cl.ports.front) + "}"}, own...)
		}
		if len(own) == 0 {
			own = []string{"# this core's own settings would go here"}
		}
		out := mustCLI(t, cl.dirs["core1"], args...)
		writeFile(t, filepath.Join(dir, "pass"), []byte(passphraseFrom(t, out)+"\n"), 0o600)
		copyFile(t, bundle, bundle+".copy")
		cfg := filepath.Join(dir, "default-config.yml")
		writeFile(t, cfg, yamlConfig(own...), 0o600)
		begin := time.Now()
		cl.cores[id] = startCoreIn(t, dir, cl.front(id), "--config", cfg, "--bootstrap", bundle,
			"--bootstrap-passphrase-file", filepath.Join(dir, "pass"))
		if cl.opts.acme {
			waitSerialNamed(t, cl.front(id), cl.probe(), cl.roots, cl.first, 30*time.Second)
		} else {
			waitDNS(t, ip, cl.ports.dns, "core1."+cl.domain, "127.0.0.1", 30*time.Second)
		}
		t.Logf("%s: joined, core1's rows served from replication %s after its start", id, time.Since(begin).Round(time.Millisecond))
		if _, err := os.Stat(bundle); !os.IsNotExist(err) {
			t.Errorf("%s: the bundle was not deleted after the join", id)
		}
	}
}

// ids are the cores' ids, core1 first.
func (cl *cluster) ids() []string {
	ids := make([]string, cl.opts.cores)
	for i := range ids {
		ids[i] = fmt.Sprintf("core%d", i+1)
	}
	return ids
}

// ip is core id's address: coreN is on 127.0.0.N.
func (cl *cluster) ip(id string) string { return "127.0.0." + strings.TrimPrefix(id, "core") }

// front is core id's front address.
func (cl *cluster) front(id string) string { return fmt.Sprintf("%s:%d", cl.ip(id), cl.ports.front) }

// socket is core id's control socket.
func (cl *cluster) socket(id string) string {
	return filepath.Join(cl.dirs[id], "var-pryv/run/pryv-tls.sock")
}

// probe is the name whose certificate tells core1's first one is served:
// a user's under the wildcard with DNS (DNS-01), core1's core.url without.
func (cl *cluster) probe() string {
	if cl.opts.dns {
		return "alice." + cl.domain
	}
	return "core1." + cl.domain
}

// firstWait bounds core1's first issuance: a DNS-01 wildcard takes longer.
func (cl *cluster) firstWait() time.Duration {
	if cl.opts.dns {
		return 90 * time.Second
	}
	return 60 * time.Second
}

// forceRenew asks the renewer behind sock to order hostname now, retrying
// while its plan is not known yet (the core's core-info row has not reached
// the renewer); a failure shows the logs of the cores given.
func forceRenew(t *testing.T, sock, hostname string, logsOf ...*core) {
	t.Helper()
	client := admin.SocketClient(sock)
	client.Timeout = 2 * time.Minute // an order behind the renewer's own pass waits for its lock
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Post("http://pryv-tls/certs/force-renew", "application/json", strings.NewReader(`{"hostname":"`+hostname+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		if time.Now().After(deadline) || !strings.Contains(string(body), "not a hostname") {
			var logs strings.Builder
			for _, c := range logsOf {
				fmt.Fprintf(&logs, "\n%s:\n%s", c.addr, c.logs.String())
			}
			t.Fatalf("force-renew of %s: %s %s%s", hostname, resp.Status, body, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
