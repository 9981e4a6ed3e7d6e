package join

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzOpenBundle opens arbitrary join bundle files. Opening must never
// panic; a bundle is authenticated as a whole, so whatever opens is exactly
// the bundle that was sealed; no error carries the passphrase or a secret
// of the bundle (node key, token). Each opening costs an Argon2id
// derivation (64 MiB), so this target is slow by design.
func FuzzOpenBundle(f *testing.F) {
	const passphrase = "zq9xkpassphrase0never0printed"
	// Fixed, not time.Now(): each fuzzing worker runs this set-up again, and
	// the seeds sealed by another process must open to the same bundle.
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	orig := &Bundle{
		Version: 1, CoreID: "core2", IP: "127.0.0.2",
		CACert:   "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n",
		NodeCert: "-----BEGIN CERTIFICATE-----\nNODE\n-----END CERTIFICATE-----\n",
		NodeKey:  "-----BEGIN PRIVATE KEY-----\nZq9xKnodekeyZq9xK\n-----END PRIVATE KEY-----\n",
		Token:    "Zq9xK-token-Zq9xK", JoinURL: "https://127.0.0.1:7443/join", PeerURL: "https://127.0.0.2:2380",
		ExpiresAt: now.Add(time.Hour),
	}
	sealed, err := orig.Seal(passphrase)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed, passphrase)
	f.Add(sealed, " "+passphrase+"\n")
	f.Add(sealed, "wrong")
	f.Add([]byte(`{"format":"pryv-tls join bundle v1","salt":"AA==","nonce":"AA==","data":"AA=="}`), passphrase)
	f.Add([]byte(`{"format":"pryv-tls join bundle v1"}`), "")
	f.Add([]byte(`not json`), passphrase)
	f.Fuzz(func(t *testing.T, data []byte, pass string) {
		b, err := OpenBundle(data, pass, now)
		if err != nil {
			msg := err.Error()
			// The marker is in the passphrase, the node key and the token.
			for _, secret := range []string{passphrase, "Zq9xK", "zq9xk"} {
				if strings.Contains(msg, secret) {
					t.Fatalf("an error carries a secret: %s", msg)
				}
			}
			return
		}
		if !reflect.DeepEqual(b, orig) {
			t.Fatalf("opened a bundle that is not the sealed one: %+v", b)
		}
	})
}
