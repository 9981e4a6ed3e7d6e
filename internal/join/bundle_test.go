package join

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestBundleSealOpen(t *testing.T) {
	b := &Bundle{Version: 1, CoreID: "core2", CACert: "ca", NodeCert: "cert", NodeKey: "key", Token: "t",
		JoinURL: "https://127.0.0.1:2381/join", ExpiresAt: time.Now().Add(time.Hour)}
	pass, err := NewPassphrase()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := b.Seal(pass)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"key", "cert"} {
		if strings.Contains(string(sealed), `"`+secret+`"`) {
			t.Errorf("the sealed bundle shows %q in clear", secret)
		}
	}
	got, err := OpenBundle(sealed, pass+"\n", time.Now())
	if err != nil || got.NodeKey != "key" || got.CoreID != "core2" {
		t.Fatalf("open: %v %+v", err, got)
	}
	tests := []struct {
		name, pass string
		data       []byte
		now        time.Time
		want       string
	}{
		{"wrong passphrase", "nope", sealed, time.Now(), "wrong passphrase, or the bundle was modified"},
		{"tampered", pass, tamper(sealed), time.Now(), "wrong passphrase, or the bundle was modified"},
		{"not a bundle", pass, []byte(`{"hello":1}`), time.Now(), "not a pryv-tls join bundle"},
		{"expired", pass, sealed, time.Now().Add(2 * time.Hour), "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := OpenBundle(tt.data, tt.pass, tt.now); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to say %q", err, tt.want)
			}
		})
	}
}

// tamper flips one base64 character inside the ciphertext.
func tamper(sealed []byte) []byte {
	out := append([]byte(nil), sealed...)
	i := strings.Index(string(out), `"data": "`) + len(`"data": "`) + 5
	if out[i] == 'A' {
		out[i] = 'B'
	} else {
		out[i] = 'A'
	}
	return out
}

func TestCheckToken(t *testing.T) {
	now := time.Now()
	base := Token{CoreID: "core2", Hash: HashToken("secret"), NodeFingerprint: "fp", PeerURL: "https://127.0.0.2:2380", ExpiresAt: now.Add(time.Hour)}
	used := base
	used.ConsumedAt = now
	expired := base
	expired.ExpiresAt = now.Add(-time.Minute)
	// A removed core coming back with its old bundle: the same member,
	// the token used, and expired (issue 18: it skipped the expiry check).
	usedExpired := used
	usedExpired.ExpiresAt = now.Add(-time.Minute)
	tests := []struct {
		name      string
		t         Token
		token, fp string
		peer      string
		want      error
	}{
		{"good", base, "secret", "fp", base.PeerURL, nil},
		{"wrong token", base, "guess", "fp", base.PeerURL, ErrTokenMismatch},
		{"wrong node certificate", base, "secret", "other", base.PeerURL, ErrWrongNodeCert},
		{"expired", expired, "secret", "fp", base.PeerURL, ErrTokenExpired},
		{"used by the same member: idempotent", used, "secret", "fp", base.PeerURL, nil},
		{"used, another member", used, "secret", "fp", "https://127.0.0.9:2380", ErrTokenUsed},
		{"used by the same member, expired", usedExpired, "secret", "fp", base.PeerURL, ErrTokenExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.t.check(tt.token, tt.fp, tt.peer, now); !errors.Is(err, tt.want) {
				t.Fatalf("check = %v, want %v", err, tt.want)
			}
		})
	}
}
