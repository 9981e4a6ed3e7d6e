package rqlite_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/rqlite"
	"github.com/pryv/pryv-tls/internal/rqlite/rqlitetest"
)

func newClient(t *testing.T, opts rqlite.Options) *rqlite.Client {
	t.Helper()
	c, err := rqlite.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGet(t *testing.T) {
	s := rqlitetest.Start(t)
	s.Set("user-core/alice", "core-a")
	c := newClient(t, rqlite.Options{URL: s.URL})
	ctx := context.Background()

	v, found, err := c.Get(ctx, "user-core/alice")
	if err != nil || !found || v != "core-a" {
		t.Fatalf("Get alice = %q, %v, %v; want core-a, true, nil", v, found, err)
	}
	v, found, err = c.Get(ctx, "user-core/bob")
	if err != nil || found || v != "" {
		t.Fatalf("Get bob = %q, %v, %v; want \"\", false, nil", v, found, err)
	}
	if got := s.Levels(); !slices.Equal(got, []string{"strong", "strong"}) {
		t.Fatalf("levels sent = %v, want strong twice", got)
	}
}

func TestGetLevelOption(t *testing.T) {
	s := rqlitetest.Start(t)
	c := newClient(t, rqlite.Options{URL: s.URL, Level: rqlite.Weak})
	if _, _, err := c.Get(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if got := s.Levels(); !slices.Equal(got, []string{"weak"}) {
		t.Fatalf("levels sent = %v, want [weak]", got)
	}
}

func TestList(t *testing.T) {
	s := rqlitetest.Start(t)
	for k, v := range map[string]string{
		"tls-cert/b.example.com":  "B",
		"tls-cert/*.example.com":  "W",
		"tls-cert/a.example.com":  "A",
		"TLS-CERT/upper.example":  "case differs: LIKE would match it",
		"tls-certX/other":         "not under the prefix",
		"tls-acme-account":        "acct",
		"user_x/1":                "underscore",
		"userYx/1":                "'_' would match Y",
		"100%/a":                  "percent",
		"100abc/a":                "'%' would match abc",
		`back\slash/a`:            "backslash",
		`back\\slash/a`:           "two backslashes",
		"tls-cert/\u00e9.example": "non-ascii",
	} {
		s.Set(k, v)
	}
	c := newClient(t, rqlite.Options{URL: s.URL})
	tests := []struct {
		prefix string
		want   []string
	}{
		{"tls-cert/", []string{"tls-cert/*.example.com", "tls-cert/a.example.com", "tls-cert/b.example.com", "tls-cert/\u00e9.example"}},
		{"user_", []string{"user_x/1"}},
		{"100%", []string{"100%/a"}},
		{`back\s`, []string{`back\slash/a`}},
		{"nothing/", nil},
		{"", nil}, // every row: checked by count below
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			kvs, err := c.List(context.Background(), tt.prefix)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, kv := range kvs {
				keys = append(keys, kv.Key)
			}
			if tt.prefix == "" {
				if len(keys) != 13 {
					t.Fatalf("List(\"\") = %d rows, want 13", len(keys))
				}
				return
			}
			if !slices.Equal(keys, tt.want) {
				t.Fatalf("List(%q) = %q, want %q", tt.prefix, keys, tt.want)
			}
		})
	}
	kvs, _ := c.List(context.Background(), "tls-cert/a.")
	if len(kvs) != 1 || kvs[0].Value != "A" {
		t.Fatalf("List value = %+v, want one row with A", kvs)
	}
}

func TestQueryRows(t *testing.T) {
	s := rqlitetest.Start(t)
	s.Set("k1", "v1")
	s.Set("k2", "v2")
	c := newClient(t, rqlite.Options{URL: s.URL})
	rows, err := c.Query(context.Background(), rqlite.Linearizable,
		`SELECT key, value FROM keyValue WHERE key LIKE (? || '%')`, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0]["key"] != "k1" || rows[1]["value"] != "v2" {
		t.Fatalf("rows = %v", rows)
	}
	if got := s.Levels(); !slices.Equal(got, []string{"linearizable"}) {
		t.Fatalf("levels = %v", got)
	}
	if _, err := c.Query(context.Background(), "eventual", "SELECT 1"); err == nil || !strings.Contains(err.Error(), `"eventual"`) {
		t.Fatalf("bad level: err = %v, want one naming it", err)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(s *rqlitetest.Server)
		check     func(error) bool
		retryable bool
		contains  string
	}{
		{
			name:      "no leader",
			setup:     func(s *rqlitetest.Server) { s.NoLeader(1) },
			check:     func(err error) bool { return errors.Is(err, rqlite.ErrNoLeader) },
			retryable: true,
			contains:  "no leader",
		},
		{
			name:      "503",
			setup:     func(s *rqlitetest.Server) { s.Fail(http.StatusServiceUnavailable, "leader not found\n") },
			check:     func(err error) bool { var se *rqlite.StatusError; return errors.As(err, &se) && se.Status == 503 },
			retryable: true,
			contains:  "HTTP 503: leader not found",
		},
		{
			name:     "500 body bounded",
			setup:    func(s *rqlitetest.Server) { s.Fail(http.StatusInternalServerError, strings.Repeat("x", 10000)) },
			check:    func(err error) bool { return len(err.Error()) < 400 },
			contains: "HTTP 500: xxx",
		},
		{
			name:     "401",
			setup:    func(s *rqlitetest.Server) { s.RequireAuth("u", "p") },
			check:    func(err error) bool { var se *rqlite.StatusError; return errors.As(err, &se) && se.Status == 401 },
			contains: "HTTP 401",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := rqlitetest.Start(t)
			s.Set("k", "v")
			tt.setup(s)
			c := newClient(t, rqlite.Options{URL: s.URL})
			_, found, err := c.Get(context.Background(), "k")
			if err == nil || found {
				t.Fatalf("Get = found %v, err %v; want an error", found, err)
			}
			if !tt.check(err) {
				t.Fatalf("err = %v (%T): wrong kind", err, err)
			}
			if rqlite.IsRetryable(err) != tt.retryable {
				t.Fatalf("IsRetryable(%v) = %v, want %v", err, !tt.retryable, tt.retryable)
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("err = %q, want it to contain %q", err, tt.contains)
			}
		})
	}
}

func TestSQLError(t *testing.T) {
	s := rqlitetest.Start(t)
	c := newClient(t, rqlite.Options{URL: s.URL})
	_, err := c.Query(context.Background(), rqlite.Strong, "SELEC nonsense")
	var se *rqlite.SQLError
	if !errors.As(err, &se) || rqlite.IsRetryable(err) {
		t.Fatalf("err = %v (%T), want a non-retryable *SQLError", err, err)
	}
}

// raw serves one fixed answer, for shapes the stand-in never sends.
func raw(t *testing.T, status int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestOddAnswers(t *testing.T) {
	tests := []struct {
		name, body string
		max        int64
		contains   string
	}{
		{"not json", "<html>proxy error</html>", 0, "not rqlite's JSON"},
		{"top-level error", `{"error":"database is locked"}`, 0, "database is locked"},
		{"value not text", `{"results":[{"columns":["value"],"types":["integer"],"values":[[42]]}]}`, 0, "value is a number, want text"},
		{"null value", `{"results":[{"columns":["value"],"types":["text"],"values":[[null]]}]}`, 0, "value is null"},
		{"short row", `{"results":[{"columns":["value","x"],"values":[["a"]]}]}`, 0, "1 cells for 2 columns"},
		{"too large", `{"results":[{"columns":["value"],"values":[["` + strings.Repeat("a", 2000) + `"]]}]}`, 1000, "larger than 1000 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, rqlite.Options{URL: raw(t, 200, tt.body), MaxResponseBytes: tt.max})
			_, _, err := c.Get(context.Background(), "k")
			if err == nil || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.contains)
			}
		})
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/db/query", http.StatusMovedPermanently)
	}))
	defer srv.Close()
	c := newClient(t, rqlite.Options{URL: srv.URL})
	_, _, err := c.Get(context.Background(), "k")
	var se *rqlite.StatusError
	if !errors.As(err, &se) || se.Status != 301 {
		t.Fatalf("err = %v, want HTTP 301 reported", err)
	}
}

func TestUnreachableAndSecrets(t *testing.T) {
	s := rqlitetest.Start(t)
	url := strings.Replace(s.URL, "http://", "http://admin:s3cretPW@", 1)
	s.Close()
	c := newClient(t, rqlite.Options{URL: url})
	_, _, err := c.Get(context.Background(), "k")
	if err == nil {
		t.Fatal("Get on a closed node: no error")
	}
	if strings.Contains(err.Error(), "s3cretPW") || strings.Contains(c.URL(), "s3cretPW") {
		t.Fatalf("password printed: err %q, URL %q", err, c.URL())
	}
	if rqlite.IsRetryable(err) {
		t.Fatalf("transport error reported retryable: %v", err)
	}
}

func TestBasicAuth(t *testing.T) {
	s := rqlitetest.Start(t)
	s.RequireAuth("admin", "pw")
	s.Set("k", "v")
	c := newClient(t, rqlite.Options{URL: strings.Replace(s.URL, "http://", "http://admin:pw@", 1)})
	if v, found, err := c.Get(context.Background(), "k"); err != nil || !found || v != "v" {
		t.Fatalf("Get with auth = %q %v %v", v, found, err)
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := newClient(t, rqlite.Options{URL: srv.URL, Timeout: 100 * time.Millisecond})
	start := time.Now()
	_, _, err := c.Get(context.Background(), "k")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("timeout took %v", d)
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		opts     rqlite.Options
		contains string
	}{
		{rqlite.Options{URL: "localhost:4001"}, "scheme must be http or https"},
		{rqlite.Options{URL: "ftp://h:1"}, "scheme must be http or https"},
		{rqlite.Options{URL: "http://"}, "no host"},
		{rqlite.Options{URL: "http://h:1/?level=weak"}, "no query"},
		{rqlite.Options{URL: "http://u:topsecret@h:1/?x"}, "xxxxx"},
		{rqlite.Options{Level: "eventual"}, `"eventual"`},
		{rqlite.Options{URL: "http://h:1\x7f"}, "not a URL"},
	}
	for _, tt := range tests {
		_, err := rqlite.New(tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.contains) || strings.Contains(err.Error(), "topsecret") {
			t.Errorf("New(%+v) err = %v, want it to contain %q (and no password)", tt.opts, err, tt.contains)
		}
	}
	c, err := rqlite.New(rqlite.Options{})
	if err != nil || c.URL() != rqlite.DefaultURL {
		t.Fatalf("New(default) = %v, %v", c, err)
	}
}

// TestWireFormat pins the request rqlite receives: path, level, JSON body.
func TestWireFormat(t *testing.T) {
	var gotPath, gotQuery, gotType string
	var gotBody [][]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotQuery, gotType = r.URL.Path, r.URL.RawQuery, r.Header.Get("Content-Type")
		_ = json.NewDecoder(r.Body).Decode(&gotBody)
		_, _ = io.WriteString(w, `{"results":[{"columns":["value"],"types":["text"]}]}`)
	}))
	defer srv.Close()
	c := newClient(t, rqlite.Options{URL: srv.URL + "/base/"})
	if _, found, err := c.Get(context.Background(), "user-core/x"); err != nil || found {
		t.Fatalf("Get = %v %v", found, err)
	}
	want := [][]any{{"SELECT value FROM keyValue WHERE key = ?", "user-core/x"}}
	if gotPath != "/base/db/query" || gotQuery != "level=strong" || gotType != "application/json" {
		t.Fatalf("request %s?%s (%s)", gotPath, gotQuery, gotType)
	}
	b1, _ := json.Marshal(gotBody)
	b2, _ := json.Marshal(want)
	if string(b1) != string(b2) {
		t.Fatalf("body %s, want %s", b1, b2)
	}
}

func TestLike(t *testing.T) {
	tests := []struct {
		pattern, s string
		esc        rune
		want       bool
	}{
		{"a%", "abc", 0, true},
		{"A%", "abc", 0, true},
		{"a_c", "abc", 0, true},
		{"a_c", "ac", 0, false},
		{`a\_c`, "abc", '\\', false},
		{`a\_c`, "a_c", '\\', true},
		{`a\%`, "a%", '\\', true},
		{`a\%`, "ab", '\\', false},
		{"é%", "É", 0, false}, // SQLite folds ASCII only
		{"%", "", 0, true},
	}
	for _, tt := range tests {
		if got := rqlitetest.Like(tt.pattern, tt.s, tt.esc); got != tt.want {
			t.Errorf("Like(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}
