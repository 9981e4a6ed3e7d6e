package front

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/certs"
)

// helloRecorder wraps a GetCertificate hook and keeps the cipher suites and
// versions each ClientHello offered, to prove what a refused client sent.
type helloRecorder struct {
	mu     sync.Mutex
	suites [][]uint16
	vers   [][]uint16
	next   func(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

func (h *helloRecorder) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	h.mu.Lock()
	h.suites = append(h.suites, slices.Clone(hello.CipherSuites))
	h.vers = append(h.vers, slices.Clone(hello.SupportedVersions))
	h.mu.Unlock()
	return h.next(hello)
}

func (h *helloRecorder) last() (suites, vers []uint16, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.suites) == 0 {
		return nil, nil, 0
	}
	return h.suites[len(h.suites)-1], h.vers[len(h.vers)-1], len(h.suites)
}

// handshake dials the front and runs a TLS handshake with cfg (bounded).
func handshake(t *testing.T, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	cfg = cfg.Clone()
	if cfg.RootCAs == nil {
		cfg.RootCAs = getPKI(t).pool
	}
	if cfg.ServerName == "" {
		cfg.ServerName = testHost
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c.(*tls.Conn), nil
}

// wantServerAlert checks err is the server refusing the handshake with an
// alert, not a client-side configuration error or a timeout.
func wantServerAlert(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: handshake succeeded, want it refused", what)
	}
	// crypto/tls reports an alert received from the peer as a
	// *net.OpError with Op "remote error".
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" {
		t.Fatalf("%s: %v; want a TLS alert from the server", what, err)
	}
	t.Logf("%s refused: %v", what, err)
}

func startTLSFront(t *testing.T, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *testFront {
	t.Helper()
	api, hfs := newEchoUpstream(t, "api"), newEchoUpstream(t, "hfs")
	return startFront(t, frontSetup{API: api.URL, HFS: hfs.URL, GetCertificate: getCert})
}

func TestTLSPolicyRefusesOldAndWeak(t *testing.T) {
	rsaStore, err := storeFor(getPKI(t).ca, "rsa2048")
	if err != nil {
		t.Fatal(err)
	}
	// Each weak suite is tried against a certificate it could otherwise be
	// used with, so only the front's policy can refuse it.
	for _, kt := range []struct {
		name   string
		store  *certs.Cache
		suites []uint16
	}{
		{"ECDSA", getPKI(t).store, []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA,
		}},
		{"RSA", rsaStore, []uint16{
			tls.TLS_RSA_WITH_AES_128_CBC_SHA,
			tls.TLS_RSA_WITH_AES_256_CBC_SHA,
			tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
		}},
	} {
		t.Run(kt.name, func(t *testing.T) {
			rec := &helloRecorder{next: kt.store.GetCertificate}
			tf := startTLSFront(t, rec.GetCertificate)

			for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
				t.Run(tls.VersionName(v), func(t *testing.T) {
					_, err := handshake(t, tf.addr, &tls.Config{MinVersion: v, MaxVersion: v})
					wantServerAlert(t, tls.VersionName(v)+" client", err)
					if err != nil && !strings.Contains(err.Error(), "protocol version") {
						t.Errorf("alert %v, want protocol_version", err)
					}
				})
			}

			for _, suite := range kt.suites {
				t.Run("TLS1.2-only-"+tls.CipherSuiteName(suite), func(t *testing.T) {
					_, _, before := rec.last()
					_, err := handshake(t, tf.addr, &tls.Config{
						MinVersion:   tls.VersionTLS12,
						MaxVersion:   tls.VersionTLS12,
						CipherSuites: []uint16{suite},
					})
					wantServerAlert(t, "client offering only "+tls.CipherSuiteName(suite), err)
					// The front did see the client offer that suite (and no
					// other), so the refusal is its policy, not the client's.
					suites, vers, n := rec.last()
					if n != before+1 {
						t.Fatalf("the front saw %d ClientHellos, want %d", n, before+1)
					}
					suites = slices.DeleteFunc(suites, func(s uint16) bool {
						return s == 0x00ff || s == tls.TLS_FALLBACK_SCSV // TLS_EMPTY_RENEGOTIATION_INFO_SCSV, signalling only
					})
					if !slices.Equal(suites, []uint16{suite}) {
						t.Errorf("client offered %v, want only %s", suites, tls.CipherSuiteName(suite))
					}
					if slices.Contains(vers, tls.VersionTLS13) {
						t.Errorf("client offered TLS 1.3 (%v)", vers)
					}
				})
			}
		})
	}
}

func TestTLS12ForwardSecretAEAD(t *testing.T) {
	tf := startTLSFront(t, getPKI(t).store.GetCertificate)
	for _, suite := range []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	} {
		for _, h2 := range []bool{true, false} {
			t.Run(tls.CipherSuiteName(suite)+"/"+protoName(h2), func(t *testing.T) {
				c := httpsClient(t, tf.addr, h2, func(cfg *tls.Config) {
					cfg.MaxVersion = tls.VersionTLS12
					cfg.CipherSuites = []uint16{suite}
				})
				resp, e := doEcho(t, c, http.MethodGet, "https://"+testHost+"/alice/events", nil, nil)
				if resp.TLS.Version != tls.VersionTLS12 || resp.TLS.CipherSuite != suite {
					t.Errorf("negotiated %s %s, want TLS 1.2 %s", tls.VersionName(resp.TLS.Version),
						tls.CipherSuiteName(resp.TLS.CipherSuite), tls.CipherSuiteName(suite))
				}
				if h2 != (resp.ProtoMajor == 2) {
					t.Errorf("proto %s with h2=%v", resp.Proto, h2)
				}
				if e.Upstream != "api" {
					t.Errorf("reached %s", e.Upstream)
				}
			})
		}
	}
}

// TestTLS12RSACertificate: an RSA certificate is served with the ECDHE-RSA suites.
func TestTLS12RSACertificate(t *testing.T) {
	store, err := storeFor(getPKI(t).ca, "rsa2048")
	if err != nil {
		t.Fatal(err)
	}
	tf := startTLSFront(t, store.GetCertificate)
	c := httpsClient(t, tf.addr, true, func(cfg *tls.Config) {
		cfg.MaxVersion = tls.VersionTLS12
		cfg.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	})
	resp, _ := doEcho(t, c, http.MethodGet, "https://"+testHost+"/alice/events/e1/series", nil, nil)
	if resp.TLS.Version != tls.VersionTLS12 || resp.TLS.CipherSuite != tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 {
		t.Errorf("negotiated %s %s", tls.VersionName(resp.TLS.Version), tls.CipherSuiteName(resp.TLS.CipherSuite))
	}
}

func TestTLS13(t *testing.T) {
	tf := startTLSFront(t, getPKI(t).store.GetCertificate)
	for _, h2 := range []bool{true, false} {
		t.Run(protoName(h2), func(t *testing.T) {
			c := httpsClient(t, tf.addr, h2, func(cfg *tls.Config) { cfg.MinVersion = tls.VersionTLS13 })
			resp, e := doEcho(t, c, http.MethodGet, "https://"+testHost+"/alice/series/batch", nil, nil)
			if resp.TLS.Version != tls.VersionTLS13 {
				t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(resp.TLS.Version))
			}
			if e.Upstream != "hfs" {
				t.Errorf("reached %s, want hfs", e.Upstream)
			}
		})
	}
}

// TestSNIServesTheStoreCertificate: the handshake picks the certificate from
// the certs.Cache by SNI, and a client that trusts nothing else verifies it.
func TestSNIServesTheStoreCertificate(t *testing.T) {
	tf := startTLSFront(t, getPKI(t).store.GetCertificate)
	for _, name := range []string{testDomain, testHost, "reg." + testDomain} {
		c, err := handshake(t, tf.addr, &tls.Config{ServerName: name})
		if err != nil {
			t.Errorf("SNI %s: %v", name, err)
			continue
		}
		st := c.ConnectionState()
		if err := st.PeerCertificates[0].VerifyHostname(name); err != nil {
			t.Errorf("SNI %s: %v", name, err)
		}
		if st.NegotiatedProtocol != "" {
			t.Errorf("SNI %s: ALPN %q without the client offering any", name, st.NegotiatedProtocol)
		}
	}
	// An empty store makes every handshake fail rather than hang.
	empty := startTLSFront(t, certs.NewCache().GetCertificate)
	_, err := handshake(t, empty.addr, &tls.Config{})
	wantServerAlert(t, "handshake against an empty store", err)
}

func TestTLSConfigPolicy(t *testing.T) {
	cfg := TLSConfig(getPKI(t).store.GetCertificate)
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %s, want TLS 1.2", tls.VersionName(cfg.MinVersion))
	}
	if cfg.MaxVersion != 0 && cfg.MaxVersion < tls.VersionTLS13 {
		t.Errorf("MaxVersion %s caps TLS 1.3", tls.VersionName(cfg.MaxVersion))
	}
	if !slices.Equal(cfg.NextProtos, []string{"h2", "http/1.1"}) {
		t.Errorf("NextProtos %q, want [h2 http/1.1]", cfg.NextProtos)
	}
	if cfg.GetCertificate == nil {
		t.Error("GetCertificate not set")
	}
	secure := map[uint16]*tls.CipherSuite{}
	for _, cs := range tls.CipherSuites() {
		secure[cs.ID] = cs
	}
	for _, id := range cfg.CipherSuites {
		cs, ok := secure[id]
		name := tls.CipherSuiteName(id)
		switch {
		case !ok:
			t.Errorf("%s is not among Go's secure suites", name)
		case !slices.Contains(cs.SupportedVersions, tls.VersionTLS12):
			t.Errorf("%s is not a TLS 1.2 suite", name)
		case !strings.HasPrefix(name, "TLS_ECDHE_"):
			t.Errorf("%s is not forward-secret", name)
		case !strings.Contains(name, "_GCM_") && !strings.Contains(name, "CHACHA20_POLY1305"):
			t.Errorf("%s is not an AEAD suite", name)
		}
	}
}

// TestPlainHTTPStrategyB: with GetCertificate nil the front speaks plain
// HTTP (a proxy in front terminates TLS) and a TLS client cannot handshake.
func TestPlainHTTPStrategyB(t *testing.T) {
	api, hfs := newEchoUpstream(t, "api"), newEchoUpstream(t, "hfs")
	tf := startFront(t, frontSetup{API: api.URL, HFS: hfs.URL})

	tr := &http.Transport{Proxy: nil}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for _, tc := range []struct{ path, upstream string }{
		{"/alice/events", "api"},
		{"/alice/events/e1/series", "hfs"},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+tf.addr+tc.path, nil)
		req.Host = testHost
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("plain GET %s: %v", tc.path, err)
		}
		got := resp.Header.Get("X-Upstream")
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || got != tc.upstream || resp.TLS != nil {
			t.Errorf("plain GET %s: status %d from %q (TLS %v), want 200 from %s over plain HTTP",
				tc.path, resp.StatusCode, got, resp.TLS != nil, tc.upstream)
		}
	}

	// A TLS client gets no handshake: either the server answers its
	// ClientHello with a plain-text 400, or the bounded handshake times out.
	nc, err := net.DialTimeout("tcp", tf.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(2 * time.Second))
	tc := tls.Client(nc, &tls.Config{RootCAs: getPKI(t).pool, ServerName: testHost})
	if err := tc.Handshake(); err == nil {
		t.Fatal("TLS handshake succeeded against the plain-HTTP front")
	} else {
		t.Logf("TLS client against plain HTTP: %v", err)
	}
}

// TestPlainHTTPKeepsProxyForwardedHeaders: behind the operator's
// TLS-terminating proxy, its X-Forwarded-* headers describe the real client
// and are kept (the chain gets this hop appended), unlike on the HTTPS edge.
func TestPlainHTTPKeepsProxyForwardedHeaders(t *testing.T) {
	api, hfs := newEchoUpstream(t, "api"), newEchoUpstream(t, "hfs")
	tf := startFront(t, frontSetup{API: api.URL, HFS: hfs.URL})
	req, _ := http.NewRequest(http.MethodGet, "http://"+tf.addr+"/alice/events", nil)
	req.Host = testHost
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "alice.pryv.example")
	tr := &http.Transport{Proxy: nil}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got echoReply
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.XFF, ",") != "203.0.113.7, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want the proxy's chain plus this hop", got.XFF)
	}
	if strings.Join(got.XFProto, ",") != "https" || strings.Join(got.XFHost, ",") != "alice.pryv.example" {
		t.Errorf("X-Forwarded-Proto %q, -Host %q: want the proxy's values kept", got.XFProto, got.XFHost)
	}
}
