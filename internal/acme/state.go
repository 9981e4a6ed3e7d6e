package acme

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pryv/pryv-tls/internal/platformdb"
)

// statePrefix keeps each certificate's renewal state in PlatformDB
// (acme-state/<row>), so a restart — or a restart loop — resumes the backoff
// instead of hammering the CA, and every core's admin API can show it.
const statePrefix = "acme-state/"

// State is one certificate's renewal bookkeeping. Times are UTC.
type State struct {
	Hostnames   []string  `json:"hostnames"`
	NextRenewal time.Time `json:"nextRenewal,omitzero"` // planned (ARI or schedule)
	// Backoff: no order before NextAttempt after Failures consecutive failures.
	Failures    int       `json:"failures,omitempty"`
	NextAttempt time.Time `json:"nextAttempt,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
	// Problem is the CA's problem document for LastError (nil when the CA
	// was not reached); UnpauseURL is set while the CA has paused the
	// account for these names: no order until a forced renewal.
	Problem     *Problem  `json:"problem,omitempty"`
	UnpauseURL  string    `json:"unpauseURL,omitempty"`
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	// RenewedBy is the core whose renewer made the last success, and
	// RenewedWhy why that one (the preferred renewer, a standby and why, a
	// forced renewal).
	RenewedBy  string `json:"renewedBy,omitempty"`
	RenewedWhy string `json:"renewedWhy,omitempty"`
	// LastAttempt is when the last order began. It is written (with a
	// NextAttempt one backoff step ahead) before the order is sent, so a
	// renewer that dies mid-order does not order again at once on restart.
	LastAttempt time.Time `json:"lastAttempt,omitzero"`
	// AttemptDirectory is the CA of that order; FailingSince when the
	// current failure streak began (fallback.go).
	AttemptDirectory string    `json:"attemptDirectory,omitempty"`
	FailingSince     time.Time `json:"failingSince,omitzero"`
	// Unreadable is why the stored certificate row does not decode, while
	// it does not: the renewer orders a certificate to replace it.
	Unreadable string `json:"unreadable,omitempty"`
	Directory  string `json:"directory,omitempty"` // the ACME directory the current certificate came from
	// ARI: the CA's window for the current certificate, and when to ask again.
	ARIStart      time.Time `json:"ariStart,omitzero"`
	ARIEnd        time.Time `json:"ariEnd,omitzero"`
	ARISerial     string    `json:"ariSerial,omitempty"` // the certificate the window is for
	ARICheckAfter time.Time `json:"ariCheckAfter,omitzero"`

	rev int64 // the row's revision when read (0: absent), for saveStateIf
}

func loadState(ctx context.Context, kv KV, row string) (State, error) {
	var s State
	e, err := kv.Get(ctx, statePrefix+row)
	if errors.Is(err, platformdb.ErrNotFound) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("reading %s%s: %w", statePrefix, row, err)
	}
	if err := json.Unmarshal(e.Value, &s); err != nil {
		// A damaged state row only loses bookkeeping: start afresh.
		s = State{}
	}
	s.rev = e.Revision
	return s, nil
}

// saveStateIf writes s only if the row has not changed since s was read:
// what a renewer saves without the lock (an ARI answer) never overwrites
// the backoff another renewer has just written under it. It returns
// platformdb.ErrConflict (wrapped) when the row had changed.
func saveStateIf(ctx context.Context, kv KV, row string, s State) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if _, err := kv.CompareAndSwap(ctx, statePrefix+row, data, s.rev); err != nil {
		return fmt.Errorf("writing %s%s: %w", statePrefix, row, err)
	}
	return nil
}

// saveState writes s; under the renewer lock, kv is fenced by it.
func saveState(ctx context.Context, kv KV, row string, s State) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, statePrefix+row, data); err != nil {
		return fmt.Errorf("writing %s%s: %w", statePrefix, row, err)
	}
	return nil
}

// LoadStates returns the renewal state of every row, for the admin API.
func LoadStates(ctx context.Context, kv KV) (map[string]State, error) {
	entries, _, err := kv.List(ctx, statePrefix)
	if err != nil {
		return nil, err
	}
	out := make(map[string]State, len(entries))
	for _, e := range entries {
		var s State
		if json.Unmarshal(e.Value, &s) == nil {
			out[e.Key[len(statePrefix):]] = s
		}
	}
	return out, nil
}
