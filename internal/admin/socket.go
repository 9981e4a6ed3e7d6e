package admin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pryv/pryv-tls/internal/apijson"
)

// ListenSocket opens the control socket: its directory is made 0700, the
// socket 0600, and every connection's peer must run as this process's user
// or root (checked with SO_PEERCRED), so neither a loose umask nor a
// loosened directory lets another local user in.
func ListenSocket(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("control socket %s: exists and is not a socket; remove it or set control.socket", path)
		}
		// A socket file left by a previous run: refuse if someone answers on it.
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another pryv-tls is already serving on it", path)
		}
		_ = os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return &peerCheckListener{Listener: ln, uid: uint32(os.Getuid())}, nil //nolint:gosec // G115: a Linux uid is 32 bits
}

type peerCheckListener struct {
	net.Listener
	uid uint32
}

func (l *peerCheckListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if uc, ok := c.(*net.UnixConn); ok && l.allowed(uc) {
			return c, nil
		}
		c.Close()
	}
}

func (l *peerCheckListener) allowed(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return false
	}
	return cred.Uid == l.uid || cred.Uid == 0
}

// ServeSocket serves the local API on ln until ctx ends.
func (a *API) ServeSocket(ctx context.Context, ln net.Listener) {
	s := serveSocket(ln, a.log())
	s.Serve(a.Local())
	<-ctx.Done()
	s.Close()
}

// The error ids of the control socket's own answers (the API's are its
// handlers'). A client waits through IDStarting: the request was not looked
// at, so sending it again is safe whatever its method.
const (
	IDStarting    = "starting"    // the process is up, PlatformDB and the API not wired yet
	IDUnavailable = "unavailable" // serving, but PlatformDB does not answer (no quorum?)
	IDStopping    = "stopping"    // the process is draining
)

// Socket is the control socket of a running core. It answers from the
// moment it is opened, before PlatformDB is: 503 with the id IDStarting and
// the current start-up step, until Serve installs the API. The handler in
// place is one atomic pointer, read per request: no lock.
type Socket struct {
	srv   *http.Server
	done  chan struct{}
	h     atomic.Pointer[http.Handler]
	start *http.Handler // the starting handler, to tell "still starting"
	step  atomic.Pointer[string]
	once  sync.Once
}

// OpenSocket listens on path (as ListenSocket) and serves the starting
// answer at once.
func OpenSocket(path string, log *slog.Logger) (*Socket, error) {
	ln, err := ListenSocket(path)
	if err != nil {
		return nil, err
	}
	return serveSocket(ln, log), nil
}

func serveSocket(ln net.Listener, log *slog.Logger) *Socket {
	s := &Socket{done: make(chan struct{})}
	first := "starting"
	s.step.Store(&first)
	var starting http.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		apijson.Error(w, http.StatusServiceUnavailable, IDStarting, "the core is starting ("+*s.step.Load()+"); try again in a moment")
	})
	s.start = &starting
	s.h.Store(s.start)
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*s.h.Load()).ServeHTTP(w, r) }),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("control socket stopped", "error", err.Error())
		}
	}()
	return s
}

// Step names what start-up is doing, for the starting answer.
func (s *Socket) Step(step string) { s.step.Store(&step) }

// Serve answers with h from now on.
func (s *Socket) Serve(h http.Handler) { s.h.Store(&h) }

// Unavailable answers 503 IDUnavailable with msg, unless Serve was called
// already: start-up gave up waiting for PlatformDB, which may still come
// and call Serve later, in either order.
func (s *Socket) Unavailable(msg string) {
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		apijson.Error(w, http.StatusServiceUnavailable, IDUnavailable, msg)
	})
	s.h.CompareAndSwap(s.start, &h)
}

// Stopping answers 503 IDStopping from now on: the core drains.
func (s *Socket) Stopping() {
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		apijson.Error(w, http.StatusServiceUnavailable, IDStopping, "the core is shutting down")
	})
	s.h.Store(&h)
}

// Close stops the socket (in-flight requests get 5 s) and removes its file;
// it is safe to call twice.
func (s *Socket) Close() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(ctx)
		<-s.done
	})
}

// SocketClient is an HTTP client that talks to the control socket at path;
// requests go to "http://pryv-tls/...".
func SocketClient(path string) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		},
	}
}
