package acme

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/platformdb"
)

// memKV is an in-memory KV for the HTTP-01 unit tests. It honours ctx like
// the real store (a done ctx fails the call) and can be made to fail.
type memKV struct {
	mu   sync.Mutex
	m    map[string][]byte
	revs map[string]int64 // each key's last write
	fail error
	rev  int64
}

func newMemKV() *memKV { return &memKV{m: map[string][]byte{}, revs: map[string]int64{}} }

func (k *memKV) Get(ctx context.Context, key string) (platformdb.Entry, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.err(ctx); err != nil {
		return platformdb.Entry{}, err
	}
	v, ok := k.m[key]
	if !ok {
		return platformdb.Entry{}, fmt.Errorf("get %q: %w", key, platformdb.ErrNotFound)
	}
	return platformdb.Entry{Key: key, Value: v, Revision: k.revs[key]}, nil
}

func (k *memKV) Put(ctx context.Context, key string, value []byte) (int64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.err(ctx); err != nil {
		return 0, err
	}
	k.rev++
	k.m[key] = append([]byte(nil), value...)
	k.revs[key] = k.rev
	return k.rev, nil
}

func (k *memKV) CompareAndSwap(ctx context.Context, key string, value []byte, expect int64) (int64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.err(ctx); err != nil {
		return 0, err
	}
	if k.revs[key] != expect {
		return 0, fmt.Errorf("compare-and-swap %q: %w", key, platformdb.ErrConflict)
	}
	k.rev++
	k.m[key] = append([]byte(nil), value...)
	k.revs[key] = k.rev
	return k.rev, nil
}

func (k *memKV) Delete(ctx context.Context, key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.err(ctx); err != nil {
		return err
	}
	delete(k.m, key)
	delete(k.revs, key)
	return nil
}

func (k *memKV) List(ctx context.Context, prefix string) ([]platformdb.Entry, int64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.err(ctx); err != nil {
		return nil, 0, err
	}
	var out []platformdb.Entry
	for key, v := range k.m {
		if strings.HasPrefix(key, prefix) {
			out = append(out, platformdb.Entry{Key: key, Value: v})
		}
	}
	return out, k.rev, nil
}

func (k *memKV) Lock(context.Context, string, time.Duration) (platformdb.Lock, error) {
	return nil, errors.New("memKV: no locks")
}

func (k *memKV) err(ctx context.Context) error {
	if k.fail != nil {
		return k.fail
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", platformdb.ErrUnavailable, ctx.Err())
	}
	return nil
}

func (k *memKV) has(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.m[key]
	return ok
}

const (
	testToken   = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
	testKeyAuth = testToken + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
)

func TestHTTP01Responder(t *testing.T) {
	kv := newMemKV()
	if err := (&HTTP01Provider{KV: kv}).Present(context.Background(), "your-domain.com", testToken, testKeyAuth); err != nil {
		t.Fatal(err)
	}
	serve := func(h *HTTP01Responder, method, target, host string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "http://placeholder"+target, nil)
		req.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	h := &HTTP01Responder{KV: kv}

	t.Run("known token: 200 with the exact key authorization", func(t *testing.T) {
		w := serve(h, http.MethodGet, challengePath+testToken, "your-domain.com")
		if w.Code != http.StatusOK {
			t.Fatalf("status %d, want 200", w.Code)
		}
		if got := w.Body.String(); got != testKeyAuth {
			t.Errorf("body %q, want exactly %q", got, testKeyAuth)
		}
		if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type %q, want text/plain", ct)
		}
	})

	t.Run("HEAD on a known token: 200", func(t *testing.T) {
		w := serve(h, http.MethodHead, challengePath+testToken, "your-domain.com")
		if w.Code != http.StatusOK {
			t.Fatalf("status %d, want 200", w.Code)
		}
	})

	t.Run("unknown token: 404", func(t *testing.T) {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			if w := serve(h, m, challengePath+"unknown-token", "your-domain.com"); w.Code != http.StatusNotFound {
				t.Errorf("%s: status %d, want 404", m, w.Code)
			}
		}
	})

	t.Run("traversal-ish tokens: 404", func(t *testing.T) {
		// Keys outside acme-http01/ exist in the store: none must be reachable.
		if _, err := kv.Put(context.Background(), "acme-account/x", []byte("secret-ish")); err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{
			"", "..", "../acme-account/x", "..%2facme-account%2fx", "a/b", testToken + "/", "." + testToken,
			testToken + ".", "a.b", "%2e%2e",
		} {
			w := serve(h, http.MethodGet, challengePath+tok, "your-domain.com")
			if w.Code != http.StatusNotFound {
				t.Errorf("token %q: status %d, want 404", tok, w.Code)
			}
			if strings.Contains(w.Body.String(), "secret-ish") || strings.Contains(w.Body.String(), testKeyAuth) {
				t.Errorf("token %q: body leaks %q", tok, w.Body.String())
			}
		}
	})

	t.Run("store unavailable: 503, not 404", func(t *testing.T) {
		bad := newMemKV()
		bad.fail = fmt.Errorf("get: %w", platformdb.ErrUnavailable)
		w := serve(&HTTP01Responder{KV: bad}, http.MethodGet, challengePath+testToken, "your-domain.com")
		if w.Code != http.StatusServiceUnavailable {
			t.Errorf("status %d, want 503", w.Code)
		}
	})

	t.Run("everything else: 308 to HTTPS", func(t *testing.T) {
		tests := []struct {
			httpsPort      int
			method, target string
			host           string
			want           string
		}{
			{0, http.MethodGet, "/", "your-domain.com", "https://your-domain.com/"},
			{443, http.MethodGet, "/path/x?q=1&r=%2F", "your-domain.com", "https://your-domain.com/path/x?q=1&r=%2F"},
			{443, http.MethodGet, "/path", "your-domain.com:80", "https://your-domain.com/path"},
			{8443, http.MethodGet, "/path?q=1", "your-domain.com", "https://your-domain.com:8443/path?q=1"},
			{8443, http.MethodGet, "/path?q=1", "your-domain.com:8080", "https://your-domain.com:8443/path?q=1"},
			{443, http.MethodHead, "/events", "u1.your-domain.com", "https://u1.your-domain.com/events"},
			{443, http.MethodPost, "/events", "u1.your-domain.com", "https://u1.your-domain.com/events"},
			// A POST to the challenge path is not a validation: redirected.
			{443, http.MethodPost, challengePath + testToken, "your-domain.com", "https://your-domain.com" + challengePath + testToken},
			// The well-known prefix without the trailing slash is not the challenge path.
			{443, http.MethodGet, "/.well-known/acme-challenge", "your-domain.com", "https://your-domain.com/.well-known/acme-challenge"},
			// IP literals.
			{443, http.MethodGet, "/a", "127.0.0.1:80", "https://127.0.0.1/a"},
			{8443, http.MethodGet, "/a", "[2001:db8::1]:80", "https://[2001:db8::1]:8443/a"},
			{443, http.MethodGet, "/a", "[2001:db8::1]:80", "https://[2001:db8::1]/a"},
			{443, http.MethodGet, "/a", "[2001:db8::1]", "https://[2001:db8::1]/a"},
		}
		for _, tt := range tests {
			w := serve(&HTTP01Responder{KV: kv, HTTPSPort: tt.httpsPort}, tt.method, tt.target, tt.host)
			if w.Code != http.StatusPermanentRedirect {
				t.Errorf("%s %s (Host %s): status %d, want 308", tt.method, tt.target, tt.host, w.Code)
				continue
			}
			if got := w.Header().Get("Location"); got != tt.want {
				t.Errorf("%s %s (Host %s, httpsPort %d): Location %q, want %q", tt.method, tt.target, tt.host, tt.httpsPort, got, tt.want)
			}
		}
	})

	t.Run("no Host: 400", func(t *testing.T) {
		if w := serve(h, http.MethodGet, "/x", ""); w.Code != http.StatusBadRequest {
			t.Errorf("status %d, want 400", w.Code)
		}
	})

	t.Run("over a real listener", func(t *testing.T) {
		// net/http's server does not clean paths for a plain handler: what
		// the validator (or anyone) sends reaches the responder as is.
		srv := httptest.NewServer(&HTTP01Responder{KV: kv, HTTPSPort: 443})
		defer srv.Close()
		_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		get := func(method, path string) (int, string, http.Header) {
			req, _ := http.NewRequest(method, srv.URL+path, nil)
			req.Host = "your-domain.com:" + port
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b), resp.Header
		}
		if code, body, _ := get(http.MethodGet, challengePath+testToken); code != 200 || body != testKeyAuth {
			t.Errorf("GET token: %d %q", code, body)
		}
		if code, body, _ := get(http.MethodHead, challengePath+testToken); code != 200 || body != "" {
			t.Errorf("HEAD token: %d %q", code, body)
		}
		if code, _, _ := get(http.MethodGet, challengePath+"..%2f..%2facme-account%2fx"); code != 404 {
			t.Errorf("GET encoded traversal: %d, want 404", code)
		}
		if code, _, hdr := get(http.MethodGet, "/some/page?a=b"); code != 308 || hdr.Get("Location") != "https://your-domain.com/some/page?a=b" {
			t.Errorf("GET page: %d Location %q", code, hdr.Get("Location"))
		}
	})
}

func TestHTTP01Provider(t *testing.T) {
	kv := newMemKV()
	p := &HTTP01Provider{KV: kv}
	ctx := context.Background()
	if err := p.Present(ctx, "your-domain.com", testToken, testKeyAuth); err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, http01Prefix+testToken)
	if err != nil || string(e.Value) != testKeyAuth {
		t.Fatalf("after Present: %q, %v", e.Value, err)
	}
	if err := p.CleanUp(ctx, "your-domain.com", testToken, testKeyAuth); err != nil {
		t.Fatal(err)
	}
	if kv.has(http01Prefix + testToken) {
		t.Fatal("the token is still published after CleanUp")
	}

	// lego cleans up with the order's context: when the order was cancelled
	// (shutdown, or the renewer lock lost) the token must still go, or the
	// store collects one stale row per interrupted order.
	if err := p.Present(ctx, "your-domain.com", testToken, testKeyAuth); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := p.CleanUp(cctx, "your-domain.com", testToken, testKeyAuth); err != nil {
		t.Errorf("CleanUp with a cancelled order context: %v", err)
	}
	if kv.has(http01Prefix + testToken) {
		t.Error("CleanUp with a cancelled order context left the token in the store")
	}

	kv.fail = errors.New("boom")
	if err := p.Present(ctx, "your-domain.com", testToken, testKeyAuth); err == nil || !strings.Contains(err.Error(), "your-domain.com") {
		t.Errorf("Present on a failing store: %v, want an error naming the domain", err)
	}
}
