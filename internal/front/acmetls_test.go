package front

import (
	"crypto/tls"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/devpki"
)

// A ClientHello offering only acme-tls/1 (RFC 8737's validator) gets the
// ACMETLS certificate and no HTTP on that connection; every other hello
// gets the served certificate and its protocol, and never reaches ACMETLS.
func TestACMETLSValidationHandshake(t *testing.T) {
	pki := getPKI(t)
	iss, err := pki.ca.Issue(devpki.Leaf{Names: []string{"validation.pryv.example"}})
	if err != nil {
		t.Fatal(err)
	}
	challenge, err := tls.X509KeyPair(iss.FullChain, iss.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	var reached atomic.Int32
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	tf := startFront(t, frontSetup{API: up.URL, HFS: up.URL, GetCertificate: pki.store.GetCertificate,
		ACMETLS: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			calls.Add(1)
			return &challenge, nil
		}})

	c, err := handshake(t, tf.addr, &tls.Config{NextProtos: []string{"acme-tls/1"}, ServerName: "validation.pryv.example"})
	if err != nil {
		t.Fatalf("acme-tls/1 handshake: %v", err)
	}
	cs := c.ConnectionState()
	if cs.NegotiatedProtocol != "acme-tls/1" || cs.PeerCertificates[0].DNSNames[0] != "validation.pryv.example" {
		t.Fatalf("negotiated %q, served %v; want acme-tls/1 and the validation certificate", cs.NegotiatedProtocol, cs.PeerCertificates[0].DNSNames)
	}
	// The server closes the connection: a request on it gets no answer.
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: validation.pryv.example\r\n\r\n")
	if b, err := io.ReadAll(c); len(b) != 0 || isTimeout(err) {
		t.Errorf("after the acme-tls/1 handshake the front answered %q (%v); want the connection closed", b, err)
	}
	if calls.Load() != 1 || reached.Load() != 0 {
		t.Errorf("ACMETLS called %d times, upstream reached %d times; want 1 and 0", calls.Load(), reached.Load())
	}

	for _, protos := range [][]string{{"h2", "http/1.1"}, {"http/1.1"}, nil, {"h2", "acme-tls/1"}} {
		c, err := handshake(t, tf.addr, &tls.Config{NextProtos: protos})
		if err != nil {
			t.Fatalf("handshake offering %v: %v", protos, err)
		}
		cs := c.ConnectionState()
		if cs.NegotiatedProtocol == "acme-tls/1" || cs.PeerCertificates[0].DNSNames[0] != testDomain {
			t.Errorf("offering %v: negotiated %q, served %v", protos, cs.NegotiatedProtocol, cs.PeerCertificates[0].DNSNames)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("ACMETLS called for ordinary hellos: %d calls in all", calls.Load())
	}
}

// Without ACMETLS the front does not speak acme-tls/1: a validator is
// refused (no_application_protocol), not given the served certificate.
func TestACMETLSOffWithoutResponder(t *testing.T) {
	pki := getPKI(t)
	up := newEchoUpstream(t, "api")
	tf := startFront(t, frontSetup{API: up.URL, HFS: up.URL, GetCertificate: pki.store.GetCertificate})
	_, err := handshake(t, tf.addr, &tls.Config{NextProtos: []string{"acme-tls/1"}})
	wantServerAlert(t, "acme-tls/1 without a responder", err)
}
