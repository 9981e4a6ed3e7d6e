package rotatehook

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunPassesTheSpecEnvironment(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env.txt")
	var logs bytes.Buffer
	r := &Runner{
		Script: script(t, `printf '%s|%s|%s' "$PRYV_CERT_HOSTNAME" "$PRYV_CERT_PATH" "$PRYV_CERT_KEYPATH" > `+out),
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}
	res := r.Run(context.Background(), "*.mc.example.com", "/tls/wildcard.mc.example.com/fullchain.pem", "/tls/wildcard.mc.example.com/privkey.pem")
	if res.Err != nil || res.ExitCode != 0 {
		t.Fatalf("run: %+v", res)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "*.mc.example.com|/tls/wildcard.mc.example.com/fullchain.pem|/tls/wildcard.mc.example.com/privkey.pem"
	if string(got) != want {
		t.Fatalf("script saw %q, want %q", got, want)
	}
	if !strings.Contains(logs.String(), "onRotateScript ran") {
		t.Fatalf("success not logged: %s", logs.String())
	}
}

func TestNonZeroExitIsLoggedWithStderr(t *testing.T) {
	var logs bytes.Buffer
	r := &Runner{Script: script(t, "echo 'nginx: [emerg] bad config' >&2; exit 3"), Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	res := r.Run(context.Background(), "a.example.com", "/c", "/k")
	if res.ExitCode != 3 || res.Err == nil || res.Stderr != "nginx: [emerg] bad config" {
		t.Fatalf("result %+v", res)
	}
	l := logs.String()
	if !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "exitCode=3") || !strings.Contains(l, "bad config") || !strings.Contains(l, "no retry") {
		t.Fatalf("failure log lacks exit code, stderr or the no-retry note: %s", l)
	}
}

func TestTimeoutKillsTheScript(t *testing.T) {
	var logs bytes.Buffer
	r := &Runner{Script: script(t, "sleep 30"), Timeout: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	start := time.Now()
	res := r.Run(context.Background(), "a.example.com", "/c", "/k")
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the script was not killed (ran %s)", took)
	}
	if !res.TimedOut || res.ExitCode != -1 {
		t.Fatalf("result %+v, want a timed-out kill", res)
	}
	if !strings.Contains(logs.String(), "killed after timeout") {
		t.Fatalf("timeout not logged: %s", logs.String())
	}
}

func TestMissingScriptIsLoggedNotFatal(t *testing.T) {
	var logs bytes.Buffer
	r := &Runner{Script: "/nonexistent/hook.sh", Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	res := r.Run(context.Background(), "a.example.com", "/c", "/k")
	if res.Err == nil || !strings.Contains(logs.String(), "onRotateScript failed") {
		t.Fatalf("result %+v, logs %s", res, logs.String())
	}
}

func TestNoScriptDoesNothing(t *testing.T) {
	if res := (&Runner{}).Run(context.Background(), "h", "c", "k"); res != (Result{}) {
		t.Fatalf("empty script ran: %+v", res)
	}
}

func TestStderrIsBounded(t *testing.T) {
	r := &Runner{Script: script(t, "head -c 100000 /dev/zero | tr '\\0' x >&2"), Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))}
	res := r.Run(context.Background(), "h", "c", "k")
	if len(res.Stderr) != maxStderr {
		t.Fatalf("kept %d bytes of stderr, want %d", len(res.Stderr), maxStderr)
	}
}
