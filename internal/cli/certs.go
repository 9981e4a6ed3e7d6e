package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/atomicfile"
	"github.com/pryv/pryv-tls/internal/config"
)

const certsUsage = `usage:
  pryv-tls certs list   --config FILE [--json]
  pryv-tls certs import --config FILE --cert FILE --key FILE [--hostname NAME]
  pryv-tls certs export --config FILE HOSTNAME --out DIR
  pryv-tls certs delete --config FILE HOSTNAME
  pryv-tls certs force-renew --config FILE [HOSTNAME] [--ignore-backoff] [--timeout 5m]

They reach the running "pryv-tls serve" through its control socket (control.socket).
A core that is still starting (its control socket not there yet, or answering
"starting") is waited for, up to --wait (default 30s; 0: fail at once).
`

// certsCmd manages the certificates stored in PlatformDB.
func certsCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, certsUsage)
		return exitUsage
	}
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet("certs "+sub, flag.ContinueOnError)
	var files stringList
	fs.Var(&files, "config", "configuration `FILE` (as given to serve)")
	coreFiles := coreConfigFlag(fs)
	asJSON := fs.Bool("json", false, "list: print JSON")
	certFile := fs.String("cert", "", "import: certificate chain `FILE` (PEM)")
	keyFile := fs.String("key", "", "import: private key `FILE` (PEM)")
	hostname := fs.String("hostname", "", "import: the row to store under (default: the certificate's first name)")
	out := fs.String("out", "", "export: `DIR` to write fullchain.pem and privkey.pem into")
	ignoreBackoff := fs.Bool("ignore-backoff", false, "force-renew: order even while the renewal backs off after failures (the CA's failed-validation limit still applies)")
	orderTimeout := fs.Duration("timeout", 5*time.Minute, "force-renew: how long to wait for the order's result (`DURATION`); the order goes on in the core after it")
	wait := waitFlag(fs)
	fs.SetOutput(stderr)
	// Operands may sit between flags (export --config F HOST --out DIR).
	operands, err := parseInterleaved(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	wantOperands := map[string]int{"list": 0, "import": 0, "export": 1, "delete": 1, "force-renew": 1}
	n, known := wantOperands[sub]
	if !known {
		fmt.Fprintf(stderr, "pryv-tls certs: unknown subcommand %q\n%s", sub, certsUsage)
		return exitUsage
	}
	if sub == "force-renew" && len(operands) == 0 {
		n = 0 // the hostname is optional: the primary certificate
	}
	if len(operands) != n {
		fmt.Fprintf(stderr, "pryv-tls certs %s: expected %d operand(s), got %q\n%s", sub, n, operands, certsUsage)
		return exitUsage
	}
	cfg, code := loadConfigWithCore(*coreFiles, files, stderr)
	if cfg == nil {
		return code
	}
	c := newControlClient(cfg, *wait, stderr)

	switch sub {
	case "list":
		err = c.list(stdout, *asJSON)
	case "import":
		if *certFile == "" || *keyFile == "" {
			fmt.Fprintln(stderr, "pryv-tls certs import: --cert FILE and --key FILE are required")
			return exitUsage
		}
		err = c.importPair(stdout, *certFile, *keyFile, *hostname)
	case "export":
		if *out == "" {
			fmt.Fprintln(stderr, "pryv-tls certs export: --out DIR is required")
			return exitUsage
		}
		err = c.export(stdout, operands[0], *out)
	case "delete":
		err = c.delete(stdout, operands[0])
	case "force-renew":
		host := ""
		if len(operands) == 1 {
			host = operands[0]
		}
		err = c.forceRenew(stdout, host, *ignoreBackoff, *orderTimeout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pryv-tls certs %s: %v\n", sub, err)
		return exitFailed
	}
	return exitOK
}

type controlClient struct {
	cfg  *config.Config
	http *http.Client
	// wait bounds how long requests wait for a starting core (its socket
	// not there yet, or answering 503 "starting"); 0: not at all.
	wait      time.Duration
	stderr    io.Writer // where the waiting line goes
	waitUntil time.Time // set when the first wait begins
}

// defaultWait is how long a command waits for a starting core: a start
// takes a few seconds; quorumWait (10 s) plus that, with room.
const defaultWait = 30 * time.Second

// startingPoll is the pause between two tries while the core starts.
var startingPoll = 200 * time.Millisecond

// waitFlag adds --wait to a command that reaches the core.
func waitFlag(fs *flag.FlagSet) *time.Duration {
	return fs.Duration("wait", defaultWait, "how long to wait for a core that is still starting (`DURATION`; 0: fail at once)")
}

// newControlClient is the client of the control socket named by cfg.
func newControlClient(cfg *config.Config, wait time.Duration, stderr io.Writer) *controlClient {
	return &controlClient{cfg: cfg, http: admin.SocketClient(cfg.Control.Socket), wait: wait, stderr: stderr}
}

// unavailableRetries are the pauses before sending an idempotent request
// again after the core answered 503 (PlatformDB unavailable): a leader
// election (a core died) drops the writes in flight and takes a second or
// two; beyond these the error stands (quorum is lost, say).
var unavailableRetries = []time.Duration{time.Second, 2 * time.Second}

// do sends a request to the running core and decodes its JSON answer. While
// the core starts (no socket yet, or 503 "starting": the request was not
// looked at) any request is sent again, for up to c.wait. GET, PUT and
// DELETE answered another 503 are sent again after unavailableRetries'
// pauses; a POST is sent once.
func (c *controlClient) do(method, path string, body, into any) error {
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		payload = b
	}
	var retries []time.Duration
	switch method {
	case http.MethodGet, http.MethodPut, http.MethodDelete:
		retries = unavailableRetries
	}
	for attempt := 0; ; {
		status, data, err := c.send(method, path, payload)
		var serr *sendError
		switch starting := startingAnswer(status, data); {
		case err != nil && !errors.As(err, &serr):
			return err // the answer could not be read
		case err != nil && !serr.notYet():
			return c.gaveUp(err, "")
		case err != nil || starting != "":
			if c.keepWaiting() {
				time.Sleep(startingPoll)
				continue
			}
			return c.gaveUp(err, starting)
		}
		if status == http.StatusServiceUnavailable && attempt < len(retries) {
			time.Sleep(retries[attempt])
			attempt++
			continue
		}
		return decodeAnswer(status, data, into)
	}
}

// keepWaiting reports whether the wait for a starting core goes on, and
// says once on stderr that it began.
func (c *controlClient) keepWaiting() bool {
	if c.wait <= 0 || (c.cfg != nil && !c.cfg.PlatformDBEnabled()) {
		return false // no wait asked, or serve opens no socket with this configuration
	}
	if c.waitUntil.IsZero() {
		c.waitUntil = time.Now().Add(c.wait)
		if c.stderr != nil {
			fmt.Fprintf(c.stderr, "waiting for the core to start (up to %s)...\n", shortDuration(c.wait))
		}
	}
	return time.Now().Before(c.waitUntil)
}

// gaveUp is the error once the core did not start in time (or no wait was
// asked): err from the socket, or the core's starting message.
func (c *controlClient) gaveUp(err error, starting string) error {
	waited := ""
	if !c.waitUntil.IsZero() {
		waited = fmt.Sprintf(" after waiting %s", shortDuration(c.wait))
	}
	if starting != "" {
		return fmt.Errorf("cannot reach the running core through its control socket %s%s: %s (raise --wait)", c.cfg.Control.Socket, waited, starting)
	}
	hint := ""
	if !c.cfg.PlatformDBEnabled() {
		hint = "; this configuration runs no PlatformDB (letsEncrypt.enabled, letsEncrypt.atRestKey and dns.active are all off), so serve opens no control socket"
	}
	return fmt.Errorf("cannot reach the running core through its control socket %s%s (is \"pryv-tls serve\" running with this configuration, as this user or root?)%s: %w",
		c.cfg.Control.Socket, waited, hint, err)
}

// startingAnswer is the core's message when it answered 503 "starting".
func startingAnswer(status int, data []byte) string {
	if status != http.StatusServiceUnavailable {
		return ""
	}
	var e struct {
		Error struct{ ID, Message string } `json:"error"`
	}
	if json.Unmarshal(data, &e) != nil || e.Error.ID != admin.IDStarting {
		return ""
	}
	return e.Error.Message
}

// sendError is a request that did not reach the core.
type sendError struct{ err error }

func (e *sendError) Error() string { return e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

// notYet reports whether the socket is not there yet (no file, or a file
// nobody listens on): what a core that is starting, or restarting, looks
// like. A permission error or a dropped connection (another user's
// socket) is not.
func (e *sendError) notYet() bool {
	return errors.Is(e.err, syscall.ENOENT) || errors.Is(e.err, syscall.ECONNREFUSED)
}

// send makes one request and returns the answer's status and body.
func (c *controlClient) send(method, path string, payload []byte) (int, []byte, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequest(method, "http://pryv-tls"+path, rd)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, &sendError{errors.Unwrap(err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, data, nil
}

// decodeAnswer turns the core's answer into into, or into the error it
// states.
func decodeAnswer(status int, data []byte, into any) error {
	if status != http.StatusOK {
		// Errors are {"error": {"id", "message"}}; force-renew's, as the
		// spec gives them, {"ok": false, "error": "..."}.
		var e struct {
			Error json.RawMessage `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && len(e.Error) > 0 {
			var obj struct{ Message string }
			var msg string
			if json.Unmarshal(e.Error, &obj) == nil && obj.Message != "" {
				return errors.New(obj.Message)
			}
			if json.Unmarshal(e.Error, &msg) == nil && msg != "" {
				return errors.New(msg)
			}
		}
		return fmt.Errorf("the core answered %d %s", status, http.StatusText(status))
	}
	return json.Unmarshal(data, into)
}

func (c *controlClient) list(w io.Writer, asJSON bool) error {
	var res struct {
		Certs []admin.CertInfo `json:"certs"`
	}
	if err := c.do("GET", "/certs", nil, &res); err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	if len(res.Certs) == 0 {
		fmt.Fprintln(w, "no certificate stored")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSTNAME\tISSUER\tISSUED\tEXPIRES\tDAYS LEFT\tSOURCE")
	for _, ci := range res.Certs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", ci.Hostname, ci.Issuer,
			ci.IssuedAt.Format(time.DateOnly), ci.ExpiresAt.Format(time.DateOnly), ci.DaysUntilExpiry, ci.Source)
	}
	return tw.Flush()
}

func (c *controlClient) importPair(w io.Writer, certFile, keyFile, hostname string) error {
	chain, err := os.ReadFile(certFile)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	var ci admin.CertInfo
	err = c.do("POST", "/certs", admin.ImportRequest{Hostname: hostname, Chain: string(chain), Key: string(key)}, &ci)
	if err != nil {
		return fmt.Errorf("%s + %s: %w", certFile, keyFile, err)
	}
	fmt.Fprintf(w, "stored %s (serial %s, expires %s, %d days left); every core serves it now\n",
		ci.Hostname, ci.Serial, ci.ExpiresAt.Format(time.DateOnly), ci.DaysUntilExpiry)
	return nil
}

func (c *controlClient) export(w io.Writer, hostname, dir string) error {
	var res admin.ExportResponse
	if err := c.do("GET", "/certs/"+url.PathEscape(hostname)+"/export", nil, &res); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	keyPath := filepath.Join(dir, "privkey.pem")
	// atomicfile.Write makes a fresh file: the key is never in one more open than
	// 0600, and an earlier export is replaced whole or kept.
	if err := atomicfile.Write(keyPath, []byte(res.Key), 0o600); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "fullchain.pem"), []byte(res.Chain), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s and %s\n", filepath.Join(dir, "fullchain.pem"), keyPath)
	return nil
}

func (c *controlClient) delete(w io.Writer, hostname string) error {
	var res map[string]string
	if err := c.do("DELETE", "/certs/"+url.PathEscape(hostname), nil, &res); err != nil {
		return err
	}
	fmt.Fprintf(w, "deleted %s from PlatformDB; cores stop serving it (unless http.ssl files still hold it)\n", strings.ToLower(hostname))
	return nil
}

// forceRenew asks the certRenewer core to order hostname's certificate now
// ("" = the primary one) and prints the result. The order runs detached in
// the core: a timeout here only stops waiting for it.
func (c *controlClient) forceRenew(w io.Writer, hostname string, ignoreBackoff bool, timeout time.Duration) error {
	path := "/certs/force-renew"
	if ignoreBackoff {
		path += "?ignoreBackoff=true"
	}
	long := *c.http
	long.Timeout = timeout
	c.http = &long
	var res struct {
		Hostname  string    `json:"hostname"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	err := c.do(http.MethodPost, path, map[string]string{"hostname": hostname}, &res)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("no result within %s; the order goes on in the core: \"pryv-tls status\" shows how it ends", timeout)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "renewed %s: new certificate valid until %s; every core serves it within seconds\n", res.Hostname, res.ExpiresAt.UTC().Format(time.RFC3339))
	return nil
}
