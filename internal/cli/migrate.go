package cli

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/daemon"
)

const migrateUsage = `usage:
  pryv-tls migrate-v1 --conf-root DIR [--domain DOMAIN] [--config FILE ...] [--dry-run]

Reads a Pryv.io v1 installation (DIR is its PRYV_CONF_ROOT) and never modifies it:
  DIR/config-leader/ssl/conf/ssl-certificate.yml    acme: {email, isProduction, skipDnsChecks, dnsRebootWaitMs}
  DIR/pryv/nginx/conf/secret/DOMAIN-bundle.crt      the certificate chain
  DIR/pryv/nginx/conf/secret/DOMAIN-key.pem         its private key
checks the certificate, imports it into the running core (through control.socket of
--config, as for serve; not with --dry-run) under *.DOMAIN when it is a wildcard, else
DOMAIN, and prints the equivalent v2 configuration and what replaces v1's scripts.
DOMAIN defaults to the one *-bundle.crt in the secret directory.
`

// v1 paths, relative to PRYV_CONF_ROOT.
const (
	v1SSLConfig = "config-leader/ssl/conf/ssl-certificate.yml"
	v1SecretDir = "pryv/nginx/conf/secret" //nolint:gosec // G101: a directory name, not a credential
	v1BundleExt = "-bundle.crt"
	v1KeyExt    = "-key.pem"
)

const v1Shape = `A Pryv.io v1 configuration root (PRYV_CONF_ROOT: the directory holding run-pryv and
renew-ssl-certificate, on the single-node or reg-master machine) looks like:
  config-leader/ssl/conf/ssl-certificate.yml    leader: {...}, acme: {email, isProduction, skipDnsChecks, dnsRebootWaitMs, ...}
  pryv/nginx/conf/secret/DOMAIN-bundle.crt      the certificate chain
  pryv/nginx/conf/secret/DOMAIN-key.pem         its private key`

// atRestKeyPlaceholder is printed in place of a key: the cores may already
// have one, and the imported certificate is sealed under theirs.
const atRestKeyPlaceholder = "<output of pryv-tls keygen>"

// migrateMaxWait bounds what dnsRebootWaitMs can turn into.
const migrateMaxWait = time.Hour

// migrateError carries the exit code of a refusal or a failure.
type migrateError struct {
	code int
	err  error
}

func (e *migrateError) Error() string { return e.err.Error() }

func refused(format string, args ...any) error {
	return &migrateError{exitUsage, fmt.Errorf(format, args...)}
}

func failed(format string, args ...any) error {
	return &migrateError{exitFailed, fmt.Errorf(format, args...)}
}

// v1Settings is what migrate-v1 uses from ssl-certificate.yml. The file is
// v1's, not ours: keys we do not use are listed, not refused. v1 (pryv
// service-ssl-certificate) reads acme.email and acme.isProduction beside a
// leader: block; a top-level email, as some hand-written files have, is
// taken when acme.email is absent.
type v1Settings struct {
	Email           string
	EmailFrom       string // "acme.email" or "email"
	IsProduction    *bool
	SkipDNSChecks   *bool
	DNSRebootWaitMs *int64
	Ignored         []string
}

// v1Placeholder is the email of v1's default-config.yml: v1 itself refuses
// it (an address needs an "@" after its first character).
const v1Placeholder = "REPLACE_ME"

// v1Install is a checked v1 installation.
type v1Install struct {
	Root, Domain, DomainFrom string
	SSLFile                  string // ssl-certificate.yml
	Settings                 v1Settings
	BundleFile, KeyFile      string
	Chain, Key               []byte
	Leaf                     *x509.Certificate
	Hostname                 string // *.DOMAIN or DOMAIN
	Names                    []string
}

func migrateV1(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("migrate-v1", flag.ContinueOnError)
	root := flags.String("conf-root", "", "the v1 installation's PRYV_CONF_ROOT `DIR` (read only)")
	domain := flags.String("domain", "", "the v1 `DOMAIN` (default: from the only *-bundle.crt in pryv/nginx/conf/secret/)")
	var files stringList
	flags.Var(&files, "config", "configuration `FILE` of the running core (as given to serve); repeatable")
	dryRun := flags.Bool("dry-run", false, "check and print, import nothing (no --config needed)")
	wait := waitFlag(flags)
	flags.Usage = func() { fmt.Fprint(stderr, migrateUsage); flags.PrintDefaults() }
	if code, ok := parseFlags(flags, args, stderr); !ok {
		return code
	}
	if *root == "" {
		fmt.Fprintf(stderr, "pryv-tls migrate-v1: --conf-root DIR is required\n%s", migrateUsage)
		return exitUsage
	}
	var cfg *config.Config
	if len(files) > 0 || !*dryRun {
		if len(files) == 0 {
			fmt.Fprintln(stderr, "pryv-tls migrate-v1: --config FILE is required to import into the running core (or use --dry-run)")
			return exitUsage
		}
		var code int
		if cfg, code = loadConfig(files, stderr); cfg == nil {
			return code
		}
	}

	inst, err := readV1(*root, *domain, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "pryv-tls migrate-v1: %v\n", err)
		var me *migrateError
		if errors.As(err, &me) {
			return me.code
		}
		return exitFailed
	}
	block, err := v2Block(inst.Settings, inst.Domain)
	if err != nil {
		fmt.Fprintf(stderr, "pryv-tls migrate-v1: %s (domain %s): %v\n", inst.SSLFile, inst.Domain, err)
		return exitUsage
	}
	printV1Report(stdout, inst)
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, "Equivalent v2 configuration: add it to every core's override file, with the same")
	fmt.Fprintln(stdout, "atRestKey on every core (the one they already use, if any: the imported certificate")
	fmt.Fprintln(stdout, "is sealed under it) and certRenewer: true on exactly one core:")
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, block)
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, v1Replacements)

	fmt.Fprintln(stdout)
	if *dryRun {
		fmt.Fprintf(stdout, "dry run: %s not imported; the v1 files were read, not modified\n", inst.Hostname)
		return exitOK
	}
	c := newControlClient(cfg, *wait, stderr)
	var ci admin.CertInfo
	req := admin.ImportRequest{Hostname: inst.Hostname, Chain: string(inst.Chain), Key: string(inst.Key), Source: certstore.SourceImport}
	if err := c.do("POST", "/certs", req, &ci); err != nil {
		fmt.Fprintf(stderr, "pryv-tls migrate-v1: importing %s + %s as %s: %v\n(nothing was stored; the configuration above still applies — re-run once the core runs)\n",
			inst.BundleFile, inst.KeyFile, inst.Hostname, err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "stored %s in PlatformDB (serial %s, expires %s, %d days left, source %s); every core serves it now\n",
		ci.Hostname, ci.Serial, ci.ExpiresAt.Format(time.DateOnly), ci.DaysUntilExpiry, ci.Source)
	fmt.Fprintln(stdout, "the v1 files were read, not modified: remove them when v1 is decommissioned")
	return exitOK
}

// readV1 checks the tree's shape, reads the settings and the certificate,
// and checks the pair. It only reads.
func readV1(root, domain string, now time.Time) (*v1Install, error) {
	inst := &v1Install{Root: root, SSLFile: filepath.Join(root, filepath.FromSlash(v1SSLConfig))}
	fi, err := os.Stat(root)
	switch {
	case err != nil:
		return nil, refused("--conf-root %s: %v\n%s", root, unwrapPath(err), v1Shape)
	case !fi.IsDir():
		return nil, refused("--conf-root %s is not a directory\n%s", root, v1Shape)
	}
	sslPath := inst.SSLFile
	secret := filepath.Join(root, filepath.FromSlash(v1SecretDir))
	if err := expect(root, sslPath, v1SSLConfig, false); err != nil {
		return nil, err
	}
	if err := expect(root, secret, v1SecretDir+"/", true); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(sslPath)
	if err != nil {
		return nil, failed("%s: %v", sslPath, unwrapPath(err))
	}
	if inst.Settings, err = parseV1Settings(data); err != nil {
		return nil, refused("%s: %v", sslPath, err)
	}

	// base is DOMAIN as v1 spelled it in the file names.
	base := strings.TrimSuffix(strings.TrimSpace(domain), ".")
	if domain != "" {
		inst.DomainFrom = "--domain"
		if base == "" || strings.ContainsAny(base, `/\*`) {
			return nil, refused("--domain %q is not a domain name (give the platform domain, e.g. pryv.example.com)", domain)
		}
	} else {
		matches, err := filepath.Glob(filepath.Join(secret, "*"+v1BundleExt))
		if err != nil {
			return nil, failed("%s: %v", secret, err)
		}
		switch len(matches) {
		case 0:
			return nil, refused("%s is not a Pryv.io v1 installation with a certificate: no *%s in %s\n%s",
				root, v1BundleExt, secret, v1Shape)
		case 1:
			base = strings.TrimSuffix(filepath.Base(matches[0]), v1BundleExt)
			inst.DomainFrom = "the only *" + v1BundleExt + " in " + v1SecretDir + "/"
		default:
			names := make([]string, len(matches))
			for i, m := range matches {
				names[i] = filepath.Base(m)
			}
			return nil, refused("%s holds %d certificates (%s): say which domain to migrate with --domain DOMAIN",
				secret, len(matches), strings.Join(names, ", "))
		}
	}
	inst.Domain = strings.ToLower(base)
	if inst.Domain == "" {
		return nil, refused("%s: a certificate file named %s%s names no domain; pass --domain DOMAIN", secret, base, v1BundleExt)
	}
	inst.BundleFile = filepath.Join(secret, base+v1BundleExt)
	inst.KeyFile = filepath.Join(secret, base+v1KeyExt)
	for _, f := range []string{inst.BundleFile, inst.KeyFile} {
		rel := v1SecretDir + "/" + filepath.Base(f)
		if err := expect(root, f, rel, false); err != nil {
			return nil, err
		}
	}
	if inst.Chain, err = os.ReadFile(inst.BundleFile); err != nil {
		return nil, failed("%s: %v", inst.BundleFile, unwrapPath(err))
	}
	if inst.Key, err = os.ReadFile(inst.KeyFile); err != nil {
		return nil, failed("%s: %v (run as the user owning the v1 files, or root)", inst.KeyFile, unwrapPath(err))
	}
	pair, err := certs.ParsePair(inst.Chain, inst.Key, now)
	if err != nil {
		return nil, failed("%s + %s: the v1 certificate cannot be used: %v", inst.BundleFile, inst.KeyFile, err)
	}
	inst.Leaf = pair.Leaf
	inst.Names = pair.Leaf.DNSNames
	if len(inst.Names) == 0 && pair.Leaf.Subject.CommonName != "" {
		inst.Names = []string{pair.Leaf.Subject.CommonName}
	}
	hasName := func(want string) bool {
		return slices.ContainsFunc(inst.Names, func(n string) bool { return strings.EqualFold(n, want) })
	}
	switch {
	case hasName("*." + inst.Domain):
		inst.Hostname = "*." + inst.Domain
	case hasName(inst.Domain):
		inst.Hostname = inst.Domain
	default:
		return nil, failed("%s: the certificate covers %s, neither *.%s nor %s (wrong --domain?)",
			inst.BundleFile, strings.Join(inst.Names, ", "), inst.Domain, inst.Domain)
	}
	return inst, nil
}

// expect refuses a tree where rel is missing or of the wrong kind.
func expect(root, path, rel string, dir bool) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return refused("%s is not a Pryv.io v1 installation: %s is missing (expected %s)\n%s", root, rel, path, v1Shape)
	case err != nil:
		return failed("%s: %v", path, unwrapPath(err))
	case dir && !fi.IsDir():
		return refused("%s is not a Pryv.io v1 installation: %s is not a directory (%s)\n%s", root, rel, path, v1Shape)
	case !dir && !fi.Mode().IsRegular():
		return refused("%s is not a Pryv.io v1 installation: %s is not a regular file (%s)\n%s", root, rel, path, v1Shape)
	}
	return nil
}

// unwrapPath drops the path a *fs.PathError repeats.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// parseV1Settings reads v1's ssl-certificate.yml leniently: keys we do not
// use are collected, scalars are taken as v1's JavaScript config would
// (true/"true", 10000/"10000").
func parseV1Settings(data []byte) (v1Settings, error) {
	var s v1Settings
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return s, err
	}
	var top *yaml.Node
	if len(doc.Content) > 0 {
		top = doc.Content[0]
	}
	if top != nil && top.Kind != yaml.MappingNode {
		return s, fmt.Errorf("line %d: expected a mapping (leader: ..., acme: ...)", top.Line)
	}
	var topEmail string
	if top != nil {
		for i := 0; i+1 < len(top.Content); i += 2 {
			k, v := top.Content[i], top.Content[i+1]
			switch k.Value {
			case "email":
				e, err := v1Email(v, "email")
				if err != nil {
					return s, err
				}
				topEmail = e
			case "acme":
				if v.Kind != yaml.MappingNode {
					if v.Tag == "!!null" {
						continue
					}
					return s, fmt.Errorf("line %d: acme: expected a mapping, got %s", v.Line, describeNode(v))
				}
				if err := s.readACME(v); err != nil {
					return s, err
				}
			default:
				s.Ignored = append(s.Ignored, k.Value)
			}
		}
	}
	switch {
	case s.Email != "" && topEmail != "" && !strings.EqualFold(s.Email, topEmail):
		s.Ignored = append(s.Ignored, "email (v1 reads acme.email)")
	case s.Email == "" && topEmail != "":
		s.Email, s.EmailFrom = topEmail, "email"
	}
	if s.Email == "" || s.Email == v1Placeholder {
		return s, fmt.Errorf("no email: acme.email is %s; v1 requires a real address since 1.9.0 and v2 needs it for letsEncrypt.email (the ACME account's contact): set `acme: {email: ops@your-domain}` in it", describeEmail(s.Email))
	}
	return s, nil
}

// readACME reads the acme: block.
func (s *v1Settings) readACME(v *yaml.Node) error {
	for j := 0; j+1 < len(v.Content); j += 2 {
		ak, av := v.Content[j], v.Content[j+1]
		switch ak.Value {
		case "email":
			e, err := v1Email(av, "acme.email")
			if err != nil {
				return err
			}
			s.Email, s.EmailFrom = e, "acme.email"
		case "isProduction", "skipDnsChecks":
			b, err := strconv.ParseBool(scalar(av))
			if err != nil {
				return fmt.Errorf("line %d: acme.%s: expected true or false, got %s", av.Line, ak.Value, describeNode(av))
			}
			if ak.Value == "isProduction" {
				s.IsProduction = &b
			} else {
				s.SkipDNSChecks = &b
			}
		case "dnsRebootWaitMs":
			n, err := strconv.ParseInt(scalar(av), 10, 64)
			if err != nil {
				return fmt.Errorf("line %d: acme.dnsRebootWaitMs: expected a number of milliseconds, got %s", av.Line, describeNode(av))
			}
			s.DNSRebootWaitMs = &n
		default:
			s.Ignored = append(s.Ignored, "acme."+ak.Value)
		}
	}
	return nil
}

// v1Email reads an email scalar (null is no email).
func v1Email(v *yaml.Node, key string) (string, error) {
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!str" && v.Tag != "!!null") {
		return "", fmt.Errorf("line %d: %s: expected an address, got %s", v.Line, key, describeNode(v))
	}
	if v.Tag == "!!null" {
		return "", nil
	}
	return strings.TrimSpace(v.Value), nil
}

func describeEmail(e string) string {
	if e == "" {
		return "not set"
	}
	return "v1's placeholder " + e
}

// staging maps acme.isProduction to letsEncrypt.staging: v1 ordered from
// Let's Encrypt's staging directory unless isProduction was true (its
// default-config.yml says false), v2 from production unless staging is
// true. The setting carries over as it is, unset meaning v1's false.
func (s v1Settings) staging() bool { return s.IsProduction == nil || !*s.IsProduction }

// stagingIssuer tells a certificate from Let's Encrypt's staging CA: its
// intermediates are named "(STAGING) ..." (earlier "Fake LE ...").
func stagingIssuer(leaf *x509.Certificate) bool {
	cn := leaf.Issuer.CommonName
	return strings.Contains(cn, "(STAGING)") || strings.HasPrefix(cn, "Fake LE")
}

func scalar(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return ""
	}
	return strings.TrimSpace(n.Value)
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// propagationTimeout turns v1's acme.dnsRebootWaitMs into
// letsEncrypt.dns01.propagationTimeout. v1 slept that long after restarting
// its DNS containers, then polled them; v2 restarts nothing and polls every
// core's DNS until the value answers, going on as soon as it does, so the
// timeout is an upper bound, not a sleep. The result is therefore never
// below v2's 2m default (a v1 wait of a few seconds would only make v2 give
// up early), keeps a larger v1 value (that deployment's DNS was slow),
// rounded up to whole seconds, and is capped at 1h. Unset, zero or negative
// means the default. why says which case applied.
func propagationTimeout(ms *int64) (d time.Duration, why string) {
	def := config.DefaultPropagationTimeout.Std()
	switch {
	case ms == nil:
		return def, "not set: the default"
	case *ms <= 0:
		return def, "no wait: the default"
	case *ms >= migrateMaxWait.Milliseconds():
		return migrateMaxWait, "capped at " + shortDuration(migrateMaxWait)
	}
	v1 := time.Duration(*ms) * time.Millisecond
	if d = (v1 + time.Second - 1).Truncate(time.Second); d <= def {
		return def, fmt.Sprintf("v1 slept %s after restarting its DNS; v2 restarts nothing and goes on as soon as every core's DNS answers: the default", v1)
	}
	return d, "v1's wait, rounded up to the second; v2 goes on as soon as every core's DNS answers"
}

// shortDuration is d.String() without trailing zero units ("2m", "1h30m").
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// yamlString is s as one YAML scalar.
func yamlString(s string) string {
	b, err := yaml.Marshal(s)
	if err != nil {
		return strconv.Quote(s)
	}
	return strings.TrimSuffix(string(b), "\n")
}

// v2Block is the equivalent v2 configuration. It is checked with the same
// loader as serve (a throwaway key in place of the placeholder), so what is
// printed always loads once a real key is pasted in.
func v2Block(s v1Settings, domain string) (string, error) {
	timeout, _ := propagationTimeout(s.DNSRebootWaitMs)
	skip := s.SkipDNSChecks != nil && *s.SkipDNSChecks
	var b strings.Builder
	fmt.Fprintf(&b, "letsEncrypt:\n")
	fmt.Fprintf(&b, "  enabled: true\n")
	fmt.Fprintf(&b, "  email: %s\n", yamlString(s.Email))
	fmt.Fprintf(&b, "  atRestKey: '%s'   # the same on every core\n", atRestKeyPlaceholder)
	fmt.Fprintf(&b, "  certRenewer: true   # on exactly one core\n")
	fmt.Fprintf(&b, "  staging: %t   # from acme.isProduction\n", s.staging())
	fmt.Fprintf(&b, "  dns01:\n")
	fmt.Fprintf(&b, "    propagationTimeout: %s   # from acme.dnsRebootWaitMs\n", shortDuration(timeout))
	fmt.Fprintf(&b, "    skipPropagationCheck: %t   # from acme.skipDnsChecks\n", skip)
	fmt.Fprintf(&b, "dns:\n")
	fmt.Fprintf(&b, "  active: true\n")
	fmt.Fprintf(&b, "  domain: %s\n", yamlString(domain))
	fmt.Fprintf(&b, "  # port: 53   # where v1's pryvio_dns answered (the default, 5353, needs 53 forwarded to it)\n")
	block := b.String()

	probe := strings.Replace(block, atRestKeyPlaceholder, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 1)
	if _, err := config.LoadBytes("v2 configuration from v1", []byte(probe)); err != nil {
		return "", fmt.Errorf("the v1 settings do not make a valid v2 configuration:\n%s", indent(err.Error()))
	}
	return block, nil
}

func printV1Report(w io.Writer, inst *v1Install) {
	s := inst.Settings
	fmt.Fprintf(w, "Pryv.io v1 installation %s (read only)\n", inst.Root)
	fmt.Fprintf(w, "  %s:\n", v1SSLConfig)
	fmt.Fprintf(w, "    %-21s %s  -> letsEncrypt.email\n", s.EmailFrom, s.Email)
	prod := "not set (false, v1's default)"
	if s.IsProduction != nil {
		prod = strconv.FormatBool(*s.IsProduction)
	}
	fmt.Fprintf(w, "    acme.isProduction     %s  -> letsEncrypt.staging: %t (directory %s)\n",
		prod, s.staging(), daemon.DirectoryURL(config.LetsEncrypt{Staging: s.staging()}))
	switch staging := stagingIssuer(inst.Leaf); {
	case s.staging() && !staging:
		fmt.Fprintf(w, "                          WARNING: v1 ordered from Let's Encrypt's STAGING directory, whose certificates\n")
		fmt.Fprintf(w, "                          no browser trusts, yet this certificate is from %q: if this\n", inst.Leaf.Issuer.CommonName)
		fmt.Fprintf(w, "                          deployment's certificates are trusted, set staging: false\n")
	case s.staging():
		fmt.Fprintf(w, "                          (a staging certificate, as v1 ordered it: set staging: false for trusted ones)\n")
	case staging:
		fmt.Fprintf(w, "                          WARNING: this certificate is from Let's Encrypt's staging CA (%q), not production\n", inst.Leaf.Issuer.CommonName)
	}
	if s.SkipDNSChecks != nil {
		fmt.Fprintf(w, "    acme.skipDnsChecks    %t  -> letsEncrypt.dns01.skipPropagationCheck\n", *s.SkipDNSChecks)
		if *s.SkipDNSChecks {
			fmt.Fprintln(w, "                          (v1 needed it when its certificate container could not reach pryvio_dns;")
			fmt.Fprintln(w, "                          v2 checks its own cores' DNS: consider false)")
		}
	} else {
		fmt.Fprintln(w, "    acme.skipDnsChecks    not set (false)  -> letsEncrypt.dns01.skipPropagationCheck")
	}
	wait := "not set"
	if s.DNSRebootWaitMs != nil {
		wait = strconv.FormatInt(*s.DNSRebootWaitMs, 10)
	}
	timeout, why := propagationTimeout(s.DNSRebootWaitMs)
	fmt.Fprintf(w, "    acme.dnsRebootWaitMs  %s  -> letsEncrypt.dns01.propagationTimeout: %s\n", wait, shortDuration(timeout))
	fmt.Fprintf(w, "                          (%s)\n", why)
	if len(s.Ignored) > 0 {
		fmt.Fprintf(w, "    not used (no v2 equivalent): %s\n", strings.Join(s.Ignored, ", "))
	}
	fmt.Fprintf(w, "  domain %s (from %s)\n", inst.Domain, inst.DomainFrom)
	l := inst.Leaf
	fmt.Fprintf(w, "  %s\n", inst.BundleFile)
	fmt.Fprintf(w, "    covers %s; issuer %s; serial %s\n", strings.Join(inst.Names, " "), l.Issuer.CommonName, l.SerialNumber.Text(16))
	fmt.Fprintf(w, "    valid %s to %s (%d days left)\n", l.NotBefore.UTC().Format(time.DateOnly), l.NotAfter.UTC().Format(time.DateOnly),
		int(time.Until(l.NotAfter).Hours()/24))
	fmt.Fprintf(w, "  %s\n", inst.KeyFile)
	fmt.Fprintf(w, "    matches the certificate; the chain links\n")
	fmt.Fprintf(w, "  stored in v2 as %s\n", inst.Hostname)
}

// v1Replacements lists what v1 had and v2 does not.
const v1Replacements = `No v2 equivalent (and what replaces it):
  renew-ssl-certificate      Strategy A renews by itself (ACME ARI, else renewBeforeDays). A manual
                             renewal: POST /system/admin/certs/force-renew with the admin key
                             (GET /system/admin/certs shows nextRenewal and lastError)
  ensure-permissions         nothing to run: pryv-tls writes key files 0600 itself
  restart-config-follower,   no restart: certificates hot-swap on every core; a proxy in front
  restart-pryv               that needs a reload gets letsEncrypt.onRotateScript
  pryvio_ssl_certificate     gone: the ACME client and the DNS-01 challenge are built in
    (container)
`
