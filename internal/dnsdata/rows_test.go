package dnsdata

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pryv/pryv-tls/internal/platformdb/platformdbtest"
)

func TestRows(t *testing.T) {
	db := platformdbtest.Open(t)
	rows := Rows{KV: db}
	ctx := testCtx(t)

	t.Run("SetUserCore validation", func(t *testing.T) {
		for _, bad := range []string{"", "-x", "x-", "a.b", "a_b", "a b", "é", strings.Repeat("a", 64), "alice\n", "*"} {
			err := rows.SetUserCore(ctx, bad, "core1")
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("SetUserCore(%q): %v, want ErrInvalid", bad, err)
			}
		}
		if err := rows.SetUserCore(ctx, "alice", ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("empty core: %v, want ErrInvalid", err)
		}
		// Nothing of it was written.
		if users, err := rows.Users(ctx); err != nil || len(users) != 0 {
			t.Fatalf("after refused writes: %v %v", users, err)
		}

		for _, good := range []string{"a", "0", "a-b", "x1", strings.Repeat("a", 63)} {
			if err := rows.SetUserCore(ctx, good, "core1"); err != nil {
				t.Errorf("SetUserCore(%q): %v", good, err)
			}
		}
		// Upper case is accepted and stored lower-cased.
		if err := rows.SetUserCore(ctx, "ALICE", "core2"); err != nil {
			t.Fatalf("SetUserCore(ALICE): %v", err)
		}
		if _, err := db.Get(ctx, UserCorePrefix+"alice"); err != nil {
			t.Errorf("row user-core/alice: %v", err)
		}
		if _, err := db.Get(ctx, UserCorePrefix+"ALICE"); err == nil {
			t.Error("a row user-core/ALICE was written")
		}
		for _, name := range []string{"alice", "Alice", "ALICE"} {
			if c, err := rows.UserCore(ctx, name); err != nil || c != "core2" {
				t.Errorf("UserCore(%q) = %q, %v; want core2", name, c, err)
			}
		}
		// The stored row is the documented JSON.
		e, err := db.Get(ctx, UserCorePrefix+"alice")
		if err != nil {
			t.Fatal(err)
		}
		var uc UserCore
		if err := json.Unmarshal(e.Value, &uc); err != nil || uc.Core != "core2" {
			t.Errorf("row %s: %v", e.Value, err)
		}
	})

	t.Run("users delete and not found", func(t *testing.T) {
		if _, err := rows.UserCore(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Errorf("UserCore(nobody): %v, want ErrNotFound", err)
		}
		if err := rows.DeleteUser(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Errorf("DeleteUser(nobody): %v, want ErrNotFound", err)
		}
		if err := rows.SetUserCore(ctx, "gone", "core1"); err != nil {
			t.Fatal(err)
		}
		if err := rows.DeleteUser(ctx, "GONE"); err != nil {
			t.Errorf("DeleteUser(GONE): %v", err)
		}
		if err := rows.DeleteUser(ctx, "gone"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second DeleteUser: %v, want ErrNotFound", err)
		}
		if _, err := rows.UserCore(ctx, "gone"); !errors.Is(err, ErrNotFound) {
			t.Errorf("UserCore after delete: %v", err)
		}
	})

	t.Run("SetRecords validation", func(t *testing.T) {
		cases := []struct {
			what string
			e    Entry
		}{
			{"CNAME with an A", Entry{"www", Records{CNAME: "x.example.org", A: []string{"192.0.2.1"}}}},
			{"CNAME with a TXT", Entry{"www", Records{CNAME: "x.example.org", TXT: []string{"t"}}}},
			{"CNAME with an MX", Entry{"www", Records{CNAME: "x.example.org", MX: []string{"10 m.example.org."}}}},
			{"bad IPv4", Entry{"www", Records{A: []string{"300.1.1.1"}}}},
			{"IPv6 as A", Entry{"www", Records{A: []string{"2001:db8::1"}}}},
			{"not an IP", Entry{"www", Records{A: []string{"www.example.org"}}}},
			{"IPv4 as AAAA", Entry{"www", Records{AAAA: []string{"192.0.2.1"}}}},
			{"IPv4-mapped AAAA", Entry{"www", Records{AAAA: []string{"::ffff:192.0.2.1"}}}},
			{"unparsable MX", Entry{"mail", Records{MX: []string{"nonsense"}}}},
			{"MX without host", Entry{"mail", Records{MX: []string{"10"}}}},
			{"unparsable CAA", Entry{"caa", Records{CAA: []string{"not a caa"}}}},
			{"bad NS", Entry{"sub", Records{NS: []string{"bad..name"}}}},
			{"empty", Entry{"www", Records{}}},
			{"empty slices", Entry{"www", Records{A: []string{}, TXT: []string{}}}},
			{"empty subdomain", Entry{"", Records{A: []string{"192.0.2.1"}}}},
			{"apex", Entry{"@", Records{A: []string{"192.0.2.1"}}}},
			{"empty label", Entry{"a..b", Records{A: []string{"192.0.2.1"}}}},
			{"leading hyphen", Entry{"-a", Records{A: []string{"192.0.2.1"}}}},
			{"space", Entry{"a b", Records{A: []string{"192.0.2.1"}}}},
			{"label of 64", Entry{strings.Repeat("a", 64), Records{A: []string{"192.0.2.1"}}}},
			{"escape", Entry{`x\`, Records{A: []string{"192.0.2.1"}}}},
		}
		for _, c := range cases {
			if err := rows.SetRecords(ctx, c.e); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: SetRecords(%+v): %v, want ErrInvalid", c.what, c.e, err)
			}
		}
		if recs, err := rows.Records(ctx); err != nil || len(recs) != 0 {
			t.Fatalf("after refused writes: %v %v", recs, err)
		}

		good := []Entry{
			{"WWW.", Records{A: []string{"192.0.2.1"}, AAAA: []string{"2001:db8::1"}}},
			{"_dmarc", Records{TXT: []string{"v=DMARC1; p=none"}}},
			{"alias", Records{CNAME: "target.example.org"}},
			{"mail", Records{MX: []string{"10 mx1.example.org.", "20 mx2.example.org."}, CAA: []string{`0 issue "letsencrypt.org"`}}},
			{"deep.sub", Records{NS: []string{"ns.example.org"}}},
		}
		for _, e := range good {
			if err := rows.SetRecords(ctx, e); err != nil {
				t.Errorf("SetRecords(%+v): %v", e, err)
			}
		}
		recs, err := rows.Records(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var subs []string
		for _, e := range recs {
			subs = append(subs, e.Subdomain)
		}
		if want := []string{"_dmarc", "alias", "deep.sub", "mail", "www"}; !slices.Equal(subs, want) {
			t.Errorf("Records subdomains %q, want %q (sorted, lower-cased, no trailing dot)", subs, want)
		}
		for _, e := range recs {
			if e.Subdomain == "www" && (!slices.Equal(e.Records.A, []string{"192.0.2.1"}) || !slices.Equal(e.Records.AAAA, []string{"2001:db8::1"})) {
				t.Errorf("www read back as %+v", e.Records)
			}
		}
	})

	t.Run("DeleteRecords", func(t *testing.T) {
		if err := rows.DeleteRecords(ctx, "missing"); !errors.Is(err, ErrNotFound) {
			t.Errorf("DeleteRecords(missing): %v, want ErrNotFound", err)
		}
		if err := rows.DeleteRecords(ctx, "a..b"); !errors.Is(err, ErrInvalid) {
			t.Errorf("DeleteRecords(a..b): %v, want ErrInvalid", err)
		}
		if err := rows.SetRecords(ctx, Entry{"temp", Records{TXT: []string{"x"}}}); err != nil {
			t.Fatal(err)
		}
		if err := rows.DeleteRecords(ctx, "TEMP"); err != nil {
			t.Errorf("DeleteRecords(TEMP): %v", err)
		}
		if err := rows.DeleteRecords(ctx, "temp"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second DeleteRecords: %v, want ErrNotFound", err)
		}
	})

	t.Run("listings sorted", func(t *testing.T) {
		for _, u := range []string{"zed", "amy", "mike", "bob"} {
			if err := rows.SetUserCore(ctx, u, "core-"+u); err != nil {
				t.Fatal(err)
			}
		}
		users, err := rows.Users(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, u := range users {
			names = append(names, u[0])
			if strings.HasPrefix(u[1], "core-") && u[1] != "core-"+u[0] {
				t.Errorf("user %s -> %s", u[0], u[1])
			}
		}
		if !slices.IsSorted(names) {
			t.Errorf("Users not sorted: %q", names)
		}
		for _, u := range []string{"zed", "amy", "mike", "bob", "alice"} {
			if !slices.Contains(names, u) {
				t.Errorf("Users misses %s: %q", u, names)
			}
		}

		for _, id := range []string{"c3", "c1", "c10", "c2"} {
			if err := rows.SetCoreInfo(ctx, CoreInfo{ID: id, IP: "192.0.2.1", URL: "https://" + id + ".example.com", Hosting: "h", Available: id != "c2"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := rows.SetCoreInfo(ctx, CoreInfo{IP: "192.0.2.1"}); err == nil {
			t.Error("SetCoreInfo without an id accepted")
		}
		cores, err := rows.Cores(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range cores {
			ids = append(ids, c.ID)
			if c.Available != (c.ID != "c2") || c.URL != "https://"+c.ID+".example.com" || c.Hosting != "h" {
				t.Errorf("core read back as %+v", c)
			}
		}
		if want := []string{"c1", "c10", "c2", "c3"}; !slices.Equal(ids, want) {
			t.Errorf("Cores %q, want %q", ids, want)
		}

		for _, s := range []string{"zz", "aa", "mm"} {
			if err := rows.SetRecords(ctx, Entry{s, Records{TXT: []string{s}}}); err != nil {
				t.Fatal(err)
			}
		}
		recs, err := rows.Records(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var subs []string
		for _, e := range recs {
			subs = append(subs, e.Subdomain)
		}
		if !slices.IsSorted(subs) || len(subs) != 8 {
			t.Errorf("Records %q, want 8 sorted", subs)
		}
	})

	t.Run("unreadable rows are skipped by listings", func(t *testing.T) {
		if _, err := db.Put(ctx, UserCorePrefix+"broken", []byte("{not json")); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Put(ctx, CoreInfoPrefix+"broken", []byte("[]")); err != nil {
			t.Fatal(err)
		}
		users, err := rows.Users(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			if u[0] == "broken" {
				t.Errorf("unreadable user row listed: %v", u)
			}
		}
		if _, err := rows.UserCore(ctx, "broken"); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("UserCore(broken): %v, want an unreadable-row error", err)
		}
		if _, err := rows.Cores(ctx); err != nil {
			t.Errorf("Cores with an unreadable row: %v", err)
		}
	})
}

func TestCheckNames(t *testing.T) {
	for in, want := range map[string]string{"Alice": "alice", "a": "a", "a-1": "a-1", strings.Repeat("Z", 63): strings.Repeat("z", 63)} {
		if got, err := CheckUsername(in); err != nil || got != want {
			t.Errorf("CheckUsername(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	// The names dns.staticEntries accepts (one check for both).
	for in, want := range map[string]string{"WWW": "www", "_dmarc": "_dmarc", "a.b.c": "a.b.c", "x.": "x", "_acme-challenge.sub": "_acme-challenge.sub", "*.wild": "*.wild", "*": "*", "*.A.b": "*.a.b"} {
		if got, err := CheckSubdomain(in); err != nil || got != want {
			t.Errorf("CheckSubdomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "@", ".", "a..b", ".a", "-a", "a-", "a b", "a/b", "a.*", "**.a", "*a", "a.*.b", strings.Repeat("a.", 101) + "a"} {
		if _, err := CheckSubdomain(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckSubdomain(%q): %v, want ErrInvalid", bad, err)
		}
	}
}
