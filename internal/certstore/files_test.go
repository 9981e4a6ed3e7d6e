package certstore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestWritePair(t *testing.T) {
	ca := newCA(t)
	tlsDir := filepath.Join(t.TempDir(), "tls", "live") // created by WritePair
	one := issueFor(t, ca, "a.example.com")
	two := issueFor(t, ca, "a.example.com")

	link, err := WritePair(tlsDir, "a.example.com", one.FullChain, one.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if link != filepath.Join(tlsDir, "a.example.com") {
		t.Fatalf("WritePair returned %q", link)
	}
	checkPair(t, tlsDir, "a.example.com", one.FullChain, one.KeyPEM)
	first, _ := os.Readlink(link)
	if filepath.IsAbs(first) {
		t.Errorf("the link target %q is absolute: the directory could not be moved", first)
	}

	if _, err := WritePair(tlsDir, "a.example.com", two.FullChain, two.KeyPEM); err != nil {
		t.Fatal(err)
	}
	checkPair(t, tlsDir, "a.example.com", two.FullChain, two.KeyPEM)
	second, _ := os.Readlink(link)
	if second == first {
		t.Fatal("a second WritePair reused the version directory")
	}
	// The previous version is kept.
	if got := versionDirs(t, tlsDir, "a.example.com"); !slices.Contains(got, first) || len(got) != 2 {
		t.Fatalf("version dirs %v, want the current and the previous one", got)
	}
	// Nothing temporary is left behind.
	entries, _ := os.ReadDir(tlsDir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "tmp") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestWritePairRefusesBadNames(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"", "a/b", `a\b`, ".hidden", "..", "."} {
		if _, err := WritePair(dir, name, []byte("c"), []byte("k")); err == nil || !strings.Contains(err.Error(), "not a usable directory name") {
			t.Errorf("WritePair(%q): %v", name, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused names left %d entries", len(entries))
	}
}

func TestWritePairPrunes(t *testing.T) {
	ca := newCA(t)
	tlsDir := t.TempDir()
	other := issueFor(t, ca, "b.example.com")
	if _, err := WritePair(tlsDir, "b.example.com", other.FullChain, other.KeyPEM); err != nil {
		t.Fatal(err)
	}
	// A name that is a prefix of another must not prune the other's versions.
	if _, err := WritePair(tlsDir, "b.example.com.x", other.FullChain, other.KeyPEM); err != nil {
		t.Fatal(err)
	}
	var last []byte
	var prev string
	for range 6 {
		iss := issueFor(t, ca, "a.example.com")
		if _, err := WritePair(tlsDir, "a.example.com", iss.FullChain, iss.KeyPEM); err != nil {
			t.Fatal(err)
		}
		last = iss.FullChain
		cur, _ := os.Readlink(filepath.Join(tlsDir, "a.example.com"))
		got := versionDirs(t, tlsDir, "a.example.com")
		if len(got) > 2 || !slices.Contains(got, cur) || (prev != "" && !slices.Contains(got, prev)) {
			t.Fatalf("version dirs %v, want only %s and the previous %s", got, cur, prev)
		}
		prev = cur
	}
	checkFile(t, filepath.Join(tlsDir, "a.example.com", "fullchain.pem"), last, 0o644)
	if got := versionDirs(t, tlsDir, "b.example.com"); len(got) != 1 {
		t.Fatalf("another name's versions were touched: %v", got)
	}
	checkPair(t, tlsDir, "b.example.com", other.FullChain, other.KeyPEM)
	checkPair(t, tlsDir, "b.example.com.x", other.FullChain, other.KeyPEM)
}

func TestWritePairMovesDirectoryAside(t *testing.T) {
	ca := newCA(t)
	tlsDir := t.TempDir()
	old := filepath.Join(tlsDir, "a.example.com")
	if err := os.Mkdir(old, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "operator-notes.txt"), []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	iss := issueFor(t, ca, "a.example.com")
	if _, err := WritePair(tlsDir, "a.example.com", iss.FullChain, iss.KeyPEM); err != nil {
		t.Fatal(err)
	}
	checkPair(t, tlsDir, "a.example.com", iss.FullChain, iss.KeyPEM)

	aside, err := filepath.Glob(filepath.Join(tlsDir, ".a.example.com.previous-*"))
	if err != nil || len(aside) != 1 {
		t.Fatalf("the existing directory was not moved aside: %v %v", aside, err)
	}
	got, err := os.ReadFile(filepath.Join(aside[0], "operator-notes.txt"))
	if err != nil || string(got) != "keep me" {
		t.Fatalf("the moved directory lost its content: %q %v", got, err)
	}
	// Later rotations keep it.
	for range 3 {
		iss := issueFor(t, ca, "a.example.com")
		if _, err := WritePair(tlsDir, "a.example.com", iss.FullChain, iss.KeyPEM); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(aside[0], "operator-notes.txt")); err != nil {
		t.Fatalf("pruning removed the moved-aside directory: %v", err)
	}
}

// TestWritePairSwitchesAsAPair: a reader that resolves the link once and reads
// both files from there never gets the chain of one version and the key of
// another while the writer rotates.
func TestWritePairSwitchesAsAPair(t *testing.T) {
	ca := newCA(t)
	tlsDir := t.TempDir()
	const variants, rotations = 4, 50
	type pair struct{ chain, key []byte }
	pairs := make([]pair, variants)
	chainIdx, keyIdx := map[string]int{}, map[string]int{}
	for i := range pairs {
		iss := issueFor(t, ca, "a.example.com")
		pairs[i] = pair{iss.FullChain, iss.KeyPEM}
		chainIdx[string(iss.FullChain)] = i
		keyIdx[string(iss.KeyPEM)] = i
	}
	link := filepath.Join(tlsDir, "a.example.com")
	if _, err := WritePair(tlsDir, "a.example.com", pairs[0].chain, pairs[0].key); err != nil {
		t.Fatal(err)
	}

	var (
		stop     = make(chan struct{})
		started  = make(chan struct{})
		reads    atomic.Int64
		seen     sync.Map // version index -> true
		failures = make(chan string, 16)
		wg       sync.WaitGroup
	)
	fail := func(s string) {
		select {
		case failures <- s:
		default:
		}
	}
	wg.Go(func() {
		once := sync.OnceFunc(func() { close(started) })
		defer once()
		for {
			select {
			case <-stop:
				return
			default:
			}
			dir, err := filepath.EvalSymlinks(link)
			if errors.Is(err, fs.ErrNotExist) {
				// The link is always there, but the version it named may
				// have been pruned (two rotations later) before it was
				// checked.
				if _, err := os.Lstat(link); err != nil {
					fail("the link itself was missing: " + err.Error())
					return
				}
				continue
			}
			if err != nil {
				fail("resolving the link: " + err.Error())
				return
			}
			chain, err1 := os.ReadFile(filepath.Join(dir, "fullchain.pem"))
			key, err2 := os.ReadFile(filepath.Join(dir, "privkey.pem"))
			if err1 != nil || err2 != nil {
				// A version two rotations old may be pruned under the reader:
				// it sees no file, never a wrong one.
				for _, err := range []error{err1, err2} {
					if err != nil && !errors.Is(err, fs.ErrNotExist) {
						fail("reading: " + err.Error())
						return
					}
				}
				continue
			}
			ci, ok1 := chainIdx[string(chain)]
			ki, ok2 := keyIdx[string(key)]
			if !ok1 || !ok2 {
				fail("read a file that is no complete version")
				return
			}
			if ci != ki {
				fail("read the chain of one version with the key of another")
				return
			}
			seen.Store(ci, true)
			reads.Add(1)
			once()
		}
	})

	select {
	case <-started:
	case <-time.After(waitTimeout):
		close(stop)
		wg.Wait()
		t.Fatal("the reader never read a pair")
	}
	var writeErr error
	for i := 1; i <= rotations && writeErr == nil; i++ {
		p := pairs[i%variants]
		_, writeErr = WritePair(tlsDir, "a.example.com", p.chain, p.key)
	}
	close(stop)
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	if reads.Load() == 0 {
		t.Fatal("no successful read")
	}
	n := 0
	seen.Range(func(any, any) bool { n++; return true })
	t.Logf("%d reads, %d distinct versions seen", reads.Load(), n)

	final := pairs[rotations%variants]
	checkPair(t, tlsDir, "a.example.com", final.chain, final.key)
	if got := versionDirs(t, tlsDir, "a.example.com"); len(got) > 2 {
		t.Fatalf("%d version directories left after %d rotations: %v", len(got), rotations, got)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "key.pem") // sub is created
	if err := writeFileAtomic(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, []byte("one"), 0o600)
	if err := writeFileAtomic(path, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, []byte("two"), 0o644)
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("temporary files left behind: %v", names)
	}
	// A path that cannot be written leaves nothing and says where.
	blocked := filepath.Join(dir, "file")
	if err := os.WriteFile(blocked, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := writeFileAtomic(filepath.Join(blocked, "x.pem"), []byte("x"), 0o600)
	if err == nil || !strings.Contains(err.Error(), blocked) {
		t.Fatalf("writing under a file: %v", err)
	}
	if got, _ := os.ReadFile(blocked); len(got) != 0 {
		t.Fatal("the blocking file was changed")
	}
}

func TestParseVersion(t *testing.T) {
	for _, tt := range []struct {
		n     string
		name  string
		stamp int64
		ok    bool
	}{
		{".a.example.com.1700000000000000001", "a.example.com", 1700000000000000001, true},
		{".wildcard.a.example.com.42", "wildcard.a.example.com", 42, true},
		{".b.example.com.x.7", "b.example.com.x", 7, true},
		{"a.example.com", "", 0, false},                          // the link
		{".a.example.com.1700000000000000001.tmp", "", 0, false}, // being written
		{".a.example.com.link.tmp", "", 0, false},
		{".a.example.com.previous-1700000000", "", 0, false}, // moved aside
		{".a.example.com.0042", "", 0, false},                // not one of ours: left alone
		{".a.example.com.99999999999999999999", "", 0, false},
		{".a.example.com.", "", 0, false},
		{"..1", "", 0, false},
	} {
		name, stamp, ok := parseVersion(tt.n)
		if name != tt.name || stamp != tt.stamp || ok != tt.ok {
			t.Errorf("parseVersion(%q) = %q, %d, %v; want %q, %d, %v", tt.n, name, stamp, ok, tt.name, tt.stamp, tt.ok)
		}
		if ok && versionDir(name, stamp) != tt.n {
			t.Errorf("versionDir(%q, %d) = %q", name, stamp, versionDir(name, stamp))
		}
	}
}
