package config

import (
	"strconv"
	"strings"
)

// Errors is every problem found in a configuration. Load reports them all at
// once so an operator fixes a file in one pass, not one restart per typo.
type Errors []error

func (e Errors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap lets errors.Is / errors.As look at each problem.
func (e Errors) Unwrap() []error { return e }

// FieldError is one problem about one key.
type FieldError struct {
	File string // empty for problems found after layering (validation)
	Line int
	Path string // dotted key path, e.g. dns.staticEntries[2].subdomain; may be empty
	Msg  string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}
