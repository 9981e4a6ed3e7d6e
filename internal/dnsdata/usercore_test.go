package dnsdata

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/pryv/pryv-tls/internal/platformdb"
)

// TestUserCoreOf: a user row reads as encoding/json reads it, whether it
// takes the shortcut (what SetUserCore writes) or not.
func TestUserCoreOf(t *testing.T) {
	written, _ := json.Marshal(UserCore{Core: "core-<1>&"})
	for _, v := range []string{
		`{"core":"core1"}`, `{"core":"c"}`, `{"core":""}`, `{"core":"a b"}`,
		`{"core":"a\"b"}`, `{"core":"a\\b"}`, `{"core":"\u0063ore1"}`, string(written),
		`{"core":"é"}`, "{\"core\":\"\xff\"}", `{"core":"x","other":1}`, `{ "core": "core1" }`,
		`{"Core":"core1"}`, `{"core":1}`, `{"core":"core1"`, `{"core":"core1"}}`, `"core1"`, ``, `null`,
		`{"core":"core1"} `, `{"core":"a"}"}`,
	} {
		r := newRows()
		r.setUser("warm", "core1") // an id the rows hold already
		got, ok := r.userCoreOf([]byte(v))
		var uc UserCore
		wantOK := json.Unmarshal([]byte(v), &uc) == nil && uc.Core != ""
		if ok != wantOK || got != uc.Core && wantOK {
			t.Errorf("%q: got %q, %v; encoding/json %q, %v", v, got, ok, uc.Core, wantOK)
		}
	}
}

// BenchmarkLoadUsers is the watcher's start on 100,000 user rows (what
// listAll applies), rows as SetUserCore writes them.
func BenchmarkLoadUsers(b *testing.B) {
	const n = 100000
	evs := make([]platformdb.Event, n)
	for i := range evs {
		evs[i] = platformdb.Event{Type: platformdb.EventPut, Entry: platformdb.Entry{
			Key: fmt.Sprintf("%suser%d", UserCorePrefix, i), Value: fmt.Appendf(nil, `{"core":"core%d"}`, i%3+1)}}
	}
	b.ReportAllocs()
	for b.Loop() {
		r := newRows()
		r.expectUsers(len(evs))
		for _, ev := range evs {
			r.apply(ev)
		}
		if len(r.users) != n {
			b.Fatalf("%d users", len(r.users))
		}
	}
}
