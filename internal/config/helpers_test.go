package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// Valid secrets used across tests; each must never show up in output.
const (
	testAtRestKey = "GC7BAkJ0lsqe50IsM8rBvtLQkR9AREmjVfRO5MmdLVM="
	// otherAtRestKey is another valid key (a rotation's previous one).
	otherAtRestKey = "W1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1s="
	testAdminKey   = "admin-key-7f3a9c1e5b"
	testHMACKey    = "c2VjcmV0LWhtYWMta2V5LWZvci1lYWItdGVzdHM"
)

// leBlock is a letsEncrypt block that passes validation on its own.
const leBlock = "letsEncrypt:\n  enabled: true\n  email: ops@example.com\n  atRestKey: " + testAtRestKey + "\n"

// problems returns each message of an Errors, nil when err is nil.
func problems(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, want config.Errors: %v", err, err)
	}
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	if got := err.Error(); got != strings.Join(out, "\n") {
		t.Errorf("Error() = %q, want the messages one per line", got)
	}
	return out
}

func mustLoad(t *testing.T, yml string) *Config {
	t.Helper()
	c, err := LoadBytes("cfg.yml", []byte(yml))
	if err != nil {
		t.Fatalf("LoadBytes: %v", err)
	}
	return c
}

func assertProblems(t *testing.T, yml string, want []string) {
	t.Helper()
	_, err := LoadBytes("cfg.yml", []byte(yml))
	got := problems(t, err)
	if !slices.Equal(got, want) {
		t.Errorf("problems of\n%s\ngot:\n  %s\nwant:\n  %s", yml, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
