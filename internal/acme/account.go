package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/lego"
	"github.com/go-acme/lego/v5/registration"

	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// accountPrefix holds one ACME account per directory URL:
// acme-account/<sha256(directory)[:16]>. Switching from staging to production
// (or to another CA) therefore registers a new account; one is never reused
// across directories.
const accountPrefix = "acme-account/"

// AccountRow is the PlatformDB key of the account for a directory.
func AccountRow(directoryURL string) string {
	sum := sha256.Sum256([]byte(directoryURL))
	return accountPrefix + hex.EncodeToString(sum[:8])
}

type accountRecord struct {
	Directory string `json:"directory"`
	Email     string `json:"email"`
	URI       string `json:"uri"` // the account URL (kid)
	Key       []byte `json:"key"` // atrest envelope of the PKCS#8 key
	// CAAIdentities are the directory's meta.caaIdentities at
	// registration: the issuer domains the DNS names in its CAA records
	// (internal/dnsdata reads directory, uri and these).
	CAAIdentities []string `json:"caaIdentities,omitempty"`
}

// user is lego's registration.User.
type user struct {
	email string
	reg   *legoacme.ExtendedAccount
	key   crypto.Signer
}

func (u *user) GetEmail() string                           { return u.email }
func (u *user) GetRegistration() *legoacme.ExtendedAccount { return u.reg }
func (u *user) GetPrivateKey() crypto.Signer               { return u.key }

// accountReader is what account.load reads through (the renewer's KV, or
// an import's AccountKV).
type accountReader interface {
	Get(ctx context.Context, key string) (platformdb.Entry, error)
}

// account is the ACME account of one directory, as stored: its row, the
// keyring that seals its key, and the EAB it registers with (nil: none).
type account struct {
	directory string
	keys      *atrest.Keyring
	eab       *EAB
}

// load returns the stored account, or a fresh unregistered one (with a new
// key and email) if there is none.
func (a account) load(ctx context.Context, kv accountReader, email string) (*user, bool, error) {
	directory, keys := a.directory, a.keys
	row := AccountRow(directory)
	e, err := kv.Get(ctx, row)
	if errors.Is(err, platformdb.ErrNotFound) {
		u, err := newUser(email)
		return u, false, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading the ACME account %s: %w", row, err)
	}
	var rec accountRecord
	if err := json.Unmarshal(e.Value, &rec); err != nil {
		return nil, false, fmt.Errorf("ACME account %s: not an account record: %w", row, err)
	}
	if rec.Directory != directory {
		return nil, false, fmt.Errorf("ACME account %s belongs to %s, not %s", row, rec.Directory, directory)
	}
	der, err := keys.Open(atrest.PurposeACMEAccount, row, rec.Key)
	if err != nil {
		return nil, false, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, false, fmt.Errorf("ACME account %s: parsing the key: %w", row, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, false, fmt.Errorf("ACME account %s: unusable key type %T", row, k)
	}
	u := &user{email: rec.Email, key: signer, reg: &legoacme.ExtendedAccount{Location: rec.URI}}
	return u, true, nil
}

// newUser is an account not registered yet, with a new key.
func newUser(email string) (*user, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &user{email: email, key: key}, nil
}

// register creates the account at the CA (accepting its terms, with EAB when
// configured) and stores it. It is only called with the renewer lock held,
// so two cores cannot register two accounts.
func (a account) register(ctx context.Context, client *lego.Client, kv KV, u *user) error {
	directory, keys, eab := a.directory, a.keys, a.eab
	var (
		reg *legoacme.ExtendedAccount
		err error
	)
	if eab != nil {
		reg, err = client.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{
			TermsOfServiceAgreed: true, Kid: eab.KID, HmacEncoded: eab.HMACKey,
		})
	} else {
		reg, err = client.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
	}
	if err != nil {
		return fmt.Errorf("registering an ACME account at %s: %w", directory, err)
	}
	u.reg = reg
	row := AccountRow(directory)
	der, err := x509.MarshalPKCS8PrivateKey(u.key)
	if err != nil {
		return err
	}
	sealed, err := keys.Seal(atrest.PurposeACMEAccount, row, der)
	if err != nil {
		return err
	}
	data, err := json.Marshal(accountRecord{Directory: directory, Email: u.email, URI: reg.Location, Key: sealed,
		CAAIdentities: client.GetServerMetadata().CaaIdentities})
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, row, data); err != nil {
		return fmt.Errorf("storing the ACME account %s: %w", row, err)
	}
	return nil
}
