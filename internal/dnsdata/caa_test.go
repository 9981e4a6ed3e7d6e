package dnsdata

import (
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/pryv/pryv-tls/internal/authdns"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

const (
	testDirectory = "https://acme.example.net/directory"
	testAccount   = "https://acme.example.net/acme/acct/1234"
)

// accountRowValue is an account row as internal/acme writes it (the key
// sealed; never read here).
func accountRowValue(directory, uri string, ids ...string) []byte {
	v := `{"directory":"` + directory + `","email":"ops@example.com","uri":"` + uri + `","key":"c2VhbGVk"`
	if len(ids) > 0 {
		v += `,"caaIdentities":["` + strings.Join(ids, `","`) + `"]`
	}
	return []byte(v + "}")
}

func apexCAA(t *testing.T, z *authdns.Zone) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(testDomain+".", dns.TypeCAA)
	r := authdns.Answer(z, m, 1232, true)
	var out []string
	for _, rr := range r.Answer {
		c := rr.(*dns.CAA)
		out = append(out, c.Tag+" "+c.Value)
	}
	return out
}

func TestBuildCAA(t *testing.T) {
	inUse := CAA{Directories: []string{testDirectory}, Methods: []string{"dns-01"}, WildMethods: []string{"dns-01"}}
	for _, c := range []struct {
		name    string
		caa     CAA
		root    []string // dns.records.root.caa
		rows    map[string][]byte
		want    []string
		warning string
	}{
		{"the directory's identity", inUse, nil,
			map[string][]byte{AccountPrefix + "a": accountRowValue(testDirectory, testAccount, "letsencrypt.org")},
			[]string{
				"issue letsencrypt.org; accounturi=" + testAccount + "; validationmethods=dns-01",
				"issuewild letsencrypt.org; accounturi=" + testAccount + "; validationmethods=dns-01",
			}, ""},
		{"letsEncrypt.caaIdentity when the directory names none",
			CAA{Directories: []string{testDirectory}, Identity: "ca.example.net", Methods: []string{"dns-01", "http-01"}, WildMethods: []string{"dns-01"}}, nil,
			map[string][]byte{AccountPrefix + "a": accountRowValue(testDirectory, testAccount)},
			[]string{
				"issue ca.example.net; accounturi=" + testAccount + "; validationmethods=dns-01,http-01",
				"issuewild ca.example.net; accounturi=" + testAccount + "; validationmethods=dns-01",
			}, ""},
		{"every identity of the directory gets its records", CAA{Directories: []string{testDirectory}, Methods: []string{"dns-01"}}, nil,
			map[string][]byte{AccountPrefix + "a": accountRowValue(testDirectory, testAccount, "one.example", "two.example")},
			[]string{
				"issue one.example; accounturi=" + testAccount + "; validationmethods=dns-01",
				"issue two.example; accounturi=" + testAccount + "; validationmethods=dns-01",
			}, ""},
		{"no identity at all: none, and a warning", inUse, nil,
			map[string][]byte{AccountPrefix + "a": accountRowValue(testDirectory, testAccount)},
			nil, "set letsEncrypt.caaIdentity"},
		{"an account of a directory not in use is not published", inUse, nil,
			map[string][]byte{
				AccountPrefix + "a": accountRowValue(testDirectory, testAccount, "letsencrypt.org"),
				AccountPrefix + "b": accountRowValue("https://staging.example.net/dir", "https://staging.example.net/acct/9", "staging.example"),
			},
			[]string{
				"issue letsencrypt.org; accounturi=" + testAccount + "; validationmethods=dns-01",
				"issuewild letsencrypt.org; accounturi=" + testAccount + "; validationmethods=dns-01",
			}, ""},
		{"the operator's CAA records win", inUse, []string{`0 issue "other-ca.example"`},
			map[string][]byte{AccountPrefix + "a": accountRowValue(testDirectory, testAccount, "letsencrypt.org")},
			[]string{"issue other-ca.example"}, ""},
		{"off (no directory in use)", CAA{}, nil,
			map[string][]byte{AccountPrefix + "a": accountRowValue(testDirectory, testAccount, "letsencrypt.org")},
			nil, ""},
		{"no account yet", inUse, nil, nil, nil, ""},
		{"an unreadable row is skipped", inUse, nil, map[string][]byte{AccountPrefix + "a": []byte("{not json")}, nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := Static{Domain: testDomain, TTL: 300, Root: Records{CAA: c.root}, CAA: c.caa}
			r := newRows()
			for k, v := range c.rows {
				r.apply(platformdb.Event{Type: platformdb.EventPut, Entry: platformdb.Entry{Key: k, Value: v}})
			}
			z, warnings, err := Build(st, r, 1)
			if err != nil {
				t.Fatal(err)
			}
			got := apexCAA(t, z)
			slices.Sort(got)
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("CAA\n got  %q\n want %q", got, c.want)
			}
			warned := strings.Join(warnings, "\n")
			if (c.warning == "") != (warned == "") || !strings.Contains(warned, c.warning) {
				t.Errorf("warnings %q, want one with %q", warned, c.warning)
			}
		})
	}

	t.Run("an account row deleted takes its records away", func(t *testing.T) {
		r := newRows()
		e := platformdb.Entry{Key: AccountPrefix + "a", Value: accountRowValue(testDirectory, testAccount, "letsencrypt.org")}
		r.apply(platformdb.Event{Type: platformdb.EventPut, Entry: e})
		st := Static{Domain: testDomain, TTL: 300, CAA: inUse}
		if z, _, _ := Build(st, r, 1); len(apexCAA(t, z)) != 2 {
			t.Fatal("no CAA for the account")
		}
		r.apply(platformdb.Event{Type: platformdb.EventDelete, Entry: platformdb.Entry{Key: e.Key}})
		if z, _, _ := Build(st, r, 2); len(apexCAA(t, z)) != 0 {
			t.Fatal("CAA still published for a deleted account")
		}
	})
}
