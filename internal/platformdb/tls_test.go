package platformdb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pryv/pryv-tls/internal/clusterca"
)

// ---- mutual TLS from the cluster CA ----

func TestEtcdTLSContract(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	testStore(t, func(t *testing.T) Store { return openEtcdTLS(t, "", pki.node) })
}

// TestTLSStartupTime measures start-to-ready with TLS, fresh and on an
// existing data dir, next to the same without TLS (not parallel: the
// timings are for the log, not asserted).
func TestTLSStartupTime(t *testing.T) {
	pki := newTestPKI(t)
	var withTLS, without []string
	for range 3 {
		start := time.Now()
		e := openEtcdTLS(t, "", pki.node)
		withTLS = append(withTLS, time.Since(start).Round(time.Millisecond).String())
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		e = openEtcd(t, "")
		without = append(without, time.Since(start).Round(time.Millisecond).String())
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	e := openEtcdTLS(t, "", pki.node)
	mustPut(t, e, "k", []byte("v"))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	openEtcdTLS(t, e.DataDir(), pki.node)
	t.Logf("start-to-ready with TLS: fresh %s, restart %v; without TLS: fresh %s",
		strings.Join(withTLS, " "), time.Since(start).Round(time.Millisecond), strings.Join(without, " "))
}

// TestTLSRefusesStrangers: with TLS on, nothing without a node certificate
// of the cluster CA reads or writes the store, on either listener.
func TestTLSRefusesStrangers(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	log, rec := testLogger(t)
	e := openEtcdTLSLog(t, "", pki.node, log)
	mustPut(t, e, "secret/k", []byte("v"))
	client, peer := e.ClientAddress(), e.PeerAddress()

	other := newTestPKI(t) // another cluster's CA
	sameCA := pki.issue(t, "core-2", loopbackIP)
	otherCA := other.issue(t, "core-2", loopbackIP)
	// A node certificate of the right CA that names only 127.0.0.2 (no
	// DNS SAN, so etcd's check does no DNS lookup).
	wrongIP := pki.issue(t, "127.0.0.2")

	t.Run("Client", func(t *testing.T) {
		cases := []struct {
			name string
			cfg  clientv3.Config
		}{
			{"NoTLS", clientv3.Config{Endpoints: []string{client}}},
			{"HTTPScheme", clientv3.Config{Endpoints: []string{"http://" + client}}},
			{"NoClientCert", clientv3.Config{Endpoints: []string{client}, TLS: &tls.Config{RootCAs: pki.ca.Pool()}}},
			{"OtherCA", clientv3.Config{Endpoints: []string{client}, TLS: tlsConfig(t, otherCA, pki.ca.Pool())}},
			// The server check is not what refuses it: skip it.
			{"OtherCAInsecure", clientv3.Config{Endpoints: []string{client}, TLS: &tls.Config{InsecureSkipVerify: true, Certificates: tlsConfig(t, otherCA, nil).Certificates}}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				err := tryClient(c.cfg)
				if err == nil {
					t.Fatal("a client without a node certificate read and wrote the store")
				}
				t.Logf("refused: %v", err)
			})
		}
	})

	t.Run("ClientHTTP", func(t *testing.T) {
		t.Parallel()
		hc := &http.Client{Timeout: 2 * time.Second}
		for _, u := range []string{"http://" + client + "/health", "http://" + client + "/version", "http://" + peer + "/members"} {
			resp, err := hc.Get(u)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Fatalf("plain HTTP %s answered %s: %q", u, resp.Status, body)
			}
			t.Logf("plain HTTP %s: %v", u, err)
		}
		// HTTPS without a client certificate: refused too.
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.ca.Pool()}}
		if resp, err := hc.Get("https://" + client + "/health"); err == nil {
			resp.Body.Close()
			t.Fatalf("https without a client certificate answered %s", resp.Status)
		}
	})

	t.Run("Peer", func(t *testing.T) {
		t.Parallel()
		// No client certificate: the handshake fails. With TLS 1.3 the
		// client's Handshake returns before the server has checked its
		// (empty) certificate; the refusal is the first thing it reads.
		err := peerGet(peer, &tls.Config{RootCAs: pki.ca.Pool()}, nil)
		if err == nil {
			t.Fatal("peer listener accepted a client without a certificate")
		}
		t.Logf("no certificate: %v", err)
		if err := peerGet(peer, tlsConfig(t, otherCA, pki.ca.Pool()), nil); err == nil {
			t.Fatal("peer listener accepted another CA's certificate")
		}
		// A node certificate that does not name the source address.
		if err := peerGet(peer, tlsConfig(t, wrongIP, pki.ca.Pool()), nil); err == nil {
			t.Fatal("peer listener accepted a certificate that does not name the source address")
		} else {
			t.Logf("certificate for 127.0.0.2 from 127.0.0.1: %v", err)
		}
		// The same certificate from 127.0.0.2 passes, and so does a node
		// certificate naming 127.0.0.1: the refusals above are not the
		// listener refusing everyone.
		if err := peerGet(peer, tlsConfig(t, wrongIP, pki.ca.Pool()), net.IPv4(127, 0, 0, 2)); err != nil {
			t.Fatalf("certificate for 127.0.0.2 from 127.0.0.2: %v", err)
		}
		if err := peerGet(peer, tlsConfig(t, sameCA, pki.ca.Pool()), nil); err != nil {
			t.Fatalf("node certificate: %v", err)
		}
	})

	t.Run("SameCA", func(t *testing.T) {
		t.Parallel()
		l, _ := testLogger(t)
		c, err := Connect(testCtx(t), ConnectOptions{Endpoints: []string{client}, TLS: sameCA, Logger: l})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if en, err := c.Get(testCtx(t), "secret/k"); err != nil || string(en.Value) != "v" {
			t.Fatalf("Get %+v %v", en, err)
		}
		mustPut(t, c, "other/k", []byte("w"))
		// The raw client of the same certificate works too.
		if err := tryClient(clientv3.Config{Endpoints: []string{client}, TLS: tlsConfig(t, sameCA, pki.ca.Pool())}); err != nil {
			t.Fatal(err)
		}
	})

	// Run after the subtests (they are parallel).
	t.Cleanup(func() {
		entries, _, err := e.List(context.Background(), "rogue/")
		if err != nil || len(entries) != 1 { // the one from SameCA's raw client
			t.Errorf("rogue writes: %v %v", keys(entries), err)
		}
		var client, peer int
		for _, l := range rec.loud() {
			client += strings.Count(l, "rejected connection on client endpoint")
			peer += strings.Count(l, "rejected connection on peer endpoint")
		}
		t.Logf("server log: %d client, %d peer rejections at warning level", client, peer)
		// The reason of a refusal is in the server's log (the client
		// mostly sees a deadline).
		if client < 5 || peer < 3 {
			t.Errorf("rejections logged: %d client, %d peer; want at least 5 and 3", client, peer)
		}
	})
}

// TestTLSOpenChecks: Open and Connect check the files first and say what
// is wrong.
func TestTLSOpenChecks(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	other := newTestPKI(t)
	log, _ := testLogger(t)
	ctx := testCtx(t)
	open := func(files *TLSFiles) error {
		e, err := Open(ctx, Options{DataDir: filepath.Join(t.TempDir(), "db"), PeerAddress: "127.0.0.1:0", ClientAddress: "127.0.0.1:0", Logger: log, TLS: files})
		if err == nil {
			_ = e.Close()
		}
		return err
	}
	missing := *pki.node
	missing.CAFile = filepath.Join(t.TempDir(), "nope.pem")
	foreign := *pki.node
	foreign.CAFile = other.node.CAFile
	swapped := *pki.node
	swapped.KeyFile = other.node.KeyFile
	for _, c := range []struct {
		name  string
		files *TLSFiles
		want  string
	}{
		{"MissingCA", &missing, missing.CAFile},
		{"OtherCA", &foreign, "not valid under CA " + foreign.CAFile},
		{"KeyMismatch", &swapped, swapped.KeyFile},
		{"NoLoopback", pki.issue(t, "127.0.0.2"), "does not name the peer address 127.0.0.1"},
		{"Empty", &TLSFiles{}, "required"},
	} {
		err := open(c.files)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: %v, want it to contain %q", c.name, err, c.want)
		}
		t.Logf("%s: %v", c.name, err)
	}
	if _, err := Connect(ctx, ConnectOptions{Endpoints: []string{"http://127.0.0.1:1"}, TLS: pki.node}); err == nil || !strings.Contains(err.Error(), "not https") {
		t.Fatalf("Connect to an http:// endpoint with TLS: %v", err)
	}
}

// TestTLSTurnOnAndRotate: a data dir made without TLS opens with it (the
// stored peer URL becomes https), a clean TLS life logs nothing loud, and a
// node certificate replaced on disk is served from the next handshake.
func TestTLSTurnOnAndRotate(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	e := openEtcd(t, "")
	rev := mustPut(t, e, "k", []byte("v"))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	log, rec := testLogger(t)
	e = openEtcdTLSLog(t, e.DataDir(), pki.node, log)
	ctx := testCtx(t)
	if en, err := e.Get(ctx, "k"); err != nil || en.Revision != rev {
		t.Fatalf("after turning TLS on: %+v %v", en, err)
	}
	ml, err := e.Client().MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// (The published client URL is the configured one, port 0 here.)
	if len(ml.Members) != 1 || len(ml.Members[0].PeerURLs) != 1 || ml.Members[0].PeerURLs[0] != "https://"+e.PeerAddress() ||
		len(ml.Members[0].ClientURLs) != 1 || !strings.HasPrefix(ml.Members[0].ClientURLs[0], "https://") {
		t.Fatalf("members: %+v", ml.Members)
	}
	ch := e.Watch(ctx, "w/", 0)
	mustPut(t, e, "w/1", nil)
	recvN(t, ch, 1)
	l, err := e.Lock(ctx, "l", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	// Rotation: re-issue the node certificate (one more IP SAN) in place.
	served := func() *x509.Certificate {
		t.Helper()
		conn, err := tls.Dial("tcp", e.ClientAddress(), tlsConfig(t, pki.node, pki.ca.Pool()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	before := served()
	if _, _, err := clusterca.EnsureNodeCert(pki.ca, filepath.Dir(pki.node.CertFile), clusterca.Node{ID: "core-test", IPs: []net.IP{loopbackIP, net.IPv4(127, 0, 0, 3)}}); err != nil {
		t.Fatal(err)
	}
	after := served()
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 || after.VerifyHostname("127.0.0.3") != nil {
		t.Fatal("the member still serves the old certificate")
	}
	c, err := Connect(ctx, ConnectOptions{Endpoints: []string{e.ClientAddress()}, TLS: pki.node, Logger: log})
	if err != nil {
		t.Fatalf("connect with the rotated certificate: %v", err)
	}
	mustPut(t, c, "after-rotation", nil)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	mustPut(t, e, "w/2", nil) // the member's own connection carries on
	recvN(t, ch, 1)

	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := rec.loud(); len(n) > 0 {
		t.Fatalf("logged at warning level or above:\n%s", strings.Join(n, "\n"))
	}
}

// TestPairReader: the client's certificate follows the files, and keeps
// the last good pair while they are unreadable.
func TestPairReader(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	r := &pairReader{certFile: pki.node.CertFile, keyFile: pki.node.KeyFile}
	p1, err := r.get()
	if err != nil {
		t.Fatal(err)
	}
	if p2, _ := r.get(); p2 != p1 {
		t.Fatal("unchanged files loaded again")
	}
	if _, _, err := clusterca.EnsureNodeCert(pki.ca, filepath.Dir(pki.node.CertFile), clusterca.Node{ID: "core-test", DNSNames: []string{"core-test.example"}, IPs: []net.IP{loopbackIP}}); err != nil {
		t.Fatal(err)
	}
	p3, err := r.get()
	if err != nil || p3.Leaf == nil || p3.Leaf.VerifyHostname("core-test.example") != nil {
		t.Fatalf("after re-issue: %v", err)
	}
	if err := os.WriteFile(pki.node.CertFile, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p4, err := r.get(); err != nil || p4 != p3 {
		t.Fatalf("unreadable files: %v, want the last good pair", err)
	}
	r = &pairReader{certFile: pki.node.CertFile, keyFile: pki.node.KeyFile}
	if _, err := r.get(); err == nil || !strings.Contains(err.Error(), pki.node.CertFile) {
		t.Fatalf("first load of bad files: %v", err)
	}
}

// ---- helpers ----

var loopbackIP = net.IPv4(127, 0, 0, 1).To4()

// testPKI is a cluster CA and a node certificate ("core-test",
// 127.0.0.1) in a temporary directory.
type testPKI struct {
	ca   *clusterca.CA
	dir  string
	node *TLSFiles
	n    atomic.Int32
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	ca, err := clusterca.LoadOrCreateCA(filepath.Join(p.dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	p.ca = ca
	p.node = p.issue(t, "core-test", loopbackIP)
	return p
}

// issue writes a node certificate for id and ips in a new directory.
func (p *testPKI) issue(t testing.TB, id string, ips ...net.IP) *TLSFiles {
	t.Helper()
	dir := filepath.Join(p.dir, fmt.Sprintf("node-%d", p.n.Add(1)))
	cert, key, err := clusterca.EnsureNodeCert(p.ca, dir, clusterca.Node{ID: id, IPs: ips})
	if err != nil {
		t.Fatal(err)
	}
	return &TLSFiles{CAFile: filepath.Join(p.dir, "ca", clusterca.CACertName), CertFile: cert, KeyFile: key}
}

func openEtcdTLS(t testing.TB, dir string, files *TLSFiles) *Etcd {
	t.Helper()
	log, _ := testLogger(t)
	return openEtcdTLSLog(t, dir, files, log)
}

// openEtcdTLSLog opens a member with TLS on dir (a fresh one if "") with
// port-0 addresses; the test's cleanup closes it.
func openEtcdTLSLog(t testing.TB, dir string, files *TLSFiles, log *slog.Logger) *Etcd {
	t.Helper()
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "db")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := Open(ctx, Options{
		DataDir:       dir,
		PeerAddress:   "127.0.0.1:0",
		ClientAddress: "127.0.0.1:0",
		Logger:        log,
		TLS:           files,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// tlsConfig is a client tls.Config presenting files' certificate and
// trusting roots.
func tlsConfig(t testing.TB, files *TLSFiles, roots *x509.CertPool) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}
}

// tryClient writes then reads with a raw etcd client of cfg, each bounded
// by a short timeout, and returns the first error.
func tryClient(cfg clientv3.Config) error {
	cfg.DialTimeout = time.Second
	cfg.Logger = zap.NewNop()
	cli, err := clientv3.New(cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "rogue/k", "x"); err != nil {
		return err
	}
	_, err = cli.Get(ctx, "secret/k")
	return err
}

// peerGet does GET /members on the peer listener over TLS with cfg, from
// local address from (nil: any), and fails unless it gets a 200.
func peerGet(peer string, cfg *tls.Config, from net.IP) error {
	d := &net.Dialer{Timeout: 2 * time.Second}
	if from != nil {
		d.LocalAddr = &net.TCPAddr{IP: from}
	}
	cfg = cfg.Clone()
	cfg.ServerName = "127.0.0.1"
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := tls.DialWithDialer(d, network, addr, cfg)
			if err != nil {
				return nil, fmt.Errorf("handshake: %w", err)
			}
			return c, nil
		},
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 3 * time.Second}
	resp, err := hc.Get("https://" + peer + "/members")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}
