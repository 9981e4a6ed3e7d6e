package health

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestLive(t *testing.T) {
	rec := httptest.NewRecorder()
	Live().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != 200 || rec.Body.String() != "ok\n" {
		t.Fatalf("%d %q", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	Live().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/healthz", strings.NewReader("x")))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", rec.Code)
	}
}

func TestReady(t *testing.T) {
	var certOK atomic.Bool
	h := Ready(func() []Check {
		return []Check{
			{Name: "certificate", OK: certOK.Load(), Detail: "placeholder"},
			{Name: "dns", OK: true},
		}
	})
	get := func() (int, Report) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		var rep Report
		if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
			t.Fatalf("body %q: %v", rec.Body.String(), err)
		}
		if rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("headers %v", rec.Header())
		}
		return rec.Code, rep
	}
	code, rep := get()
	if code != 503 || rep.Ready || len(rep.Checks) != 2 || rep.Checks[0].OK || rep.Checks[0].Detail != "placeholder" || !rep.Checks[1].OK {
		t.Fatalf("not ready: %d %+v", code, rep)
	}
	certOK.Store(true)
	if code, rep = get(); code != 200 || !rep.Ready {
		t.Fatalf("ready: %d %+v", code, rep)
	}
	// No check at all (a plain Strategy B core): ready.
	rec := httptest.NewRecorder()
	Ready(func() []Check { return nil }).ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/readyz", nil))
	if rec.Code != 200 {
		t.Fatalf("no checks: %d", rec.Code)
	}
}
