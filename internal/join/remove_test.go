package join

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/clusterca"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// holder is a CA holder's PlatformDB member (real etcd, mutual TLS, the
// denylist on) and join listener.
type holder struct {
	dir     string
	ca      *clusterca.CA
	db      *platformdb.Etcd
	cert    *ServerCert
	joinURL string
	caFile  string
}

func newHolder(t *testing.T) *holder {
	t.Helper()
	h := &holder{dir: t.TempDir()}
	ca, err := clusterca.LoadOrCreateCA(filepath.Join(h.dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	h.ca, h.caFile = ca, ca.CertFile()
	certFile, keyFile, err := clusterca.EnsureNodeCert(ca, filepath.Join(h.dir, "tls"), clusterca.Node{ID: "core1", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h.db, err = platformdb.Open(ctx, platformdb.Options{Name: "core1", DataDir: filepath.Join(h.dir, "db"),
		PeerAddress: "127.0.0.1:0", ClientAddress: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		TLS:          &platformdb.TLSFiles{CAFile: h.caFile, CertFile: certFile, KeyFile: keyFile},
		DenylistFile: filepath.Join(h.dir, "tls", "denied.crl")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.db.Close() })
	if h.cert, err = LoadServerCert(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", h.cert.TLSConfig(ca.Pool()))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: &Server{Tokens: Tokens{KV: h.db}, Members: h.db, Denied: h.db.Denied, Base: context.Background(),
		Logger: slog.New(slog.DiscardHandler),
		Renew:  func(old *x509.Certificate) ([]byte, error) { return h.ca.Renew(old, clusterca.DefaultNodeValidity) }}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	h.joinURL = "https://" + ln.Addr().String() + "/join"
	return h
}

// newCore issues a node certificate and stores its token and core-info as
// bootstrap new-core does.
func (h *holder) newCore(t *testing.T, id, peerURL string) (certFile, keyFile, token string) {
	t.Helper()
	certPEM, keyPEM, err := h.ca.IssueNode(id, []string{id + ".example.com"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(h.dir, id+".pem"), filepath.Join(h.dir, id+".key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	leaf, err := pemDecode(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	token, _ = NewToken()
	now := time.Now()
	n := NodeCertOf(id, leaf, now)
	err = Tokens{KV: h.db}.Put(context.Background(), Token{CoreID: id, Hash: HashToken(token), NodeFingerprint: Fingerprint(leaf.Raw),
		NodeSerial: n.Serial, NodeSPKI: n.SPKI, NodeNotAfter: n.NotAfter, PeerURL: peerURL, CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if err := (dnsdata.Rows{KV: h.db}).SetCoreInfo(context.Background(), dnsdata.CoreInfo{ID: id, IP: "127.0.0.1", URL: "https://" + id + ".example.com"}); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, token
}

// callJoin posts a join request with the node certificate in certFile.
func (h *holder) callJoin(t *testing.T, certFile, keyFile string, req Request) (int, string) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.ca.Pool(), Certificates: []tls.Certificate{pair}}}}
	defer hc.CloseIdleConnections()
	body, _ := json.Marshal(req)
	resp, err := hc.Post(h.joinURL, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRemoveCore: a removed core's node certificates (the one of its
// bundle, and one it renewed since) are refused by /renew and /join, its
// learner member and rows are gone, its users are counted, another core
// is untouched; the core the command runs on is refused without --force.
func TestRemoveCore(t *testing.T) {
	t.Parallel()
	h := newHolder(t)
	ctx := context.Background()
	cert2, key2, token2 := h.newCore(t, "core2", "https://127.0.0.2:2380")
	cert3, key3, _ := h.newCore(t, "core3", "https://127.0.0.3:2380")

	// core2 joins (added as a learner that never starts here) and renews.
	if code, body := h.callJoin(t, cert2, key2, Request{CoreID: "core2", Token: token2, PeerURL: "https://127.0.0.2:2380"}); code != http.StatusOK {
		t.Fatalf("join: %d %s", code, body)
	}
	renewed, err := RenewNodeCert(ctx, h.joinURL, platformdb.TLSFiles{CAFile: h.caFile, CertFile: cert2, KeyFile: key2})
	if err != nil {
		t.Fatal(err)
	}
	renewedFile := filepath.Join(h.dir, "core2-renewed.pem")
	if err := os.WriteFile(renewedFile, renewed, 0o600); err != nil {
		t.Fatal(err)
	}
	recorded, err := Tokens{KV: h.db}.NodeCerts(ctx, "core2")
	if err != nil || len(recorded) != 2 {
		t.Fatalf("node certificates recorded for core2: %+v %v; want the bundle's and the renewed one", recorded, err)
	}
	if err := (dnsdata.Rows{KV: h.db}).SetUserCore(ctx, "alice", "core2"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.Put(ctx, "tls-cert/core2.example.com", []byte("sealed")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.Put(ctx, "tls-cert/core3.example.com", []byte("sealed")); err != nil {
		t.Fatal(err)
	}

	if _, err := Remove(ctx, h.db, RemoveRequest{ID: "core1", Domain: "example.com"}); !errors.Is(err, ErrRemoveSelf) {
		t.Errorf("removing the core it runs on: %v, want ErrRemoveSelf", err)
	}
	if _, err := Remove(ctx, h.db, RemoveRequest{ID: "core9", Domain: "example.com"}); !errors.Is(err, ErrNoSuchCore) {
		t.Errorf("removing an unknown core: %v, want ErrNoSuchCore", err)
	}
	r, err := Remove(ctx, h.db, RemoveRequest{ID: "core2", Domain: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("removal: %+v", r)
	if !r.MemberRemoved || len(r.DeniedCerts) != 2 || r.UsersPinned != 1 {
		t.Errorf("removal: %+v", r)
	}
	for _, key := range []string{"core-info/core2", "join-token/core2", "tls-cert/core2.example.com", NodeCertPrefix + "core2/" + recorded[0].Serial} {
		if _, err := h.db.Get(ctx, key); !errors.Is(err, platformdb.ErrNotFound) {
			t.Errorf("%s after remove-core: %v, want not found", key, err)
		}
	}
	for _, key := range []string{"core-info/core3", "tls-cert/core3.example.com", "user-core/alice"} {
		if _, err := h.db.Get(ctx, key); err != nil {
			t.Errorf("%s after removing core2: %v", key, err)
		}
	}
	ms, _ := h.db.Members(ctx)
	if len(ms) != 1 {
		t.Errorf("members after remove-core: %+v", ms)
	}

	// Its certificates are refused, whichever it presents.
	for _, f := range []string{cert2, renewedFile} {
		if _, err := RenewNodeCert(ctx, h.joinURL, platformdb.TLSFiles{CAFile: h.caFile, CertFile: f, KeyFile: key2}); err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Errorf("/renew with a removed core's certificate %s: %v", filepath.Base(f), err)
		}
	}
	if code, body := h.callJoin(t, cert2, key2, Request{CoreID: "core2", Token: token2, PeerURL: "https://127.0.0.2:2380"}); code != http.StatusForbidden || !strings.Contains(body, "revoked") {
		t.Errorf("join again with the removed core's bundle: %d %s", code, body)
	}
	// Another core's certificate still renews.
	if _, err := RenewNodeCert(ctx, h.joinURL, platformdb.TLSFiles{CAFile: h.caFile, CertFile: cert3, KeyFile: key3}); err != nil {
		t.Errorf("/renew of core3 after removing core2: %v", err)
	}
	// A second run finishes nothing more and does not fail.
	if _, err := Remove(ctx, h.db, RemoveRequest{ID: "core2", Domain: "example.com"}); !errors.Is(err, ErrNoSuchCore) {
		t.Errorf("second removal: %v", err)
	}
}

// TestServerCertReload: the join listener presents the renewed node
// certificate after Reload, without a restart.
func TestServerCertReload(t *testing.T) {
	t.Parallel()
	h := newHolder(t)
	served := func() string {
		c, err := tls.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(h.joinURL, "https://"), "/join"), &tls.Config{RootCAs: h.ca.Pool(), ServerName: "127.0.0.1",
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }})
		if err != nil {
			return "handshake: " + err.Error()
		}
		defer c.Close()
		return platformdb.SerialHex(c.ConnectionState().PeerCertificates[0])
	}
	before := served()
	if before != platformdb.SerialHex(h.cert.Leaf()) {
		t.Fatalf("served %s, loaded %s", before, platformdb.SerialHex(h.cert.Leaf()))
	}
	// The renewal: a new certificate for the same key, renamed into place.
	certFile := filepath.Join(h.dir, "tls", clusterca.NodeCertName)
	pemBytes, err := h.ca.Renew(h.cert.Leaf(), clusterca.DefaultNodeValidity)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile+".tmp", pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(certFile+".tmp", certFile); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != before {
		t.Fatalf("served %s before Reload, want the loaded %s (the pointer, not the file)", got, before)
	}
	if err := h.cert.Reload(); err != nil {
		t.Fatal(err)
	}
	after := served()
	if after == before || after != platformdb.SerialHex(h.cert.Leaf()) {
		t.Fatalf("after Reload served %s (before %s)", after, before)
	}
	// A broken file keeps the current pair.
	if err := os.WriteFile(certFile, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.cert.Reload(); err == nil {
		t.Error("Reload of a garbage file: no error")
	}
	if got := served(); got != after {
		t.Errorf("after a failed Reload served %s, want %s", got, after)
	}
}

// TestRemoveHandler: the control socket's answers: 404 for an unknown
// core, 409 for the core it runs on (without force), the Removal as JSON.
func TestRemoveHandler(t *testing.T) {
	t.Parallel()
	h := newHolder(t)
	h.newCore(t, "core2", "https://127.0.0.2:2380")
	srv := RemoveHandler(h.db, "example.com", nil)
	call := func(method, path string) (int, string) {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec.Code, rec.Body.String()
	}
	cases := []struct {
		method, path string
		code         int
		want         string
	}{
		{http.MethodDelete, RemoveCorePath + "core9", http.StatusNotFound, "no such core"},
		{http.MethodDelete, RemoveCorePath + "core1", http.StatusConflict, "add --force"},
		{http.MethodGet, RemoveCorePath + "core2", http.StatusNotFound, "DELETE"},
		{http.MethodDelete, RemoveCorePath + "core2", http.StatusOK, `"deletedRows":["core-info/core2","join-token/core2"`},
	}
	for _, c := range cases {
		code, body := call(c.method, c.path)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %s: %d %s; want %d with %q", c.method, c.path, code, body, c.code, c.want)
		}
	}
}
