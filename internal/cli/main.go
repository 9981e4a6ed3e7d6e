// Package cli is pryv-tls's command line: one file per subcommand.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Version is set at build time with -ldflags "-X github.com/pryv/pryv-tls/internal/cli.Version=...".
var Version = "dev"

// Exit codes: 0 fine, 1 failed while running, 2 bad usage or configuration.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

const usage = `pryv-tls: public TLS for a Pryv.io core

Usage:
  pryv-tls serve --config FILE [--config FILE ...]   run the core's HTTPS front
  pryv-tls config check --config FILE [...]         validate and print the effective configuration
  pryv-tls status --config FILE [...] [--json] [--no-color]
                                                    is everything fine? (exit 1 when something needs attention)
  pryv-tls certs list|import|export|delete --config FILE ...
                                                    manage the certificates stored in PlatformDB
  pryv-tls dns-records list|load|delete|export --config FILE ...
                                                    manage the runtime DNS records (dns-record/ rows)
  pryv-tls dns ds|rollover [--finish] --config FILE
                                                    the zone's DNSSEC keys: the DS for the registrar, key rollover
  pryv-tls users set-core|get|delete|list --config FILE ...
                                                    manage which core hosts each user (DNS answers)
  pryv-tls migrate-v1 --conf-root DIR [--domain DOMAIN] [--config FILE ...] [--dry-run]
                                                    import a Pryv.io v1 certificate, print the v2 configuration
  pryv-tls migrate-core --config FILE [--rqlite-url URL] [--dry-run]
                                                    import an open-pryv.io core's own ACME certificates and account
  pryv-tls doctor --config FILE [...] [--json] [--public]
                                                    pre-flight: what would make DNS-01 / HTTP-01 fail, and how to fix it
  pryv-tls bootstrap init-ca-holder|new-core|list-tokens|revoke-token|remove-core --config FILE ...
                                                    grow a single core into a cluster
  pryv-tls keygen                                   print a new letsEncrypt.atRestKey
  pryv-tls keys rotate --config FILE                re-seal every stored key under the current atRestKey
  pryv-tls demo [--addr 127.0.0.1:8443]             run the front on a local demo setup (no internet needed)
  pryv-tls version

Run "pryv-tls COMMAND -h" for a command's flags.
`

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(rest, stderr)
	case "config":
		if len(rest) == 0 || rest[0] != "check" {
			fmt.Fprintln(stderr, `usage: pryv-tls config check --config FILE [--config FILE ...]`)
			return exitUsage
		}
		return configCheck(rest[1:], stdout, stderr)
	case "status":
		return statusCmd(rest, stdout, stderr)
	case "doctor":
		return doctorCmd(rest, stdout, stderr)
	case "certs":
		return certsCmd(rest, stdout, stderr)
	case "dns-records":
		return dnsRecordsCmd(rest, stdout, stderr)
	case "dns":
		return dnsCmd(rest, stdout, stderr)
	case "users":
		return usersCmd(rest, stdout, stderr)
	case "migrate-v1":
		return migrateV1(rest, stdout, stderr)
	case "migrate-core":
		return migrateCore(rest, stdout, stderr)
	case "bootstrap":
		return bootstrapCmd(rest, stdout, stderr)
	case "keygen":
		return keygen(rest, stdout, stderr)
	case "keys":
		return keysCmd(rest, stdout, stderr)
	case "demo":
		return demo(rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "pryv-tls", Version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "pryv-tls: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}

// stringList is a repeatable flag (--config a.yml --config b.yml).
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// parseFlags parses fs and turns -h and errors into exit codes (ok=false).
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitUsage, false
	}
	return 0, true
}

// parseInterleaved parses flags that may come after operands, as in
// "certs export --config F HOST --out DIR", and returns the operands.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var operands []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return operands, nil
		}
		operands = append(operands, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
