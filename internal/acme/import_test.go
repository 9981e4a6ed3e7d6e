package acme

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	xacme "golang.org/x/crypto/acme"

	"github.com/pryv/pryv-tls/internal/acme/acmetest"
	"github.com/pryv/pryv-tls/internal/atrest"
)

// registerElsewhere registers an account at p as another ACME client would
// (an open-pryv.io core's acme-client: an RSA 2048 key), not through lego.
func registerElsewhere(t *testing.T, p *acmetest.Pebble, key crypto.Signer) string {
	t.Helper()
	c := &xacme.Client{Key: key, DirectoryURL: p.DirectoryURL, HTTPClient: p.HTTPClient()}
	acct, err := c.Register(testCtx(t), &xacme.Account{Contact: []string{"mailto:core@your-domain.com"}}, xacme.AcceptTOS)
	if err != nil {
		t.Fatalf("registering the core's account: %v", err)
	}
	return acct.URI
}

// TestImportedAccountIsUsed: an account registered by another client and
// imported is the one the renewer orders with; it registers none.
func TestImportedAccountIsUsed(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	p := e.pebble(acmetest.Options{})
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	uri := registerElsewhere(t, p, key)

	res, info, err := ImportAccount(ctx, e.db, e.keys, ImportedAccount{Directory: p.DirectoryURL, Email: "core@your-domain.com", URI: uri, Key: key})
	if err != nil || res != AccountImported {
		t.Fatalf("ImportAccount = %q, %v", res, err)
	}
	if info.URI != uri || info.KeyType != "RSA 2048" || info.Row != AccountRow(p.DirectoryURL) {
		t.Fatalf("info = %+v", info)
	}
	stored, ok := e.storedAccount(p.DirectoryURL)
	if !ok || stored.URI != uri || stored.Directory != p.DirectoryURL || stored.Email != "core@your-domain.com" {
		t.Fatalf("stored = %+v (%v)", stored, ok)
	}
	if _, err := x509.ParsePKCS8PrivateKey(stored.Key); err == nil {
		t.Fatal("the imported key is stored in the clear")
	}

	const host = "migrated.your-domain.com"
	r := mustNew(t, e.options(p, "after-import", host, "default"))
	if _, err := r.ForceRenew(ctx, host, false); err != nil {
		t.Fatalf("ForceRenew with the imported account: %v", err)
	}
	verifyRecord(t, e.keys, e.record(host), host, p.IssuerRoots(t))
	if n := e.calls.count("after-import", http.MethodPost, pebbleNewAccount); n != 0 {
		t.Errorf("the renewer registered %d account(s) after the import", n)
	}
	if r.user == nil || r.user.reg == nil || r.user.reg.Location != uri {
		t.Errorf("the renewer does not order as the imported account %s", uri)
	}
	if n := e.calls.count("after-import", http.MethodPost, pebbleNewOrder); n != 1 {
		t.Errorf("%d newOrder requests, want 1", n)
	}
}

func TestImportAccountIdempotent(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	const dir = "https://ca.example/directory"
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	a := ImportedAccount{Directory: dir, Email: "e@x", URI: "https://ca.example/acct/1", Key: k1}

	if _, err := LoadAccountInfo(ctx, e.db, e.keys, dir); !errors.Is(err, ErrNoAccount) {
		t.Fatalf("before: %v, want ErrNoAccount", err)
	}
	steps := []struct {
		name    string
		a       ImportedAccount
		want    string
		wantURI string
	}{
		{"first", a, AccountImported, a.URI},
		{"again", a, AccountUnchanged, a.URI},
		{"other account", ImportedAccount{Directory: dir, URI: "https://ca.example/acct/2", Key: k2}, AccountKept, a.URI},
		{"same URL, other key", ImportedAccount{Directory: dir, URI: a.URI, Key: k2}, AccountKept, a.URI},
	}
	for _, s := range steps {
		res, info, err := ImportAccount(ctx, e.db, e.keys, s.a)
		if err != nil || res != s.want || info.URI != s.wantURI {
			t.Fatalf("%s: ImportAccount = %q %+v %v; want %q with %s", s.name, res, info, err, s.want, s.wantURI)
		}
	}
	info, err := LoadAccountInfo(ctx, e.db, e.keys, dir)
	if err != nil || info.URI != a.URI || info.KeyType != "ECDSA P-256" {
		t.Fatalf("after: %+v %v", info, err)
	}
	// Another keyring (another atRestKey) cannot read it.
	other := make([]byte, 32)
	_, _ = rand.Read(other)
	ok2, _ := atrest.New(other)
	if _, err := LoadAccountInfo(ctx, e.db, ok2, dir); err == nil {
		t.Fatal("the account opens under another keyring")
	}
}

func TestImportAccountRefuses(t *testing.T) {
	ctx := testCtx(t)
	e := newEnv(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	const dir = "https://acme-v02.api.letsencrypt.org/directory"
	tests := []struct {
		name     string
		a        ImportedAccount
		contains string
	}{
		{"staging account, production directory", ImportedAccount{Directory: dir, URI: "https://acme-staging-v02.api.letsencrypt.org/acme/acct/1", Key: ec},
			"is not at the CA of directory"},
		{"http directory", ImportedAccount{Directory: "http://ca/dir", URI: "https://ca/acct/1", Key: ec}, "is not an https URL"},
		{"no uri", ImportedAccount{Directory: dir, Key: ec}, `account URL "" is not an https URL`},
		{"no key", ImportedAccount{Directory: dir, URI: "https://acme-v02.api.letsencrypt.org/acme/acct/1"}, "no account key"},
		{"ed25519", ImportedAccount{Directory: dir, URI: "https://acme-v02.api.letsencrypt.org/acme/acct/1", Key: ed}, "RSA or ECDSA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ImportAccount(ctx, e.db, e.keys, tt.a)
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("err = %v, want an InputError with %q", err, tt.contains)
			}
		})
	}
	if rows := e.keysUnder(accountPrefix); len(rows) != 0 {
		t.Fatalf("a refused import wrote %v", rows)
	}
}

func TestAccountAPI(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(&AccountAPI{KV: e.db, Keys: e.keys, Logger: e.log})
	defer srv.Close()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	const dir = "https://ca.example/dir"

	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	req := func(key string) string {
		b, _ := json.Marshal(AccountImportRequest{Directory: dir, Email: "e@x", URI: "https://ca.example/acct/9", Key: key})
		return string(b)
	}
	steps := []struct {
		name, method, path, body string
		status                   int
		contains                 string
	}{
		{"none yet", "GET", "/acme/account?directory=" + dir, "", 404, "no ACME account stored"},
		{"bad json", "POST", "/acme/account", "{", 400, "body must be JSON"},
		{"bad key", "POST", "/acme/account", req("not a key"), 400, "key: no PEM block"},
		{"bad uri", "POST", "/acme/account", strings.Replace(req(keyPEM), "ca.example/acct", "other.example/acct", 1), 400, "not at the CA"},
		{"import", "POST", "/acme/account", req(keyPEM), 200, `"result":"imported"`},
		{"again", "POST", "/acme/account", req(keyPEM), 200, `"result":"unchanged"`},
		{"read", "GET", "/acme/account?directory=" + dir, "", 200, `"uri":"https://ca.example/acct/9"`},
		{"method", "PUT", "/acme/account", "", 405, "only GET and POST"},
		{"path", "GET", "/acme/other", "", 404, "no such resource"},
	}
	for _, s := range steps {
		status, body := call(s.method, s.path, s.body)
		if status != s.status || !strings.Contains(body, s.contains) {
			t.Fatalf("%s: %d %s; want %d with %q", s.name, status, body, s.status, s.contains)
		}
		if strings.Contains(body, "PRIVATE KEY") || strings.Contains(body, `"key"`) {
			t.Fatalf("%s: the answer carries key material: %s", s.name, body)
		}
	}
}
