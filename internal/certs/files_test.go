package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/testutil"
)

const (
	pollInterval = 20 * time.Millisecond
	waitFor      = 5 * time.Second // bound on every "eventually"
	stableTicks  = 10              // polls an unchanged serial must survive
	refusedMsg   = "certificate change refused"
	hostName     = "pryv.example.com"
)

// serveTLS accepts on 127.0.0.1 and completes a handshake on each connection
// before closing it. It stops with the test.
func serveTLS(tb testing.TB, cfg *tls.Config) string {
	tb.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(waitFor))
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// handshake dials addr as a verifying client and returns the leaf served.
func handshake(addr, serverName string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := tls.Dialer{
		NetDialer: &net.Dialer{Timeout: waitFor},
		Config:    &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12},
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// fileHarness is a FileSource feeding a Cache behind a real TLS listener.
type fileHarness struct {
	t                 *testing.T
	dir               string
	certFile, keyFile string
	store             *Cache
	src               *FileSource
	logs              *syncBuffer
	addr              string
	roots             *x509.CertPool
	reload            chan struct{}
	stop              func()
}

// newFileHarness loads certFile/keyFile (already written by the caller), then
// serves them and polls them every pollInterval until the test ends.
func newFileHarness(t *testing.T, ca *devpki.CA, certFile, keyFile string) *fileHarness {
	t.Helper()
	h := &fileHarness{
		t:        t,
		certFile: certFile,
		keyFile:  keyFile,
		store:    NewCache(),
		logs:     &syncBuffer{},
		roots:    x509.NewCertPool(),
		reload:   make(chan struct{}),
	}
	h.roots.AddCert(ca.Cert)
	h.src = &FileSource{
		CertFile: certFile,
		KeyFile:  keyFile,
		Interval: pollInterval,
		Logger:   slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnLoad:   func(c *tls.Certificate) { h.store.Replace(SourceFiles, c) },
	}
	if err := h.src.Load(); err != nil {
		t.Fatalf("initial Load: %v", err)
	}
	h.addr = serveTLS(t, &tls.Config{GetCertificate: h.store.GetCertificate})
	h.start()
	t.Cleanup(func() { h.stop() })
	return h
}

// start runs the poller; stop cancels it and waits for it to return.
func (h *fileHarness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.src.Run(ctx, h.reload)
	}()
	h.stop = func() {
		cancel()
		<-done
		h.stop = func() {}
	}
}

// served returns the leaf a verifying client gets now.
func (h *fileHarness) served() (*x509.Certificate, error) {
	return handshake(h.addr, hostName, h.roots)
}

// waitSerial polls handshakes until want is served.
func (h *fileHarness) waitSerial(want *big.Int) *x509.Certificate {
	h.t.Helper()
	var leaf *x509.Certificate
	testutil.Eventually(h.t, waitFor, fmt.Sprintf("serial %x served", want), func() (bool, string) {
		l, err := h.served()
		if err != nil {
			return false, err.Error() + "\nlogs:\n" + h.logs.String()
		}
		leaf = l
		return l.SerialNumber.Cmp(want) == 0, fmt.Sprintf("serial %x\nlogs:\n%s", l.SerialNumber, h.logs)
	})
	return leaf
}

// assertStays checks want keeps serving for stableTicks poll intervals.
func (h *fileHarness) assertStays(want *big.Int) {
	h.t.Helper()
	for range stableTicks {
		leaf, err := h.served()
		if err != nil {
			h.t.Fatalf("handshake failed while the old certificate should serve: %v", err)
		}
		if leaf.SerialNumber.Cmp(want) != 0 {
			h.t.Fatalf("serving serial %x, want the old %x to keep serving\nlogs:\n%s", leaf.SerialNumber, want, h.logs)
		}
		time.Sleep(pollInterval)
	}
}

// waitRefusals waits until n refusals are logged.
func (h *fileHarness) waitRefusals(n int) {
	h.t.Helper()
	testutil.Eventually(h.t, waitFor, fmt.Sprintf("%d refusal(s) logged", n), func() (bool, string) {
		return h.logs.Count(refusedMsg) >= n, "logs:\n" + h.logs.String()
	})
}

// replace swaps one file atomically (temp file + rename), so a poll never
// sees it half done.
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	mustWrite(t, tmp, data)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// padTo appends newlines (PEM ignores them) to reach exactly n bytes.
func padTo(t *testing.T, b []byte, n int) []byte {
	t.Helper()
	if len(b) > n {
		t.Fatalf("%d bytes do not fit in %d", len(b), n)
	}
	return append(bytes.Clone(b), bytes.Repeat([]byte{'\n'}, n-len(b))...)
}

func TestFileSourceHotSwap(t *testing.T) {
	ca := newCA(t, "files CA")
	inter, err := ca.NewIntermediate("files intermediate")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(t *testing.T, keyType string) *devpki.Issued {
		return mustIssue(t, inter, devpki.Leaf{Names: []string{hostName}, KeyType: keyType})
	}
	// plain sets up fullchain.pem/privkey.pem in a fresh directory and serves them.
	plain := func(t *testing.T, first *devpki.Issued) *fileHarness {
		dir := t.TempDir()
		certFile, keyFile := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
		mustWrite(t, certFile, first.FullChain)
		mustWrite(t, keyFile, first.KeyPEM)
		h := newFileHarness(t, ca, certFile, keyFile)
		h.dir = dir
		h.waitSerial(first.Cert.SerialNumber)
		return h
	}

	t.Run("replacement in place", func(t *testing.T) {
		t.Parallel()
		old, next := issue(t, "ec256"), issue(t, "ec256")
		h := plain(t, old)
		mustWrite(t, h.certFile, next.FullChain) // os.WriteFile: same inode
		mustWrite(t, h.keyFile, next.KeyPEM)
		leaf := h.waitSerial(next.Cert.SerialNumber)
		if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != hostName {
			t.Errorf("served names %v", leaf.DNSNames)
		}
	})

	t.Run("replacement by rename", func(t *testing.T) {
		t.Parallel()
		old, next := issue(t, "ec256"), issue(t, "ec256")
		h := plain(t, old)
		certTmp, keyTmp := filepath.Join(h.dir, ".fullchain.new"), filepath.Join(h.dir, ".privkey.new")
		mustWrite(t, certTmp, next.FullChain)
		mustWrite(t, keyTmp, next.KeyPEM)
		start := time.Now()
		if err := os.Rename(keyTmp, h.keyFile); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(certTmp, h.certFile); err != nil {
			t.Fatal(err)
		}
		h.waitSerial(next.Cert.SerialNumber)
		t.Logf("rename to new serial served: %v (poll interval %v; informational)", time.Since(start), pollInterval)
	})

	t.Run("certbot symlink flip", func(t *testing.T) {
		t.Parallel()
		old, next := issue(t, "ec256"), issue(t, "ec256")
		dir := t.TempDir()
		archive := filepath.Join(dir, "archive", hostName)
		live := filepath.Join(dir, "live", hostName)
		for _, d := range []string{archive, live} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		mustWrite(t, filepath.Join(archive, "fullchain1.pem"), old.FullChain)
		mustWrite(t, filepath.Join(archive, "privkey1.pem"), old.KeyPEM)
		certLink, keyLink := filepath.Join(live, "fullchain.pem"), filepath.Join(live, "privkey.pem")
		// link re-points a live/ symlink the way certbot does: a new link
		// next to it, renamed over the old one.
		link := func(name, target string) {
			tmp := filepath.Join(live, name+".new")
			if err := os.Symlink(filepath.Join("..", "..", "archive", hostName, target), tmp); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(live, name)); err != nil {
				t.Fatal(err)
			}
		}
		link("fullchain.pem", "fullchain1.pem")
		link("privkey.pem", "privkey1.pem")
		h := newFileHarness(t, ca, certLink, keyLink)
		h.waitSerial(old.Cert.SerialNumber)

		mustWrite(t, filepath.Join(archive, "fullchain2.pem"), next.FullChain)
		mustWrite(t, filepath.Join(archive, "privkey2.pem"), next.KeyPEM)
		h.assertStays(old.Cert.SerialNumber) // new archive files alone change nothing
		link("fullchain.pem", "fullchain2.pem")
		link("privkey.pem", "privkey2.pem")
		h.waitSerial(next.Cert.SerialNumber)
		if target, err := os.Readlink(certLink); err != nil || !strings.HasSuffix(target, "fullchain2.pem") {
			t.Errorf("live link -> %q, %v", target, err)
		}
	})

	t.Run("reload forces a read the poll cannot see", func(t *testing.T) {
		t.Parallel()
		old, next := issue(t, "ec256"), issue(t, "ec256")
		const certSize, keySize = 4096, 1024
		dir := t.TempDir()
		certFile, keyFile := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
		mustWrite(t, certFile, padTo(t, old.FullChain, certSize))
		mustWrite(t, keyFile, padTo(t, old.KeyPEM, keySize))
		h := newFileHarness(t, ca, certFile, keyFile)
		h.waitSerial(old.Cert.SerialNumber)

		// Pause the poller while editing so it cannot catch the edit half
		// done (mtime not yet restored); it restarts with its state intact.
		h.stop()
		for _, f := range []struct {
			path string
			data []byte
		}{{certFile, padTo(t, next.FullChain, certSize)}, {keyFile, padTo(t, next.KeyPEM, keySize)}} {
			before, err := os.Stat(f.path)
			if err != nil {
				t.Fatal(err)
			}
			mustWrite(t, f.path, f.data)
			if err := os.Chtimes(f.path, before.ModTime(), before.ModTime()); err != nil {
				t.Fatal(err)
			}
		}
		if st := h.src.stat(); st != h.src.loaded {
			t.Fatalf("the edit is visible to stat (%+v vs %+v): the test cannot prove reload", st, h.src.loaded)
		}
		h.start()
		h.assertStays(old.Cert.SerialNumber) // the poll is blind to it
		select {
		case h.reload <- struct{}{}:
		case <-time.After(waitFor):
			t.Fatal("Run did not take the reload")
		}
		h.waitSerial(next.Cert.SerialNumber)
	})

	t.Run("ECDSA to RSA", func(t *testing.T) {
		t.Parallel()
		old, next := issue(t, "ec256"), issue(t, "rsa2048")
		h := plain(t, old)
		if leaf := h.waitSerial(old.Cert.SerialNumber); leaf.PublicKeyAlgorithm != x509.ECDSA {
			t.Fatalf("first certificate is %v", leaf.PublicKeyAlgorithm)
		}
		replace(t, h.keyFile, next.KeyPEM)
		replace(t, h.certFile, next.FullChain)
		if leaf := h.waitSerial(next.Cert.SerialNumber); leaf.PublicKeyAlgorithm != x509.RSA {
			t.Errorf("after the swap the certificate is %v, want RSA", leaf.PublicKeyAlgorithm)
		}
	})

	// Bad replacements change one file atomically, so the poller sees exactly
	// one new state: it must refuse it, log that once, and keep the old
	// certificate serving.
	bad := []struct {
		name    string
		file    string // "cert" or "key"
		data    func(t *testing.T, old *devpki.Issued) []byte
		wantLog string
	}{
		{"mismatched key", "key", func(t *testing.T, _ *devpki.Issued) []byte {
			return issue(t, "ec256").KeyPEM
		}, "does not match"},
		{"garbage certificate", "cert", func(*testing.T, *devpki.Issued) []byte {
			return []byte("<html>502 Bad Gateway</html>\n")
		}, "no PEM certificate found"},
		{"garbage key", "key", func(*testing.T, *devpki.Issued) []byte {
			return []byte("\x00\x01\x02 not a key")
		}, "no PEM private key found"},
		{"expired certificate for the same key", "cert", func(t *testing.T, old *devpki.Issued) []byte {
			certPEM, _ := issueWithKey(t, ca, parseKey(t, old.KeyPEM), 0, devpki.Leaf{
				Names: []string{hostName}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
			return certPEM
		}, "expired on"},
		{"half-written chain", "cert", func(t *testing.T, old *devpki.Issued) []byte {
			return old.FullChain[:len(old.FullChain)-200]
		}, "incomplete PEM block"},
		{"certificate file removed", "cert", nil, "reading certificate"},
	}
	for _, tc := range bad {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			t.Parallel()
			old := issue(t, "ec256")
			h := plain(t, old)
			path := h.certFile
			if tc.file == "key" {
				path = h.keyFile
			}
			if tc.data == nil {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else {
				replace(t, path, tc.data(t, old))
			}
			h.waitRefusals(1)
			h.assertStays(old.Cert.SerialNumber)
			if n := h.logs.Count(refusedMsg); n != 1 {
				t.Errorf("refusal logged %d times for one bad state, want once; logs:\n%s", n, h.logs)
			}
			logs := h.logs.String()
			if !strings.Contains(logs, tc.wantLog) || !strings.Contains(logs, path) {
				t.Errorf("refusal log lacks %q or the file name %q:\n%s", tc.wantLog, path, logs)
			}
			if strings.Contains(logs, strings.Split(string(old.KeyPEM), "\n")[1]) {
				t.Errorf("logs leak the private key:\n%s", logs)
			}
		})
	}

	t.Run("certificate before its key", func(t *testing.T) {
		t.Parallel()
		old, next := issue(t, "ec256"), issue(t, "ec256")
		h := plain(t, old)
		replace(t, h.certFile, next.FullChain) // the key comes "later"
		h.waitRefusals(1)
		h.assertStays(old.Cert.SerialNumber)
		if n := h.logs.Count(refusedMsg); n != 1 {
			t.Errorf("refusal logged %d times, want once", n)
		}
		replace(t, h.keyFile, next.KeyPEM)
		h.waitSerial(next.Cert.SerialNumber)
		if n := h.logs.Count(refusedMsg); n != 1 {
			t.Errorf("refusal logged %d times after the key arrived, want still once", n)
		}
		if n := h.logs.Count("certificate loaded"); n != 2 {
			t.Errorf("%q logged %d times, want 2 (start-up and swap)", "certificate loaded", n)
		}
	})

	t.Run("bad state then another bad state logs each once", func(t *testing.T) {
		t.Parallel()
		old := issue(t, "ec256")
		h := plain(t, old)
		replace(t, h.keyFile, issue(t, "ec256").KeyPEM)
		h.waitRefusals(1)
		replace(t, h.keyFile, []byte("garbage"))
		h.waitRefusals(2)
		h.assertStays(old.Cert.SerialNumber)
		if n := h.logs.Count(refusedMsg); n != 2 {
			t.Errorf("refusal logged %d times for two bad states, want 2", n)
		}
		// Restoring the original content is a new good state.
		replace(t, h.keyFile, old.KeyPEM)
		h.assertStays(old.Cert.SerialNumber)
		if n := h.logs.Count(refusedMsg); n != 2 {
			t.Errorf("refusal logged %d times after the fix, want 2", n)
		}
	})
}

func TestFileSourceLoadErrors(t *testing.T) {
	dir := t.TempDir()
	var got []*tls.Certificate
	src := &FileSource{
		CertFile: filepath.Join(dir, "missing.pem"),
		KeyFile:  filepath.Join(dir, "missing-key.pem"),
		Logger:   slog.New(slog.NewTextHandler(&syncBuffer{}, nil)),
		OnLoad:   func(c *tls.Certificate) { got = append(got, c) },
	}
	err := src.Load()
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), src.CertFile) {
		t.Errorf("Load with no files = %v, want a not-exist error naming %s", err, src.CertFile)
	}
	if len(got) != 0 {
		t.Error("OnLoad called for a failed load")
	}
	if !strings.Contains(src.String(), src.CertFile) {
		t.Errorf("String() = %q", src.String())
	}
}
