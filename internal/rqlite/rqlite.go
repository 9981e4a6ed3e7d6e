// Package rqlite is a small client for rqlite's HTTP API, as an open-pryv.io
// core uses it for its PlatformDB (storages.engines.rqlite): reads are
// POST {url}/db/query?level=L with the JSON body [["SQL", arg1, ...]], and
// every row lives in one table, keyValue(key TEXT PRIMARY KEY, value TEXT
// NOT NULL). Only reads are here: pryv-tls never writes the core's rows.
//
// What rqlite answers, and what this client makes of it:
//
//	200 {"results":[{"columns":[..],"types":[..],"values":[[..]]}]}  rows
//	200 {"results":[{"columns":[..],"types":[..]}]}                   no row
//	200 {"results":[{"error":"near ..."}]}                            *SQLError
//	200 {"results":[]}  (during a leader election)                    ErrNoLeader
//	503 / other non-2xx                                               *StatusError
//
// ErrNoLeader and a 503 are retryable (IsRetryable): an empty results array
// is NOT "no row" — reading it as one would answer "unknown user" during
// every election.
package rqlite

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
)

// DefaultURL is the core's default for storages.engines.rqlite.url.
const DefaultURL = "http://localhost:4001"

// Defaults for Options.
const (
	DefaultTimeout          = 5 * time.Second
	DefaultMaxResponseBytes = 32 << 20
	maxErrorExcerpt         = 256
)

// Level is an rqlite read-consistency level.
type Level string

// The levels rqlite knows. The core reads routing-critical rows at Strong
// (confirmed through Raft, waits for a leader); Weak reads the node's
// applied state and may be stale during an election.
const (
	None         Level = "none"
	Weak         Level = "weak"
	Linearizable Level = "linearizable"
	Strong       Level = "strong"
)

func (l Level) valid() bool {
	switch l {
	case None, Weak, Linearizable, Strong:
		return true
	}
	return false
}

// ErrNoLeader: rqlite answered with no result, as it does while the
// cluster has no leader. Retry later; it is not "no row".
var ErrNoLeader = errors.New("rqlite: no result in the answer (the cluster has no leader yet?)")

// SQLError is an error rqlite reported for the statement (results[0].error).
type SQLError struct{ Msg string }

func (e *SQLError) Error() string { return "rqlite: SQL error: " + e.Msg }

// StatusError is a non-2xx answer. Body is a bounded, printable excerpt.
type StatusError struct {
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("rqlite: HTTP %d", e.Status)
	}
	return fmt.Sprintf("rqlite: HTTP %d: %s", e.Status, e.Body)
}

// IsRetryable reports whether err is one a later attempt may not get: no
// leader, 503, 502, 504, or 429. Transport errors (refused, timeout) are
// left to the caller, which knows whether the node is expected up.
func IsRetryable(err error) bool {
	if errors.Is(err, ErrNoLeader) {
		return true
	}
	var se *StatusError
	if errors.As(err, &se) {
		switch se.Status {
		case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout, http.StatusTooManyRequests:
			return true
		}
	}
	return false
}

// Options configures a Client.
type Options struct {
	// URL of an rqlite node, e.g. http://localhost:4001; "" = DefaultURL.
	// user:password in it is sent as basic auth and never printed.
	URL string
	// Level for Get and List; "" = Strong.
	Level Level
	// Timeout bounds a request whose context has no deadline; 0 = DefaultTimeout.
	Timeout time.Duration
	// MaxResponseBytes bounds an answer; 0 = DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// HTTPClient is used if set (its redirect policy is kept); else a
	// client that does not follow redirects.
	HTTPClient *http.Client
}

// Client reads an rqlite node. Safe for concurrent use.
type Client struct {
	query    string // {url}/db/query, no user info
	redacted string // for errors
	user     *url.Userinfo
	level    Level
	timeout  time.Duration
	max      int64
	hc       *http.Client
}

// New checks opts and returns a Client. It does not contact the node.
func New(opts Options) (*Client, error) {
	raw := opts.URL
	if raw == "" {
		raw = DefaultURL
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("rqlite: URL is not a URL (want e.g. %s)", DefaultURL)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("rqlite: URL %s: scheme must be http or https (e.g. %s)", u.Redacted(), DefaultURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("rqlite: URL %s has no host (e.g. %s)", u.Redacted(), DefaultURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("rqlite: URL %s: no query or fragment, only scheme://host:port[/path]", u.Redacted())
	}
	c := &Client{
		redacted: u.Redacted(),
		user:     u.User,
		level:    opts.Level,
		timeout:  opts.Timeout,
		max:      opts.MaxResponseBytes,
		hc:       opts.HTTPClient,
	}
	if c.level == "" {
		c.level = Strong
	}
	if !c.level.valid() {
		return nil, fmt.Errorf("rqlite: level %q: want none, weak, linearizable or strong", c.level)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.max <= 0 {
		c.max = DefaultMaxResponseBytes
	}
	if c.hc == nil {
		c.hc = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			// A POST followed as a GET loses its body; report the 3xx instead.
			return http.ErrUseLastResponse
		}}
	}
	u.User = nil
	u.Path = strings.TrimSuffix(u.Path, "/") + "/db/query"
	c.query = u.String()
	return c, nil
}

// URL is the node's URL with any password masked.
func (c *Client) URL() string { return c.redacted }

// Row is one answer row: column name to cell. Cells are what rqlite's JSON
// holds: string, json.Number, bool or nil.
type Row map[string]any

// Query runs one read statement at level with args bound to its ?s. No row
// is an empty slice and a nil error.
func (c *Client) Query(ctx context.Context, level Level, sql string, args ...any) ([]Row, error) {
	if !level.valid() {
		return nil, fmt.Errorf("rqlite: level %q: want none, weak, linearizable or strong", level)
	}
	res, err := c.do(ctx, level, append([]any{sql}, args...))
	if err != nil {
		return nil, err
	}
	rows := make([]Row, 0, len(res.Values))
	for i, vals := range res.Values {
		if len(vals) != len(res.Columns) {
			return nil, fmt.Errorf("rqlite: answer row %d has %d cells for %d columns", i, len(vals), len(res.Columns))
		}
		r := make(Row, len(vals))
		for j, v := range vals {
			r[res.Columns[j]] = v
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// KV is one keyValue row.
type KV struct{ Key, Value string }

// Get reads keyValue's value for key. found is false if there is no row.
func (c *Client) Get(ctx context.Context, key string) (value string, found bool, err error) {
	rows, err := c.Query(ctx, c.level, "SELECT value FROM keyValue WHERE key = ?", key)
	if err != nil {
		return "", false, err
	}
	if len(rows) == 0 {
		return "", false, nil
	}
	v, ok := rows[0]["value"].(string)
	if !ok {
		return "", false, fmt.Errorf("rqlite: keyValue row %q: value is %s, want text", printable(key), cellType(rows[0]["value"]))
	}
	return v, true, nil
}

// List reads every keyValue row whose key starts with prefix, by key.
// The prefix is matched exactly: LIKE's wildcards in it are escaped, and
// because SQLite's LIKE ignores ASCII case, rows are filtered again here.
func (c *Client) List(ctx context.Context, prefix string) ([]KV, error) {
	rows, err := c.Query(ctx, c.level,
		`SELECT key, value FROM keyValue WHERE key LIKE ? ESCAPE '\' ORDER BY key`, likePrefix(prefix))
	if err != nil {
		return nil, err
	}
	out := make([]KV, 0, len(rows))
	for _, r := range rows {
		k, ok := r["key"].(string)
		if !ok {
			return nil, fmt.Errorf("rqlite: keyValue row under %q: key is %s, want text", printable(prefix), cellType(r["key"]))
		}
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		v, ok := r["value"].(string)
		if !ok {
			return nil, fmt.Errorf("rqlite: keyValue row %q: value is %s, want text", printable(k), cellType(r["value"]))
		}
		out = append(out, KV{Key: k, Value: v})
	}
	slices.SortFunc(out, func(a, b KV) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func likePrefix(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(p) + "%"
}

type result struct {
	Columns []string `json:"columns"`
	Values  [][]any  `json:"values"`
	Error   string   `json:"error"`
}

type answer struct {
	Results []result `json:"results"`
	Error   string   `json:"error"`
}

func (c *Client) do(ctx context.Context, level Level, stmt []any) (*result, error) {
	body, err := json.Marshal([][]any{stmt})
	if err != nil {
		return nil, fmt.Errorf("rqlite: encode statement: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.query+"?level="+string(level), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("rqlite: %s: %w", c.redacted, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.user != nil {
		pw, _ := c.user.Password()
		req.SetBasicAuth(c.user.Username(), pw)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("rqlite: %s: %w", c.redacted, stripURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4*maxErrorExcerpt))
		return nil, &StatusError{Status: resp.StatusCode, Body: excerpt(b)}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.max+1))
	if err != nil {
		return nil, fmt.Errorf("rqlite: %s: read answer: %w", c.redacted, stripURL(err))
	}
	if int64(len(data)) > c.max {
		return nil, fmt.Errorf("rqlite: %s: answer larger than %d bytes", c.redacted, c.max)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var a answer
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("rqlite: %s: answer is not rqlite's JSON (%w): %s", c.redacted, err, excerpt(data))
	}
	if a.Error != "" {
		return nil, &SQLError{Msg: excerpt([]byte(a.Error))}
	}
	if len(a.Results) == 0 {
		return nil, ErrNoLeader
	}
	r := &a.Results[0]
	if r.Error != "" {
		return nil, &SQLError{Msg: excerpt([]byte(r.Error))}
	}
	return r, nil
}

// stripURL drops the *url.Error wrapper, whose text repeats the URL; the
// caller prints the redacted one.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// excerpt is b cut to maxErrorExcerpt runes, control characters as spaces.
func excerpt(b []byte) string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > maxErrorExcerpt {
		s = string(r[:maxErrorExcerpt]) + "…"
	}
	return s
}

func printable(s string) string { return excerpt([]byte(s)) }

func cellType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}
