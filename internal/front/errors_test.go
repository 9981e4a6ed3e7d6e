package front

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// pryvError is the Pryv API's error shape; decoding is strict so no other
// field may appear.
type pryvError struct {
	Error struct {
		ID      string `json:"id"`
		Message string `json:"message"`
	} `json:"error"`
}

func TestDeadUpstreamAnswers502JSON(t *testing.T) {
	apiAddr, hfsAddr := deadAddr(t), deadAddr(t)
	tf := startFront(t, frontSetup{
		API:            "http://" + apiAddr,
		HFS:            "http://" + hfsAddr,
		GetCertificate: getPKI(t).store.GetCertificate,
	})

	cases := []struct {
		method, path string
		body         []byte
		name, other  string // the upstream to name, the one not to
		addr         string // the upstream's address, never to be shown
	}{
		{http.MethodGet, "/alice/events", nil, "api", "hfs", apiAddr},
		{http.MethodPost, "/alice/events", []byte(`{"streamIds":["s"],"type":"note/txt","content":"x"}`), "api", "hfs", apiAddr},
		{http.MethodGet, "/socket.io/?EIO=4&transport=polling", nil, "api", "hfs", apiAddr},
		{http.MethodGet, "/alice/events/e1/series", nil, "hfs", "api", hfsAddr},
		{http.MethodPost, "/alice/series/batch", bytes.Repeat([]byte("x"), 64<<10), "hfs", "api", hfsAddr},
	}
	for _, h2 := range []bool{true, false} {
		t.Run(protoName(h2), func(t *testing.T) {
			c := httpsClient(t, tf.addr, h2, nil)
			for _, tc := range cases {
				var body io.Reader
				if tc.body != nil {
					body = bytes.NewReader(tc.body)
				}
				req, err := http.NewRequest(tc.method, "https://"+testHost+tc.path, body)
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", tc.method, tc.path, err)
				}
				raw, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				elapsed := time.Since(start)
				if err != nil {
					t.Fatalf("%s %s: reading body: %v", tc.method, tc.path, err)
				}
				// Connection refused is immediate; anything near the 5 s dial
				// timeout would mean the front waited for nothing.
				if elapsed > 2*time.Second {
					t.Errorf("%s %s: answered after %v", tc.method, tc.path, elapsed)
				}
				if resp.StatusCode != http.StatusBadGateway {
					t.Errorf("%s %s: status %d, want 502", tc.method, tc.path, resp.StatusCode)
				}
				if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" {
					t.Errorf("%s %s: Content-Type %q, want application/json", tc.method, tc.path, resp.Header.Get("Content-Type"))
				}
				var top map[string]map[string]json.RawMessage
				if err := json.Unmarshal(raw, &top); err != nil || len(top) != 1 || len(top["error"]) != 2 {
					t.Errorf("%s %s: body %q is not exactly {\"error\":{\"id\",\"message\"}} (%v)", tc.method, tc.path, raw, err)
				}
				dec := json.NewDecoder(bytes.NewReader(raw))
				dec.DisallowUnknownFields()
				var pe pryvError
				if err := dec.Decode(&pe); err != nil {
					t.Fatalf("%s %s: body %q: %v", tc.method, tc.path, raw, err)
				}
				if pe.Error.ID != "unexpected-error" {
					t.Errorf("%s %s: error id %q, want unexpected-error", tc.method, tc.path, pe.Error.ID)
				}
				msg := pe.Error.Message
				if !strings.Contains(msg, tc.name) || strings.Contains(msg, tc.other) {
					t.Errorf("%s %s: message %q should name %q (and not %q)", tc.method, tc.path, msg, tc.name, tc.other)
				}
				_, port, _ := net.SplitHostPort(tc.addr)
				if strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, port) {
					t.Errorf("%s %s: message %q reveals the upstream address %s", tc.method, tc.path, msg, tc.addr)
				}
			}
		})
	}
	// The operator, unlike the client, is told where the upstream was.
	logs := tf.logs.String()
	if countLines(logs, "upstream unreachable", "upstream=api", apiAddr) == 0 ||
		countLines(logs, "upstream unreachable", "upstream=hfs", hfsAddr) == 0 {
		t.Errorf("no WARN line naming each dead upstream and its address:\n%s", logs)
	}
}

// TestClientGoneIsNot502: a client that disconnects while the upstream is
// still working is not reported as an unreachable upstream.
func TestClientGoneIsNot502(t *testing.T) {
	arrived := make(chan struct{}, 1)
	upstreamDone := make(chan error, 1)
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
			upstreamDone <- r.Context().Err()
		case <-time.After(10 * time.Second):
			upstreamDone <- errors.New("the upstream request was never cancelled")
		}
	})
	api := newUpstream(t, slow)
	hfs := newEchoUpstream(t, "hfs")
	handlerDone := make(chan struct{}, 1)
	tf := startFront(t, frontSetup{
		API: api.URL, HFS: hfs.URL,
		GetCertificate: getPKI(t).store.GetCertificate,
		Wrap: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer func() { handlerDone <- struct{}{} }() // it ends in http.ErrAbortHandler
				next.ServeHTTP(w, r)
			})
		},
	})

	for _, h2 := range []bool{true, false} {
		t.Run(protoName(h2), func(t *testing.T) {
			c := httpsClient(t, tf.addr, h2, nil)
			before := countLines(tf.logs.String(), "upstream unreachable")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+testHost+"/alice/events", nil)
			clientErr := make(chan error, 1)
			go func() {
				resp, err := c.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				clientErr <- err
			}()
			select {
			case <-arrived:
			case <-time.After(5 * time.Second):
				t.Fatal("request never reached the upstream")
			}
			cancel()
			if err := <-clientErr; !errors.Is(err, context.Canceled) {
				t.Errorf("client error %v, want context.Canceled", err)
			}
			select {
			case err := <-upstreamDone:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("upstream: %v", err)
				}
			case <-time.After(11 * time.Second):
				t.Fatal("upstream handler never ended")
			}
			select {
			case <-handlerDone:
			case <-time.After(5 * time.Second):
				t.Fatal("front handler never returned")
			}
			if countLines(tf.logs.String(), "upstream unreachable") != before {
				t.Errorf("a client going away was logged as an unreachable upstream:\n%s", tf.logs.String())
			}
		})
	}
}
