package atomicfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestWrite(t *testing.T) {
	old := []byte("old content\n")
	for _, tt := range []struct {
		name    string
		before  func(t *testing.T, path string) // what is at path first
		create  bool                            // Create instead of Write
		data    []byte                          // what is written: "new" when nil
		mode    fs.FileMode
		umask   int
		fails   bool  // the write returns an error
		wrapped error // which the error wraps, when it matters
		want    []byte
		// the mode path has after; 0 when it is not a file
		wantMode fs.FileMode
	}{
		{name: "new key", mode: 0o600, want: []byte("new"), wantMode: 0o600},
		{name: "new certificate", mode: 0o644, want: []byte("new"), wantMode: 0o644},
		{name: "replaces, narrowing a wider mode", before: file(old, 0o644), mode: 0o600, want: []byte("new"), wantMode: 0o600},
		{name: "replaces, widening", before: file(old, 0o600), mode: 0o644, want: []byte("new"), wantMode: 0o644},
		{name: "mode exact under a narrow umask", mode: 0o644, umask: 0o077, want: []byte("new"), wantMode: 0o644},
		{name: "empty data", before: file(old, 0o600), data: []byte{}, mode: 0o600, want: []byte{}, wantMode: 0o600},
		{name: "replaces a symlink, not its target", before: symlink, mode: 0o600, want: []byte("new"), wantMode: 0o600},
		{name: "a directory at path stays", before: directory, mode: 0o600, fails: true},
		{name: "create: new", create: true, mode: 0o600, want: []byte("new"), wantMode: 0o600},
		{name: "create: an existing file stays", create: true, before: file(old, 0o644), mode: 0o600, fails: true, wrapped: fs.ErrExist, want: old, wantMode: 0o644},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "privkey.pem")
			if tt.before != nil {
				tt.before(t, path)
			}
			if tt.umask != 0 {
				defer syscall.Umask(syscall.Umask(tt.umask))
			}
			write := Write
			if tt.create {
				write = Create
			}
			data := tt.data
			if data == nil {
				data = []byte("new")
			}
			err := write(path, data, tt.mode)
			switch {
			case !tt.fails && err != nil:
				t.Fatalf("write: %v", err)
			case tt.fails && err == nil:
				t.Fatal("write succeeded, want an error")
			case tt.wrapped != nil && !errors.Is(err, tt.wrapped):
				t.Fatalf("write: %v, want it to wrap %v", err, tt.wrapped)
			case err != nil && !strings.Contains(err.Error(), path):
				t.Fatalf("the error %q does not name %s", err, path)
			}
			if tt.wantMode != 0 {
				checkFile(t, path, tt.want, tt.wantMode)
			}
			if tt.before != nil && tt.fails {
				checkUnchanged(t, path)
			}
			checkNoTemp(t, dir)
		})
	}
}

// TestFailureMidWay: a write that fails part way through the data (the
// file size limit is met: EFBIG from the kernel, not a stand-in) leaves the
// old file as it was and no temporary file.
func TestFailureMidWay(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fullchain.pem")
	old := bytes.Repeat([]byte("o"), 100)
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	small := lim
	small.Cur = 4096 // Go ignores SIGXFSZ: the write returns EFBIG
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &small); err != nil {
		t.Skipf("cannot lower the file size limit here: %v", err)
	}
	err := Write(path, bytes.Repeat([]byte("n"), 64<<10), 0o644)
	if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); rerr != nil {
		t.Fatal(rerr)
	}
	if !errors.Is(err, syscall.EFBIG) || !strings.Contains(err.Error(), path) {
		t.Fatalf("write past the size limit: %v, want EFBIG naming %s", err, path)
	}
	checkFile(t, path, old, 0o644)
	checkNoTemp(t, dir)
}

func TestMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent", "key.pem")
	err := Write(path, []byte("x"), 0o600)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("write into a missing directory: %v, want ErrNotExist naming %s", err, path)
	}
}

// TestReadersSeeWholeFiles: while one goroutine replaces the file again and
// again, every read sees one version whole, never an empty or mixed file
// (what os.WriteFile's truncate-then-write shows a reader).
func TestReadersSeeWholeFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "override.yml")
	a, b := bytes.Repeat([]byte("a"), 256<<10), bytes.Repeat([]byte("b"), 256<<10)
	if err := Write(path, a, 0o600); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := range 200 {
			data := a
			if i%2 == 0 {
				data = b
			}
			if err := Write(path, data, 0o600); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	reads := 0
	for {
		select {
		case <-done:
			wg.Wait()
			if reads == 0 {
				t.Fatal("no read happened during the writes")
			}
			return
		default:
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read %d: %v", reads, err)
		}
		if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
			t.Fatalf("read %d saw %d bytes that are neither version whole", reads, len(got))
		}
		reads++
	}
}

func file(data []byte, mode fs.FileMode) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		t.Helper()
		if err := os.WriteFile(path, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		snapshot(t, path)
	}
}

func symlink(t *testing.T, path string) {
	t.Helper()
	target := filepath.Join(filepath.Dir(path), "target")
	file([]byte("target"), 0o644)(t, target)
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { checkFile(t, target, []byte("target"), 0o644) })
}

func directory(t *testing.T, path string) {
	t.Helper()
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	file([]byte("inside"), 0o600)(t, filepath.Join(path, "inside"))
	snapshot(t, path)
}

// snapshot keeps what is at path, for checkUnchanged.
var snapshots = map[string]string{}

func snapshot(t *testing.T, path string) {
	t.Helper()
	snapshots[path] = describe(t, path)
}

func checkUnchanged(t *testing.T, path string) {
	t.Helper()
	if got := describe(t, path); got != snapshots[path] {
		t.Fatalf("%s changed: %s, was %s", path, got, snapshots[path])
	}
}

func describe(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		return err.Error()
	}
	if fi.IsDir() {
		entries, _ := os.ReadDir(path)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return "directory " + fi.Mode().String() + " " + strings.Join(names, ",")
	}
	data, _ := os.ReadFile(path)
	return fi.Mode().String() + " " + string(data)
}

func checkFile(t *testing.T, path string, want []byte, mode fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
		t.Fatalf("%s is %v, want a regular file %v", path, fi.Mode(), mode)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s holds %d bytes %.40q, want %d bytes %.40q", path, len(got), got, len(want), want)
	}
}

func checkNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Fatalf("temporary file %s left in %s", e.Name(), dir)
		}
	}
}
