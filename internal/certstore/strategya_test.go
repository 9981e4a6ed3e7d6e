package certstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pryv/pryv-tls/internal/platformdb/platformdbtest"
	"github.com/pryv/pryv-tls/internal/testutil"
)

// certbotLayout makes certbot's layout for host under dir, as certbot
// leaves it after its first issuance: archive/<host>/{fullchain1,privkey1}.pem
// and live/<host>/{fullchain,privkey}.pem relative symlinks to them.
func certbotLayout(t *testing.T, dir, host string, chain, key []byte) (certLink, keyLink string) {
	t.Helper()
	archive, live := filepath.Join(dir, "archive", host), filepath.Join(dir, "live", host)
	for _, d := range []string{archive, live} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(archive, "fullchain1.pem"), chain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(archive, "privkey1.pem"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	certLink, keyLink = filepath.Join(live, "fullchain.pem"), filepath.Join(live, "privkey.pem")
	if err := os.Symlink(filepath.Join("..", "..", "archive", host, "fullchain1.pem"), certLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..", "..", "archive", host, "privkey1.pem"), keyLink); err != nil {
		t.Fatal(err)
	}
	return certLink, keyLink
}

// TestMaterialiserStrategyAOnCertbotFiles: a core switched to Strategy A
// with certbot's valid pair at http.ssl serves that pair from the start
// (not the placeholder), keeps serving it while PlatformDB has no record
// for the primary, and when the first record arrives writes it through
// certbot's live/ symlinks, which stay symlinks to the same archive files.
func TestMaterialiserStrategyAOnCertbotFiles(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	ca := newCA(t)
	cat := &Catalog{KV: db, Keys: testKeys(t, 1)}
	tlsDir := filepath.Join(t.TempDir(), "tls") // a fresh install: not made yet
	le := t.TempDir()
	old := issueFor(t, ca, "pryv.example.com")
	certLink, keyLink := certbotLayout(t, le, "pryv.example.com", old.FullChain, old.KeyPEM)

	rec := &recorder{}
	m := rec.materialiser(cat, tlsDir, quietLogger())
	m.Primary, m.CertFile, m.KeyFile = "pryv.example.com", certLink, keyLink
	m.LoadDisk()
	if got := rec.servedSerial("pryv.example.com"); got != serialOf(old) {
		t.Fatalf("after LoadDisk the primary is served with %q, want certbot's pair %s", got, serialOf(old))
	}
	run(t, m)
	barrier(t, ctx, cat, ca, rec) // the listing (no primary row) is done
	if got := rec.servedSerial("pryv.example.com"); got != serialOf(old) {
		t.Fatalf("after a listing without the primary's row it is served with %q, want certbot's pair", got)
	}

	fresh := issueFor(t, ca, "pryv.example.com")
	if _, err := cat.Store(ctx, Input{Source: SourceACME, Chain: fresh.FullChain, Key: fresh.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyTrue(t, waitTimeout, "the primary's rotation", func() bool { return len(rec.rotationsOf("pryv.example.com")) == 1 })
	checkRotation(t, rec.rotationsOf("pryv.example.com")[0], "pryv.example.com", certLink, keyLink)
	if got := rec.servedSerial("pryv.example.com"); got != serialOf(fresh) {
		t.Fatalf("after the first record the primary is served with %q, want %s", got, serialOf(fresh))
	}
	for link, target := range map[string]string{certLink: "fullchain1.pem", keyLink: "privkey1.pem"} {
		fi, err := os.Lstat(link)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("%s is no longer a symlink (%v, %v)", link, fi, err)
		}
		if dest, _ := os.Readlink(link); dest != filepath.Join("..", "..", "archive", "pryv.example.com", target) {
			t.Errorf("%s now points at %s", link, dest)
		}
	}
	archive := filepath.Join(le, "archive", "pryv.example.com")
	checkFile(t, filepath.Join(archive, "fullchain1.pem"), fresh.FullChain, 0o644)
	checkFile(t, filepath.Join(archive, "privkey1.pem"), fresh.KeyPEM, 0o600)
	checkFile(t, certLink, fresh.FullChain, 0o644)
	if entries, _ := os.ReadDir(archive); len(entries) != 2 {
		t.Errorf("%d entries in certbot's archive directory, want its two files (no temp file left)", len(entries))
	}
}

// TestWriteThroughDanglingLink: a link that resolves nowhere is an error
// naming it, and nothing replaces the link.
func TestWriteThroughDanglingLink(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "privkey.pem")
	if err := os.Symlink(filepath.Join(dir, "missing", "privkey1.pem"), link); err != nil {
		t.Fatal(err)
	}
	err := writeThrough(link, []byte("key"), 0o600)
	if err == nil || !strings.Contains(err.Error(), link) || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("writeThrough on a dangling link: %v; want an error naming %s", err, link)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the dangling link was replaced: %v %v", fi, err)
	}
}
