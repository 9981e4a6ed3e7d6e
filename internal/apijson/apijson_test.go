package apijson

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestError(t *testing.T) {
	for _, tt := range []struct {
		name, id, msg string
		status        int
		want          string
	}{
		{"plain", "cluster", "not a member", http.StatusConflict,
			`{"error":{"id":"cluster","message":"not a member"}}` + "\n"},
		{"quotes and markup are escaped", "unexpected-error", `store: "x" <down>`, http.StatusServiceUnavailable,
			`{"error":{"id":"unexpected-error","message":"store: \"x\" \u003cdown\u003e"}}` + "\n"},
		{"empty message", "invalid-operation", "", http.StatusMethodNotAllowed,
			`{"error":{"id":"invalid-operation","message":""}}` + "\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Error(rec, tt.status, tt.id, tt.msg)
			if rec.Code != tt.status {
				t.Errorf("status %d, want %d", rec.Code, tt.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if got := rec.Body.String(); got != tt.want {
				t.Errorf("body %s, want %s", got, tt.want)
			}
			// What a client reads back: the SDKs' shape.
			var b Body
			if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.Error.ID != tt.id || b.Error.Message != tt.msg {
				t.Errorf("read back %+v, %v", b, err)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, http.StatusOK, map[string]string{"coreId": "core2"})
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || rec.Body.String() != `{"coreId":"core2"}`+"\n" {
		t.Errorf("got %d %q %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
}
