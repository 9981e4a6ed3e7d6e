package acme

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pryv/pryv-tls/internal/platformdb"
)

// http01Prefix holds HTTP-01 key authorisations: acme-http01/<token> -> keyAuth.
// They are public values (the CA fetches them over plain HTTP), so they are
// not sealed.
const http01Prefix = "acme-http01/"

const challengePath = "/.well-known/acme-challenge/"

// HTTP01Provider is lego's challenge.Provider for HTTP-01: it publishes the
// token in PlatformDB, so whichever core the CA's validator reaches answers.
type HTTP01Provider struct {
	KV KV
}

// Present stores the key authorisation. The write is linearizable: once it
// returns, every core's responder reads it.
func (p *HTTP01Provider) Present(ctx context.Context, domain, token, keyAuth string) error {
	if _, err := p.KV.Put(ctx, http01Prefix+token, []byte(keyAuth)); err != nil {
		return fmt.Errorf("publishing the HTTP-01 token for %s: %w", domain, err)
	}
	return nil
}

// CleanUp removes it. lego calls it with the order's context, which is
// done when the order was cancelled (shutdown, the renewer lock lost): the
// token is removed regardless, or every interrupted order would leave a row.
func (p *HTTP01Provider) CleanUp(ctx context.Context, domain, token, keyAuth string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := p.KV.Delete(ctx, http01Prefix+token); err != nil {
		return fmt.Errorf("removing the HTTP-01 token for %s: %w", domain, err)
	}
	return nil
}

// HTTP01Responder is the handler of the plain-HTTP port (letsEncrypt.http01Port):
// it answers challenge requests from PlatformDB and sends every other request
// to HTTPS with a 308, so a load balancer or DNS round-robin in front of
// several cores never fails a validation.
type HTTP01Responder struct {
	KV        KV
	HTTPSPort int // the front's port, for the redirect (443 is left out of the URL)
	Logger    *slog.Logger
}

func (h *HTTP01Responder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if token, ok := strings.CutPrefix(r.URL.Path, challengePath); ok && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		h.answer(w, r, token)
		return
	}
	host := r.Host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
		if strings.Contains(host, ":") {
			host = "[" + host + "]" // an IPv6 literal keeps its brackets
		}
	}
	if host == "" {
		http.Error(w, "missing Host header", http.StatusBadRequest)
		return
	}
	target := "https://" + host
	if h.HTTPSPort != 0 && h.HTTPSPort != 443 {
		target = fmt.Sprintf("https://%s:%d", host, h.HTTPSPort)
	}
	http.Redirect(w, r, target+r.URL.RequestURI(), http.StatusPermanentRedirect) //nolint:gosec // G710: to the same host the client asked for, on https: not open to another site
}

func (h *HTTP01Responder) answer(w http.ResponseWriter, r *http.Request, token string) {
	if token == "" || strings.ContainsAny(token, "/.") {
		http.NotFound(w, r)
		return
	}
	e, err := h.KV.Get(r.Context(), http01Prefix+token)
	if errors.Is(err, platformdb.ErrNotFound) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		if h.Logger != nil {
			h.Logger.Warn("HTTP-01 challenge lookup failed", "error", err.Error())
		}
		http.Error(w, "challenge store unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(e.Value)
}
