package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/metrics"
	"github.com/pryv/pryv-tls/internal/rotatehook"
)

// storedSys is the certificate source of PlatformDB's records: the last
// materialised copies served at start (before PlatformDB answers, or
// without quorum), then the records themselves once the platform attaches
// it, written to disk with the rotation hook run after each change.
type storedSys struct {
	log  *slog.Logger
	mat  *certstore.Materialiser // nil without letsEncrypt.atRestKey
	hook atomic.Pointer[rotatehook.Runner]
	bg   *tasks // hook runs
}

// keyring opens letsEncrypt.atRestKey; nil when it is not set.
func keyring(cfg *config.Config) (*atrest.Keyring, error) {
	if cfg.LetsEncrypt.AtRestKey == "" {
		return nil, nil
	}
	raw, err := cfg.LetsEncrypt.AtRestKeyBytes()
	var keys *atrest.Keyring
	var prev []byte
	if err == nil {
		prev, err = cfg.LetsEncrypt.AtRestKeyPreviousBytes()
	}
	if err == nil {
		keys, err = atrest.New(raw, previousKeys(prev)...)
	}
	if err != nil {
		return nil, fmt.Errorf("letsEncrypt.atRestKey: %w", err)
	}
	return keys, nil
}

// storedDeps are what the materialiser needs besides the configuration.
type storedDeps struct {
	cache   *certs.Cache
	metrics *metrics.Metrics // nil when metrics are off (its methods are nil-safe)
	log     *slog.Logger
}

func newStoredSys(cfg *config.Config, keys *atrest.Keyring, d storedDeps) *storedSys {
	s := &storedSys{log: d.log, bg: newTasks()}
	if keys == nil || !cfg.PlatformDBEnabled() {
		return s
	}
	s.hook.Store(&rotatehook.Runner{Script: cfg.LetsEncrypt.OnRotateScript, Logger: d.log})
	m := d.metrics
	s.mat = &certstore.Materialiser{
		TLSDir:  cfg.LetsEncrypt.TLSDir,
		Primary: cfg.PrimaryHostname(),
		Logger:  d.log,
		Update:  func(ch []certs.Change) { d.cache.Update(certs.SourceStore, ch...) },
		OnRotate: func(host, certPath, keyPath string) {
			hook := s.hook.Load()
			s.bg.Go(func(ctx context.Context) {
				res := hook.Run(ctx, host, certPath, keyPath)
				if hook.Script != "" {
					m.ObserveRotateScript(res.Err != nil, res.TimedOut)
				}
			})
		},
		OnServed: func(_ string, d time.Duration) { m.ObserveRotation(d) },
		// The heap policy's trim waits for a quiet second (memory.go); a
		// listing of 10,000 certificates leaves ~100 MB of garbage to
		// return at once (decision 0034).
		OnListed: debug.FreeOSMemory,
	}
	// The http.ssl files are outputs only under Strategy A; under Strategy
	// C they belong to whoever manages them (certbot's symlinks).
	if cfg.LetsEncrypt.Enabled {
		s.mat.CertFile, s.mat.KeyFile, _ = cfg.CertFiles()
	}
	return s
}

func (s *storedSys) Name() string { return "loading the materialised certificates" }

func (s *storedSys) Start(context.Context) error {
	if s.mat != nil {
		s.mat.LoadDisk()
	}
	return nil
}

func (s *storedSys) Stop() { s.bg.Stop() }

// Reload takes letsEncrypt.onRotateScript for the next rotation.
func (s *storedSys) Reload(next *config.Config) error {
	if s.mat == nil {
		return nil
	}
	if cur := s.hook.Load(); cur.Script != next.LetsEncrypt.OnRotateScript {
		s.hook.Store(&rotatehook.Runner{Script: next.LetsEncrypt.OnRotateScript, Logger: s.log})
	}
	return nil
}

// attach follows the records in PlatformDB while it answers.
func (s *storedSys) attach(_ context.Context, w *wiring) error {
	if s.mat == nil || w.catalog == nil {
		return nil
	}
	s.mat.Catalog = w.catalog
	w.run.Go(s.mat.Run)
	return nil
}

// previousKeys is letsEncrypt.atRestKeyPrevious as atrest.New takes it.
func previousKeys(prev []byte) [][]byte {
	if prev == nil {
		return nil
	}
	return [][]byte{prev}
}
