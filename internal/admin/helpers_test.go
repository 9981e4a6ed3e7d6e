package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/platformdb"
	"github.com/pryv/pryv-tls/internal/platformdb/platformdbtest"
)

const waitTimeout = 20 * time.Second

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newCatalog is a Catalog on a fresh etcd member.
func newCatalog(t testing.TB) (*certstore.Catalog, *platformdb.Etcd) {
	t.Helper()
	db := platformdbtest.Open(t)
	keys, err := atrest.New(bytes.Repeat([]byte{7}, atrest.MasterSize))
	if err != nil {
		t.Fatal(err)
	}
	return &certstore.Catalog{KV: db, Keys: keys}, db
}

func newCA(t testing.TB) *devpki.CA {
	t.Helper()
	root, err := devpki.NewCA("Admin Test Root")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := root.NewIntermediate("Admin Test Intermediate")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t testing.TB, ca *devpki.CA, l devpki.Leaf) *devpki.Issued {
	t.Helper()
	iss, err := ca.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func serialOf(iss *devpki.Issued) string { return iss.Cert.SerialNumber.Text(16) }

// shortDir is a temporary directory with a short path: a unix socket path
// must fit in 108 bytes, and t.TempDir's includes the test's name.
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ptls")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// do serves one request on h and returns the status and body.
func do(t testing.TB, h http.Handler, method, target string, body any, header map[string]string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req := httptest.NewRequest(method, target, rd)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if ct := w.Header().Get("Content-Type"); w.Code != http.StatusNotFound && w.Code != http.StatusMethodNotAllowed && ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, target, ct)
	}
	return w.Code, w.Body.Bytes()
}

// apiError decodes {"error": {"id", "message"}}.
func apiError(t testing.TB, body []byte) (id, message string) {
	t.Helper()
	var e struct {
		Error struct {
			ID      string `json:"id"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e.Error.ID, e.Error.Message
}

// fakeCerts fails every call with err: for the store-failure paths.
type fakeCerts struct{ err error }

func (f fakeCerts) List(context.Context) ([]*certstore.Record, []error, error) {
	return nil, nil, f.err
}

func (f fakeCerts) Store(context.Context, certstore.Input) (*certstore.Record, error) {
	return nil, f.err
}

func (f fakeCerts) Export(context.Context, string) ([]byte, []byte, error) { return nil, nil, f.err }
func (f fakeCerts) Delete(context.Context, string) error                   { return f.err }
