package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestSecretNeverPrints(t *testing.T) {
	s := Secret("hunter2")
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "key", s)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "key", s, "cfg", struct{ K Secret }{s})
	js, _ := json.Marshal(map[string]Secret{"k": s})
	var back map[string]string
	if err := json.Unmarshal(js, &back); err != nil || back["k"] != "<redacted>" {
		t.Errorf("JSON: %s", js)
	}
	ym, _ := yaml.Marshal(map[string]Secret{"k": s})
	outs := []string{
		s.String(), s.GoString(),
		fmt.Sprintf("%v %s %q %x %+v %#v", s, s, s, s, s, s),
		fmt.Sprintf("%v %+v %#v", LetsEncrypt{AtRestKey: s}, LetsEncrypt{AtRestKey: s}, LetsEncrypt{AtRestKey: s}),
		fmt.Sprint(fmt.Errorf("boom: %v", s)),
		logs.String(), back["k"], string(ym),
	}
	for _, out := range outs {
		if strings.Contains(out, "hunter2") || !strings.Contains(out, "<redacted>") {
			t.Errorf("secret leaked or not marked: %s", out)
		}
	}
	if s.Reveal() != "hunter2" {
		t.Errorf("Reveal() = %q", s.Reveal())
	}
	var empty Secret
	if empty.String() != "" || fmt.Sprint(empty) != "" {
		t.Errorf("empty secret prints %q", empty.String())
	}
}

func TestRedacted(t *testing.T) {
	yml := leBlock + `  eab:
    kid: kid-1
    hmacKey: ` + testHMACKey + `
dns:
  domain: mc.example.com
auth:
  adminAccessKey: ` + testAdminKey + `
storages:
  engines:
    rqlite:
      url: http://pryv:rq-pass-123@rqlite.internal:4001/db/@x
`
	c := mustLoad(t, yml)
	out, err := c.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	for _, secret := range []string{testAtRestKey, testAdminKey, testHMACKey, "rq-pass-123"} {
		if strings.Contains(text, secret) {
			t.Errorf("Redacted() leaks %q:\n%s", secret, text)
		}
	}
	if n := strings.Count(text, "<redacted>"); n != 3 {
		t.Errorf("Redacted() shows %d <redacted>, want 3:\n%s", n, text)
	}
	for _, want := range []string{"atRestKey: <redacted>", "adminAccessKey: <redacted>", "hmacKey: <redacted>",
		"domain: mc.example.com", "url: http://xxxxx@rqlite.internal:4001/db/@x", "email: ops@", "propagationTimeout: 2m0s", "kid: kid-1", "port: 443"} {
		if !strings.Contains(text, want) {
			t.Errorf("Redacted() lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, `""`) || strings.Contains(text, "staticEntries") {
		t.Errorf("Redacted() keeps empty keys:\n%s", text)
	}
	// The output is still a config under the spec's names.
	var back map[string]any
	if err := yaml.Unmarshal(out, &back); err != nil || back["letsEncrypt"] == nil {
		t.Errorf("Redacted() is not YAML with spec keys: %v", err)
	}
}

func TestSecretsNotInErrors(t *testing.T) {
	shortKey := "c2hvcnQta2V5LXZhbHVl" // 15 bytes, wrong length
	badHMAC := "not+base64url/" + testAdminKey
	yml := `letsEncrypt:
  enabled: true
  atRestKey: ` + shortKey + `
  eab:
    hmacKey: '` + badHMAC + `'
  atRestkey: ` + testAtRestKey + `
auth:
  adminAccessKey: [` + testAdminKey + `]
`
	_, err := LoadBytes("cfg.yml", []byte(yml))
	if err == nil {
		t.Fatal("want errors")
	}
	msg := err.Error()
	for _, secret := range []string{shortKey, badHMAC, testAtRestKey, testAdminKey} {
		if strings.Contains(msg, secret) {
			t.Errorf("error leaks %q:\n%s", secret, msg)
		}
	}
	for _, want := range []string{
		`cfg.yml:6: letsEncrypt.atRestkey: unknown key (did you mean "atRestKey"?)`,
		`cfg.yml:8: auth.adminAccessKey: expected a string, got a list`,
		"letsEncrypt.atRestKey: must be the base64 of exactly 32 random bytes (got 15 bytes)",
		"letsEncrypt.eab.hmacKey: not valid base64url",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("errors lack %q:\n%s", want, msg)
		}
	}
}

// platform.piiHmacKey is a Secret like the others: config check's output
// shows <redacted>, an error never the value.
func TestPIIHmacKeyRedacted(t *testing.T) {
	const key = "Zm9vYmFyYmF6cXV4cXV1eHF1dXpmb29iYXJiYXpxdXg="
	c := mustLoad(t, "platform:\n  piiHmacKey: "+key+"\n")
	out, err := c.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), key) || !strings.Contains(string(out), "piiHmacKey: <redacted>") {
		t.Errorf("Redacted shows the key or no placeholder:\n%s", out)
	}
	_, err = LoadBytes("cfg.yml", []byte("platform:\n  piiHmacKey: "+key[:20]+"\n"))
	if err == nil || strings.Contains(err.Error(), key[:20]) {
		t.Errorf("a bad key is not reported, or is echoed: %v", err)
	}
}
