package platformdb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pryv/pryv-tls/internal/testutil"
)

func leafOf(t *testing.T, f *TLSFiles) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf
}

func openDenylisted(t *testing.T, dir string, files *TLSFiles) *Etcd {
	t.Helper()
	log, _ := testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := Open(ctx, Options{DataDir: filepath.Join(dir, "db"), PeerAddress: "127.0.0.1:0", ClientAddress: "127.0.0.1:0",
		Logger: log, TLS: files, DenylistFile: filepath.Join(dir, "denied.crl")})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestDenylist: a node certificate of the cluster CA is refused on both
// listeners once denied, a certificate of another core is not, the row
// written by another member (a plain Put) is applied by the watch, and a
// restart refuses the denied certificate from its first connection.
func TestDenylist(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	dir := t.TempDir()
	e := openDenylisted(t, dir, pki.node)
	mustPut(t, e, "secret/k", []byte("v"))
	removed := pki.issue(t, "core-2", loopbackIP)
	kept := pki.issue(t, "core-3", loopbackIP)
	viaWatch := pki.issue(t, "core-4", loopbackIP)
	client := func(f *TLSFiles) error {
		return tryClient(clientv3.Config{Endpoints: []string{e.ClientAddress()}, TLS: tlsConfig(t, f, pki.ca.Pool())})
	}
	peer := func(f *TLSFiles) error { return peerGet(e.PeerAddress(), tlsConfig(t, f, pki.ca.Pool()), nil) }
	for _, f := range []*TLSFiles{removed, kept, viaWatch} {
		if err := client(f); err != nil {
			t.Fatalf("before any denial, client %s: %v", f.CertFile, err)
		}
		if err := peer(f); err != nil {
			t.Fatalf("before any denial, peer %s: %v", f.CertFile, err)
		}
	}

	leaf := leafOf(t, removed)
	if err := e.Deny(testCtx(t), DeniedCert{Serial: SerialHex(leaf), SPKI: SPKIHash(leaf), CoreID: "core-2", DeniedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if !e.Denied(leaf) {
		t.Fatal("Denied is false right after Deny")
	}
	if err := client(removed); err == nil {
		t.Error("the client listener accepted a denied certificate")
	}
	if err := peer(removed); err == nil {
		t.Error("the peer listener accepted a denied certificate")
	}
	if err := client(kept); err != nil {
		t.Errorf("another core's certificate refused: %v", err)
	}
	if err := peer(kept); err != nil {
		t.Errorf("another core's certificate refused on the peer listener: %v", err)
	}
	// The same key under a new serial (a renewal) is denied by public key.
	renewedPEM, err := pki.ca.Renew(leaf, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := parseCertPEMForTest(renewedPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !e.Denied(renewed) || e.Denied(leafOf(t, kept)) {
		t.Errorf("Denied(renewed) = %v, Denied(kept) = %v", e.Denied(renewed), e.Denied(leafOf(t, kept)))
	}

	// A row another member wrote reaches this one through the watch.
	w := leafOf(t, viaWatch)
	data, _ := json.Marshal(DeniedCert{Serial: SerialHex(w), CoreID: "core-4", DeniedAt: time.Now()})
	mustPut(t, e.Conn, DeniedKey(SerialHex(w)), data)
	testutil.EventuallyTrue(t, 5*time.Second, "a denylist row written directly applied", func() bool { return e.Denied(w) })
	if err := client(viaWatch); err == nil {
		t.Error("the client listener accepted a certificate denied through the watch")
	}
	if got := len(e.DeniedCerts()); got != 2 {
		t.Errorf("DeniedCerts: %d rows, want 2", got)
	}

	// A restart refuses it from the start (the file of the last run).
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openDenylisted(t, dir, pki.node)
	defer e.Close()
	if err := client(removed); err == nil {
		t.Error("after a restart, the client listener accepted a denied certificate")
	}
	if err := client(kept); err != nil {
		t.Errorf("after a restart, another core's certificate refused: %v", err)
	}
	if en, err := e.Get(testCtx(t), "secret/k"); err != nil || string(en.Value) != "v" {
		t.Errorf("after a restart: %+v %v", en, err)
	}
}

// TestDenylistFileStart: a fresh member writes an empty list (etcd refuses
// every connection when the file is missing), an unreadable old one is
// replaced.
func TestDenylistFileStart(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "sub", "denied.crl")
	if _, err := startDenylist(file); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := x509.ParseRevocationList(data); err != nil || len(l.RevokedCertificateEntries) != 0 {
		t.Fatalf("fresh file: %v %v", l, err)
	}
	if err := os.WriteFile(file, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := startDenylist(file); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(file)
	if _, err := x509.ParseRevocationList(data); err != nil {
		t.Fatalf("a garbage file was not replaced: %v", err)
	}
	if err := writeCRL(file, []DeniedCert{{Serial: "abc123", DeniedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(file)
	l, err := x509.ParseRevocationList(data)
	if err != nil || len(l.RevokedCertificateEntries) != 1 || l.RevokedCertificateEntries[0].SerialNumber.Text(16) != "abc123" {
		t.Fatalf("written list: %+v %v", l, err)
	}
}

func parseCertPEMForTest(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM")
	}
	return x509.ParseCertificate(block.Bytes)
}

// TestRevokeLeasesOf: the locks a member's leases hold are released at
// once; another member's id (not sharing the lease prefix) revokes nothing.
func TestRevokeLeasesOf(t *testing.T) {
	t.Parallel()
	e := openEtcdTLS(t, "", newTestPKI(t).node)
	ctx := testCtx(t)
	l, err := e.Lock(ctx, "renewer", 2*time.Second) // Lost is noticed at the next keep-alive (TTL/3)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.RevokeLeasesOf(ctx, e.ID()^0x1); err != nil || n != 0 {
		t.Fatalf("another member's leases: %d %v", n, err)
	}
	select {
	case <-l.Lost():
		t.Fatal("the lock was lost by revoking another member's leases")
	default:
	}
	n, err := e.RevokeLeasesOf(ctx, e.ID())
	if err != nil || n != 1 {
		t.Fatalf("RevokeLeasesOf = %d, %v; want 1", n, err)
	}
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("the lock was not lost after its lease was revoked")
	}
	l2, err := e.Lock(ctx, "renewer", 30*time.Second)
	if err != nil {
		t.Fatalf("the lock is not free again: %v", err)
	}
	_ = l2.Unlock(ctx)
}
