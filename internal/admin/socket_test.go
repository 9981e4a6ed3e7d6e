package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/apijson"
	"github.com/pryv/pryv-tls/internal/devpki"
)

func listen(t testing.TB, path string) net.Listener {
	t.Helper()
	ln, err := ListenSocket(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

func checkSocket(t testing.TB, path string) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("%s is %v, not a socket", path, fi.Mode())
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
}

func TestListenSocketModes(t *testing.T) {
	dir := filepath.Join(shortDir(t), "run", "pryv-tls")
	path := filepath.Join(dir, "control.sock")
	listen(t, path)
	checkSocket(t, path)
	for _, d := range []string{dir, filepath.Dir(dir)} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %v, want 0700", d, fi.Mode().Perm())
		}
	}
}

func TestListenSocketLive(t *testing.T) {
	path := filepath.Join(shortDir(t), "control.sock")
	first := listen(t, path)

	second, err := ListenSocket(path)
	if err == nil {
		second.Close()
		t.Fatal("a second ListenSocket on a live socket succeeded")
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "already serving") {
		t.Fatalf("error %q does not say the socket is in use", err)
	}
	// The live socket is untouched and still answers.
	checkSocket(t, path)
	accepted := make(chan error, 1)
	go func() {
		c, err := first.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		t.Fatalf("the first listener no longer answers: %v", err)
	}
	c.Close()
	select {
	case err := <-accepted:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the first listener did not accept")
	}
}

func TestListenSocketStale(t *testing.T) {
	path := filepath.Join(shortDir(t), "control.sock")
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the stale socket file is not there: %v", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	ln := listen(t, path)
	checkSocket(t, path)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		t.Fatalf("the new socket does not answer: %v", err)
	}
	c.Close()
}

func TestListenSocketRefusesRegularFile(t *testing.T) {
	path := filepath.Join(shortDir(t), "control.sock")
	if err := os.WriteFile(path, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := ListenSocket(path)
	if err == nil {
		ln.Close()
		t.Fatal("ListenSocket replaced a regular file")
	}
	if !strings.Contains(err.Error(), "not a socket") || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q", err)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "not a socket" {
		t.Fatalf("the file was changed: %q %v", got, err)
	}

	// Nor a directory.
	dirPath := filepath.Join(shortDir(t), "control.sock")
	if err := os.Mkdir(dirPath, 0o700); err != nil {
		t.Fatal(err)
	}
	if ln, err := ListenSocket(dirPath); err == nil {
		ln.Close()
		t.Fatal("ListenSocket replaced a directory")
	}
}

// serve runs ServeSocket until the returned stop is called; stop waits
// (bounded) for it to return.
func serve(t testing.TB, api *API, ln net.Listener) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		api.ServeSocket(ctx, ln)
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Errorf("ServeSocket did not return %s after its context ended", waitTimeout)
		}
	}
	t.Cleanup(stop)
	return stop
}

func call(t testing.TB, c *http.Client, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(testCtx(t), method, "http://pryv-tls"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %s: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

func TestSocketRoundTrip(t *testing.T) {
	cat, _ := newCatalog(t)
	ca := newCA(t)
	api := &API{Certs: cat, Logger: quietLogger()}
	path := filepath.Join(shortDir(t), "ctl", "control.sock")
	stop := serve(t, api, listen(t, path))
	c := SocketClient(path)
	defer c.CloseIdleConnections()

	wild := issue(t, ca, devpki.Leaf{Names: []string{"*.mc.example.com", "mc.example.com"}})
	var info CertInfo
	if st := call(t, c, http.MethodPost, "/certs", ImportRequest{Chain: string(wild.FullChain), Key: string(wild.KeyPEM)}, &info); st != http.StatusOK {
		t.Fatalf("import: %d", st)
	}
	if info.Hostname != "*.mc.example.com" || info.Serial != serialOf(wild) {
		t.Fatalf("import answered %+v", info)
	}
	var list struct {
		Certs []CertInfo `json:"certs"`
	}
	if st := call(t, c, http.MethodGet, "/certs", nil, &list); st != http.StatusOK || len(list.Certs) != 1 || list.Certs[0].Serial != serialOf(wild) {
		t.Fatalf("list: %d %+v", st, list)
	}
	var exp ExportResponse
	if st := call(t, c, http.MethodGet, "/certs/*.mc.example.com/export", nil, &exp); st != http.StatusOK {
		t.Fatalf("export: %d", st)
	}
	if exp.Key != string(wild.KeyPEM) || exp.Chain != string(wild.FullChain) {
		t.Fatal("export through the socket returned another pair")
	}
	if st := call(t, c, http.MethodDelete, "/certs/*.mc.example.com", nil, nil); st != http.StatusOK {
		t.Fatalf("delete: %d", st)
	}
	if st := call(t, c, http.MethodGet, "/certs/*.mc.example.com/export", nil, nil); st != http.StatusNotFound {
		t.Fatalf("export after delete: %d", st)
	}

	// Cancelling the context stops the server: ServeSocket returns and the
	// socket no longer answers.
	stop()
	c.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(testCtx(t), http.MethodGet, "http://pryv-tls/certs", nil)
	if resp, err := SocketClient(path).Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the socket still answers after ServeSocket stopped: %d", resp.StatusCode)
	}
	// The path can be listened on again.
	ln, err := ListenSocket(path)
	if err != nil {
		t.Fatalf("listening again after a stop: %v", err)
	}
	ln.Close()
}

func TestServeSocketStopsOnCancel(t *testing.T) {
	api := &API{Certs: fakeCerts{errors.New("unused")}, Logger: quietLogger()}
	path := filepath.Join(shortDir(t), "control.sock")
	ln := listen(t, path)

	// An idle keep-alive connection must not hold the shutdown.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		api.ServeSocket(ctx, ln)
	}()
	c := SocketClient(path)
	defer c.CloseIdleConnections()
	if st := call(t, c, http.MethodGet, "/no-such-route", nil, nil); st != http.StatusNotFound {
		t.Fatalf("status %d", st)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("ServeSocket did not return after its context ended")
	}
	if _, err := net.DialTimeout("unix", path, time.Second); err == nil {
		t.Fatal("the socket still accepts connections")
	}
}

// answer is one request's status and decoded error id and message.
func answer(t testing.TB, c *http.Client) (int, string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodPost, "http://pryv-tls/certs", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Error struct{ ID, Message string } `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error.ID, e.Error.Message
}

// The socket answers from the moment it is opened: 503 starting with the
// current step, then the handler it is given; Unavailable (start-up gave up
// waiting for PlatformDB) never replaces a handler PlatformDB already
// installed, whichever comes first; Stopping replaces anything.
func TestSocketLifecycle(t *testing.T) {
	path := filepath.Join(shortDir(t), "run", "control.sock")
	s, err := OpenSocket(path, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	checkSocket(t, path)
	c := SocketClient(path)
	defer c.CloseIdleConnections()

	st, id, msg := answer(t, c)
	if st != http.StatusServiceUnavailable || id != IDStarting || !strings.Contains(msg, "the core is starting") {
		t.Fatalf("before any step: %d %q %q, want 503 %q", st, id, msg, IDStarting)
	}
	s.Step("starting: opening PlatformDB")
	if _, id, msg := answer(t, c); id != IDStarting || !strings.Contains(msg, "opening PlatformDB") {
		t.Fatalf("the starting answer does not name the step: %q %q", id, msg)
	}

	api := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { apijson.Write(w, http.StatusOK, map[string]any{}) })
	s.Unavailable("no quorum")
	if st, id, msg := answer(t, c); st != http.StatusServiceUnavailable || id != IDUnavailable || msg != "no quorum" {
		t.Fatalf("after Unavailable: %d %q %q", st, id, msg)
	}
	s.Serve(api) // quorum came back
	if st, _, _ := answer(t, c); st != http.StatusOK {
		t.Fatalf("after Serve: %d, want the API", st)
	}
	s.Unavailable("too late") // the wait timed out after PlatformDB was wired
	if st, id, _ := answer(t, c); st != http.StatusOK {
		t.Fatalf("Unavailable replaced the API: %d %q", st, id)
	}
	s.Stopping()
	if st, id, _ := answer(t, c); st != http.StatusServiceUnavailable || id != IDStopping {
		t.Fatalf("after Stopping: %d %q", st, id)
	}

	c.CloseIdleConnections()
	s.Close()
	s.Close() // twice is fine
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the socket file is left after Close: %v", err)
	}
}

// A second core on the same socket is refused at OpenSocket, and the first
// keeps answering.
func TestOpenSocketTwice(t *testing.T) {
	path := filepath.Join(shortDir(t), "control.sock")
	s, err := OpenSocket(path, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if s2, err := OpenSocket(path, quietLogger()); err == nil {
		s2.Close()
		t.Fatal("a second OpenSocket on a live socket succeeded")
	} else if !strings.Contains(err.Error(), "another pryv-tls is already serving on it") {
		t.Fatalf("error %v", err)
	}
	c := SocketClient(path)
	defer c.CloseIdleConnections()
	if _, id, _ := answer(t, c); id != IDStarting {
		t.Fatalf("the first socket stopped answering: %q", id)
	}
}
