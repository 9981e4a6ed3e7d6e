package nodeid

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pryv/pryv-tls/internal/clusterca"
	"github.com/pryv/pryv-tls/internal/join"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// A core on its own: a CA of its own in the node directory and a node
// certificate from it, with the SANs asked for; the key 0600.
func TestTLSOwnCA(t *testing.T) {
	dir := t.TempDir()
	id := New(Options{Dir: filepath.Join(dir, "platformdb-tls"), DataDir: filepath.Join(dir, "platformdb"), Name: "core1",
		CAPath: filepath.Join(dir, "no-ca"), Names: []string{"core1.example.com"}, Addrs: []string{"127.0.0.1:2380", "192.0.2.7", "0.0.0.0:2379", "nonsense"}})
	files, err := id.TLS()
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(files.CAFile) != id.Dir() || files.CertFile != id.CertFile() || files.KeyFile != id.KeyFile() {
		t.Fatalf("TLS files %+v, want the node directory's", files)
	}
	if m := mode(t, files.KeyFile); m != 0o600 {
		t.Errorf("node key mode %o, want 0600", m)
	}
	pair, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf := pair.Leaf
	if leaf.Subject.CommonName != "core1" || !slices.Contains(leaf.DNSNames, "core1.example.com") {
		t.Errorf("node certificate CN %q DNS %q", leaf.Subject.CommonName, leaf.DNSNames)
	}
	want := map[string]bool{"127.0.0.1": true, "192.0.2.7": true}
	for _, ip := range leaf.IPAddresses {
		if !want[ip.String()] {
			t.Errorf("unexpected IP SAN %s (unspecified and unparsable addresses are not SANs)", ip)
		}
		delete(want, ip.String())
	}
	if len(want) > 0 {
		t.Errorf("IP SANs %v lack %v", leaf.IPAddresses, want)
	}
	if id.HasMember() {
		t.Fatal("HasMember on an empty data directory")
	}
	if err := os.MkdirAll(filepath.Join(dir, "platformdb", "member"), 0o700); err != nil {
		t.Fatal(err)
	}
	if !id.HasMember() {
		t.Fatal("HasMember false with a member directory")
	}
	if err := id.RenewOnce(context.Background()); err != nil {
		t.Fatalf("RenewOnce on a fresh certificate: %v", err)
	}
}

// A joining core: the bundle's files in place (the key 0600), then TLS uses
// the cluster CA from it, and JoinedBefore tells this cluster from another.
func TestInstallBundle(t *testing.T) {
	dir := t.TempDir()
	ca, err := clusterca.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueNode("core2", nil, []net.IP{net.IPv4(127, 0, 0, 1)}, clusterca.DefaultNodeValidity)
	if err != nil {
		t.Fatal(err)
	}
	b := &join.Bundle{CoreID: "core2", CACert: string(ca.CertPEM()), NodeCert: string(certPEM), NodeKey: string(keyPEM), JoinURL: "https://127.0.0.1:2381/join"}
	id := New(Options{Dir: filepath.Join(dir, "platformdb-tls"), DataDir: filepath.Join(dir, "platformdb"), Name: "core2", CAPath: filepath.Join(dir, "no-ca")})
	if member, _ := id.JoinedBefore(b); member {
		t.Fatal("JoinedBefore: member before any join")
	}
	if err := id.InstallBundle(b); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{clusterca.NodeKeyName: 0o600, clusterca.NodeCertName: 0o644, MemberCAName: 0o644, JoinURLName: 0o644} {
		if m := mode(t, filepath.Join(id.Dir(), name)); m != want {
			t.Errorf("%s mode %o, want %o", name, m, want)
		}
	}
	files, err := id.TLS()
	if err != nil {
		t.Fatal(err)
	}
	if files.CAFile != filepath.Join(id.Dir(), MemberCAName) {
		t.Fatalf("a joined core's TLS CA is %s, want the bundle's cluster CA", files.CAFile)
	}
	if err := os.MkdirAll(filepath.Join(dir, "platformdb", "member"), 0o700); err != nil {
		t.Fatal(err)
	}
	if member, same := id.JoinedBefore(b); !member || !same {
		t.Fatalf("JoinedBefore after the join: member %v, same cluster %v", member, same)
	}
	other := *b
	other.CACert = "another CA"
	if member, same := id.JoinedBefore(&other); !member || same {
		t.Fatalf("JoinedBefore with another cluster's bundle: member %v, same cluster %v", member, same)
	}
	// Fresh: nothing to renew, and the CA holder is not asked.
	if err := id.RenewOnce(context.Background()); err != nil {
		t.Fatalf("RenewOnce on a fresh joined certificate: %v", err)
	}
}
