package cli

import (
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
)

// keygen prints a fresh letsEncrypt.atRestKey: base64 of 32 random bytes,
// what the spec's node one-liner prints.
func keygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		fmt.Fprintln(stderr, "keygen:", err)
		return exitFailed
	}
	fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(k[:]))
	return exitOK
}
