package cli

import (
	"fmt"
	"os"
	"path/filepath"
)

// writeFile replaces path with data, whole or not at all, in a file made
// fresh with mode: os.WriteFile would truncate in place (a crash leaves half
// an override the daemon then refuses to start on) and keep an existing
// file's wider mode (the join override holds atRestKey and adminAccessKey).
func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
