package acme

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/acme/pebbledev"
	"github.com/pryv/pryv-tls/internal/platformdb"
	"github.com/pryv/pryv-tls/internal/testutil"
)

// alpnPort is "another core's front" for TLS-ALPN-01: a TLS listener on
// 127.0.0.1 answering acme-tls/1 from resp, closing each connection after
// the handshake. It returns the port.
func alpnPort(t *testing.T, resp *TLSALPN01Responder) int {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		NextProtos:     []string{ACMETLS1},
		GetCertificate: resp.GetCertificate,
		MinVersion:     tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// closedPort is a port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port
}

// runResponder runs resp on kv until the test ends.
func runResponder(t *testing.T, resp *TLSALPN01Responder, kv WatchKV) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); resp.Run(ctx, kv) }()
	t.Cleanup(func() { cancel(); <-done })
}

// validate makes the CA's handshake: acme-tls/1 alone, SNI name, and
// returns the leaf (verification is the caller's: it is self-signed).
func validate(addr, name string) (*x509.Certificate, string, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		ServerName: name, NextProtos: []string{ACMETLS1}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12,
	})
	if err != nil {
		return nil, "", err
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	return cs.PeerCertificates[0], cs.NegotiatedProtocol, nil
}

// checkRFC8737 checks what the CA checks: the name is the only SAN and the
// critical acmeIdentifier extension holds SHA-256 of keyAuth.
func checkRFC8737(t *testing.T, leaf *x509.Certificate, name, keyAuth string) {
	t.Helper()
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != name {
		t.Errorf("SANs %v, want only %s", leaf.DNSNames, name)
	}
	want := sha256.Sum256([]byte(keyAuth))
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}) {
			var got []byte
			if _, err := asn1.Unmarshal(ext.Value, &got); err != nil || string(got) != string(want[:]) || !ext.Critical {
				t.Errorf("acmeIdentifier %x (critical %v, err %v), want %x", got, ext.Critical, err, want)
			}
			return
		}
	}
	t.Error("no acmeIdentifier extension")
}

// The responder builds the validation certificate when the row arrives and
// forgets it when the row goes; a name with no row fails the handshake.
func TestTLSALPN01ResponderFollowsPlatformDB(t *testing.T) {
	e := newEnv(t)
	resp := NewTLSALPN01Responder(e.log)
	runResponder(t, resp, e.db)
	addr := "127.0.0.1:" + strconv.Itoa(alpnPort(t, resp))
	prov := &TLSALPN01Provider{KV: e.db}
	ctx := testCtx(t)
	const keyAuth = "tok.thumbprint"

	if _, _, err := validate(addr, "your-domain.com"); err == nil {
		t.Fatal("a handshake for a name with no challenge succeeded")
	}
	if err := prov.Present(ctx, "Your-Domain.com", "tok", keyAuth); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyTrue(t, 10*time.Second, "the snapshot to hold the challenge", func() bool {
		_, ok := (*resp.certs.Load())["your-domain.com"]
		return ok
	})
	leaf, proto, err := validate(addr, "YOUR-DOMAIN.COM")
	if err != nil {
		t.Fatalf("validation handshake: %v", err)
	}
	if proto != ACMETLS1 {
		t.Errorf("negotiated %q, want %s", proto, ACMETLS1)
	}
	checkRFC8737(t, leaf, "your-domain.com", keyAuth)
	if _, _, err := validate(addr, "other.example.org"); err == nil {
		t.Error("a handshake for another name succeeded")
	}

	if err := prov.CleanUp(ctx, "your-domain.com", "tok", keyAuth); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyTrue(t, 10*time.Second, "the snapshot to drop the challenge", func() bool {
		return len(*resp.certs.Load()) == 0
	})
	if _, _, err := validate(addr, "your-domain.com"); err == nil {
		t.Error("a handshake after CleanUp succeeded")
	}
}

// stalledWatch is a PlatformDB whose watch never delivers: a core whose
// watch lags behind the CA.
type stalledWatch struct{ *platformdb.Etcd }

func (s stalledWatch) Watch(ctx context.Context, _ string, _ int64) <-chan platformdb.Event {
	ch := make(chan platformdb.Event)
	go func() { <-ctx.Done(); close(ch) }()
	return ch
}

// A name the watch has not delivered yet is read from PlatformDB, so a CA
// faster than the watch still validates; the snapshot is not written by
// that read (the watch stays its only writer).
func TestTLSALPN01ResponderMissReadsTheStore(t *testing.T) {
	e := newEnv(t)
	resp := NewTLSALPN01Responder(e.log)
	runResponder(t, resp, stalledWatch{e.db})
	addr := "127.0.0.1:" + strconv.Itoa(alpnPort(t, resp))
	testutil.EventuallyTrue(t, 5*time.Second, "Run to attach", func() bool { return resp.kv.Load() != nil })
	const keyAuth = "tok2.thumbprint"
	if err := (&TLSALPN01Provider{KV: e.db}).Present(testCtx(t), "your-domain.com", "tok2", keyAuth); err != nil {
		t.Fatal(err)
	}
	// Three at once, as Pebble's VA validates (Let's Encrypt: five).
	leaves := make(chan *x509.Certificate, 3)
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			leaf, _, err := validate(addr, "your-domain.com")
			leaves <- leaf
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("validation handshake through the store read: %v", err)
		}
		checkRFC8737(t, <-leaves, "your-domain.com", keyAuth)
	}
	if n := len(*resp.certs.Load()); n != 0 {
		t.Errorf("the miss wrote %d entries into the snapshot", n)
	}
}

// Issuance by TLS-ALPN-01 from Pebble with nothing on the HTTP-01 port:
// the renewer publishes the key authorisation, a responder the renewer does
// not own (another core's front) answers the CA from its watch.
func TestIssuanceByTLSALPN01(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	other := NewTLSALPN01Responder(e.log.With("core", "other"))
	runResponder(t, other, e.db)
	p := acmetest.Start(t, acmetest.Options{Options: pebbledev.Options{HTTPPort: closedPort(t), TLSALPNPort: alpnPort(t, other)}})
	const host = "your-domain.com"
	opts := e.options(p, "core-a", host, "short120s")
	opts.Plans[0].Challenge = "tls-alpn-01"
	r := mustNew(t, opts)
	rec, err := r.ForceRenew(ctx, host, false)
	if err != nil {
		t.Fatalf("ForceRenew by tls-alpn-01: %v", err)
	}
	verifyRecord(t, e.keys, e.record(host), host, p.IssuerRoots(t))
	if rec.Serial != e.record(host).Serial {
		t.Error("the stored certificate is not the one issued")
	}
	// One challenge answered (the HTTP-01 port is closed: it cannot have
	// been that one).
	var answered []string
	for _, c := range e.calls.all() {
		if c.Method == http.MethodPost && strings.HasPrefix(c.Path, pebbleChallenge) && c.Payload != nil {
			answered = append(answered, c.Path)
		}
	}
	if len(answered) != 1 {
		t.Errorf("%d challenges answered, want 1: %v", len(answered), answered)
	}
	if got := e.keysUnder(tlsALPNPrefix); len(got) != 0 {
		t.Errorf("TLS-ALPN-01 rows left after the order: %v", got)
	}
	if got := e.keysUnder(http01Prefix); len(got) != 0 {
		t.Errorf("HTTP-01 rows written for a tls-alpn-01 plan: %v", got)
	}
}

// A wildcard cannot be proved by TLS-ALPN-01: said before anything is ordered.
func TestTLSALPN01RefusesAWildcard(t *testing.T) {
	e := newEnv(t)
	p := acmetest.Start(t, acmetest.Options{Options: pebbledev.Options{HTTPPort: closedPort(t), TLSALPNPort: closedPort(t)}})
	opts := e.options(p, "core-a", "*.example.org", "")
	opts.Plans = []Plan{{Hostnames: []string{"*.example.org", "example.org"}, Challenge: "tls-alpn-01"}}
	_, err := mustNew(t, opts).ForceRenew(testCtx(t), "", false)
	if err == nil || !strings.Contains(err.Error(), "*.example.org is a wildcard: TLS-ALPN-01 cannot prove it (RFC 8737), only DNS-01 can") {
		t.Fatalf("ForceRenew of a wildcard by tls-alpn-01: %v", err)
	}
	if n := e.calls.count("", http.MethodPost, pebbleNewOrder); n != 0 {
		t.Errorf("%d orders sent for a plan that cannot be proved", n)
	}
}
