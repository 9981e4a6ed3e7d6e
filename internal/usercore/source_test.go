package usercore

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/authdns"
	"github.com/pryv/pryv-tls/internal/rqlite"
	"github.com/pryv/pryv-tls/internal/rqlite/rqlitetest"
	"github.com/pryv/pryv-tls/internal/usercore/usercoretest"
)

// The request is the one open-pryv.io routes to auth.cores.
func TestAPIRequest(t *testing.T) {
	got := make(chan *http.Request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		_, _ = w.Write([]byte(`{"core":{"url":"https://core2.mc.example.com/"},"meta":{"apiVersion":"2.0.0","serverTime":1700000000.5,"serial":"2019061301"}}`))
	}))
	defer srv.Close()
	api, err := NewAPI(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	w, err := api.Find(context.Background(), "alice")
	if err != nil || w.URL != "https://core2.mc.example.com/" {
		t.Fatalf("Find: %+v %v", w, err)
	}
	r := <-got
	if r.Method != http.MethodGet || r.URL.Path != "/reg/cores" || r.URL.RawQuery != "username=alice" || r.Header.Get("Accept") != "application/json" {
		t.Fatalf("request %s %s?%s Accept=%q", r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Accept"))
	}
}

func TestAPIAnswers(t *testing.T) {
	for _, c := range []struct {
		name   string
		status int
		body   string
		want   string // "url <url>", "unknown" or "error: <substring>"
	}{
		{"multi-core", 200, `{"core":{"url":"https://core2.mc.example.com/"},"meta":{"apiVersion":"2.0.0"}}`, "url https://core2.mc.example.com/"},
		{"unknown user", 404, `{"error":{"id":"unknown-resource","message":"Unknown user \"alice\""},"meta":{"apiVersion":"2.0.0"}}`, "unknown"},
		{"a core without /reg/cores", 404, `{"error":{"id":"unknown-resource","message":"Unknown resource "},"meta":{}}`, "error: not for a user"},
		{"a 404 page", 404, `<html>Not Found</html>`, "error: without error id unknown-resource"},
		{"another error id", 404, `{"error":{"id":"unknown-user","message":"Unknown user"}}`, "error: without error id unknown-resource"},
		{"bad parameters", 400, `{"error":{"id":"invalid-parameters-format","message":"provide \"username\""}}`, "error: answered 400"},
		{"internal error", 500, `{"error":{"id":"unexpected-error","message":"alice broke it"}}`, "error: answered 500"},
		{"election", 503, ``, "error: answered 503"},
		{"redirect", 302, ``, "error: answered 302"},
		{"not JSON", 200, `{"core":`, "error: not JSON"},
		{"JSON of another shape", 200, `{"core":{"url":42}}`, "error: number where string was expected"},
		{"no url", 200, `{"core":{}}`, "error: no core.url"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.status == 302 {
					w.Header().Set("Location", "https://example.org/")
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte(c.body))
			}))
			defer srv.Close()
			api, _ := NewAPI(srv.URL)
			w, err := api.Find(context.Background(), "alice")
			var got string
			switch {
			case errors.Is(err, ErrUnknown):
				got = "unknown"
			case err != nil:
				got = "error: " + err.Error()
				if strings.Contains(err.Error(), "alice") {
					t.Fatalf("the username is in the error: %v", err)
				}
			default:
				got = "url " + w.URL
			}
			if want, ok := strings.CutPrefix(c.want, "error: "); ok {
				if !strings.HasPrefix(got, "error: ") || !strings.Contains(got, want) {
					t.Fatalf("got %q, want an error with %q", got, want)
				}
			} else if got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

// A transport error names the URL, which holds the username: it is cut.
func TestAPIErrorsDoNotNameTheUser(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	api, _ := NewAPI("http://" + addr)
	_, err = api.Find(context.Background(), "secretuser")
	if err == nil || strings.Contains(err.Error(), "secretuser") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("err %v: want connection refused, without the username", err)
	}
}

func TestNewAPIChecksTheURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:3000", "ftp://x", "http://"} {
		if _, err := NewAPI(u); err == nil || !strings.Contains(err.Error(), "upstreams.api") {
			t.Errorf("NewAPI(%q): %v", u, err)
		}
	}
}

// Through the Resolver, against the stand-in core.
func TestResolverWithTheCoreAPI(t *testing.T) {
	multi := usercoretest.Start(t, usercoretest.Options{Domain: "mc.example.com"})
	multi.SetUser("alice", "core2")
	multi.SetUser("bobby", "core1")
	multi.SetUser("carol", "core3")
	multi.SetCoreURL("core3", "https://api-3.example.org")
	single := usercoretest.Start(t, usercoretest.Options{Domain: "mc.example.com", SingleCore: true})
	single.SetUser("alice", "single")
	for _, c := range []struct {
		api  *usercoretest.API
		user string
		want string
	}{
		{multi, "alice", "as core2.mc.example.com."},
		{multi, "bobby", "as core1.mc.example.com."},
		{multi, "carol", "as core3.mc.example.com."}, // by core.url
		{multi, "nobody", "absent (negative TTL 30)"},
		{single, "alice", "as core1.mc.example.com."},
		{single, "nobody", "absent (negative TTL 30)"},
	} {
		api, _ := NewAPI(c.api.URL)
		r := newResolver(t, api, Options{})
		r.SetCores([]Core{{ID: "core1"}, {ID: "core2"}, {ID: "core3", URL: "https://api-3.example.org/"}})
		h, _, err := r.Resolve(context.Background(), c.user)
		if err != nil || h.String() != c.want {
			t.Errorf("%s: %v %v, want %s", c.user, h, err, c.want)
		}
	}
	multi.Fail(http.StatusInternalServerError)
	api, _ := NewAPI(multi.URL)
	r := newResolver(t, api, Options{})
	if _, _, err := r.Resolve(context.Background(), "alice"); err == nil || !strings.Contains(err.Error(), "answered 500") {
		t.Fatalf("a failing core: %v", err)
	}
}

func TestResolverWithASlowCore(t *testing.T) {
	slow := usercoretest.Start(t, usercoretest.Options{Domain: "mc.example.com", Delay: 300 * time.Millisecond})
	slow.SetUser("alice", "core2")
	api, _ := NewAPI(slow.URL)
	r := newResolver(t, api, Options{Timeout: 50 * time.Millisecond})
	begin := time.Now()
	if _, _, err := r.Resolve(context.Background(), "alice"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want a deadline", err)
	}
	if took := time.Since(begin); took > 250*time.Millisecond {
		t.Fatalf("a 50ms bound waited %s", took)
	}
	r.mu.Lock()
	f := r.flights["alice"]
	r.mu.Unlock()
	if f == nil {
		t.Fatal("no request in flight after the timeout")
	}
	<-f.done
	if h, lk := r.Cached("alice"); lk != authdns.LookupFound || h.String() != "as core2.mc.example.com." {
		t.Fatalf("the late answer: %v %v", h, lk)
	}
}

// pepper is the key of the vectors below: bytes 0x00..0x1f.
const pepper = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

// The vectors were computed outside Go, twice: with
//
//	printf 'username\0alice' | openssl dgst -sha256 -mac HMAC \
//	  -macopt hexkey:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
//
// and with Node's crypto doing what open-pryv.io's PiiHasher.hashFor does
// (createHmac('sha256', pepper).update('username').update(Buffer.from([0]))
// .update(value.trim()).digest('hex')); both gave these.
func TestTokenKnownVectors(t *testing.T) {
	key, _ := base64.StdEncoding.DecodeString(pepper)
	for _, c := range []struct{ username, want string }{
		{"alice", "cb77926710e5e61f22e338e0e93e3e9aefb8884ae30137809185f4657d655056"},
		{"  alice  ", "cb77926710e5e61f22e338e0e93e3e9aefb8884ae30137809185f4657d655056"}, // trimmed
		{"Alice", "88affdc6dbfdcbacfb61b9fd42799fda786465f3303fabf21d800a197d264bc6"},     // case kept
	} {
		if got := Token(key, c.username); got != c.want {
			t.Errorf("Token(%q) = %s, want %s", c.username, got, c.want)
		}
	}
}

// The same against openssl, run now, on a name of the test's own.
func TestTokenAgainstOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is required in CI but is not on PATH")
		}
		t.Skip("openssl not installed")
	}
	key, _ := base64.StdEncoding.DecodeString(pepper)
	cmd := exec.Command(openssl, "dgst", "-sha256", "-mac", "HMAC", "-macopt", "hexkey:"+hex.EncodeToString(key))
	cmd.Stdin = strings.NewReader("username\x00user-42")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		t.Fatalf("openssl said %q", out)
	}
	if want := f[len(f)-1]; Token(key, "user-42") != want {
		t.Fatalf("Token = %s, openssl %s", Token(key, "user-42"), want)
	}
}

// fakeKV is a keyValue table (the rqlite client is tested with its
// stand-in where it lives).
type fakeKV struct {
	rows map[string]string
	err  error
	keys []string
}

func (f *fakeKV) Get(_ context.Context, key string) (string, bool, error) {
	f.keys = append(f.keys, key)
	if f.err != nil {
		return "", false, f.err
	}
	v, ok := f.rows[key]
	return v, ok, nil
}

func TestRQLiteSource(t *testing.T) {
	key, _ := base64.StdEncoding.DecodeString(pepper)
	hashed := "user-core/" + Token(key, "alice")
	kv := &fakeKV{rows: map[string]string{
		hashed:               "core2",
		"user-core/bobby":    "core1",
		"user-core/carol":    "core7", // a core this platform's registry does not have
		"core-info/core7":    `{"id":"core7","url":"https://core7.mc.example.com","ip":"192.0.2.7","ipv6":"2001:db8::7","hosting":"eu","available":true}`,
		"user-core/dave1":    "core8",
		"core-info/core8":    `{"id":"core8","cname":"lb.example.net","available":true}`,
		"user-core/erin1":    "core9",
		"core-info/core9":    `{"id":"core9","ip":"not-an-ip"}`,
		"user-core/frank":    "core6",
		"core-info/core6":    `{not json`,
		"user-core/gina1":    "core5", // no core-info row at all
		"user-core/empty":    "  ",
		"user-core/" + "zed": "core1",
	}}
	hs, err := NewRQLite(kv, "hashed", pepper)
	if err != nil {
		t.Fatal(err)
	}
	clear, err := NewRQLite(kv, "cleartext", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		src  *RQLite
		user string
		want string
	}{
		{hs, "alice", "as core2.mc.example.com."},
		{clear, "alice", "absent (negative TTL 30)"}, // cleartext asks user-core/alice: no row
		{hs, "bobby", "absent (negative TTL 30)"},    // hashed never asks the cleartext key
		{clear, "bobby", "as core1.mc.example.com."},
		{clear, "carol", "with A 192.0.2.7, AAAA 2001:db8::7"},
		{clear, "dave1", "with CNAME lb.example.net."},
		{clear, "erin1", `error: ip "not-an-ip"`},
		{clear, "frank", "error: not JSON"},
		{clear, "gina1", `error: core "core5" has no core-info row`},
		{clear, "empty", "error: empty core id"},
	} {
		r := newResolver(t, c.src, Options{})
		h, _, err := r.Resolve(context.Background(), c.user)
		got := h.String()
		if err != nil {
			got = "error: " + err.Error()
		}
		if want, ok := strings.CutPrefix(c.want, "error: "); ok {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: got %s, want an error with %q", c.user, got, want)
			}
		} else if got != c.want {
			t.Errorf("%s: got %s, want %s", c.user, got, c.want)
		}
	}
	if kv.keys[0] != hashed {
		t.Fatalf("hashed mode asked %q first, want %q", kv.keys[0], hashed)
	}
}

func TestRQLiteErrorsDoNotNameTheUser(t *testing.T) {
	kv := &fakeKV{err: errors.New(`rqlite: keyValue row "user-core/secretuser": value is number, want text`)}
	src, _ := NewRQLite(kv, "cleartext", "")
	if _, err := src.Find(context.Background(), "secretuser"); err == nil || strings.Contains(err.Error(), "secretuser") {
		t.Fatalf("err %v", err)
	}
	key, _ := base64.StdEncoding.DecodeString(pepper)
	tok := Token(key, "secretuser")
	kv.err = errors.New(`rqlite: keyValue row "user-core/` + tok + `": value is number, want text`)
	src, _ = NewRQLite(kv, "hashed", pepper)
	if _, err := src.Find(context.Background(), "secretuser"); err == nil || strings.Contains(err.Error(), tok) {
		t.Fatalf("err %v", err)
	}
}

func TestNewRQLiteChecksThePIISettings(t *testing.T) {
	for _, c := range []struct{ mode, key, want string }{
		{"hashed", "", "piiHmacKey must be base64 of exactly 32 bytes"},
		{"hashed", base64.StdEncoding.EncodeToString(make([]byte, 16)), "exactly 32 bytes"},
		{"hashed", "%%%", "exactly 32 bytes"},
		{"salted", pepper, `platform.piiMode "salted"`},
	} {
		_, err := NewRQLite(&fakeKV{}, c.mode, c.key)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewRQLite(%q, %q): %v, want %q", c.mode, c.key, err, c.want)
		}
		if err != nil && c.key != "" && strings.Contains(err.Error(), c.key) {
			t.Errorf("the key is in the error: %v", err)
		}
	}
}

// Through the real rqlite client, against its stand-in node: a hashed
// user-core row, a core-info row for a core the registry lacks, an
// election (empty results: SERVFAIL, never NXDOMAIN), a failing node.
func TestRQLiteThroughTheClient(t *testing.T) {
	node := rqlitetest.Start(t)
	key, _ := base64.StdEncoding.DecodeString(pepper)
	node.Set("user-core/"+Token(key, "alice"), "core2")
	node.Set("user-core/"+Token(key, "carol"), "core7")
	node.Set("core-info/core7", `{"id":"core7","ip":"192.0.2.7","available":true}`)
	client, err := rqlite.New(rqlite.Options{URL: node.URL})
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewRQLite(client, "hashed", pepper)
	if err != nil {
		t.Fatal(err)
	}
	r := newResolver(t, src, Options{})
	for _, c := range []struct{ user, want string }{
		{"alice", "as core2.mc.example.com."},
		{"carol", "with A 192.0.2.7"},
		{"nobody", "absent (negative TTL 30)"},
	} {
		if h, _, err := r.Resolve(context.Background(), c.user); err != nil || h.String() != c.want {
			t.Errorf("%s: %v %v, want %s", c.user, h, err, c.want)
		}
	}
	for _, l := range node.Levels() {
		if l != "strong" {
			t.Errorf("read at level %q, want strong (as the core reads user-core)", l)
		}
	}
	node.NoLeader(1)
	if _, lk, err := r.Resolve(context.Background(), "dave1"); err == nil || lk == authdns.LookupAbsent || !errors.Is(err, rqlite.ErrNoLeader) && !strings.Contains(err.Error(), "no leader") {
		t.Fatalf("during an election: %v %v, want an error", lk, err)
	}
	node.Fail(503, `{"error":"not ready"}`)
	if _, _, err := r.Resolve(context.Background(), "erin1"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("a failing node: %v", err)
	}
	if _, lk := r.Cached("dave1"); lk != authdns.LookupMiss {
		t.Fatal("an election's answer was cached")
	}
}
