package authdns

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadName is what CheckRelativeName's errors are (errors.Is).
var ErrBadName = errors.New("not a name the zone can hold")

type badNameError struct{ msg string }

func (e *badNameError) Error() string        { return e.msg }
func (e *badNameError) Is(target error) bool { return target == ErrBadName }

// maxRelativeName leaves room for the domain under the 253 characters of a
// name.
const maxRelativeName = 200

// CheckRelativeName checks a name relative to the zone's apex, as an
// operator writes it in dns.staticEntries or a dns-record row ("www",
// "_dmarc", "_acme-challenge.sub", "*.wild", "*"), and returns it in lower
// case without a trailing dot. Labels are letters, digits, '_' and '-'
// (not first or last, '_' excepted), 1-63 characters; "*" may be the
// first label only (RFC 4592: a wildcard). The apex itself ("", "@") is
// refused: it is dns.records.root. The same check serves the YAML and the
// runtime rows, so both accept the same names.
func CheckRelativeName(s string) (string, error) {
	l := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
	bad := func(why string) error {
		return &badNameError{fmt.Sprintf("%q %s: write one or more DNS labels under the domain (e.g. \"www\", \"_dmarc\" or \"*.wild\")", s, why)}
	}
	if l == "" || l == "@" {
		return "", bad("is the apex (set its records in dns.records.root)")
	}
	if len(l) > maxRelativeName {
		return "", bad(fmt.Sprintf("is longer than %d characters", maxRelativeName))
	}
	for i, label := range strings.Split(l, ".") {
		if label == "*" && i == 0 {
			continue
		}
		if !validLabel(label) {
			return "", bad(fmt.Sprintf("has the label %q (letters, digits, '_', '-' not at either end; 1-63 characters; '*' only as the first label)", label))
		}
	}
	return l, nil
}

func validLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
