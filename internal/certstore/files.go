package certstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pryv/pryv-tls/internal/atomicfile"
)

// WritePair writes fullchain.pem (0644) and privkey.pem (0600) so that the
// pair switches at once: both go into a new version directory
// ".<name>.<stamp>", and the symlink <name> is then renamed onto it. A reader
// that resolves <name> once sees the old pair or the new one, never one file
// of each; a crash leaves the old link in place. It returns <tlsDir>/<name>.
// The version before the current one is kept; older ones are removed (found
// by reading the whole directory: the Materialiser, which knows what it
// wrote, prunes without).
func WritePair(tlsDir, name string, chain, key []byte) (string, error) {
	link, kept, err := writePair(tlsDir, name, chain, key)
	if err == nil {
		syncDir(tlsDir)
		pruneVersions(tlsDir, map[string][2]string{name: kept})
	}
	return link, err
}

// writePair is WritePair without the directory's fsync, which makes the
// link's flip durable, and without the pruning: a batch of writes syncs
// the directory once, then prunes (the versions it replaced must not go
// before the flips are on disk). kept is the version written and the one
// the link named before (either may be empty, or not a version directory
// of ours); on an error after the version directory was made, kept[0]
// still names it, so that it can be pruned later.
func writePair(tlsDir, name string, chain, key []byte) (link string, kept [2]string, err error) {
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return "", kept, fmt.Errorf("materialising: %q is not a usable directory name", name)
	}
	// The materialised tree is read by programs beside us (nginx, a
	// backup, the core) under their own users: its directories and
	// fullchain.pem are world-readable, privkey.pem is 0600.
	if err := os.MkdirAll(tlsDir, 0o755); err != nil { //nolint:gosec // G301: read by others (above)
		return "", kept, fmt.Errorf("materialising %s: %w", name, err)
	}
	link = filepath.Join(tlsDir, name)
	version := fmt.Sprintf(".%s.%d", name, time.Now().UnixNano())
	tmpDir := filepath.Join(tlsDir, version+".tmp")
	if err := os.Mkdir(tmpDir, 0o755); err != nil { //nolint:gosec // G301: read by others (above)
		return "", kept, fmt.Errorf("materialising %s: %w", name, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(tmpDir)
		}
	}()
	if err := writeSynced(filepath.Join(tmpDir, "privkey.pem"), key, 0o600); err != nil {
		return "", kept, err
	}
	if err := writeSynced(filepath.Join(tmpDir, "fullchain.pem"), chain, 0o644); err != nil {
		return "", kept, err
	}
	if err := os.Rename(tmpDir, filepath.Join(tlsDir, version)); err != nil {
		return "", kept, fmt.Errorf("materialising %s: %w", name, err)
	}
	ok = true
	kept[0] = version

	// A real directory at <name> (an operator's, or a pre-symlink layout)
	// cannot be renamed over: move it aside first, keeping it.
	if fi, err := os.Lstat(link); err == nil {
		if fi.Mode()&os.ModeSymlink != 0 {
			kept[1], _ = os.Readlink(link)
		} else {
			aside := fmt.Sprintf(".%s.previous-%d", name, time.Now().Unix())
			if err := os.Rename(link, filepath.Join(tlsDir, aside)); err != nil {
				return "", kept, fmt.Errorf("materialising %s: moving the existing directory aside: %w", name, err)
			}
		}
	}
	tmpLink := filepath.Join(tlsDir, "."+name+".link.tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(version, tmpLink); err != nil {
		return "", kept, fmt.Errorf("materialising %s: %w", name, err)
	}
	if err := os.Rename(tmpLink, link); err != nil {
		_ = os.Remove(tmpLink)
		return "", kept, fmt.Errorf("materialising %s: %w", name, err)
	}
	return link, kept, nil
}

// versionOf splits a version directory's name ".<name>.<digits>".
func versionOf(n string) (name, digits string, ok bool) {
	if len(n) < 2 || n[0] != '.' {
		return "", "", false
	}
	// ".<name>.<digits>": find the name by the last dot.
	i := strings.LastIndexByte(n, '.')
	if i <= 1 || i+1 == len(n) || strings.Trim(n[i+1:], "0123456789") != "" {
		return "", "", false
	}
	return n[1:i], n[i+1:], true
}

func isVersionOf(n, name string) bool {
	got, _, ok := versionOf(n)
	return ok && got == name
}

// versionDir is the version directory of name with a stamp.
func versionDir(name string, stamp int64) string {
	return "." + name + "." + strconv.FormatInt(stamp, 10)
}

// parseVersion is the name and stamp of n if n is exactly versionDir of
// them (what writePair makes).
func parseVersion(n string) (name string, stamp int64, ok bool) {
	name, digits, ok := versionOf(n)
	if !ok {
		return "", 0, false
	}
	stamp, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || strconv.FormatInt(stamp, 10) != digits {
		return "", 0, false
	}
	return name, stamp, true
}

// scanVersions reads the whole directory once (unsorted) and returns the
// stamps of each name's version directories.
func scanVersions(tlsDir string) (map[string][]int64, error) {
	versions := make(map[string][]int64)
	d, err := os.Open(tlsDir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return versions, nil
		}
		return versions, err
	}
	defer func() { _ = d.Close() }() // read only
	names, err := d.Readdirnames(-1)
	for _, n := range names {
		if name, stamp, ok := parseVersion(n); ok {
			if _, known := versions[name]; !known {
				name = strings.Clone(name) // not to keep all of n
			}
			versions[name] = append(versions[name], stamp)
		}
	}
	return versions, err
}

// pruneVersions removes the version directories of each name other than
// the two it keeps (the current one and the one before), in one scan.
func pruneVersions(tlsDir string, keep map[string][2]string) {
	d, err := os.Open(tlsDir)
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	_ = d.Close() // read only
	for _, n := range names {
		name, _, ok := versionOf(n)
		if k, kept := keep[name]; ok && kept && n != k[0] && n != k[1] {
			_ = os.RemoveAll(filepath.Join(tlsDir, n))
		}
	}
}

// writeThrough is writeFileAtomic that keeps a symlink at path: the file it
// resolves to is replaced (in its own directory, so the rename stays
// atomic). Renaming over the link would turn certbot's live/<name>/*.pem
// into plain files, which certbot does not accept in a lineage it renews.
func writeThrough(path string, data []byte, mode os.FileMode) error {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		target, err := filepath.EvalSymlinks(path)
		if err != nil {
			return fmt.Errorf("writing %s: it is a symlink that does not resolve (%w): point it at an existing file, or remove it", path, err)
		}
		path = target
	}
	return writeFileAtomic(path, data, mode)
}

// writeFileAtomic is atomicfile.Write into a directory made when missing.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil { //nolint:gosec // G301: a materialised directory, read by others (writePair)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return atomicfile.Write(path, data, mode)
}

func writeSynced(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
