package cli

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// configCheck validates like serve does, then prints the effective
// configuration (secrets redacted) and what the topology derives.
func configCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	var files stringList
	fs.Var(&files, "config", "configuration `FILE`; repeat it, later files override earlier ones key by key")
	var coreFiles stringList
	fs.Var(&coreFiles, "core-config", "open-pryv.io's own configuration `FILE`, read first and only for the keys both share; repeat it (default, then override)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	cfg, code := loadConfigWithCore(coreFiles, files, stderr)
	if cfg == nil {
		return code
	}
	out, err := cfg.Redacted()
	if err != nil {
		fmt.Fprintln(stderr, "config check:", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "# effective configuration (secrets redacted)\n%s\n", out)

	fmt.Fprintln(stdout, "# derived from the topology")
	switch {
	case !cfg.TLSEnabled():
		fmt.Fprintf(stdout, "front: plain HTTP on %s (no http.ssl and letsEncrypt disabled: a proxy in front terminates TLS, Strategy B)\n", cfg.ListenAddr())
	default:
		fmt.Fprintf(stdout, "front: HTTPS on %s\n", cfg.ListenAddr())
		cert, key, ca := cfg.CertFiles()
		if cert != "" {
			fmt.Fprintf(stdout, "certificate files: %s + %s", cert, key)
			if ca != "" {
				fmt.Fprintf(stdout, " (+ chain %s)", ca)
			}
			fmt.Fprintln(stdout)
		}
	}
	plans := cfg.Plans()
	if len(plans) == 0 {
		fmt.Fprintln(stdout, "certificates: none derived (set dnsLess.publicUrl, core.url or dns.domain)")
	}
	for _, p := range plans {
		fmt.Fprintf(stdout, "certificate: %s  challenge: %s  (from %s)\n", strings.Join(p.Hostnames, ", "), strings.ToUpper(p.Challenge), p.From)
	}
	fmt.Fprintf(stdout, "upstreams: api %s, hfs %s\n", cfg.Upstreams.API, cfg.Upstreams.HFS)
	fmt.Fprintln(stdout, "configuration OK")
	return exitOK
}
