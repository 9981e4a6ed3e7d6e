package sdnotify

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen is a stand-in for systemd's notification socket: a unixgram
// socket named by NOTIFY_SOCKET; it returns the datagrams it receives.
func listen(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	out := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(out)
				return
			}
			out <- string(buf[:n])
		}
	}()
	return out
}

func next(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no notification within 5s")
	}
	return ""
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestNotifications(t *testing.T) {
	ch := listen(t)
	n := New(quiet())
	for _, c := range []struct {
		send func()
		want string
	}{
		{func() { n.Status("starting: opening PlatformDB") }, "STATUS=starting: opening PlatformDB"},
		{func() { n.Ready("serving") }, "READY=1\nSTATUS=serving"},
		{func() { n.Stopping("draining\nin-flight requests") }, "STOPPING=1\nSTATUS=draining in-flight requests"},
	} {
		c.send()
		if got := next(t, ch); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
	n.Reloading("reloading: re-reading the certificate files")
	got := strings.Split(next(t, ch), "\n")
	if len(got) != 3 || got[0] != "RELOADING=1" || !strings.HasPrefix(got[1], "MONOTONIC_USEC=") || got[2] != "STATUS=reloading: re-reading the certificate files" {
		t.Errorf("reloading: %q", got)
	}
}

func TestWatchdog(t *testing.T) {
	ch := listen(t)
	t.Setenv("WATCHDOG_USEC", "100000") // 100 ms: a ping every 50 ms
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { New(quiet()).Watchdog(ctx); close(done) }()
	start := time.Now()
	for range 3 {
		if got := next(t, ch); got != "WATCHDOG=1" {
			t.Fatalf("got %q, want WATCHDOG=1", got)
		}
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("3 pings in %s: faster than every WATCHDOG_USEC/2", d)
	}
	cancel()
	<-done
}

// Without WatchdogSec= (no WATCHDOG_USEC) or outside systemd (no
// NOTIFY_SOCKET), nothing is sent and nothing fails.
func TestOutsideSystemd(t *testing.T) {
	ch := listen(t)
	t.Setenv("WATCHDOG_USEC", "")
	done := make(chan struct{})
	go func() { New(quiet()).Watchdog(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watchdog without WATCHDOG_USEC does not return")
	}
	t.Setenv("NOTIFY_SOCKET", "")
	New(quiet()).Ready("serving")
	select {
	case m := <-ch:
		t.Fatalf("sent %q without NOTIFY_SOCKET", m)
	case <-time.After(100 * time.Millisecond):
	}
}
