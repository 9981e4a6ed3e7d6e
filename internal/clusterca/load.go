package clusterca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/pryv/pryv-tls/internal/atomicfile"
	"github.com/pryv/pryv-tls/internal/certs"
)

// LoadOrCreateCA loads the CA from dir, or creates a new one there if no CA
// file exists (none of ca.key, ca.crt, ca.pem): dir is created 0700 if
// missing, ca.key is written 0600 (PKCS#8 ECDSA P-256), the certificate
// 0644 as ca.crt and as ca.pem, self-signed for CAValidity with CN
// "pryv-tls cluster CA", key usage CertSign|CRLSign and a path length of 0
// (it signs node certificates only, never another CA). Writing ca.crt makes
// it the CA open-pryv.io's bootstrap finds and signs with, should a core be
// installed here later; ca.pem keeps what pryv-tls's own tools expect.
//
// A CA of pryv-tls's first layout (ca.pem and ca.key, no ca.crt) gets a
// ca.crt beside ca.pem, best effort: without it open-pryv.io's bootstrap
// would generate a new ca.key over this one. Nothing else is ever written:
// an existing file is never replaced, and if only some files exist it
// fails as LoadCA does (creating a new CA would silently break trust with
// every other core).
func LoadOrCreateCA(dir string) (*CA, error) {
	if !anyExists(dir, CAKeyName, CoreCACertName, CACertName) {
		ca, err := createCA(dir)
		if !errors.Is(err, fs.ErrExist) {
			return ca, err
		}
		// Another process created it at the same time: load theirs.
	}
	ca, err := LoadCA(dir)
	if err != nil {
		return nil, err
	}
	if filepath.Base(ca.certFile) == CACertName {
		if atomicfile.Create(filepath.Join(dir, CoreCACertName), ca.certPEM, 0o644) == nil {
			ca.certFile = filepath.Join(dir, CoreCACertName)
		}
	}
	return ca, nil
}

// LoadCA loads the CA from dir and checks it; it writes nothing. The
// certificate is ca.crt (open-pryv.io's bootstrap) or ca.pem (pryv-tls);
// when both exist they must be the same certificate. The key is ca.key:
// PKCS#8, SEC 1 ("EC PRIVATE KEY", what openssl ecparam writes) or PKCS#1,
// ECDSA P-256 or P-384 or RSA of 2048 bits or more, in a file not readable
// by group or others. The key must match the certificate, and the
// certificate must be self-signed, have basicConstraints CA:TRUE, a
// keyUsage (if it has one) with keyCertSign, and be currently valid.
// Errors name the file and what to do.
func LoadCA(dir string) (*CA, error) {
	keyPath := filepath.Join(dir, CAKeyName)
	crtPath, pemPath := filepath.Join(dir, CoreCACertName), filepath.Join(dir, CACertName)
	crtPEM, hasCrt, err := readOptional(crtPath)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	pemPEM, hasPem, err := readOptional(pemPath)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	fi, err := os.Stat(keyPath)
	hasKey := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	switch {
	case !hasCrt && !hasPem && !hasKey:
		return nil, fmt.Errorf("cluster CA: no %s (or %s) and no %s in %s", CoreCACertName, CACertName, CAKeyName, dir)
	case !hasCrt && !hasPem:
		return nil, fmt.Errorf("cluster CA: %s exists but no certificate beside it (%s or %s): restore it from a backup (or, if no node certificate of this CA is in use, move %s aside to create a new CA)", keyPath, CoreCACertName, CACertName, keyPath)
	case !hasKey && hasCrt:
		return nil, fmt.Errorf("cluster CA: %s exists but %s is missing: this is not the CA holder (open-pryv.io copies ca.crt alone to the other cores); run this on the core that has %s, or restore it from a backup", crtPath, keyPath, CAKeyName)
	case !hasKey:
		return nil, fmt.Errorf("cluster CA: %s exists but %s is missing: restore it from a backup (or remove %s to create a new CA, after which every node certificate must be re-issued)", pemPath, keyPath, pemPath)
	}
	key, err := readCAKey(keyPath, fi)
	if err != nil {
		return nil, err
	}

	var crt, pm *x509.Certificate
	if hasCrt {
		if crt, err = parseCertPEM(crtPEM); err != nil {
			return nil, fmt.Errorf("cluster CA: %s: %w", crtPath, err)
		}
	}
	if hasPem {
		if pm, err = parseCertPEM(pemPEM); err != nil {
			return nil, fmt.Errorf("cluster CA: %s: %w", pemPath, err)
		}
	}
	cert, certPath := crt, crtPath
	switch {
	case crt != nil && pm != nil && !bytes.Equal(crt.Raw, pm.Raw):
		return nil, differentCerts(dir, crt, pm, key)
	case crt == nil:
		cert, certPath = pm, pemPath
	}
	if err := checkCACert(cert, certPath, key, keyPath); err != nil {
		return nil, err
	}
	return &CA{cert: cert, certPEM: encodePEM("CERTIFICATE", cert.Raw), certFile: certPath, key: key}, nil
}

// readCAKey reads and checks the CA key file (fi is its stat).
func readCAKey(path string, fi fs.FileInfo) (crypto.Signer, error) {
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("cluster CA: key %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("cluster CA: key %s is readable or writable by group or others (mode %#o): run chmod 600 %s", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	key, err := certs.ParseKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %s: %w", path, err)
	}
	if err := checkCAKey(key); err != nil {
		return nil, fmt.Errorf("cluster CA: %s: %w", path, err)
	}
	return key, nil
}

// checkCACert checks that cert (from certPath) can be the cluster CA with key.
func checkCACert(cert *x509.Certificate, certPath string, key crypto.Signer, keyPath string) error {
	if !publicKeyEqual(cert.PublicKey, key.Public()) {
		return fmt.Errorf("cluster CA: key %s does not match certificate %s", keyPath, certPath)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("cluster CA: %s is not a CA certificate (no basicConstraints CA:TRUE)", certPath)
	}
	// No keyUsage at all is what openssl req -x509 makes with the default
	// openssl.cnf (open-pryv.io's bootstrap): it allows signing.
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("cluster CA: %s has a key usage without keyCertSign: it may not sign certificates", certPath)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return fmt.Errorf("cluster CA: %s is not self-signed: %w", certPath, err)
	}
	now := time.Now()
	if now.After(cert.NotAfter) {
		return fmt.Errorf("cluster CA: %s expired on %s", certPath, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("cluster CA: %s is not valid before %s (is the clock right?)", certPath, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// differentCerts is the error for a ca.crt and a ca.pem that differ: it
// says which one to move away, by which of them ca.key belongs to.
func differentCerts(dir string, crt, pm *x509.Certificate, key crypto.Signer) error {
	crtPath, pemPath := filepath.Join(dir, CoreCACertName), filepath.Join(dir, CACertName)
	base := fmt.Sprintf("cluster CA: %s and %s are not the same certificate", crtPath, pemPath)
	crtOK, pemOK := publicKeyEqual(crt.PublicKey, key.Public()), publicKeyEqual(pm.PublicKey, key.Public())
	switch {
	case crtOK && !pemOK:
		return fmt.Errorf("%s; %s belongs to %s: move %s away", base, CAKeyName, CoreCACertName, pemPath)
	case pemOK && !crtOK:
		return fmt.Errorf("%s; %s belongs to %s: move %s away", base, CAKeyName, CACertName, crtPath)
	case crtOK && pemOK:
		return fmt.Errorf("%s (both are for %s): keep %s (open-pryv.io reads it) and move %s away", base, CAKeyName, CoreCACertName, pemPath)
	default:
		return fmt.Errorf("%s and %s matches neither: restore the certificate of %s from a backup", base, CAKeyName, CAKeyName)
	}
}

// checkCAKey accepts the key types a CA made here or by openssl for
// open-pryv.io can have, and that every TLS stack of the cluster verifies.
func checkCAKey(key crypto.Signer) error {
	var what string
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		what = "an ECDSA " + k.Curve.Params().Name + " key"
	case *rsa.PrivateKey:
		if k.N.BitLen() >= 2048 {
			return nil
		}
		what = fmt.Sprintf("an RSA key of %d bits", k.N.BitLen())
	case ed25519.PrivateKey:
		what = "an Ed25519 key"
	default:
		what = fmt.Sprintf("a %T key", key)
	}
	return fmt.Errorf("%s cannot be the cluster CA's: use ECDSA P-256 (openssl ecparam -name prime256v1 -genkey -noout), P-384, or RSA of 2048 bits or more", what)
}

// createCA makes a new CA in dir. It fails with an error wrapping
// fs.ErrExist if a CA file appeared meanwhile (it never overwrites).
func createCA(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: CACommonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	certPEM := encodePEM("CERTIFICATE", der)
	// The key first: a certificate without ca.key is refused by LoadCA, the
	// other way round too, but a crash between the two leaves the key
	// (the secret) rather than only the certificate. After ca.crt the CA
	// loads; ca.pem is the copy for pryv-tls's earlier layout.
	if err := atomicfile.Create(filepath.Join(dir, CAKeyName), encodePEM("PRIVATE KEY", keyDER), 0o600); err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	for _, name := range []string{CoreCACertName, CACertName} {
		if err := atomicfile.Create(filepath.Join(dir, name), certPEM, 0o644); err != nil {
			return nil, fmt.Errorf("cluster CA: %w", err)
		}
	}
	return &CA{cert: cert, certPEM: certPEM, certFile: filepath.Join(dir, CoreCACertName), key: key}, nil
}

// readOptional reads path; a missing file is (nil, false, nil).
func readOptional(path string) ([]byte, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	return b, err == nil, err
}

// anyExists reports whether any of names exists in dir (a dangling
// symbolic link counts: it is not ours to replace).
func anyExists(dir string, names ...string) bool {
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(dir, n)); !errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}
