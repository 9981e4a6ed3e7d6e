package acme

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"

	legoacme "github.com/go-acme/lego/v5/acme"
)

func TestErrorKind(t *testing.T) {
	pd := func(typ string, sub ...string) *legoacme.ProblemDetails {
		p := &legoacme.ProblemDetails{Type: typ, Detail: "x"}
		for _, s := range sub {
			p.SubProblems = append(p.SubProblems, legoacme.SubProblem{Type: s})
		}
		return p
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{&legoacme.RateLimitedError{ProblemDetails: pd(legoacme.RateLimitedErrorType)}, "rateLimited"},
		{fmt.Errorf("obtain: %w", errors.Join(pd(legoacme.RejectedIdentifierErrorType))), "rejectedIdentifier"},
		{pd(legoacme.ConnectionErrorType), "connection"},
		{pd(legoacme.CompoundErrorType, legoacme.CaaErrorType, legoacme.DNSErrorType), "caa"},
		{pd(legoacme.CompoundErrorType), "compound"},
		{pd("urn:ietf:params:acme:error:somethingNew"), "other"},
		{pd("about:blank"), "other"},
		{fmt.Errorf("ACME directory x: %w", &net.OpError{Op: "dial", Err: errors.New("refused")}), "network"},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), "network"},
		{errLockLost, "lockLost"},
		{errors.New("storing the new certificate: boom"), "other"},
	} {
		got := ErrorKind(c.err)
		if got != c.want {
			t.Errorf("ErrorKind(%v) = %q, want %q", c.err, got, c.want)
		}
		if !slices.Contains(ErrorKinds(), got) {
			t.Errorf("ErrorKind returned %q, not in ErrorKinds()", got)
		}
	}
}

func TestAccountGone(t *testing.T) {
	pd := func(typ, detail string) error {
		return fmt.Errorf("acme: error: 400 :: POST :: /order-plz :: %w", &legoacme.ProblemDetails{Type: "urn:ietf:params:acme:error:" + typ, Detail: detail})
	}
	tests := []struct {
		err  error
		want bool
	}{
		{pd("accountDoesNotExist", "Account https://ca/acct/1 not found."), true},
		{pd("unauthorized", `Account is not valid, has status "deactivated"`), true},
		{pd("unauthorized", "the key authorization does not match"), false},
		{pd("rateLimited", "too many"), false},
		{errors.New("connection refused"), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := accountGone(tt.err); got != tt.want {
			t.Errorf("accountGone(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
