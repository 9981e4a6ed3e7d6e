package daemon

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/config"
)

// socketSys is the control socket: opened before anything else, so that a
// command run right after serve reaches the process and is told to wait. A
// second pryv-tls on the same configuration stops here, having opened
// nothing else. Without PlatformDB there is nothing for the commands to
// reach and no socket. Every method is safe when there is none.
type socketSys struct {
	path string // empty: no socket
	log  *slog.Logger
	sock *admin.Socket
}

func newSocketSys(cfg *config.Config, log *slog.Logger) *socketSys {
	s := &socketSys{log: log}
	if cfg.PlatformDBEnabled() {
		s.path = cfg.Control.Socket
	}
	return s
}

func (s *socketSys) Name() string { return "opening the control socket" }

func (s *socketSys) Start(context.Context) error {
	if s.path == "" {
		return nil
	}
	sock, err := admin.OpenSocket(s.path, s.log)
	if err != nil {
		return err
	}
	s.sock = sock
	return nil
}

func (s *socketSys) Stop() {
	if s.sock != nil {
		s.sock.Close()
	}
}

// Reload: control.socket is a restart-only key (config.Diff refuses it).
func (s *socketSys) Reload(*config.Config) error { return nil }

func (s *socketSys) Step(step string) {
	if s.sock != nil {
		s.sock.Step(step)
	}
}

func (s *socketSys) Serve(h http.Handler) {
	if s.sock != nil {
		s.sock.Serve(h)
	}
}

func (s *socketSys) Unavailable(msg string) {
	if s.sock != nil {
		s.sock.Unavailable(msg)
	}
}

func (s *socketSys) Stopping() {
	if s.sock != nil {
		s.sock.Stopping()
	}
}
