package atrest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

const row = "tls-key/*.example.com"

func testMaster(seed byte) []byte {
	m := make([]byte, MasterSize)
	for i := range m {
		m[i] = seed + byte(i)
	}
	return m
}

func mustNew(t testing.TB, master []byte) *Keyring {
	t.Helper()
	k, err := New(master)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return k
}

func mustSeal(t testing.TB, k *Keyring, p Purpose, row string, pt []byte) []byte {
	t.Helper()
	env, err := k.Seal(p, row, pt)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return env
}

// wantErr checks err's exact text and that it wraps target.
func wantErr(t *testing.T, err error, target error, text string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", text)
	}
	if err.Error() != text {
		t.Errorf("error\n got: %s\nwant: %s", err, text)
	}
	if target != nil && !errors.Is(err, target) {
		t.Errorf("error %q does not wrap %v", err, target)
	}
}

const (
	textWrongKey     = "opening " + row + ": the atRestKey differs from the one that wrote this row (check letsEncrypt.atRestKey is the same on every core)"
	textNotAuthentic = "opening " + row + ": the envelope does not authenticate (tampered, or moved from another row)"
)

func TestRoundTrip(t *testing.T) {
	k := mustNew(t, testMaster(1))
	for _, p := range purposes {
		for _, n := range []int{0, 1, 15, 16, 17, 256, 4096, 1 << 16} {
			pt := make([]byte, n)
			rand.Read(pt)
			env := mustSeal(t, k, p, row, pt)
			if len(env) != n+Overhead {
				t.Errorf("%s/%d: envelope is %d bytes, want %d", p, n, len(env), n+Overhead)
			}
			if env[0] != Version {
				t.Errorf("%s/%d: version byte %#x", p, n, env[0])
			}
			if n >= 8 && bytes.Contains(env, pt) {
				t.Errorf("%s/%d: envelope contains the plaintext", p, n)
			}
			got, err := k.Open(p, row, env)
			if err != nil {
				t.Fatalf("%s/%d: Open: %v", p, n, err)
			}
			if !bytes.Equal(got, pt) {
				t.Errorf("%s/%d: round trip changed the plaintext", p, n)
			}
		}
	}
}

// Another Keyring from the same master (another core) opens what this one
// sealed.
func TestSameMasterOtherKeyring(t *testing.T) {
	env := mustSeal(t, mustNew(t, testMaster(1)), PurposeACMEAccount, row, []byte("account key"))
	got, err := mustNew(t, testMaster(1)).Open(PurposeACMEAccount, row, env)
	if err != nil || string(got) != "account key" {
		t.Fatalf("Open = %q, %v", got, err)
	}
}

func TestSealsDiffer(t *testing.T) {
	k := mustNew(t, testMaster(1))
	pt := []byte("same plaintext every time")
	seen := map[string]bool{}
	nonces := map[string]bool{}
	for range 100 {
		env := mustSeal(t, k, PurposeTLSKey, row, pt)
		if seen[string(env)] {
			t.Fatal("two seals of the same plaintext are equal")
		}
		seen[string(env)] = true
		nonces[string(env[headerSize:headerSize+nonceSize])] = true
	}
	if len(nonces) != 100 {
		t.Fatalf("%d distinct nonces in 100 seals", len(nonces))
	}
}

// The envelope of one fixed master, written by this code when the format was
// defined: a change that would make existing rows unreadable fails here.
const (
	goldenRow      = "tls-key/*.example.com"
	goldenEnvelope = "013fb7053dbe1f318ced3fc8fe7ea20e4b70f85cb97af977eb107d65b26ef1d9c9e8425911121d756d4a04d001d054f3cb"
	goldenText     = "golden plaintext"
)

func TestGoldenEnvelope(t *testing.T) {
	env, _ := hex.DecodeString(goldenEnvelope)
	got, err := mustNew(t, testMaster(0)).Open(PurposeTLSKey, goldenRow, env)
	if err != nil || string(got) != goldenText {
		t.Fatalf("Open(golden) = %q, %v", got, err)
	}
}

// hkdfRFC5869 is HKDF-SHA256 written from RFC 5869 with crypto/hmac only, so
// that TestFormatAsDocumented does not trust the code under test.
func hkdfRFC5869(secret, salt []byte, info string, n int) []byte {
	ext := hmac.New(sha256.New, salt)
	ext.Write(secret)
	prk := ext.Sum(nil)
	var out, prev []byte
	for i := byte(1); len(out) < n; i++ {
		exp := hmac.New(sha256.New, prk)
		exp.Write(prev)
		exp.Write([]byte(info))
		exp.Write([]byte{i})
		prev = exp.Sum(nil)
		out = append(out, prev...)
	}
	return out[:n]
}

// TestFormatAsDocumented opens a fresh envelope following the package
// comment alone: plain AES-GCM, keys derived by an independent HKDF.
func TestFormatAsDocumented(t *testing.T) {
	master := testMaster(9)
	pt := []byte("documented format")
	for _, p := range purposes {
		env := mustSeal(t, mustNew(t, master), p, row, pt)
		if env[0] != 0x01 {
			t.Fatalf("version %#x", env[0])
		}
		if want := hkdfRFC5869(master, []byte("pryv-tls at-rest v1"), "key-check", 4); !bytes.Equal(env[1:5], want) {
			t.Fatalf("key id %x, want %x", env[1:5], want)
		}
		block, err := aes.NewCipher(hkdfRFC5869(master, []byte("pryv-tls at-rest v1"), string(p), 32))
		if err != nil {
			t.Fatal(err)
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			t.Fatal(err)
		}
		aad := append(append(append([]byte{0x01}, p...), 0), row...)
		got, err := gcm.Open(nil, env[5:17], env[17:], aad)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("%s: documented format does not open: %q, %v", p, got, err)
		}
	}
}

func TestWrongMaster(t *testing.T) {
	env := mustSeal(t, mustNew(t, testMaster(1)), PurposeTLSKey, row, []byte("secret"))
	_, err := mustNew(t, testMaster(2)).Open(PurposeTLSKey, row, env)
	wantErr(t, err, ErrWrongKey, textWrongKey)
}

func TestTamperEachRegion(t *testing.T) {
	k := mustNew(t, testMaster(1))
	pt := []byte("a private key, 32 bytes or so...")
	env := mustSeal(t, k, PurposeTLSKey, row, pt)
	ctStart := headerSize + nonceSize
	tagStart := len(env) - tagSize
	cases := []struct {
		region string
		at     int
		target error
		text   string
	}{
		// The version decides the layout; a changed one is unknown.
		{"version", 0, ErrUnknownVersion, "opening " + row + ": unknown envelope version 254 (written by a newer pryv-tls?)"},
		// A changed key id is indistinguishable from another writer's.
		{"key id first", 1, ErrWrongKey, textWrongKey},
		{"key id last", headerSize - 1, ErrWrongKey, textWrongKey},
		{"nonce first", headerSize, ErrNotAuthentic, textNotAuthentic},
		{"nonce last", ctStart - 1, ErrNotAuthentic, textNotAuthentic},
		{"ciphertext first", ctStart, ErrNotAuthentic, textNotAuthentic},
		{"ciphertext last", tagStart - 1, ErrNotAuthentic, textNotAuthentic},
		{"tag first", tagStart, ErrNotAuthentic, textNotAuthentic},
		{"tag last", len(env) - 1, ErrNotAuthentic, textNotAuthentic},
	}
	for _, c := range cases {
		t.Run(c.region, func(t *testing.T) {
			bad := bytes.Clone(env)
			bad[c.at] ^= 0xff
			_, err := k.Open(PurposeTLSKey, row, bad)
			wantErr(t, err, c.target, c.text)
		})
	}
	// Every single bit, everywhere, is caught.
	for i := range env {
		for b := range 8 {
			bad := bytes.Clone(env)
			bad[i] ^= 1 << b
			if _, err := k.Open(PurposeTLSKey, row, bad); err == nil {
				t.Fatalf("flipping bit %d of byte %d went unnoticed", b, i)
			}
		}
	}
	// A truncated or extended tag is not authentic either.
	if _, err := k.Open(PurposeTLSKey, row, env[:len(env)-1]); !errors.Is(err, ErrNotAuthentic) {
		t.Errorf("one byte short: %v", err)
	}
	if _, err := k.Open(PurposeTLSKey, row, append(bytes.Clone(env), 0)); !errors.Is(err, ErrNotAuthentic) {
		t.Errorf("one byte more: %v", err)
	}
}

func TestMovedRow(t *testing.T) {
	k := mustNew(t, testMaster(1))
	env := mustSeal(t, k, PurposeTLSKey, "tls-key/other.example.com", []byte("secret"))
	_, err := k.Open(PurposeTLSKey, row, env)
	wantErr(t, err, ErrNotAuthentic, textNotAuthentic)

	// The purpose/row boundary is unambiguous: no shifting of bytes between
	// them opens.
	env = mustSeal(t, k, PurposeTLSKey, "x", []byte("secret"))
	if _, err := k.Open(PurposeTLSKey, "\x00x", env); !errors.Is(err, ErrNotAuthentic) {
		t.Errorf("row with a leading 0x00: %v", err)
	}
}

func TestWrongPurpose(t *testing.T) {
	k := mustNew(t, testMaster(1))
	env := mustSeal(t, k, PurposeACMEAccount, row, []byte("secret"))
	_, err := k.Open(PurposeTLSKey, row, env)
	wantErr(t, err, ErrNotAuthentic, textNotAuthentic)
}

func TestBadVersion(t *testing.T) {
	k := mustNew(t, testMaster(1))
	env := mustSeal(t, k, PurposeTLSKey, row, []byte("secret"))
	env[0] = 7
	_, err := k.Open(PurposeTLSKey, row, env)
	wantErr(t, err, ErrUnknownVersion, "opening "+row+": unknown envelope version 7 (written by a newer pryv-tls?)")

	// The version is read before the length: a newer layout may be shorter.
	_, err = k.Open(PurposeTLSKey, row, []byte{7})
	wantErr(t, err, ErrUnknownVersion, "opening "+row+": unknown envelope version 7 (written by a newer pryv-tls?)")
}

func TestTruncated(t *testing.T) {
	k := mustNew(t, testMaster(1))
	env := mustSeal(t, k, PurposeTLSKey, row, nil) // exactly Overhead bytes
	if _, err := k.Open(PurposeTLSKey, row, env); err != nil {
		t.Fatalf("the shortest envelope: %v", err)
	}
	for _, n := range []int{0, 1, headerSize, headerSize + nonceSize, Overhead - 1} {
		_, err := k.Open(PurposeTLSKey, row, env[:n])
		wantErr(t, err, ErrTruncated, fmt.Sprintf("opening %s: envelope truncated (%d bytes)", row, n))
	}
	_, err := k.Open(PurposeTLSKey, row, nil)
	wantErr(t, err, ErrTruncated, "opening "+row+": envelope truncated (0 bytes)")
}

func TestNewSize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		m := bytes.Repeat([]byte{0xa5}, n)
		k, err := New(m)
		if k != nil {
			t.Errorf("New(%d bytes) returned a Keyring", n)
		}
		wantErr(t, err, nil, fmt.Sprintf("atrest: the atRestKey must be exactly 32 bytes (got %d)", n))
		if n > 0 {
			assertNoLeak(t, err.Error(), m, "")
		}
	}
	if _, err := New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
}

func TestNewDoesNotModifyMaster(t *testing.T) {
	m := testMaster(3)
	mustNew(t, m)
	if !bytes.Equal(m, testMaster(3)) {
		t.Fatal("New modified the master it was given")
	}
}

func TestMisuse(t *testing.T) {
	k := mustNew(t, testMaster(1))
	env := mustSeal(t, k, PurposeTLSKey, row, []byte("x"))

	_, err := k.Seal("no-such-purpose", row, []byte("x"))
	wantErr(t, err, nil, `sealing `+row+`: atrest: unknown purpose "no-such-purpose"`)
	_, err = k.Open("no-such-purpose", row, env)
	wantErr(t, err, nil, `opening `+row+`: atrest: unknown purpose "no-such-purpose"`)
	_, err = k.Seal(keyCheckInfo, row, []byte("x"))
	wantErr(t, err, nil, `sealing `+row+`: atrest: unknown purpose "key-check"`)

	_, err = k.Seal(PurposeTLSKey, "", []byte("x"))
	wantErr(t, err, nil, "sealing : atrest: empty row name")
	_, err = k.Open(PurposeTLSKey, "", env)
	wantErr(t, err, nil, "opening : atrest: empty row name")

	var zero Keyring
	_, err = zero.Open(PurposeTLSKey, row, env)
	wantErr(t, err, nil, "opening "+row+": atrest: Keyring not initialised (use atrest.New)")
	var nilK *Keyring
	_, err = nilK.Seal(PurposeTLSKey, row, []byte("x"))
	wantErr(t, err, nil, "sealing "+row+": atrest: Keyring not initialised (use atrest.New)")
}

// The key id label can never be a purpose, and purposes cannot collide in
// the AAD.
func TestPurposeLabels(t *testing.T) {
	seen := map[Purpose]bool{}
	for _, p := range purposes {
		if p == "" || p == keyCheckInfo || strings.ContainsRune(string(p), 0) || seen[p] {
			t.Errorf("bad purpose label %q", p)
		}
		seen[p] = true
	}
}

// assertNoLeak fails if s contains secret in any usual encoding, or
// plaintext.
func assertNoLeak(t *testing.T, s string, secret []byte, plaintext string) {
	t.Helper()
	forms := map[string]string{
		"raw":          string(secret),
		"hex":          hex.EncodeToString(secret),
		"HEX":          strings.ToUpper(hex.EncodeToString(secret)),
		"base64":       base64.StdEncoding.EncodeToString(secret),
		"base64 raw":   base64.RawStdEncoding.EncodeToString(secret),
		"base64url":    base64.RawURLEncoding.EncodeToString(secret),
		"Go bytes":     fmt.Sprint(secret), //nolint:staticcheck // QF1010: the byte list as %v prints it is the point, not the string
		"Go bytes hex": fmt.Sprintf("%#v", secret),
	}
	if len(secret) >= 8 {
		// A prefix is a leak too.
		forms["hex prefix"] = hex.EncodeToString(secret[:8])
		forms["base64 prefix"] = base64.StdEncoding.EncodeToString(secret)[:10]
	}
	for name, f := range forms {
		if f != "" && strings.Contains(s, f) {
			t.Errorf("%q contains the key (%s)", s, name)
		}
	}
	if plaintext != "" && strings.Contains(s, plaintext) {
		t.Errorf("%q contains the plaintext", s)
	}
}

func TestErrorsLeakNothing(t *testing.T) {
	master := testMaster(0x40)
	other := testMaster(0x80)
	const plaintext = "-----BEGIN PRIVATE KEY----- very secret"
	k := mustNew(t, master)
	env := mustSeal(t, k, PurposeTLSKey, row, []byte(plaintext))

	var errs []error
	open := func(k *Keyring, p Purpose, r string, e []byte) {
		if _, err := k.Open(p, r, e); err != nil {
			errs = append(errs, err)
		}
	}
	open(mustNew(t, other), PurposeTLSKey, row, env)
	open(k, PurposeACMEAccount, row, env)
	open(k, PurposeTLSKey, "elsewhere", env)
	for i := range env {
		bad := bytes.Clone(env)
		bad[i] ^= 0x55
		open(k, PurposeTLSKey, row, bad)
	}
	for n := range env {
		open(k, PurposeTLSKey, row, env[:n])
	}
	open(k, "nope", row, env)
	if _, err := k.Seal("nope", row, []byte(plaintext)); err != nil {
		errs = append(errs, err)
	}
	_, err := New(append(bytes.Clone(master), 0))
	errs = append(errs, err)
	if len(errs) < len(env)*2 {
		t.Fatalf("only %d errors collected", len(errs))
	}
	for _, err := range errs {
		for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
			assertNoLeak(t, s, master, plaintext)
			assertNoLeak(t, s, other, "")
		}
	}
}

func TestKeyringPrintsRedacted(t *testing.T) {
	master := testMaster(0x40)
	k := mustNew(t, master)
	const want = "atrest.Keyring(<redacted>)"
	if k.String() != want || k.GoString() != want {
		t.Fatalf("String %q, GoString %q", k.String(), k.GoString())
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%p", "%T"} {
		for _, v := range []any{k, *k, []*Keyring{k}, struct{ K *Keyring }{k}, struct{ K Keyring }{*k}} {
			got := fmt.Sprintf(verb, v)
			assertNoLeak(t, got, master, "")
			if verb == "%p" || verb == "%T" {
				continue
			}
			if !strings.Contains(got, "<redacted>") {
				t.Errorf("Sprintf(%s, %T) = %q", verb, v, got)
			}
			if strings.Contains(got, "aeads") || strings.Contains(got, "keyID") {
				t.Errorf("Sprintf(%s, %T) shows fields: %q", verb, v, got)
			}
		}
	}
	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		slog.New(h(&buf)).Info("x", "keyring", k, "copy", *k)
		if strings.Count(buf.String(), "<redacted>") != 2 {
			t.Errorf("slog: %s", buf.String())
		}
		assertNoLeak(t, buf.String(), master, "")
	}
	if got := fmt.Sprint((*Keyring)(nil)); got != "<nil>" {
		t.Errorf("nil Keyring prints %q", got)
	}
}

// Run with -race: one Keyring shared by goroutines sealing and opening for
// both purposes.
func TestConcurrent(t *testing.T) {
	k := mustNew(t, testMaster(1))
	const workers, rounds = 16, 200
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			p := purposes[w%len(purposes)]
			r := fmt.Sprintf("tls-key/host%d.example.com", w)
			for i := range rounds {
				pt := fmt.Appendf(nil, "worker %d round %d", w, i)
				env, err := k.Seal(p, r, pt)
				if err != nil {
					errc <- err
					return
				}
				got, err := k.Open(p, r, env)
				if err != nil || !bytes.Equal(got, pt) {
					errc <- fmt.Errorf("worker %d round %d: %q, %v", w, i, got, err) //nolint:errorlint // err may be nil here: a message, not a wrap
					return
				}
				if _, err := k.Open(p, "tls-key/elsewhere", env); !errors.Is(err, ErrNotAuthentic) {
					errc <- fmt.Errorf("worker %d round %d: moved row: %v", w, i, err) //nolint:errorlint // err may be nil here: a message, not a wrap
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

func FuzzOpen(f *testing.F) {
	k := mustNew(f, testMaster(1))
	valid := mustSeal(f, k, PurposeTLSKey, row, []byte("fuzz seed plaintext"))
	f.Add(valid)
	f.Add(mustSeal(f, k, PurposeTLSKey, row, nil))
	f.Add(mustSeal(f, mustNew(f, testMaster(2)), PurposeTLSKey, row, []byte("other key")))
	f.Add(valid[:Overhead-1])
	f.Add([]byte{})
	f.Add([]byte{0x01})
	f.Add([]byte{0x07, 0, 0})
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Fuzz(func(t *testing.T, env []byte) {
		pt, err := k.Open(PurposeTLSKey, row, env)
		if err == nil {
			// Only a genuine envelope opens: here, a seed from Seal.
			if len(pt)+Overhead != len(env) {
				t.Fatalf("opened %d bytes into %d bytes of plaintext", len(env), len(pt))
			}
			return
		}
		if pt != nil {
			t.Fatal("plaintext returned with an error")
		}
		if !strings.HasPrefix(err.Error(), "opening "+row+": ") {
			t.Fatalf("error without the row: %v", err)
		}
		known := false
		for _, target := range []error{ErrWrongKey, ErrNotAuthentic, ErrUnknownVersion, ErrTruncated} {
			known = known || errors.Is(err, target)
		}
		if !known {
			t.Fatalf("unexpected error: %v", err)
		}
	})
}

// TestKeyringPrevious: a Keyring with previous masters opens what each
// sealed and seals under the current one only; Current tells them apart.
func TestKeyringPrevious(t *testing.T) {
	oldK, newK := mustNew(t, testMaster(1)), mustNew(t, testMaster(2))
	both, err := New(testMaster(2), testMaster(1))
	if err != nil {
		t.Fatal(err)
	}
	sealedOld, _ := oldK.Seal(PurposeTLSKey, row, []byte("old secret"))
	sealedNew, _ := both.Seal(PurposeTLSKey, row, []byte("new secret"))
	for _, tc := range []struct {
		name    string
		k       *Keyring
		env     []byte
		want    string
		wantErr error
		current bool
	}{
		{"ring opens the previous key's row", both, sealedOld, "old secret", nil, false},
		{"ring opens its own", both, sealedNew, "new secret", nil, true},
		{"ring seals under the current key", newK, sealedNew, "new secret", nil, true},
		{"the old key alone cannot open the ring's seal", oldK, sealedNew, "", ErrWrongKey, false},
		{"the new key alone cannot open the old row", newK, sealedOld, "", ErrWrongKey, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.k.Open(PurposeTLSKey, row, tc.env)
			if !errors.Is(err, tc.wantErr) || string(got) != tc.want {
				t.Errorf("Open = %q, %v; want %q, %v", got, err, tc.want, tc.wantErr)
			}
			if c := tc.k.Current(tc.env); c != tc.current {
				t.Errorf("Current = %v, want %v", c, tc.current)
			}
		})
	}
	// A previous row still authenticates its row and purpose.
	if _, err := both.Open(PurposeACMEAccount, row, sealedOld); !errors.Is(err, ErrNotAuthentic) {
		t.Errorf("previous key, other purpose: %v, want ErrNotAuthentic", err)
	}
	for _, tc := range []struct {
		name     string
		previous [][]byte
		want     string
	}{
		{"previous is the current", [][]byte{testMaster(2)}, "atrest: previous key 1 is the current atRestKey (or shares its key id): drop it"},
		{"given twice", [][]byte{testMaster(1), testMaster(1)}, "atrest: previous key 2 is given twice"},
		{"wrong size", [][]byte{testMaster(1)[:16]}, "previous key 1: atrest: the atRestKey must be exactly 32 bytes (got 16)"},
	} {
		if _, err := New(testMaster(2), tc.previous...); err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if fmt.Sprintf("%v %+v %#v", both, both, both) != strings.Repeat(redacted+" ", 2)+redacted {
		t.Errorf("a ring with previous keys prints %v", both)
	}
}
