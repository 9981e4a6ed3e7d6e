package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/devpki"
)

const adminKey = "s3cret-admin-access-key"

// publicFixture is an API over a real catalog holding two certificates with
// known times, and a clock ten days after they were issued.
type publicFixture struct {
	api       *API
	nb, na    time.Time
	a, wild   *devpki.Issued
	forbidden []string // strings no refusal body may contain
}

func newPublicFixture(t *testing.T) *publicFixture {
	t.Helper()
	cat, _ := newCatalog(t)
	ctx := testCtx(t)
	ca := newCA(t)
	// Certificate times have whole seconds.
	nb := time.Now().Add(-48 * time.Hour).Truncate(time.Second).In(time.FixedZone("CET", 3600))
	na := nb.Add(90 * 24 * time.Hour)
	f := &publicFixture{nb: nb, na: na}
	f.a = issue(t, ca, devpki.Leaf{Names: []string{"a.example.com"}, NotBefore: nb, NotAfter: na})
	f.wild = issue(t, ca, devpki.Leaf{Names: []string{"*.mc.example.com", "mc.example.com"}, KeyType: "rsa2048", NotBefore: nb, NotAfter: na})
	if _, err := cat.Store(ctx, certstore.Input{Source: certstore.SourceFile, Chain: f.a.FullChain, Key: f.a.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Store(ctx, certstore.Input{Source: certstore.SourceACME, Chain: f.wild.FullChain, Key: f.wild.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	f.api = &API{Certs: cat, Logger: quietLogger(), Now: func() time.Time { return nb.Add(10 * 24 * time.Hour) }}
	f.forbidden = []string{"a.example.com", "mc.example.com", serialOf(f.a), serialOf(f.wild), "BEGIN", "certs", "Admin Test"}
	return f
}

func TestPublicRefusals(t *testing.T) {
	f := newPublicFixture(t)
	h := f.api.Public(adminKey)
	cases := []struct {
		name   string
		method string
		auth   *string
		status int
		id     string
	}{
		{"missing header", http.MethodGet, nil, http.StatusUnauthorized, "invalid-access-token"},
		{"empty header", http.MethodGet, ptr(""), http.StatusUnauthorized, "invalid-access-token"},
		{"wrong key, same length", http.MethodGet, ptr(strings.Repeat("x", len(adminKey))), http.StatusForbidden, "forbidden"},
		{"wrong key, shorter", http.MethodGet, ptr("s3cret"), http.StatusForbidden, "forbidden"},
		{"wrong key, longer", http.MethodGet, ptr(adminKey + "x"), http.StatusForbidden, "forbidden"},
		{"bearer scheme", http.MethodGet, ptr("Bearer " + adminKey), http.StatusForbidden, "forbidden"},
		{"other case", http.MethodGet, ptr(strings.ToUpper(adminKey)), http.StatusForbidden, "forbidden"},
		{"POST without key", http.MethodPost, nil, http.StatusUnauthorized, "invalid-access-token"},
		{"POST with a wrong key", http.MethodPost, ptr("nope"), http.StatusForbidden, "forbidden"},
		{"POST with the key", http.MethodPost, ptr(adminKey), http.StatusMethodNotAllowed, "invalid-operation"},
		{"DELETE with the key", http.MethodDelete, ptr(adminKey), http.StatusMethodNotAllowed, "invalid-operation"},
		{"PUT with the key", http.MethodPut, ptr(adminKey), http.StatusMethodNotAllowed, "invalid-operation"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := map[string]string{}
			if c.auth != nil {
				hdr["Authorization"] = *c.auth
			}
			status, body := do(t, h, c.method, "/system/admin/certs", nil, hdr)
			if status != c.status {
				t.Fatalf("status %d, want %d (%s)", status, c.status, body)
			}
			if id, _ := apiError(t, body); id != c.id {
				t.Errorf("error id %q, want %q", id, c.id)
			}
			for _, s := range f.forbidden {
				if strings.Contains(string(body), s) {
					t.Errorf("the refusal body shows %q: %s", s, body)
				}
			}
			if strings.Contains(string(body), adminKey) {
				t.Errorf("the refusal body echoes the key: %s", body)
			}
		})
	}
}

func TestPublicEmptyKeyRefusesEverything(t *testing.T) {
	f := newPublicFixture(t)
	h := f.api.Public("")
	for _, auth := range []string{"x", " ", adminKey, "null"} {
		status, body := do(t, h, http.MethodGet, "/system/admin/certs", nil, map[string]string{"Authorization": auth})
		if status != http.StatusForbidden {
			t.Errorf("Authorization %q with no key configured: status %d (%s)", auth, status, body)
		}
		for _, s := range f.forbidden {
			if strings.Contains(string(body), s) {
				t.Errorf("the refusal body shows %q: %s", s, body)
			}
		}
	}
	if status, _ := do(t, h, http.MethodGet, "/system/admin/certs", nil, nil); status != http.StatusUnauthorized {
		t.Errorf("no header with no key configured: status %d", status)
	}
}

func TestPublicList(t *testing.T) {
	f := newPublicFixture(t)
	status, body := do(t, f.api.Public(adminKey), http.MethodGet, "/system/admin/certs", nil, map[string]string{"Authorization": adminKey})
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if strings.Contains(string(body), "PRIVATE KEY") || strings.Contains(string(body), "BEGIN") {
		t.Fatalf("the public listing shows PEM: %s", body)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatal(err)
	}
	if len(top) != 1 || top["certs"] == nil {
		t.Fatalf("top-level fields of %s, want only certs", body)
	}
	var certs []map[string]json.RawMessage
	if err := json.Unmarshal(top["certs"], &certs); err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 {
		t.Fatalf("%d certificates listed, want 2: %s", len(certs), body)
	}
	// The spec's four, what identifies the certificate, and its lifetime judgement.
	wantFields := []string{"attentionAt", "daysUntilExpiry", "expiresAt", "hostname", "issuedAt", "issuer", "names", "needsAttention", "renewed", "serial", "source", "state"}
	type want struct {
		hostname, serial, source string
		names                    []string
	}
	wants := []want{ // sorted by hostname
		{"*.mc.example.com", serialOf(f.wild), certstore.SourceACME, []string{"*.mc.example.com", "mc.example.com"}},
		{"a.example.com", serialOf(f.a), certstore.SourceFile, []string{"a.example.com"}},
	}
	for i, c := range certs {
		var fields []string
		for k := range c {
			fields = append(fields, k)
		}
		slices.Sort(fields)
		if !slices.Equal(fields, wantFields) {
			t.Fatalf("certificate fields %v, want %v", fields, wantFields)
		}
		var got struct {
			Hostname        string   `json:"hostname"`
			IssuedAt        string   `json:"issuedAt"`
			ExpiresAt       string   `json:"expiresAt"`
			DaysUntilExpiry int      `json:"daysUntilExpiry"`
			Names           []string `json:"names"`
			Issuer          string   `json:"issuer"`
			Serial          string   `json:"serial"`
			Source          string   `json:"source"`
		}
		raw, _ := json.Marshal(c)
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		w := wants[i]
		if got.Hostname != w.hostname || got.Serial != w.serial || got.Source != w.source || !slices.Equal(got.Names, w.names) {
			t.Errorf("certificate %d: %+v, want %+v", i, got, w)
		}
		if got.Issuer != "Admin Test Intermediate" {
			t.Errorf("issuer %q", got.Issuer)
		}
		for name, pair := range map[string][2]any{"issuedAt": {got.IssuedAt, f.nb}, "expiresAt": {got.ExpiresAt, f.na}} {
			s, at := pair[0].(string), pair[1].(time.Time)
			if !strings.HasSuffix(s, "Z") {
				t.Errorf("%s %q is not in UTC", name, s)
			}
			parsed, err := time.Parse(time.RFC3339, s)
			if err != nil {
				t.Errorf("%s %q is not RFC 3339: %v", name, s, err)
			} else if !parsed.Equal(at) {
				t.Errorf("%s %s, want %s", name, parsed, at)
			}
			if want := at.UTC().Format(time.RFC3339); s != want {
				t.Errorf("%s %q, want %q", name, s, want)
			}
		}
		if got.DaysUntilExpiry != 80 {
			t.Errorf("daysUntilExpiry %d, want 80", got.DaysUntilExpiry)
		}
	}
}

func TestPublicListEmptyAndBroken(t *testing.T) {
	cat, db := newCatalog(t)
	api := &API{Certs: cat, Logger: quietLogger()}
	hdr := map[string]string{"Authorization": adminKey}
	status, body := do(t, api.Public(adminKey), http.MethodGet, "/system/admin/certs", nil, hdr)
	if status != http.StatusOK || strings.TrimSpace(string(body)) != `{"certs":[]}` {
		t.Fatalf("empty store: %d %s", status, body)
	}

	// An unreadable row is skipped, the others listed.
	ca := newCA(t)
	iss := issue(t, ca, devpki.Leaf{Names: []string{"a.example.com"}})
	if _, err := cat.Store(testCtx(t), certstore.Input{Source: certstore.SourceFile, Chain: iss.FullChain, Key: iss.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Put(testCtx(t), "tls-cert/broken.example.com", []byte("{")); err != nil {
		t.Fatal(err)
	}
	status, body = do(t, api.Public(adminKey), http.MethodGet, "/system/admin/certs", nil, hdr)
	var out struct {
		Certs []CertInfo `json:"certs"`
	}
	if err := json.Unmarshal(body, &out); err != nil || status != http.StatusOK {
		t.Fatalf("with a broken row: %d %s %v", status, body, err)
	}
	if len(out.Certs) != 1 || out.Certs[0].Hostname != "a.example.com" {
		t.Fatalf("with a broken row: %+v", out.Certs)
	}
}

func TestPublicStoreDown(t *testing.T) {
	api := &API{Certs: fakeCerts{errors.New("quorum lost")}, Logger: quietLogger()}
	status, body := do(t, api.Public(adminKey), http.MethodGet, "/system/admin/certs", nil, map[string]string{"Authorization": adminKey})
	if status != http.StatusServiceUnavailable {
		t.Fatalf("status %d: %s", status, body)
	}
	if id, _ := apiError(t, body); id != "unexpected-error" {
		t.Fatalf("error id %q", id)
	}
	// Refused before the store is asked.
	status, _ = do(t, api.Public(adminKey), http.MethodGet, "/system/admin/certs", nil, map[string]string{"Authorization": "nope"})
	if status != http.StatusForbidden {
		t.Fatalf("wrong key with the store down: %d", status)
	}
}

func TestLocal(t *testing.T) {
	cat, _ := newCatalog(t)
	ca := newCA(t)
	api := &API{Certs: cat, Logger: quietLogger()}
	h := api.Local()

	a := issue(t, ca, devpki.Leaf{Names: []string{"a.example.com", "b.example.com"}})
	wild := issue(t, ca, devpki.Leaf{Names: []string{"*.mc.example.com", "mc.example.com"}})
	other := issue(t, ca, devpki.Leaf{Names: []string{"a.example.com"}})

	// Import.
	status, body := do(t, h, http.MethodPost, "/certs", ImportRequest{Chain: string(a.FullChain), Key: string(a.KeyPEM)}, nil)
	if status != http.StatusOK {
		t.Fatalf("import: %d %s", status, body)
	}
	var info CertInfo
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatal(err)
	}
	if info.Hostname != "a.example.com" || info.Serial != serialOf(a) || info.Source != certstore.SourceImport {
		t.Fatalf("import answered %+v", info)
	}
	if strings.Contains(string(body), "PRIVATE KEY") {
		t.Fatalf("the import answer shows the key: %s", body)
	}
	status, body = do(t, h, http.MethodPost, "/certs", ImportRequest{Hostname: "*.MC.example.com", Chain: string(wild.FullChain), Key: string(wild.KeyPEM), Source: certstore.SourceFile}, nil)
	if status != http.StatusOK {
		t.Fatalf("import of the wildcard: %d %s", status, body)
	}
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatal(err)
	}
	if info.Hostname != "*.mc.example.com" || info.Source != certstore.SourceFile {
		t.Fatalf("import answered %+v", info)
	}

	// Refused imports.
	for _, c := range []struct {
		name   string
		body   any
		id     string
		reason string
	}{
		{"mismatched pair", ImportRequest{Chain: string(other.FullChain), Key: string(a.KeyPEM)}, "invalid-certificate", "the private key does not match the certificate"},
		{"host not covered", ImportRequest{Hostname: "c.example.com", Chain: string(a.FullChain), Key: string(a.KeyPEM)}, "invalid-certificate", "does not cover c.example.com"},
		{"no key", ImportRequest{Chain: string(a.FullChain)}, "invalid-certificate", "no PEM private key"},
		{"not JSON", "chain=x", "invalid-request-structure", "must be JSON"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := do(t, h, http.MethodPost, "/certs", c.body, nil)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d: %s", status, body)
			}
			id, msg := apiError(t, body)
			if id != c.id || !strings.Contains(msg, c.reason) {
				t.Fatalf("error %q %q, want %q saying %q", id, msg, c.id, c.reason)
			}
			if strings.Contains(string(body), "PRIVATE KEY") {
				t.Fatalf("the refusal shows the key: %s", body)
			}
		})
	}
	// The mismatched import did not replace the stored one.
	if _, key, err := cat.Export(testCtx(t), "a.example.com"); err != nil || string(key) != string(a.KeyPEM) {
		t.Fatalf("after a refused import: %v", err)
	}

	// List.
	status, body = do(t, h, http.MethodGet, "/certs", nil, nil)
	var list struct {
		Certs []CertInfo `json:"certs"`
	}
	if err := json.Unmarshal(body, &list); err != nil || status != http.StatusOK {
		t.Fatalf("list: %d %s %v", status, body, err)
	}
	var hosts []string
	for _, c := range list.Certs {
		hosts = append(hosts, c.Hostname)
	}
	if !slices.Equal(hosts, []string{"*.mc.example.com", "a.example.com"}) {
		t.Fatalf("list: %v", hosts)
	}

	// Export returns the key.
	for _, c := range []struct {
		path, host string
		iss        *devpki.Issued
	}{
		{"/certs/A.example.com/export", "a.example.com", a},
		{"/certs/*.mc.example.com/export", "*.mc.example.com", wild},
	} {
		status, body = do(t, h, http.MethodGet, c.path, nil, nil)
		var exp ExportResponse
		if err := json.Unmarshal(body, &exp); err != nil || status != http.StatusOK {
			t.Fatalf("export %s: %d %s %v", c.path, status, body, err)
		}
		if exp.Hostname != c.host || exp.Chain != string(c.iss.FullChain) || exp.Key != string(c.iss.KeyPEM) {
			t.Fatalf("export %s returned hostname %q and another pair", c.path, exp.Hostname)
		}
	}
	status, body = do(t, h, http.MethodGet, "/certs/unknown.example.com/export", nil, nil)
	if id, _ := apiError(t, body); status != http.StatusNotFound || id != "unknown-resource" {
		t.Fatalf("export of an unknown host: %d %s", status, body)
	}

	// Delete, then it is gone.
	status, body = do(t, h, http.MethodDelete, "/certs/A.example.com", nil, nil)
	if status != http.StatusOK || strings.TrimSpace(string(body)) != `{"deleted":"a.example.com"}` {
		t.Fatalf("delete: %d %s", status, body)
	}
	status, body = do(t, h, http.MethodGet, "/certs/a.example.com/export", nil, nil)
	if id, _ := apiError(t, body); status != http.StatusNotFound || id != "unknown-resource" {
		t.Fatalf("export after delete: %d %s", status, body)
	}
	status, body = do(t, h, http.MethodDelete, "/certs/a.example.com", nil, nil)
	if id, _ := apiError(t, body); status != http.StatusNotFound || id != "unknown-resource" {
		t.Fatalf("second delete: %d %s", status, body)
	}
	status, body = do(t, h, http.MethodGet, "/certs", nil, nil)
	if err := json.Unmarshal(body, &list); err != nil || status != http.StatusOK || len(list.Certs) != 1 || list.Certs[0].Hostname != "*.mc.example.com" {
		t.Fatalf("list after delete: %d %s", status, body)
	}

	// Routes that do not exist.
	if status, _ := do(t, h, http.MethodGet, "/certs/a.example.com/other", nil, nil); status != http.StatusNotFound {
		t.Errorf("unknown route: %d", status)
	}
	if status, _ := do(t, h, http.MethodPut, "/certs", nil, nil); status != http.StatusMethodNotAllowed {
		t.Errorf("PUT /certs: %d", status)
	}
}

func TestLocalStoreDown(t *testing.T) {
	api := &API{Certs: fakeCerts{errors.New("quorum lost")}, Logger: quietLogger()}
	h := api.Local()
	ca := newCA(t)
	a := issue(t, ca, devpki.Leaf{Names: []string{"a.example.com"}})
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{http.MethodGet, "/certs", nil},
		{http.MethodPost, "/certs", ImportRequest{Chain: string(a.FullChain), Key: string(a.KeyPEM)}},
		{http.MethodGet, "/certs/a.example.com/export", nil},
		{http.MethodDelete, "/certs/a.example.com", nil},
	} {
		status, body := do(t, h, c.method, c.path, c.body, nil)
		id, msg := apiError(t, body)
		if status != http.StatusServiceUnavailable || id != "unexpected-error" || !strings.Contains(msg, "quorum lost") {
			t.Errorf("%s %s with the store down: %d %s", c.method, c.path, status, body)
		}
	}
}

// TestInfoUTC: the API's times are UTC even for a record whose times are not
// (one written by something else than NewRecord, read back from the store).
func TestInfoUTC(t *testing.T) {
	zone := time.FixedZone("X", -5*3600)
	issued := time.Date(2026, 3, 1, 10, 0, 0, 0, zone)
	r := &certstore.Record{Hostname: "a.example.com", IssuedAt: issued, ExpiresAt: issued.Add(90 * 24 * time.Hour)}
	data, err := json.Marshal(Info(r, issued.Add(24*time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"issuedAt":"2026-03-01T15:00:00Z"`, `"expiresAt":"2026-05-30T15:00:00Z"`, `"daysUntilExpiry":89`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("%s does not contain %s", data, want)
		}
	}
}

func ptr[T any](v T) *T { return &v }
