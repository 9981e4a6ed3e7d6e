package rotatehook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type problemDoc struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
	Status int    `json:"status"`
}

func TestNotifyRunsScriptAndWebhook(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env.txt")
	var logs bytes.Buffer
	type hit struct {
		method, ctype string
		body          map[string]any
	}
	hits := make(chan hit, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		hits <- hit{r.Method, r.Header.Get("Content-Type"), m}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	const token = "T0KEN-in-the-path"
	at := time.Date(2026, 12, 3, 13, 0, 0, 0, time.UTC)
	n := &Notifier{
		Script:  Runner{Script: script(t, `printf '%s|%s|%s|%s' "$PRYV_CERT_HOSTNAME" "$PRYV_CERT_PATH" "$PRYV_CERT_KEYPATH" "$PRYV_CERT_ERROR" > `+out)},
		Webhook: srv.URL + "/hooks/" + token,
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	}
	n.Script.Logger = n.Logger
	f := Failure{Hostname: "*.mc.example.com", Error: "too many certificates (rateLimited)", At: at, Failures: 1,
		Problem:  &problemDoc{Type: "urn:ietf:params:acme:error:rateLimited", Detail: "too many certificates", Status: 429},
		CertPath: "/tls/wildcard.mc.example.com/fullchain.pem", KeyPath: "/tls/wildcard.mc.example.com/privkey.pem"}
	res := n.Notify(context.Background(), f)
	if res.Script.Err != nil || res.WebhookErr != nil {
		t.Fatalf("notify: %+v", res)
	}
	got, _ := os.ReadFile(out)
	if want := "*.mc.example.com|/tls/wildcard.mc.example.com/fullchain.pem|/tls/wildcard.mc.example.com/privkey.pem|too many certificates (rateLimited)"; string(got) != want {
		t.Errorf("script saw %q, want %q", got, want)
	}
	h := <-hits
	if h.method != http.MethodPost || h.ctype != "application/json" {
		t.Errorf("webhook: %s %s", h.method, h.ctype)
	}
	p, _ := h.body["problem"].(map[string]any)
	if h.body["hostname"] != "*.mc.example.com" || h.body["error"] != f.Error || h.body["at"] != "2026-12-03T13:00:00Z" ||
		p == nil || p["type"] != "urn:ietf:params:acme:error:rateLimited" || p["status"] != float64(429) {
		t.Errorf("webhook body %v", h.body)
	}
	for k := range h.body {
		if k != "hostname" && k != "error" && k != "problem" && k != "at" && k != "failures" {
			t.Errorf("webhook body has %q (the files' paths are for the script only)", k)
		}
	}
	if l := logs.String(); strings.Contains(l, token) || !strings.Contains(l, "onFailureWebhook notified") || !strings.Contains(l, "onFailureScript ran") {
		t.Errorf("logs (must not show the webhook's path):\n%s", l)
	}
}

// A webhook that is down, refuses, or hangs: a bounded wait, an error that
// does not repeat the URL's token, and the script still runs.
func TestWebhookFailures(t *testing.T) {
	const token = "s3cr3t-token"
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusForbidden) }))
	defer refuse.Close()
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hang.Close()
	defer close(release) // before Close, which waits for the handler
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + l.Addr().String()
	_ = l.Close()
	for _, c := range []struct {
		name, url, want string
	}{
		{"refused", refuse.URL, "answered 403 Forbidden"},
		{"redirect not followed", redirect.URL, "answered 307 Temporary Redirect"},
		{"down", closed, "connection refused"},
		{"hangs", hang.URL, "deadline exceeded"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			ran := filepath.Join(t.TempDir(), "ran")
			n := &Notifier{Webhook: c.url + "/x?token=" + token, Timeout: 500 * time.Millisecond,
				Script: Runner{Script: script(t, "touch "+ran)}, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			start := time.Now()
			res := n.Notify(context.Background(), Failure{Hostname: "a.example.com", Error: "x"})
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("took %v with a 500 ms timeout", took)
			}
			if res.WebhookErr == nil || !strings.Contains(res.WebhookErr.Error(), c.want) {
				t.Errorf("error %v, want %q", res.WebhookErr, c.want)
			}
			if res.WebhookErr != nil && strings.Contains(res.WebhookErr.Error(), token) {
				t.Errorf("the error shows the token: %v", res.WebhookErr)
			}
			if strings.Contains(logs.String(), token) || !strings.Contains(logs.String(), "onFailureWebhook failed") {
				t.Errorf("logs:\n%s", logs.String())
			}
			if _, err := os.Stat(ran); err != nil {
				t.Error("the script did not run beside a failing webhook")
			}
		})
	}
}

func TestNotifyNothingSet(t *testing.T) {
	res := (&Notifier{}).Notify(context.Background(), Failure{Hostname: "a.example.com"})
	if res.Script.Err != nil || res.Script.ExitCode != 0 || res.WebhookErr != nil {
		t.Errorf("%+v", res)
	}
}
