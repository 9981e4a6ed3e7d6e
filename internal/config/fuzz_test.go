package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad loads an arbitrary YAML layer between a valid base and a layer of
// secrets. Loading must never panic, and whatever the fuzzed layer does to
// the configuration, no error may carry a secret's value: errors name keys
// and files, never what a secret holds.
func FuzzLoad(f *testing.F) {
	base, err := os.ReadFile(filepath.Join("testdata", "base.yml"))
	if err != nil {
		f.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "*.yml"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, testAtRestKey)
	}
	for _, doc := range []string{
		leBlock,
		"letsEncrypt:\n  atRestKey: [1, 2]\n",
		"letsEncrypt:\n  atRestKeyPrevious: 'not base64!'\n",
		"auth:\n  adminAccessKey: {a: b}\n",
		"platform:\n  piiMode: hmac\n  piiHmacKey: short\n",
		"letsEncrypt:\n  eab: {kid: k}\n",
		"letsEncrypt:\n  onFailureWebhook: 'ftp://x'\n",
		"dns:\n  staticEntries:\n    x: 1.2.3.4\n",
		"storages:\n  engines:\n    rqlite:\n      url: 'http://u:p@[::1'\n",
		"{{{",
		"core: &a [*a]\n",
	} {
		f.Add([]byte(doc), "s3cret-value-that-must-not-leak")
	}
	f.Fuzz(func(t *testing.T, doc []byte, value string) {
		if strings.ContainsAny(value, "\x00\n\r") || len(doc) > 1<<14 {
			return
		}
		// The marker keeps the secret from being a word the messages use.
		secret := "Zq9xK" + value
		q, _ := json.Marshal(secret)
		secrets := fmt.Sprintf("letsEncrypt:\n  atRestKey: %s\n  atRestKeyPrevious: %s\n  onFailureWebhook: %s\n  eab:\n    kid: kid1\n    hmacKey: %s\n"+
			"auth:\n  adminAccessKey: %s\nplatform:\n  piiHmacKey: %s\n", q, q, q, q, q, q)
		_, err := LoadSources(
			Source{Name: "base.yml", Data: base},
			Source{Name: "fuzz.yml", Data: doc},
			Source{Name: "secrets.yml", Data: []byte(secrets)},
		)
		if err == nil {
			return
		}
		msg := err.Error()
		if strings.Contains(string(doc), "Zq9xK") {
			return // the fuzzed layer writes the secret itself; cannot tell a leak
		}
		if strings.Contains(msg, secret) {
			t.Fatalf("an error carries a secret's value %q:\n%s", secret, msg)
		}
	})
}
