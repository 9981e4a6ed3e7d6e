package rqlite_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"github.com/pryv/pryv-tls/internal/rqlite"
)

// FuzzAnswers puts arbitrary answers in an rqlite node's mouth (status and
// body, as a broken node, a proxy or another program could send) and reads
// them with Get and List. The client must never panic; an error never holds
// the password of the URL and never a control character (it reaches logs and
// terminals); a value it returns is a string the node sent.
func FuzzAnswers(f *testing.F) {
	for _, s := range []struct {
		status int
		body   string
	}{
		{200, `{"results":[{"columns":["value"],"types":["text"],"values":[["core1"]]}]}`},
		{200, `{"results":[{"columns":["key","value"],"values":[["user-core/a","core1"],["user-core/b",null]]}]}`},
		{200, `{"results":[{"columns":["value"],"values":[[1]]}]}`},
		{200, `{"results":[]}`},
		{200, `{"results":[{"error":"no such table: keyValue"}]}`},
		{200, `{"error":"leadership lost\u001b[2J"}`},
		{200, `{"results":[{"columns":["value"],"values":[["a","b"]]}]}`},
		{200, `<html>proxy</html>`},
		{301, ``},
		{503, `not leader`},
		{200, `{"results":[{"columns":[],"values":[[]]}]}`},
	} {
		f.Add(s.status, s.body)
	}
	type answer struct {
		status int
		body   string
	}
	var current atomic.Pointer[answer]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := current.Load()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_, _ = w.Write([]byte(a.body))
	}))
	f.Cleanup(srv.Close)
	const password = "pw-Zq9xK-never-printed"
	c, err := rqlite.New(rqlite.Options{URL: strings.Replace(srv.URL, "://", "://reader:"+password+"@", 1), Timeout: 2 * time.Second, MaxResponseBytes: 1 << 16})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, status int, body string) {
		if status < 200 || status > 599 {
			return
		}
		current.Store(&answer{status, body})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v, found, err := c.Get(ctx, "user-core/alice")
		if err != nil {
			checkError(t, err, password)
		} else if found && !strings.Contains(body, jsonish(v)) {
			t.Fatalf("Get returned %q, which the node did not send: %s", v, body)
		}
		kvs, err := c.List(ctx, "user-core/")
		if err != nil {
			checkError(t, err, password)
			return
		}
		for _, kv := range kvs {
			if !strings.HasPrefix(kv.Key, "user-core/") {
				t.Fatalf("List(user-core/) returned key %q", kv.Key)
			}
		}
	})
}

// jsonish is the part of v that survives JSON escaping unchanged, to check
// it came from the body.
func jsonish(v string) string {
	var b strings.Builder
	for _, r := range v {
		if r < 0x80 && r >= 0x20 && r != '"' && r != '\\' && r != '<' && r != '>' && r != '&' {
			b.WriteRune(r)
		} else {
			break
		}
	}
	return b.String()
}

func checkError(t *testing.T, err error, password string) {
	t.Helper()
	msg := err.Error()
	if strings.Contains(msg, password) {
		t.Fatalf("an error holds the URL's password: %s", msg)
	}
	for _, r := range msg {
		if unicode.IsControl(r) {
			t.Fatalf("an error holds the control character %U: %q", r, msg)
		}
	}
}
