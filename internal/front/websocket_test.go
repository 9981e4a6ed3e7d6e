package front

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// wsSeen is what the WebSocket upstream saw of the handshake.
type wsSeen struct {
	upgrade, connection, key, xfp, xff, host, requestURI string
}

// newWSUpstream hijacks every request, answers 101 Switching Protocols and
// echoes whatever bytes follow.
func newWSUpstream(t *testing.T) (*httptest.Server, <-chan wsSeen) {
	t.Helper()
	seen := make(chan wsSeen, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- wsSeen{
			upgrade:    r.Header.Get("Upgrade"),
			connection: r.Header.Get("Connection"),
			key:        r.Header.Get("Sec-WebSocket-Key"),
			xfp:        r.Header.Get("X-Forwarded-Proto"),
			xff:        r.Header.Get("X-Forwarded-For"),
			host:       r.Host,
			requestURI: r.RequestURI,
		}
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "not an upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("upstream hijack: %v", err)
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n" +
			"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
		if err := brw.Flush(); err != nil {
			return
		}
		// Echo until the front closes its side.
		buf := make([]byte, 32<<10)
		for {
			n, err := brw.Read(buf)
			if n > 0 {
				if _, werr := conn.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv, seen
}

func TestWebSocketUpgradePassesThrough(t *testing.T) {
	ws, seen := newWSUpstream(t)
	hfs := newEchoUpstream(t, "hfs")
	tf := startFront(t, frontSetup{API: ws.URL, HFS: hfs.URL, GetCertificate: getPKI(t).store.GetCertificate})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{
		RootCAs:    getPKI(t).pool,
		ServerName: testHost,
		NextProtos: []string{"http/1.1"},
	}}
	nc, err := d.DialContext(ctx, "tcp", tf.addr)
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	conn := nc.(*tls.Conn)
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}

	const target = "/socket.io/?EIO=4&transport=websocket"
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	_, err = io.WriteString(conn, "GET "+target+" HTTP/1.1\r\n"+
		"Host: "+testHost+"\r\n"+
		"Upgrade: websocket\r\n"+
		"Connection: Upgrade\r\n"+
		"Sec-WebSocket-Key: "+key+"\r\n"+
		"Sec-WebSocket-Version: 13\r\n"+
		"X-Forwarded-For: 6.6.6.6\r\n"+
		"\r\n")
	if err != nil {
		t.Fatalf("writing handshake: %v", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatalf("reading handshake response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %s, want 101 Switching Protocols", resp.Status)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") ||
		!strings.EqualFold(resp.Header.Get("Connection"), "Upgrade") {
		t.Errorf("101 headers Upgrade=%q Connection=%q", resp.Header.Get("Upgrade"), resp.Header.Get("Connection"))
	}

	select {
	case s := <-seen:
		if !strings.EqualFold(s.upgrade, "websocket") {
			t.Errorf("upstream Upgrade %q, want websocket", s.upgrade)
		}
		if !strings.EqualFold(s.connection, "Upgrade") {
			t.Errorf("upstream Connection %q, want Upgrade", s.connection)
		}
		if s.key != key {
			t.Errorf("upstream Sec-WebSocket-Key %q, want %q", s.key, key)
		}
		if s.requestURI != target {
			t.Errorf("upstream request URI %q, want %q", s.requestURI, target)
		}
		if s.host != testHost || s.xfp != "https" || s.xff != "127.0.0.1" {
			t.Errorf("upstream Host %q X-Forwarded-Proto %q X-Forwarded-For %q; want %q https 127.0.0.1",
				s.host, s.xfp, s.xff, testHost)
		}
	case <-ctx.Done():
		t.Fatal("upstream never saw the upgrade request")
	}

	// Bytes flow both ways once switched, small and large writes alike.
	for _, msg := range [][]byte{
		[]byte("40"), // socket.io "connect" packet
		[]byte("hello through the front"),
		bytes.Repeat([]byte("0123456789abcdef"), 8<<10), // 128 KiB
	} {
		if _, err := conn.Write(msg); err != nil {
			t.Fatalf("writing %d bytes: %v", len(msg), err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatalf("reading %d echoed bytes: %v", len(msg), err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes differs", len(msg))
		}
	}

	// Closing the client side tears the tunnel down: the front closes its
	// end in turn, which the client reads as a clean EOF before its deadline.
	if err := conn.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Errorf("tunnel did not close cleanly after the client's close_notify: %v", err)
	}
}
