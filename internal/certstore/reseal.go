package certstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/pryv/pryv-tls/internal/apijson"
	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// SealedTable is a PlatformDB prefix whose rows are JSON objects holding
// one sealed value in their "key" field (an atrest envelope, base64 in
// JSON), sealed for Purpose and bound to the row's own key.
type SealedTable struct {
	Prefix  string
	Purpose atrest.Purpose
}

// SealedTables is every table pryv-tls seals a value in: the certificates'
// private keys (tls-cert/, here), the ACME account keys (acme's
// acme-account/) and the DNSSEC keys (dnsdata's dnssec-key/); those
// packages import this one or are beside it, hence the literal prefixes. A
// new sealed row kind must be added here, or a rotation would leave it
// under the old key (TestSealedTablesAreTheSealedRows).
var SealedTables = []SealedTable{
	{Prefix: Prefix, Purpose: atrest.PurposeTLSKey},
	{Prefix: "acme-account/", Purpose: atrest.PurposeACMEAccount},
	{Prefix: "dnssec-key/", Purpose: atrest.PurposeDNSSECKey}, // dnsdata's DNSSEC keys (dns.dnssec)
}

// ResealKV is what Reseal needs of PlatformDB.
type ResealKV interface {
	Get(ctx context.Context, key string) (platformdb.Entry, error)
	List(ctx context.Context, prefix string) ([]platformdb.Entry, int64, error)
	CompareAndSwap(ctx context.Context, key string, value []byte, expect int64) (int64, error)
}

// ResealReport says what a rotation did, by row name only: never a key.
type ResealReport struct {
	Resealed []string `json:"resealed"` // rewritten under the current atRestKey
	Current  int      `json:"current"`  // already under it
	// Left are the rows left as they are, with why: no key of this core
	// opens them, they are not records with a key, or they kept changing.
	Left []RowFailure `json:"left"`
}

// RowFailure is a row Reseal could not rewrite, and why (no key material in it).
type RowFailure struct {
	Row   string `json:"row"`
	Error string `json:"error"`
}

// Reseal rewrites every sealed row of SealedTables that a previous master
// sealed under keys' current one. Each write is conditional on the revision read
// (a row rewritten meanwhile, by a renewal say, is read again), and the
// rest of the row is kept as it is. A row no key of keys opens is reported
// by name and left untouched; so is one that is not a record with a key.
func Reseal(ctx context.Context, kv ResealKV, keys *atrest.Keyring) (ResealReport, error) {
	rs := resealer{kv: kv, keys: keys, rep: &ResealReport{Resealed: []string{}, Left: []RowFailure{}}}
	for _, t := range SealedTables {
		entries, _, err := kv.List(ctx, t.Prefix)
		if err != nil {
			return *rs.rep, fmt.Errorf("listing %s: %w", t.Prefix, err)
		}
		for _, e := range entries {
			if err := rs.retrying(ctx, t.Purpose, e); err != nil {
				return *rs.rep, err
			}
		}
	}
	return *rs.rep, nil
}

// resealer is one Reseal run: the store, the keys, and the report it fills.
type resealer struct {
	kv   ResealKV
	keys *atrest.Keyring
	rep  *ResealReport
}

// retrying is row, read again and retried while another writer rewrites
// the row in between (a renewal storing it).
func (rs resealer) retrying(ctx context.Context, purpose atrest.Purpose, e platformdb.Entry) error {
	rep := rs.rep
	for attempt := 1; ; attempt++ {
		err := rs.row(ctx, purpose, e)
		if !errors.Is(err, platformdb.ErrConflict) {
			return err
		}
		if attempt == 5 {
			rep.Left = append(rep.Left, RowFailure{e.Key, "rewritten by another writer 5 times during the rotation: run keys rotate again"})
			return nil
		}
		row := e.Key
		e, err = rs.kv.Get(ctx, row)
		if errors.Is(err, platformdb.ErrNotFound) {
			return nil // deleted meanwhile: nothing left to reseal
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", row, err)
		}
	}
}

// row rewrites one row if needed; a failed compare is ErrConflict.
func (rs resealer) row(ctx context.Context, purpose atrest.Purpose, e platformdb.Entry) error {
	kv, keys, rep := rs.kv, rs.keys, rs.rep
	var obj map[string]json.RawMessage
	var env []byte
	if err := json.Unmarshal(e.Value, &obj); err != nil || obj["key"] == nil || json.Unmarshal(obj["key"], &env) != nil {
		rep.Left = append(rep.Left, RowFailure{e.Key, "not a record with a sealed key"})
		return nil
	}
	if keys.Current(env) {
		rep.Current++
		return nil
	}
	plain, err := keys.Open(purpose, e.Key, env)
	if err != nil {
		rep.Left = append(rep.Left, RowFailure{e.Key, err.Error()})
		return nil
	}
	sealed, err := keys.Seal(purpose, e.Key, plain)
	clear(plain)
	if err != nil {
		return err
	}
	if obj["key"], err = json.Marshal(sealed); err != nil {
		return err
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	if _, err := kv.CompareAndSwap(ctx, e.Key, data, e.Revision); err != nil {
		if errors.Is(err, platformdb.ErrConflict) {
			return err
		}
		return fmt.Errorf("writing %s: %w", e.Key, err)
	}
	rep.Resealed = append(rep.Resealed, e.Key)
	return nil
}

// RotateAPI serves POST /keys/rotate on the control socket: Reseal with the
// running core's keys, answering the ResealReport.
type RotateAPI struct {
	KV     ResealKV
	Keys   *atrest.Keyring
	Logger *slog.Logger
}

func (h *RotateAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/keys/rotate" {
		apijson.Error(w, http.StatusNotFound, "unknown-resource", "no such resource")
		return
	}
	if r.Method != http.MethodPost {
		apijson.Error(w, http.StatusMethodNotAllowed, "invalid-operation", "only POST is allowed here")
		return
	}
	log := h.Logger
	if log == nil {
		log = slog.Default()
	}
	rep, err := Reseal(r.Context(), h.KV, h.Keys)
	if err != nil {
		log.Error("atRestKey rotation stopped; run keys rotate again", "resealed", len(rep.Resealed), "error", err.Error())
		apijson.Error(w, http.StatusServiceUnavailable, "unexpected-error", "keys rotate: "+err.Error()+fmt.Sprintf(" (%d rows resealed before that)", len(rep.Resealed)))
		return
	}
	for _, f := range rep.Left {
		log.Error("atRestKey rotation: row left as it is", "row", f.Row, "error", f.Error)
	}
	log.Info("atRestKey rotation", "resealed", len(rep.Resealed), "alreadyCurrent", rep.Current, "left", len(rep.Left), "previousKeys", h.Keys.Previous())
	apijson.Write(w, http.StatusOK, rep)
}
