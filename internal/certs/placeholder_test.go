package certs

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/devpki"
)

func TestPlaceholderNames(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		name     string
		hosts    []string
		wantDNS  []string
		wantIPs  []string
		verifyOK []string
		verifyNo []string
	}{
		{"given names", []string{"pryv.example.com", "*.pryv.example.com", "127.0.0.1"},
			[]string{"pryv.example.com", "*.pryv.example.com"}, []string{"127.0.0.1"},
			[]string{"pryv.example.com", "core.pryv.example.com", "127.0.0.1"}, []string{"other.example.com", "localhost"}},
		{"none: localhost", nil, []string{"localhost"}, nil, []string{"localhost"}, []string{"pryv.example.com"}},
		{"empty list: localhost", []string{}, []string{"localhost"}, nil, []string{"localhost"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Placeholder(tt.hosts, time.Hour, now)
			if err != nil {
				t.Fatal(err)
			}
			leaf := c.Leaf
			if !slices.Equal(leaf.DNSNames, tt.wantDNS) {
				t.Errorf("DNSNames = %v, want %v", leaf.DNSNames, tt.wantDNS)
			}
			var ips []string
			for _, ip := range leaf.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.wantIPs) {
				t.Errorf("IPAddresses = %v, want %v", ips, tt.wantIPs)
			}
			for _, h := range tt.verifyOK {
				if err := leaf.VerifyHostname(h); err != nil {
					t.Errorf("does not cover %q: %v", h, err)
				}
			}
			for _, h := range tt.verifyNo {
				if err := leaf.VerifyHostname(h); err == nil {
					t.Errorf("covers %q, it should not", h)
				}
			}
		})
	}
}

func TestPlaceholderSelfSignedAndValidity(t *testing.T) {
	now := time.Now().Truncate(time.Second) // certificate times have second precision
	validity := 72 * time.Hour
	c, err := Placeholder([]string{"pryv.example.com"}, validity, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf := c.Leaf
	if leaf == nil || !bytes.Equal(leaf.Raw, c.Certificate[0]) {
		t.Fatal("Leaf is not the served certificate")
	}
	if len(c.Certificate) != 1 {
		t.Errorf("chain length %d, want 1", len(c.Certificate))
	}
	if !bytes.Equal(leaf.RawIssuer, leaf.RawSubject) {
		t.Errorf("issuer %q != subject %q", leaf.Issuer, leaf.Subject)
	}
	if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
		t.Errorf("not signed by its own key: %v", err)
	}
	if leaf.IsCA {
		t.Error("placeholder is a CA")
	}
	if !leaf.NotAfter.Equal(now.Add(validity)) {
		t.Errorf("NotAfter = %v, want now + %v = %v", leaf.NotAfter, validity, now.Add(validity))
	}
	if leaf.NotBefore.After(now) {
		t.Errorf("NotBefore %v is after now %v", leaf.NotBefore, now)
	}
	// Valid now, expired right after the validity.
	certPEM, kPEM := devpki.EncodeCert(leaf), keyPEM(t, c.PrivateKey.(crypto.Signer))
	if _, err := ParsePair(certPEM, kPEM, now); err != nil {
		t.Errorf("placeholder refused by ParsePair now: %v", err)
	}
	if _, err := ParsePair(certPEM, kPEM, now.Add(validity+time.Second)); err == nil {
		t.Error("placeholder accepted after its validity")
	}
	// Nobody trusts it.
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "pryv.example.com", Roots: x509.NewCertPool()}); err == nil {
		t.Error("placeholder verifies against an empty root pool")
	}
	other, err := Placeholder([]string{"pryv.example.com"}, validity, now)
	if err != nil {
		t.Fatal(err)
	}
	if other.Leaf.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("two placeholders share a serial")
	}
}

func TestPlaceholderHandshake(t *testing.T) {
	ph, err := Placeholder(nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	store := NewCache()
	store.Replace(SourcePlaceholder, ph)
	addr := serveTLS(t, &tls.Config{GetCertificate: store.GetCertificate})

	for _, sni := range []string{"localhost", "pryv.example.com", ""} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr,
			&tls.Config{InsecureSkipVerify: true, ServerName: sni})
		if err != nil {
			t.Fatalf("SNI %q: %v", sni, err)
		}
		got := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		if !bytes.Equal(got.Raw, ph.Certificate[0]) {
			t.Errorf("SNI %q: served %s, want the placeholder", sni, Describe(got))
		}
	}

	// A verifying client refuses it: it is a signal, not a fallback.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: "localhost", RootCAs: x509.NewCertPool()})
	if err == nil {
		conn.Close()
		t.Error("a verifying client accepted the placeholder")
	}
}
