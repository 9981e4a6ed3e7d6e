// Command pryv-tls runs on every core of a Pryv.io deployment and takes care
// of its public TLS. See README.md.
package main

import (
	"os"

	"github.com/pryv/pryv-tls/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
