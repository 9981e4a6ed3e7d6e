package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/pryv/pryv-tls/internal/apijson"
	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// ImportedAccount is an ACME account another client registered (an
// open-pryv.io core's own ACME), handed to the renewer so it orders with it
// instead of registering a new one.
type ImportedAccount struct {
	Directory string // the directory the account was registered at
	Email     string
	URI       string // the account URL (the JWS kid)
	Key       crypto.Signer
}

// AccountInfo is what may be shown of a stored account: never the key.
type AccountInfo struct {
	Row       string `json:"row"`
	Directory string `json:"directory"`
	Email     string `json:"email"`
	URI       string `json:"uri"`
	KeyType   string `json:"keyType"`
}

// What ImportAccount did.
const (
	AccountImported  = "imported"  // stored: the renewer will use it
	AccountUnchanged = "unchanged" // the same account (URL and key) was already stored
	AccountKept      = "kept"      // another account is stored for this directory; it is kept
)

// ErrNoAccount: no account is stored for the directory.
var ErrNoAccount = errors.New("no ACME account stored for this directory")

// AccountKV is what importing an account needs of PlatformDB.
type AccountKV interface {
	Get(ctx context.Context, key string) (platformdb.Entry, error)
	CompareAndSwap(ctx context.Context, key string, value []byte, expect int64) (int64, error)
}

// ImportAccount stores a as the account of a.Directory unless one is stored
// already: an account pryv-tls registered (or imported) stays, so importing
// twice, or after the renewer has run, changes nothing. The write is a
// create-if-absent, so it cannot overwrite an account a renewer registers
// at the same moment.
func ImportAccount(ctx context.Context, kv AccountKV, keys *atrest.Keyring, a ImportedAccount) (string, *AccountInfo, error) {
	if err := a.Check(); err != nil {
		return "", nil, err
	}
	row := AccountRow(a.Directory)
	info, stored, err := loadInfo(ctx, kv, keys, a.Directory)
	switch {
	case errors.Is(err, ErrNoAccount):
	case err != nil:
		return "", nil, err
	default:
		if info.URI == a.URI && publicEqual(stored.Public(), a.Key.Public()) {
			return AccountUnchanged, info, nil
		}
		return AccountKept, info, nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(a.Key)
	if err != nil {
		return "", nil, fmt.Errorf("ACME account key: %w", err)
	}
	sealed, err := keys.Seal(atrest.PurposeACMEAccount, row, der)
	if err != nil {
		return "", nil, err
	}
	data, err := json.Marshal(accountRecord{Directory: a.Directory, Email: a.Email, URI: a.URI, Key: sealed})
	if err != nil {
		return "", nil, err
	}
	if _, err := kv.CompareAndSwap(ctx, row, data, 0); err != nil {
		if errors.Is(err, platformdb.ErrConflict) {
			// Registered or imported meanwhile: that one stays.
			info, _, err := loadInfo(ctx, kv, keys, a.Directory)
			if err != nil {
				return "", nil, err
			}
			return AccountKept, info, nil
		}
		return "", nil, fmt.Errorf("storing the ACME account %s: %w", row, err)
	}
	return AccountImported, &AccountInfo{Row: row, Directory: a.Directory, Email: a.Email, URI: a.URI, KeyType: keyTypeName(a.Key)}, nil
}

// LoadAccountInfo describes the directory's stored account after checking
// that its key opens; ErrNoAccount if there is none.
func LoadAccountInfo(ctx context.Context, kv AccountKV, keys *atrest.Keyring, directory string) (*AccountInfo, error) {
	info, _, err := loadInfo(ctx, kv, keys, directory)
	return info, err
}

func loadInfo(ctx context.Context, kv AccountKV, keys *atrest.Keyring, directory string) (*AccountInfo, crypto.Signer, error) {
	u, ok, err := account{directory: directory, keys: keys}.load(ctx, kv, "")
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, ErrNoAccount
	}
	return &AccountInfo{Row: AccountRow(directory), Directory: directory, Email: u.email, URI: u.reg.Location, KeyType: keyTypeName(u.key)}, u.key, nil
}

// Check refuses an account that cannot be imported as given (an
// *InputError): URLs not https, an account URL at another CA than the
// directory, a key that is not RSA or ECDSA.
func (a ImportedAccount) Check() error {
	d, err := url.Parse(a.Directory)
	if err != nil || d.Scheme != "https" || d.Host == "" {
		return &InputError{fmt.Errorf("directory %q is not an https URL", a.Directory)}
	}
	u, err := url.Parse(a.URI)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return &InputError{fmt.Errorf("account URL %q is not an https URL", a.URI)}
	}
	// An account lives at one CA: an account URL on another host is an
	// account of another CA (staging vs production, say), which this
	// directory would refuse at the first order.
	if !strings.EqualFold(u.Host, d.Host) {
		return &InputError{fmt.Errorf("account %s is not at the CA of directory %s (another CA, or staging vs production?): "+
			"point pryv-tls at the directory the core used (letsEncrypt.directoryUrl, or letsEncrypt.staging as the core had it)", a.URI, a.Directory)}
	}
	switch a.Key.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey:
	case nil:
		return &InputError{errors.New("no account key")}
	default:
		return &InputError{fmt.Errorf("account key type %T: ACME accounts here are RSA or ECDSA", a.Key)}
	}
	return nil
}

// InputError is an account that cannot be imported as given (the caller's
// to fix), unlike a store failure.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func publicEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

func keyTypeName(k crypto.Signer) string {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PrivateKey:
		return "ECDSA " + k.Curve.Params().Name
	}
	return fmt.Sprintf("%T", k)
}

// AccountAPI serves /acme/account on the control socket, for
// `pryv-tls migrate-core`:
//
//	GET  /acme/account?directory=URL   AccountInfo, or 404
//	POST /acme/account                 AccountImportRequest -> AccountImportResponse
type AccountAPI struct {
	KV     AccountKV
	Keys   *atrest.Keyring
	Logger *slog.Logger
}

// AccountImportRequest is the body of POST /acme/account. Key is PEM.
type AccountImportRequest struct {
	Directory string `json:"directory"`
	Email     string `json:"email"`
	URI       string `json:"uri"`
	Key       string `json:"key"`
}

// AccountImportResponse says what was done and what is stored now.
type AccountImportResponse struct {
	Result  string       `json:"result"` // AccountImported, AccountUnchanged or AccountKept
	Account *AccountInfo `json:"account"`
}

func (h *AccountAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/acme/account" {
		apijson.Error(w, http.StatusNotFound, "unknown-resource", "no such resource")
		return
	}
	switch r.Method {
	case http.MethodGet:
		info, err := LoadAccountInfo(r.Context(), h.KV, h.Keys, r.URL.Query().Get("directory"))
		switch {
		case errors.Is(err, ErrNoAccount):
			apijson.Error(w, http.StatusNotFound, "unknown-resource", ErrNoAccount.Error())
		case err != nil:
			h.storeError(w, err)
		default:
			apijson.Write(w, http.StatusOK, info)
		}
	case http.MethodPost:
		var req AccountImportRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			apijson.Error(w, http.StatusBadRequest, "invalid-request-structure", "body must be JSON {directory, email, uri, key}")
			return
		}
		key, err := certs.ParseKeyPEM([]byte(req.Key))
		if err != nil {
			apijson.Error(w, http.StatusBadRequest, "invalid-parameters-format", "key: "+err.Error())
			return
		}
		res, info, err := ImportAccount(r.Context(), h.KV, h.Keys, ImportedAccount{Directory: req.Directory, Email: req.Email, URI: req.URI, Key: key})
		var ie *InputError
		switch {
		case errors.As(err, &ie):
			apijson.Error(w, http.StatusBadRequest, "invalid-parameters-format", err.Error())
			return
		case err != nil:
			h.storeError(w, err)
			return
		}
		h.log().Info("ACME account import", "result", res, "directory", info.Directory, "account", info.URI)
		apijson.Write(w, http.StatusOK, AccountImportResponse{Result: res, Account: info})
	default:
		apijson.Error(w, http.StatusMethodNotAllowed, "invalid-operation", "only GET and POST are allowed here")
	}
}

func (h *AccountAPI) log() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

func (h *AccountAPI) storeError(w http.ResponseWriter, err error) {
	h.log().Error("ACME account", "error", err.Error())
	apijson.Error(w, http.StatusServiceUnavailable, "unexpected-error", "ACME account: "+err.Error())
}
