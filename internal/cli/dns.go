package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/atomicfile"
	"github.com/pryv/pryv-tls/internal/dnsdata"
)

const dnsUsage = `usage:
  pryv-tls dns-records list   --config FILE
  pryv-tls dns-records load   --config FILE RECORDS.yml [--dry-run] [--replace]
  pryv-tls dns-records delete --config FILE SUBDOMAIN
  pryv-tls dns-records export --config FILE [OUT.yml]
  pryv-tls users set-core --config FILE USERNAME CORE_ID
  pryv-tls users get      --config FILE USERNAME
  pryv-tls users delete   --config FILE USERNAME
  pryv-tls users list     --config FILE

They reach the running "pryv-tls serve" through its control socket (control.socket).
A core that is still starting (its control socket not there yet, or answering
"starting") is waited for, up to --wait (default 30s; 0: fail at once).

RECORDS.yml:
  records:
    - subdomain: www
      records: {a: [192.0.2.10], aaaa: ['2001:db8::10']}
    - subdomain: _dmarc
      records: {txt: ['v=DMARC1; p=none']}
`

// recordsFile is the YAML of dns-records load / export.
type recordsFile struct {
	Records []dnsdata.Entry `yaml:"records"`
}

// commonCmd parses a subcommand's flags (operands may sit among flags) and
// returns the control client.
func commonCmd(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*controlClient, []string, int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var files stringList
	fs.Var(&files, "config", "configuration `FILE` (as given to serve)")
	coreFiles := coreConfigFlag(fs)
	wait := waitFlag(fs)
	if extra != nil {
		extra(fs)
	}
	fs.SetOutput(stderr)
	operands, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, exitOK
		}
		return nil, nil, exitUsage
	}
	cfg, code := loadConfigWithCore(*coreFiles, files, stderr)
	if cfg == nil {
		return nil, nil, code
	}
	return newControlClient(cfg, *wait, stderr), operands, -1
}

func dnsRecordsCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, dnsUsage)
		return exitUsage
	}
	sub := args[0]
	var dryRun, replace bool
	c, ops, code := commonCmd("dns-records "+sub, args[1:], stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&dryRun, "dry-run", false, "load: show what would change, change nothing")
		fs.BoolVar(&replace, "replace", false, "load: also delete the rows the file does not name")
	})
	if c == nil {
		return code
	}
	want := map[string][2]int{"list": {0, 0}, "load": {1, 1}, "delete": {1, 1}, "export": {0, 1}}
	n, ok := want[sub]
	if !ok || len(ops) < n[0] || len(ops) > n[1] {
		fmt.Fprint(stderr, dnsUsage)
		return exitUsage
	}
	var err error
	switch sub {
	case "list", "export":
		var res recordsFile
		if err = c.do("GET", "/dns-records", nil, &res); err != nil {
			break
		}
		if sub == "list" {
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SUBDOMAIN\tRECORDS")
			for _, e := range res.Records {
				b, _ := yaml.Marshal(e.Records)
				fmt.Fprintf(tw, "%s\t%s\n", e.Subdomain, bytes.ReplaceAll(bytes.TrimSpace(b), []byte("\n"), []byte("; ")))
			}
			err = tw.Flush()
			break
		}
		var out []byte
		if out, err = yaml.Marshal(res); err != nil {
			break
		}
		if len(ops) == 1 {
			err = atomicfile.Write(ops[0], out, 0o644) // whole or not at all: it may replace the last good export
		} else {
			_, err = stdout.Write(out)
		}
	case "load":
		var f recordsFile
		if f, err = readRecordsFile(ops[0]); err != nil {
			break
		}
		var res admin.LoadResult
		if err = c.do("POST", "/dns-records", admin.LoadRequest{Records: f.Records, Replace: replace, DryRun: dryRun}, &res); err != nil {
			err = fmt.Errorf("%s: %w", ops[0], err)
			break
		}
		verb := ""
		if res.DryRun {
			verb = " (dry run: nothing changed)"
		}
		fmt.Fprintf(stdout, "added %v, changed %v, removed %v, unchanged %d%s\n", res.Added, res.Changed, res.Removed, len(res.Unchanged), verb)
	case "delete":
		var res map[string]string
		if err = c.do("DELETE", "/dns-records/"+url.PathEscape(ops[0]), nil, &res); err == nil {
			fmt.Fprintf(stdout, "deleted %s\n", res["deleted"])
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "pryv-tls dns-records %s: %v\n", sub, err)
		return exitFailed
	}
	return exitOK
}

// readRecordsFile decodes strictly: a misspelt key is an error, not a
// silently empty record.
func readRecordsFile(path string) (recordsFile, error) {
	var f recordsFile
	data, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return f, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

func usersCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, dnsUsage)
		return exitUsage
	}
	sub := args[0]
	c, ops, code := commonCmd("users "+sub, args[1:], stderr, nil)
	if c == nil {
		return code
	}
	want := map[string]int{"set-core": 2, "get": 1, "delete": 1, "list": 0}
	n, ok := want[sub]
	if !ok || len(ops) != n {
		fmt.Fprint(stderr, dnsUsage)
		return exitUsage
	}
	var err error
	switch sub {
	case "set-core":
		var u admin.UserInfo
		if err = c.do("PUT", "/users/"+url.PathEscape(ops[0]), map[string]string{"core": ops[1]}, &u); err == nil {
			fmt.Fprintf(stdout, "%s -> %s\n", u.Username, u.Core)
		}
	case "get":
		var u admin.UserInfo
		if err = c.do("GET", "/users/"+url.PathEscape(ops[0]), nil, &u); err == nil {
			fmt.Fprintln(stdout, u.Core)
		}
	case "delete":
		var res map[string]string
		if err = c.do("DELETE", "/users/"+url.PathEscape(ops[0]), nil, &res); err == nil {
			fmt.Fprintf(stdout, "deleted %s\n", res["deleted"])
		}
	case "list":
		var res struct {
			Users []admin.UserInfo `json:"users"`
		}
		if err = c.do("GET", "/users", nil, &res); err == nil {
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "USERNAME\tCORE")
			for _, u := range res.Users {
				fmt.Fprintf(tw, "%s\t%s\n", u.Username, u.Core)
			}
			err = tw.Flush()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "pryv-tls users %s: %v\n", sub, err)
		return exitFailed
	}
	return exitOK
}

const dnssecUsage = `usage:
  pryv-tls dns ds       --config FILE    the zone's DNSSEC keys and the DS record(s) to give the registrar
  pryv-tls dns rollover --config FILE [--finish]

A rollover (dns.dnssec):
  1. pryv-tls dns rollover            adds a new key; both keys are published and both sign
  2. give the registrar the new key's DS (pryv-tls dns ds), remove the old DS, and wait
     the parent's DS TTL (often one day)
  3. pryv-tls dns rollover --finish   deletes the old key (refused until the new key has
     been published for two DNSKEY TTLs)
`

// dnsCmd is "pryv-tls dns ds|rollover": the zone's DNSSEC keys, through the
// running core's control socket.
func dnsCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "ds" && args[0] != "rollover") {
		fmt.Fprint(stderr, dnssecUsage)
		return exitUsage
	}
	sub := args[0]
	var finish bool
	c, ops, code := commonCmd("dns "+sub, args[1:], stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&finish, "finish", false, "rollover: delete the old key (after the registrar has the new DS)")
	})
	if c == nil {
		return code
	}
	if len(ops) != 0 || (finish && sub != "rollover") {
		fmt.Fprint(stderr, dnssecUsage)
		return exitUsage
	}
	if !c.cfg.DNS.DNSSEC {
		fmt.Fprintf(stderr, "pryv-tls dns %s: dns.dnssec is not true in this configuration: the zone is not signed\n", sub)
		return exitFailed
	}
	var err error
	switch {
	case sub == "ds":
		var res struct {
			Keys []dnsdata.KeyInfo `json:"keys"`
		}
		if err = c.do("GET", "/dnssec/keys", nil, &res); err != nil {
			break
		}
		if len(res.Keys) == 0 {
			err = errors.New("no DNSSEC key yet (the core makes it when PlatformDB answers)")
			break
		}
		for i, k := range res.Keys {
			state := "active"
			if len(res.Keys) > 1 {
				state = "old: remove its DS once the new one is at the registrar"
				if i == len(res.Keys)-1 {
					state = "new: give the registrar this DS"
				}
			}
			fmt.Fprintf(stdout, "; key %d (%s), made %s: %s\n%s\n", k.KeyTag, state, k.Created.Format(time.RFC3339), k.Row, k.DS)
		}
	case finish:
		var res struct {
			Deleted []string `json:"deleted"`
		}
		if err = c.do("POST", "/dnssec/rollover/finish", nil, &res); err == nil {
			fmt.Fprintf(stdout, "deleted the old key(s) %v: the zone is signed with the new key only\n", res.Deleted)
		}
	default:
		var res struct {
			Key dnsdata.KeyInfo `json:"key"`
		}
		if err = c.do("POST", "/dnssec/rollover", nil, &res); err == nil {
			fmt.Fprintf(stdout, "new key %d published and signing beside the old one.\nGive the registrar this DS (and remove the old one):\n%s\nthen, after the parent's DS TTL: pryv-tls dns rollover --finish\n", res.Key.KeyTag, res.Key.DS)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "pryv-tls dns %s: %v\n", sub, err)
		return exitFailed
	}
	return exitOK
}
