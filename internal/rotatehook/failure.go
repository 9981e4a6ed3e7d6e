package rotatehook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// DefaultWebhookTimeout bounds one webhook POST, connection included.
const DefaultWebhookTimeout = 10 * time.Second

// Failure is a failed renewal as the failure hooks tell it: the renewer
// calls them once per failure streak (and once more when the CA pauses the
// account), never at each retry. No secret is in it: the CA's words, our
// one-line summary, the hostname and times.
type Failure struct {
	Hostname string    `json:"hostname"`
	Error    string    `json:"error"`
	Problem  any       `json:"problem"` // the CA's problem document (RFC 8555 section 6.7); null when the CA was not reached
	At       time.Time `json:"at"`
	Failures int       `json:"failures"`             // consecutive failures so far
	Unpause  string    `json:"unpauseUrl,omitempty"` // the CA paused the account: visit this, then force a renewal
	// The current certificate's files, for the script (as onRotateScript).
	CertPath string `json:"-"`
	KeyPath  string `json:"-"`
}

// Notifier runs letsEncrypt.onFailureScript and POSTs to
// letsEncrypt.onFailureWebhook. Either may be unset.
type Notifier struct {
	Script  Runner // its Script "" disables it
	Webhook string // http(s) URL; "" disables it. Never logged whole: it often holds a token.
	Timeout time.Duration
	Client  *http.Client // default: a client with Timeout, following no redirect
	Logger  *slog.Logger
}

// Outcome is what one notification did, for metrics and tests.
type Outcome struct {
	Script     Result
	WebhookErr error // nil when the webhook answered 2xx or is not set
}

// Notify runs the script and the webhook (at once, each bounded) and logs
// their outcome.
func (n *Notifier) Notify(ctx context.Context, f Failure) Outcome {
	var out Outcome
	done := make(chan struct{})
	go func() {
		defer close(done)
		if n.Script.Script != "" {
			env := append(certEnv(f.Hostname, f.CertPath, f.KeyPath), "PRYV_CERT_ERROR="+f.Error)
			out.Script = n.Script.run(ctx, "onFailureScript", f.Hostname, env)
		}
	}()
	if n.Webhook != "" {
		out.WebhookErr = n.post(ctx, f)
		log := n.log()
		if out.WebhookErr != nil {
			log.Error("onFailureWebhook failed; not retried (the next failure streak notifies again)",
				"hostname", f.Hostname, "webhook", webhookHost(n.Webhook), "error", out.WebhookErr.Error())
		} else {
			log.Info("onFailureWebhook notified", "hostname", f.Hostname, "webhook", webhookHost(n.Webhook))
		}
	}
	<-done
	return out
}

func (n *Notifier) post(ctx context.Context, f Failure) error {
	timeout := n.Timeout
	if timeout <= 0 {
		timeout = DefaultWebhookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body, err := json.Marshal(f)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.Webhook, bytes.NewReader(body))
	if err != nil {
		return errors.New("invalid webhook URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pryv-tls")
	client := n.Client
	if client == nil {
		client = &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the whole URL, token included
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}

func (n *Notifier) log() *slog.Logger {
	if n.Logger != nil {
		return n.Logger
	}
	return slog.Default()
}

// webhookHost is what the logs say of the webhook: its scheme and host,
// not the path or query where services put their tokens.
func webhookHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host
}
