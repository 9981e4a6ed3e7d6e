// Package atomicfile writes files whole or not at all: keys, certificates,
// the join override, the CRL etcd reads at every handshake. A reader, or a
// crash or power cut at any instant, sees the old content or the new one,
// never a part; a write that fails leaves the old file as it was.
//
// The contract of Write and Create:
//   - the data goes to a fresh temporary file ".<name>.*.tmp" in the
//     target's own directory (the same file system, so the final rename or
//     link is atomic); the directory must exist;
//   - the file gets mode exactly (the umask does not narrow it, and an
//     existing file's wider mode is not kept: a key written 0600 is 0600);
//   - the file is fsynced before it takes the target's name, and the
//     directory after, so the new content survives a power cut once the
//     call returns;
//   - on any error the temporary file is removed and the target is not
//     touched; the error names the target and wraps the cause.
//
// A symlink at the target is replaced, not followed (a caller that must
// keep the link resolves it first).
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with data, or creates it.
func Write(path string, data []byte, mode fs.FileMode) error {
	return write(path, data, mode, true)
}

// Create writes path only if nothing is there: if path exists it fails with
// an error wrapping fs.ErrExist and leaves it alone (the temporary file is
// linked in place, not renamed over). For files two processes may race to
// make, such as a CA key: the loser loads the winner's.
func Create(path string, data []byte, mode fs.FileMode) error {
	return write(path, data, mode, false)
}

func write(path string, data []byte, mode fs.FileMode, replace bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && replace {
		err = os.Rename(tmp, path)
	} else if err == nil {
		err = os.Link(tmp, path) // fails with fs.ErrExist where rename would replace
	}
	if err != nil || !replace {
		_ = os.Remove(tmp)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes the new directory entry durable. Best effort: the file is
// already complete and in place, and some file systems refuse a directory
// fsync.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
