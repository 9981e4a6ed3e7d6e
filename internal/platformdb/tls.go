package platformdb

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// TLSFiles are the PEM files of mutual TLS from the cluster CA (see package
// cluster): the CA certificate every party trusts, and this core's node
// certificate and key. The node certificate serves as the server
// certificate of both listeners and as the client certificate of every
// connection this process opens (to its own member, to other members).
//
// It must carry extended key usages server and client auth, and IP SANs
// for 127.0.0.1 (the in-process client dials the member over loopback),
// for the listeners' addresses, and for every address the core connects to
// other members from: etcd's peer listener checks a client certificate's
// IP SANs against the connection's source address (and falls back to DNS
// lookups of its DNS SANs when none matches).
//
// etcd re-reads the certificate and key on every handshake, and so does
// the client built from them: replacing the files (clusterca.EnsureNodeCert
// renames them into place) takes effect on the next connection, without a
// restart. The CA file is read once.
type TLSFiles struct {
	CAFile   string
	CertFile string
	KeyFile  string
}

// tlsMinVersion: every party is this binary (or an operator's etcdctl,
// built with a Go that speaks TLS 1.3).
const tlsMinVersion = tls.VersionTLS13

// load reads and checks the files: the CA parses, the key matches the
// certificate, and the certificate chains to the CA for server and client
// authentication now. Errors name the file.
func (f *TLSFiles) load() (*x509.CertPool, *x509.Certificate, error) {
	if f.CAFile == "" || f.CertFile == "" || f.KeyFile == "" {
		return nil, nil, errors.New("tls: CAFile, CertFile and KeyFile are all required")
	}
	caPEM, err := os.ReadFile(f.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("tls: CA %s: no PEM certificate", f.CAFile)
	}
	pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: node certificate %s, key %s: %w", f.CertFile, f.KeyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, nil, fmt.Errorf("tls: node certificate %s: %w", f.CertFile, err)
		}
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return nil, nil, fmt.Errorf("tls: node certificate %s is not valid under CA %s: %w", f.CertFile, f.CAFile, err)
		}
	}
	return pool, leaf, nil
}

// checkHost fails unless the node certificate names host (an address the
// member listens on, which other parties dial and verify). An unspecified
// address (0.0.0.0, ::) is not checked: the advertised one is.
func checkHost(f *TLSFiles, leaf *x509.Certificate, what, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return nil
	}
	if err := leaf.VerifyHostname(host); err != nil {
		return fmt.Errorf("tls: node certificate %s does not name the %s address %s (IP SANs %v, DNS SANs %v)", f.CertFile, what, host, leaf.IPAddresses, leaf.DNSNames)
	}
	return nil
}

// clientConfig is the tls.Config of a client that authenticates with the
// node certificate and trusts only the CA. The certificate and key are
// re-read at each handshake (the last good pair is used if the files are
// briefly unreadable), as etcd does on its side.
func (f *TLSFiles) clientConfig() (*tls.Config, error) {
	pool, _, err := f.load()
	if err != nil {
		return nil, err
	}
	r := &pairReader{certFile: f.CertFile, keyFile: f.KeyFile}
	if _, err := r.get(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:           tlsMinVersion,
		RootCAs:              pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return r.get() },
	}, nil
}

// pairReader loads a key pair from files, again when they change.
type pairReader struct {
	certFile, keyFile string

	mu      sync.Mutex
	pair    *tls.Certificate
	certMod time.Time
	keyMod  time.Time
}

func (r *pairReader) get() (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfi, cerr := os.Stat(r.certFile)
	kfi, kerr := os.Stat(r.keyFile)
	if cerr == nil && kerr == nil && r.pair != nil && cfi.ModTime().Equal(r.certMod) && kfi.ModTime().Equal(r.keyMod) {
		return r.pair, nil
	}
	pair, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		if r.pair != nil {
			return r.pair, nil // mid-replacement: the previous pair still verifies
		}
		return nil, fmt.Errorf("tls: node certificate %s, key %s: %w", r.certFile, r.keyFile, err)
	}
	r.pair = &pair
	if cerr == nil && kerr == nil {
		r.certMod, r.keyMod = cfi.ModTime(), kfi.ModTime()
	}
	return r.pair, nil
}
