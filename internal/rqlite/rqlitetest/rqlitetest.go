// Package rqlitetest is a stand-in rqlite node for tests: rqlite itself
// cannot run here. It speaks rqlite's HTTP read API byte for byte as an
// open-pryv.io core sees it (POST /db/query?level=L, body [["SQL", args...]],
// answer {"results":[{"columns","types","values"}]}) over the core's one
// table, keyValue(key TEXT PRIMARY KEY, value TEXT NOT NULL).
//
// It understands only the SELECTs pryv-tls and the core send (see
// statements); anything else gets rqlite's SQL-error shape, so a client
// sending a statement the stand-in does not know fails loudly rather than
// reading an empty table. LIKE follows SQLite: '%', '_', ASCII case
// ignored, ESCAPE honoured.
//
// Knobs for failure paths: NoLeader (rqlite's empty results during an
// election), Fail (a non-2xx answer), RequireAuth (basic auth).
package rqlitetest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Server is one stand-in node on loopback.
type Server struct {
	URL string // http://127.0.0.1:port

	srv *httptest.Server

	mu       sync.Mutex
	rows     map[string]string
	noLeader int
	fails    []failure
	user     string
	pass     string
	levels   []string
	queries  int
}

type failure struct {
	status int
	body   string
}

// Start runs a node until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{rows: map[string]string{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// Close stops the node early (to test an unreachable one).
func (s *Server) Close() { s.srv.Close() }

// Set writes a row, as the core's INSERT OR REPLACE does.
func (s *Server) Set(key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows[key] = value
}

// Delete removes a row.
func (s *Server) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rows, key)
}

// NoLeader makes the next n queries answer {"results":[]}.
func (s *Server) NoLeader(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noLeader = n
}

// Fail makes the next query answer status with body.
func (s *Server) Fail(status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = append(s.fails, failure{status, body})
}

// RequireAuth makes every request need basic auth user:pass (401 else).
func (s *Server) RequireAuth(user, pass string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user, s.pass = user, pass
}

// Levels returns the level= of every query received, in order.
func (s *Server) Levels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.levels)
}

// Queries counts the /db/query requests received.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

type result struct {
	Columns []string `json:"columns,omitempty"`
	Types   []string `json:"types,omitempty"`
	Values  [][]any  `json:"values,omitempty"`
	Error   string   `json:"error,omitempty"`
	Time    float64  `json:"time,omitempty"`
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/db/query" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries++
	if s.user != "" {
		u, p, ok := r.BasicAuth()
		if !ok || u != s.user || p != s.pass {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
	}
	level := r.URL.Query().Get("level")
	s.levels = append(s.levels, level)
	switch level {
	case "", "none", "weak", "linearizable", "strong", "auto":
	default:
		http.Error(w, "unrecognized read consistency level", http.StatusBadRequest)
		return
	}
	if len(s.fails) > 0 {
		f := s.fails[0]
		s.fails = s.fails[1:]
		w.WriteHeader(f.status)
		_, _ = io.WriteString(w, f.body)
		return
	}
	var stmts [][]any
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(body, &stmts)
	}
	if err != nil {
		http.Error(w, "invalid request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if s.noLeader > 0 {
		s.noLeader--
		_, _ = io.WriteString(w, `{"results":[]}`)
		return
	}
	out := struct {
		Results []result `json:"results"`
		Time    float64  `json:"time,omitempty"`
	}{Results: []result{}}
	for _, st := range stmts {
		out.Results = append(out.Results, s.run(st))
	}
	_ = json.NewEncoder(w).Encode(out)
}

// statements are the SELECTs known, whitespace collapsed.
var statements = map[string]func(s *Server, args []any) result{
	// pryv-tls's Get, and the core's every single-row read.
	"SELECT value FROM keyValue WHERE key = ?": func(s *Server, args []any) result {
		k, ok := oneString(args)
		if !ok {
			return result{Error: "stand-in: want one text argument"}
		}
		res := result{Columns: []string{"value"}, Types: []string{"text"}}
		if v, found := s.rows[k]; found {
			res.Values = [][]any{{v}}
		}
		return res
	},
	// pryv-tls's List.
	`SELECT key, value FROM keyValue WHERE key LIKE ? ESCAPE '\' ORDER BY key`: func(s *Server, args []any) result {
		p, ok := oneString(args)
		if !ok {
			return result{Error: "stand-in: want one text argument"}
		}
		return s.like(p, '\\')
	},
	// The core's getAllWithPrefix.
	`SELECT key, value FROM keyValue WHERE key LIKE (? || '%')`: func(s *Server, args []any) result {
		p, ok := oneString(args)
		if !ok {
			return result{Error: "stand-in: want one text argument"}
		}
		return s.like(p+"%", 0)
	},
}

func (s *Server) run(st []any) result {
	if len(st) == 0 {
		return result{Error: "empty statement"}
	}
	sql, ok := st[0].(string)
	if !ok {
		return result{Error: "statement is not a string"}
	}
	f, ok := statements[strings.Join(strings.Fields(sql), " ")]
	if !ok {
		return result{Error: fmt.Sprintf("stand-in rqlite does not know the statement %q", sql)}
	}
	return f(s, st[1:])
}

func (s *Server) like(pattern string, esc rune) result {
	res := result{Columns: []string{"key", "value"}, Types: []string{"text", "text"}}
	keys := make([]string, 0, len(s.rows))
	for k := range s.rows {
		if Like(pattern, k, esc) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		res.Values = append(res.Values, []any{k, s.rows[k]})
	}
	return res
}

func oneString(args []any) (string, bool) {
	if len(args) != 1 {
		return "", false
	}
	s, ok := args[0].(string)
	return s, ok
}

// Like is SQLite's LIKE: '%' any run, '_' one character, ASCII letters
// matched without case, esc (0 = none) makes the next character literal.
func Like(pattern, s string, esc rune) bool {
	p, t := []rune(pattern), []rune(s)
	var match func(i, j int) bool
	match = func(i, j int) bool {
		for i < len(p) {
			c := p[i]
			switch {
			case esc != 0 && c == esc && i+1 < len(p):
				if j >= len(t) || !foldEq(p[i+1], t[j]) {
					return false
				}
				i, j = i+2, j+1
			case c == '%':
				for k := j; k <= len(t); k++ {
					if match(i+1, k) {
						return true
					}
				}
				return false
			case c == '_':
				if j >= len(t) {
					return false
				}
				i, j = i+1, j+1
			default:
				if j >= len(t) || !foldEq(c, t[j]) {
					return false
				}
				i, j = i+1, j+1
			}
		}
		return j == len(t)
	}
	return match(0, 0)
}

func foldEq(a, b rune) bool {
	if a < 128 && b < 128 {
		return asciiLower(a) == asciiLower(b)
	}
	return a == b
}

func asciiLower(r rune) rune {
	if 'A' <= r && r <= 'Z' {
		return r + 'a' - 'A'
	}
	return r
}
