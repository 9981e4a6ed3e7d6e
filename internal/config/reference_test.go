package config

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md from Reference()")

// moduleRoot is the repository root, seen from this package's directory.
const moduleRoot = "../.."

func TestReferenceIsCurrent(t *testing.T) {
	keys := ReferenceKeys()
	seen := map[string]bool{}
	for _, k := range keys {
		seen[k.Path] = true
		if k.Description == "" || k.UsedBy == "" {
			t.Errorf("%s: no description in internal/config/reference.go (keyDocs): every key needs a one-line description and the feature that uses it", k.Path)
		}
	}
	for path := range keyDocs {
		if !seen[path] {
			t.Errorf("keyDocs[%q] describes a key that Config does not have: remove or rename it", path)
		}
	}
	if t.Failed() {
		return
	}

	want := Reference()
	file := filepath.Join(moduleRoot, ReferenceFile)
	if *update {
		if err := os.WriteFile(file, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", ReferenceFile)
		return
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v\nregenerate it with: go test ./internal/config -run TestReferenceIsCurrent -update", err)
	}
	if string(got) != want {
		t.Errorf("%s is not what Reference() renders (%s)\nregenerate it with: go test ./internal/config -run TestReferenceIsCurrent -update",
			ReferenceFile, firstDiff(string(got), want))
	}
}

// firstDiff names the first line where two texts differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + ": file has\n\t" + gl + "\nReference() renders\n\t" + wl
		}
	}
	return "no line differs"
}

// TestReferenceDefaults checks the documented defaults against what loading
// an empty configuration yields, and that no default goes undocumented.
func TestReferenceDefaults(t *testing.T) {
	c := mustLoad(t, "")
	root := reflect.ValueOf(c).Elem()
	for _, k := range ReferenceKeys() {
		if strings.Contains(k.Path, "[]") {
			continue
		}
		v := valueAt(root, k.Path)
		if v.Kind() == reflect.Struct && v.Type() != durationType {
			continue
		}
		d := keyDocs[k.Path]
		switch {
		case d.def != nil:
			want := reflect.ValueOf(d.def).Convert(v.Type()).Interface()
			if s, ok := want.(string); ok && strings.HasPrefix(s, "var-pryv/") {
				abs, err := filepath.Abs(s)
				if err != nil {
					t.Fatal(err)
				}
				want = abs // relative paths are resolved at load
			}
			if got := v.Interface(); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: reference says the default is %v, an empty configuration loads %v", k.Path, want, got)
			}
		case d.defNote == "" && !v.IsZero():
			t.Errorf("%s: an empty configuration loads %v but the reference documents no default (set def or defNote in keyDocs)", k.Path, v.Interface())
		}
	}
	// The one default that depends on another key.
	tls := mustLoad(t, "http:\n  ssl:\n    certFile: /c.pem\n    keyFile: /k.pem\n")
	if tls.HTTP.Port != DefaultHTTPSPort || c.HTTP.Port != DefaultHTTPPort {
		t.Errorf("http.port defaults: %d with TLS, %d without; the reference says %s", tls.HTTP.Port, c.HTTP.Port, keyDocs["http.port"].defNote)
	}
	if c2 := mustLoad(t, "core:\n  ip: 192.0.2.7\n"); c2.DNS.PublicIP != "192.0.2.7" {
		t.Errorf("dns.publicIp does not default to core.ip: %q", c2.DNS.PublicIP)
	}
}

// valueAt follows a dotted yaml path from the Config value.
func valueAt(v reflect.Value, path string) reflect.Value {
	for _, name := range strings.Split(path, ".") {
		fs := fieldsOf(v.Type())
		i, ok := fs.byName[name]
		if !ok {
			panic("no key " + path)
		}
		v = v.Field(i)
	}
	return v
}

func TestReferenceKinds(t *testing.T) {
	want := map[string]string{
		"http":                                 "mapping",
		"http.port":                            "integer",
		"http.ip":                              "string",
		"dnsLess.isActive":                     "boolean",
		"letsEncrypt.atRestKey":                "string, secret",
		"letsEncrypt.dns01.propagationTimeout": "duration",
		"dns.records.root.a":                   "list of strings",
		"dns.staticEntries":                    "list of mappings",
		"dns.staticEntries[].records.txt":      "list of strings",
	}
	got := map[string]string{}
	for _, k := range ReferenceKeys() {
		got[k.Path] = k.Kind
	}
	for path, kind := range want {
		if got[path] != kind {
			t.Errorf("%s: kind %q, want %q", path, got[path], kind)
		}
	}
	if d := formatDefault(DefaultPropagationTimeout); d != "2m" {
		t.Errorf("formatDefault(2m) = %q", d)
	}
}
