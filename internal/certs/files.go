package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"
)

// FileSource serves Strategy C: a certificate and key on disk that someone
// else (certbot, an internal CA, a copy script) replaces. It polls the files'
// identity rather than using inotify because a poll sees every way they
// change — rewritten in place, renamed over, a symlink re-pointed the way
// certbot's live/ -> archive/ does, a Kubernetes ..data flip — with one code
// path and two stat calls per tick.
type FileSource struct {
	CertFile, KeyFile, CAFile string
	// Interval between polls (default 250ms). A change must be seen unchanged
	// on two consecutive polls before it is read, so a writer that is halfway
	// through (cert written, key not yet) is not reported as an error.
	Interval time.Duration
	Logger   *slog.Logger
	// OnLoad receives each new good certificate. It is called from Run's
	// goroutine (and from Load), never concurrently.
	OnLoad func(*tls.Certificate)
	// OnReload, if set, is called after each read a receive on Run's reload
	// channel forced, with its outcome (the daemon tells systemd the reload
	// is over).
	OnReload func(error)
	Now      func() time.Time

	loaded  fileState // what the serving certificate was read from
	seen    fileState // the last poll's view
	refused fileState // a bad state already reported: do not spam the log
}

// fileState identifies the files' content without reading them.
type fileState struct {
	set   bool
	files [3]fileID
}

type fileID struct {
	dev, ino uint64
	size     int64
	mtime    int64
	missing  bool
}

func (f *FileSource) stat() fileState {
	st := fileState{set: true}
	for i, p := range []string{f.CertFile, f.KeyFile, f.CAFile} {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p) // follows symlinks: a re-pointed link changes dev/ino
		if err != nil {
			st.files[i] = fileID{missing: true}
			continue
		}
		id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			id.dev, id.ino = uint64(sys.Dev), sys.Ino
		}
		st.files[i] = id
	}
	return st
}

func (f *FileSource) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f *FileSource) log() *slog.Logger {
	if f.Logger != nil {
		return f.Logger
	}
	return slog.Default()
}

// Load reads the files now, whatever their state, and hands a good pair to
// OnLoad. It is the start-up read and what SIGHUP triggers. On error nothing
// is replaced and the error names the file and the reason.
func (f *FileSource) Load() error {
	st := f.stat()
	f.seen = st
	c, err := LoadFiles(f.CertFile, f.KeyFile, f.CAFile, f.now())
	if err != nil {
		f.refused = st
		return err
	}
	f.loaded, f.refused = st, fileState{}
	if f.OnLoad != nil {
		f.OnLoad(c)
	}
	f.log().Info("certificate loaded", "certFile", f.CertFile, "keyFile", f.KeyFile,
		"certificate", Describe(c.Leaf), "notAfter", c.Leaf.NotAfter.UTC())
	return nil
}

// Run polls until ctx ends. A receive on reload (SIGHUP) forces a read.
func (f *FileSource) Run(ctx context.Context, reload <-chan struct{}) {
	interval := f.Interval
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			err := f.Load()
			if err != nil {
				f.refuse(err)
			}
			if f.OnReload != nil {
				f.OnReload(err)
			}
		case <-t.C:
			f.poll()
		}
	}
}

func (f *FileSource) poll() {
	st := f.stat()
	if st == f.loaded || st == f.refused {
		f.seen = st
		return
	}
	if st != f.seen { // still moving: wait for it to settle one tick
		f.seen = st
		return
	}
	if err := f.Load(); err != nil {
		f.refuse(err)
	}
}

func (f *FileSource) refuse(err error) {
	// err names the files already.
	f.log().Error("certificate change refused; the previous certificate keeps serving", "error", err.Error())
}

// String names the source in logs.
func (f *FileSource) String() string { return fmt.Sprintf("files %s + %s", f.CertFile, f.KeyFile) }
