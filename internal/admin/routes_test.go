package admin

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// covered reports whether the front would hand path to Public, matching
// PublicPaths as it does: exactly, or under a key ending in "/".
func covered(path string) bool {
	for _, p := range PublicPaths {
		if path == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(path, p)) {
			return true
		}
	}
	return false
}

// The core serves these itself (open-pryv.io routes/system.ts); the front
// must leave them to it.
func TestPublicPathsLeaveTheCoresRoutes(t *testing.T) {
	for _, c := range []struct {
		path string
		ours bool
	}{
		{"/system/admin/certs", true},
		{"/system/admin/certs/force-renew", true},
		{OwnPrefix + "/certs", true},
		{OwnPrefix + "/certs/force-renew", true},
		{OwnPrefix + "/users", true},
		{OwnPrefix + "/users/alice", true},
		{OwnPrefix + "/dns-records", true},
		{OwnPrefix + "/dns-records/www", true},
		{OwnPrefix + "/cores", true},
		{"/system/admin/users", false},
		{"/system/admin/users/alice", false},
		{"/system/admin/cores", false},
		{"/system/admin/cores/ack", false},
		{"/system/admin/dns-records", false},
		{"/system/admin/mail/templates", false},
		{"/system/admin/mail/send-test", false},
		{"/system/admin/certs/", false},
		{"/system/admin/certs/force-renew/", false},
		{"/system/admin/certs/x", false},
		{"/system/admin/", false},
		{"/system/user-info/alice", false},
		{"/system/pryv-tls/admin", false},
	} {
		if got := covered(c.path); got != c.ours {
			t.Errorf("PublicPaths cover %s: %v, want %v", c.path, got, c.ours)
		}
	}
}

// TestPublicRoutes drives Public over a real catalog and real DNS rows in
// embedded etcd, as the front mounts it.
func TestPublicRoutes(t *testing.T) {
	f := newPublicFixture(t)
	db := f.api.Certs.(*certstore.Catalog).KV.(*platformdb.Etcd)
	f.api.DNS = dnsdata.Rows{KV: db}
	h := f.api.Public(adminKey)
	key := map[string]string{"Authorization": adminKey}

	// Certificates: the same answer under either prefix.
	_, core := do(t, h, http.MethodGet, "/system/admin/certs", nil, key)
	status, own := do(t, h, http.MethodGet, OwnPrefix+"/certs", nil, key)
	if status != http.StatusOK || string(own) != string(core) || !strings.Contains(string(own), `"a.example.com"`) {
		t.Fatalf("GET %s/certs: %d %s; /system/admin/certs answered %s", OwnPrefix, status, own, core)
	}
	for _, p := range []string{"/system/admin/certs/force-renew", OwnPrefix + "/certs/force-renew"} {
		// No renewer on this API: the force-renew handler itself answers so.
		status, body := do(t, h, http.MethodPost, p, `{"hostname":"a.example.com"}`, key)
		if status != http.StatusBadRequest || !strings.Contains(string(body), "not the certRenewer") {
			t.Errorf("POST %s: %d %s", p, status, body)
		}
	}

	// Users, through the moved routes.
	steps := []struct {
		method, path string
		body         any
		status       int
		want         string // in the body
	}{
		{http.MethodPut, OwnPrefix + "/users/Alice", map[string]string{"core": "core1"}, 200, `{"username":"alice","core":"core1"}`},
		{http.MethodGet, OwnPrefix + "/users/alice", nil, 200, `{"username":"alice","core":"core1"}`},
		{http.MethodGet, OwnPrefix + "/users", nil, 200, `{"users":[{"username":"alice","core":"core1"}]}`},
		{http.MethodGet, OwnPrefix + "/cores", nil, 200, `{"cores":[]}`},
		{http.MethodGet, OwnPrefix + "/dns-records", nil, 200, `{"records":[]}`},
		{http.MethodDelete, OwnPrefix + "/users/alice", nil, 200, `{"deleted":"alice"}`},
		{http.MethodGet, OwnPrefix + "/users/alice", nil, 404, `"unknown-resource"`},
		// Not ours: what the front proxies to the core is not answered here
		// even if it arrives.
		{http.MethodGet, "/system/admin/users", nil, 404, `"unknown-resource"`},
		{http.MethodGet, "/system/admin/cores", nil, 404, `"unknown-resource"`},
		{http.MethodGet, "/system/admin/certs/", nil, 404, `"unknown-resource"`},
		{http.MethodGet, OwnPrefix + "/nope", nil, 404, `"unknown-resource"`},
		{http.MethodPatch, OwnPrefix + "/users/alice", nil, 405, `"invalid-operation"`},
		{http.MethodGet, OwnPrefix + "/certs/force-renew", nil, 405, `"invalid-operation"`},
	}
	for _, s := range steps {
		status, body := do(t, h, s.method, s.path, s.body, key)
		if status != s.status || !strings.Contains(string(body), s.want) {
			t.Errorf("%s %s: %d %s, want %d with %s", s.method, s.path, status, body, s.status, s.want)
		}
		if status >= 400 && !json.Valid(body) {
			t.Errorf("%s %s: error body is not JSON: %q", s.method, s.path, body)
		}
	}

	// The same admin-key rule as the certificates.
	for _, c := range []struct {
		hdr    map[string]string
		status int
	}{{nil, http.StatusUnauthorized}, {map[string]string{"Authorization": "nope"}, http.StatusForbidden}} {
		for _, m := range []string{http.MethodGet, http.MethodPut} {
			status, body := do(t, h, m, OwnPrefix+"/users/alice", map[string]string{"core": "core9"}, c.hdr)
			if status != c.status {
				t.Errorf("%s %s/users/alice with %v: %d %s, want %d", m, OwnPrefix, c.hdr, status, body, c.status)
			}
		}
	}
	if _, err := (dnsdata.Rows{KV: db}).UserCore(testCtx(t), "alice"); err == nil {
		t.Error("a refused PUT wrote the user row")
	}
}
