package certstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/testutil"
)

// The mode checks below expect the usual umask; set it once for the whole
// package before any test creates a file.
func TestMain(m *testing.M) {
	syscall.Umask(0o022)
	os.Exit(m.Run())
}

// waitTimeout bounds every polling loop of this package.
const waitTimeout = 20 * time.Second

func newCA(t testing.TB) *devpki.CA {
	t.Helper()
	root, err := devpki.NewCA("Test Root")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := root.NewIntermediate("Test Intermediate")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t testing.TB, ca *devpki.CA, l devpki.Leaf) *devpki.Issued {
	t.Helper()
	iss, err := ca.Issue(l)
	if err != nil {
		t.Fatalf("Issue(%v): %v", l.Names, err)
	}
	return iss
}

func issueFor(t testing.TB, ca *devpki.CA, names ...string) *devpki.Issued {
	t.Helper()
	return issue(t, ca, devpki.Leaf{Names: names})
}

func serialOf(iss *devpki.Issued) string { return iss.Cert.SerialNumber.Text(16) }

// testKeys is a Keyring from a master of 32 times seed.
func testKeys(t testing.TB, seed byte) *atrest.Keyring {
	t.Helper()
	k, err := atrest.New(bytes.Repeat([]byte{seed}, atrest.MasterSize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// logBuf is a concurrency-safe log sink, to check what was logged.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type rotation struct{ host, cert, key string }

// recorder is a Materialiser's Update (or Serve) and OnRotate.
type recorder struct {
	mu        sync.Mutex
	serves    [][]*tls.Certificate // what the SNI set had after each change
	store     *certs.Cache         // what Update changes
	rotations []rotation
}

func (r *recorder) serve(list []*tls.Certificate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.serves = append(r.serves, slices.Clone(list))
}

// update applies the changes to a certs.Cache, as the daemon does.
func (r *recorder) update(changes []certs.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.store == nil {
		r.store = certs.NewCache()
	}
	r.store.Update(certs.SourceStore, changes...)
	r.serves = append(r.serves, slices.Clone(r.store.Current().Certificates()))
}

func (r *recorder) rotate(host, cert, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rotations = append(r.rotations, rotation{host, cert, key})
}

// served maps the first DNS name of each certificate last served to its
// serial (nil before the first Serve call).
func (r *recorder) served() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.serves) == 0 {
		return nil
	}
	out := map[string]string{}
	for _, c := range r.serves[len(r.serves)-1] {
		leaf := leafOf(c)
		out[leaf.DNSNames[0]] = leaf.SerialNumber.Text(16)
	}
	return out
}

// leafOf is c's leaf, parsed from its DER when the Cache has it without
// (what the materialiser hands Update, decision 0034).
func leafOf(c *tls.Certificate) *x509.Certificate {
	if c.Leaf != nil {
		return c.Leaf
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		panic(err) // the materialiser checked it
	}
	return leaf
}

func (r *recorder) servedSerial(host string) string { return r.served()[host] }

func (r *recorder) rotationsOf(host string) []rotation {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []rotation
	for _, rot := range r.rotations {
		if rot.host == host {
			out = append(out, rot)
		}
	}
	return out
}

func (r *recorder) materialiser(cat *Catalog, tlsDir string, log *slog.Logger) *Materialiser {
	return &Materialiser{Catalog: cat, TLSDir: tlsDir, Update: r.update, OnRotate: r.rotate, Logger: log}
}

// run starts m.Run until the returned stop (also the test's cleanup) is called.
func run(t testing.TB, m *Materialiser) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Errorf("Materialiser.Run did not return %s after its context ended", waitTimeout)
		}
	})
	t.Cleanup(stop)
	return stop
}

// barrier stores a fresh certificate for barrier.example.com and waits until
// it is served: the materialiser handles events in order, so everything
// written before has been dealt with by then.
func barrier(t testing.TB, ctx context.Context, cat *Catalog, ca *devpki.CA, rec *recorder) {
	t.Helper()
	iss := issueFor(t, ca, "barrier.example.com")
	if _, err := cat.Store(ctx, Input{Source: SourceFile, Chain: iss.FullChain, Key: iss.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	want := serialOf(iss)
	testutil.EventuallyTrue(t, waitTimeout, "the barrier certificate to be served", func() bool { return rec.servedSerial("barrier.example.com") == want })
}

// versionDirs lists the version directories WritePair made for name.
func versionDirs(t testing.TB, tlsDir, name string) []string {
	t.Helper()
	entries, err := os.ReadDir(tlsDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	prefix := "." + name + "."
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
			out = append(out, e.Name())
		}
	}
	return out
}

// checkPair checks that tlsDir/<name> is a symlink to one of its version
// directories holding chain (0644) and key (0600).
func checkPair(t testing.TB, tlsDir, name string, chain, key []byte) {
	t.Helper()
	link := filepath.Join(tlsDir, name)
	fi, err := os.Lstat(link)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("%s is %v, not a symlink", link, fi.Mode())
	}
	target, err := os.Readlink(link)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(versionDirs(t, tlsDir, name), target) {
		t.Fatalf("%s points to %q, not to one of its version directories %v", link, target, versionDirs(t, tlsDir, name))
	}
	checkFile(t, filepath.Join(link, "fullchain.pem"), chain, 0o644)
	checkFile(t, filepath.Join(link, "privkey.pem"), key, 0o600)
}

func checkFile(t testing.TB, path string, want []byte, mode os.FileMode) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s does not hold the expected content", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != mode {
		t.Fatalf("%s has mode %v, want %v", path, fi.Mode().Perm(), mode)
	}
}
