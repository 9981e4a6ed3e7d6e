package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/pryv/pryv-tls/internal/certstore"
)

const keysUsage = `usage:
  pryv-tls keys rotate --config FILE [--json]

Re-seals every private key stored in PlatformDB (certificate keys, ACME
account keys) under letsEncrypt.atRestKey, through the running "pryv-tls
serve" (its control socket). Rows sealed under letsEncrypt.atRestKeyPrevious
are rewritten; rows no configured key opens are named and left as they are.
No key is ever printed. Run it once every core has the new atRestKey; remove
atRestKeyPrevious everywhere once it reports nothing left.
`

// keysCmd manages the atRestKey.
func keysCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "rotate" {
		fmt.Fprint(stderr, keysUsage)
		return exitUsage
	}
	fs := flag.NewFlagSet("keys rotate", flag.ContinueOnError)
	var files stringList
	fs.Var(&files, "config", "configuration `FILE` (as given to serve)")
	coreFiles := coreConfigFlag(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	wait := waitFlag(fs)
	fs.SetOutput(stderr)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "pryv-tls keys rotate: unexpected operand(s) %q\n%s", fs.Args(), keysUsage)
		return exitUsage
	}
	cfg, code := loadConfigWithCore(*coreFiles, files, stderr)
	if cfg == nil {
		return code
	}
	c := newControlClient(cfg, *wait, stderr)
	var rep certstore.ResealReport
	if err := c.do(http.MethodPost, "/keys/rotate", nil, &rep); err != nil {
		if strings.Contains(err.Error(), "answered 404") {
			err = errors.New("the running core has no /keys/rotate on its control socket: it is older than this pryv-tls, or runs without letsEncrypt.atRestKey; upgrade it (or set the key) and restart it first")
		}
		fmt.Fprintf(stderr, "pryv-tls keys rotate: %v\n", err)
		return exitFailed
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		printReseal(stdout, rep)
	}
	if len(rep.Left) > 0 {
		fmt.Fprintf(stderr, "pryv-tls keys rotate: %d row(s) left under a key this core does not have; keep letsEncrypt.atRestKeyPrevious until they are resealed, re-imported or deleted\n", len(rep.Left))
		return exitFailed
	}
	return exitOK
}

func printReseal(w io.Writer, rep certstore.ResealReport) {
	for _, row := range rep.Resealed {
		fmt.Fprintf(w, "resealed %s\n", row)
	}
	for _, f := range rep.Left {
		fmt.Fprintf(w, "left as it is: %s: %s\n", f.Row, f.Error)
	}
	fmt.Fprintf(w, "%d row(s) resealed under the current atRestKey, %d already were, %d left\n", len(rep.Resealed), rep.Current, len(rep.Left))
	if len(rep.Left) == 0 {
		fmt.Fprintln(w, "every sealed row opens with letsEncrypt.atRestKey alone: letsEncrypt.atRestKeyPrevious can be removed from every core")
	}
}
