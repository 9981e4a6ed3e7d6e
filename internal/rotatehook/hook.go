// Package rotatehook runs letsEncrypt.onRotateScript after a certificate
// rotation, as the spec describes: PRYV_CERT_HOSTNAME, PRYV_CERT_PATH and
// PRYV_CERT_KEYPATH in the environment; a non-zero exit is logged and moved
// past — no retry, no rollback.
package rotatehook

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// DefaultTimeout is how long a script may run before it is killed.
const DefaultTimeout = 30 * time.Second

// maxStderr bounds what is kept of a script's stderr for the log.
const maxStderr = 4 << 10

// Runner runs the script. Runs are serialised: a reload script (nginx -s
// reload) is not meant to run twice at once.
type Runner struct {
	Script  string // absolute path; "" disables the hook
	Timeout time.Duration
	Logger  *slog.Logger

	mu sync.Mutex
}

// Result is what one run did, for logs and tests.
type Result struct {
	ExitCode int // -1 if it could not start or was killed
	Stderr   string
	TimedOut bool
	Err      error
}

// Run runs the script for one rotated hostname and logs the outcome.
func (r *Runner) Run(ctx context.Context, hostname, certPath, keyPath string) Result {
	return r.run(ctx, "onRotateScript", hostname, certEnv(hostname, certPath, keyPath))
}

func certEnv(hostname, certPath, keyPath string) []string {
	return []string{
		"PRYV_CERT_HOSTNAME=" + hostname,
		"PRYV_CERT_PATH=" + certPath,
		"PRYV_CERT_KEYPATH=" + keyPath,
	}
}

// run runs r.Script with env added to the service's, one run at a time,
// and logs the outcome under the key's name (what).
func (r *Runner) run(ctx context.Context, what, hostname string, env []string) Result {
	if r.Script == "" {
		return Result{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.Script) //nolint:gosec // G204: the operator's configured hook script, run on purpose
	cmd.Env = append(os.Environ(), env...)
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second // do not wait for grandchildren holding stderr open
	start := time.Now()
	err := cmd.Run()
	res := Result{ExitCode: cmd.ProcessState.ExitCode(), Stderr: strings.TrimSpace(stderr.String()), Err: err}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		res.TimedOut = true
	}
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	attrs := []any{"script", r.Script, "hostname", hostname, "exitCode", res.ExitCode,
		"duration", time.Since(start).Round(time.Millisecond).String()}
	if res.Stderr != "" {
		attrs = append(attrs, "stderr", res.Stderr)
	}
	switch {
	case res.TimedOut:
		log.Error(what+" killed after timeout; moving on", append(attrs, "timeout", timeout.String())...)
	case err != nil:
		log.Error(what+" failed; moving on (no retry, no rollback)", append(attrs, "error", err.Error())...)
	default:
		log.Info(what+" ran", attrs...)
	}
	return res
}

// limitedBuffer keeps the first maxStderr bytes. It holds the buffer in a
// field, not embedded, so io.Copy cannot bypass Write through ReadFrom.
type limitedBuffer struct{ buf bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxStderr - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string { return b.buf.String() }
