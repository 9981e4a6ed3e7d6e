package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/pryv/pryv-tls/internal/acme"
	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/daemon"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/doctor"
)

const doctorUsage = `usage: pryv-tls doctor --config FILE [--config FILE ...] [--core-config FILE ...] [--json] [--public] [--dns-port N]

A pre-flight check, made from this core, of what makes ACME's DNS-01 and
HTTP-01 fail in practice, and how to fix each:

  dns             every core's DNS answers the zone authoritatively, SOA serials in step
  ns              the apex NS names resolve (through our DNS) to the cores' addresses
  caa             the apex CAA lets the CA issue for our ACME account, by our methods
  dnssec          (dns.dnssec) every core's DNSKEY matches the DS of "pryv-tls dns ds",
                  its signature validates and is not expired
  http-01 port    letsEncrypt.http01Port answers on every core (when a name uses HTTP-01)
  tls-alpn-01     every core's front offers acme-tls/1 (letsEncrypt.challenge: tls-alpn-01)
  tls             every core's front serves a real, valid certificate for the planned names
  clock           every core's clock (its front's Date on /system/pryv-tls/healthz) within 30s of this machine's
  platformdb      every member healthy (the running core's status)
  acme directory  the ACME directory answers (letsEncrypt.directoryCaFile honoured)
  public dns      (--public) 8.8.8.8 and 1.1.1.1 see the zone's NS; no answer is a warning

The cores are those of the running core's status (their core.ip), each
asked on this core's dns.port (--dns-port N when the public port differs,
e.g. 53 redirected to 5353) and http.port. Each check is bounded by 3s.

Exit status: 0 every check passes (warnings and skipped checks included);
1 a check failed (the list says which and how to fix it); 2 bad usage.
`

// doctorStatusTimeout bounds the read of the running core's status, which
// names the cores to check.
const doctorStatusTimeout = statusAnswerTimeout

func doctorCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	var files stringList
	fs.Var(&files, "config", "configuration `FILE` (as given to serve); repeat it")
	coreFiles := coreConfigFlag(fs)
	asJSON := fs.Bool("json", false, "print the results as JSON: a list of {check, status, detail, fix}")
	public := fs.Bool("public", false, "also ask public resolvers (8.8.8.8, 1.1.1.1) for the domain's NS")
	dnsPort := fs.Int("dns-port", 0, "the cores' DNS port to ask (`N`; default dns.port)")
	fs.Usage = func() { fmt.Fprint(stderr, doctorUsage) }
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	cfg, code := loadConfigWithCore(*coreFiles, files, stderr)
	if cfg == nil {
		return code
	}
	o, err := doctorOptions(cfg, *dnsPort)
	if err != nil {
		fmt.Fprintf(stderr, "pryv-tls doctor: %v\n", err)
		return exitUsage
	}
	o.Public = *public
	results := doctor.Run(context.Background(), o)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			fmt.Fprintf(stderr, "pryv-tls doctor: %v\n", err)
			return exitFailed
		}
	} else {
		printDoctor(stdout, results)
	}
	if doctor.Failed(results) {
		return exitFailed
	}
	return exitOK
}

// doctorOptions gathers what the checks need: the configuration, and what
// the running core knows (its cores, PlatformDB, the DNSSEC keys, the ACME
// account). A core that cannot be reached fails the platformdb check; the
// other checks run on this core alone.
func doctorOptions(cfg *config.Config, dnsPort int) (doctor.Options, error) {
	o := doctor.Options{DNSPort: cfg.DNS.Port, FrontTLS: cfg.TLSEnabled()}
	if dnsPort != 0 {
		o.DNSPort = dnsPort
	}
	if cfg.DNS.Active {
		o.Domain = strings.TrimSuffix(strings.ToLower(cfg.DNS.Domain), ".")
	}
	if _, p, err := net.SplitHostPort(cfg.ListenAddr()); err == nil {
		o.FrontPort, _ = strconv.Atoi(p)
	}
	for _, p := range cfg.Plans() {
		for _, h := range p.Hostnames {
			if !strings.HasPrefix(h, "*.") && !slices.Contains(o.Names, h) {
				o.Names = append(o.Names, h)
			}
		}
		switch {
		case !cfg.LetsEncrypt.Enabled:
		case p.Challenge == config.ChallengeHTTP01 && o.HTTP01Port == 0:
			o.HTTP01Port, o.HTTP01Name = cfg.LetsEncrypt.HTTP01Port, p.Hostnames[0]
		case p.Challenge == config.ChallengeTLSALPN01 && o.TLSALPNName == "":
			o.TLSALPNName = p.Hostnames[0]
		}
	}
	le := cfg.LetsEncrypt
	if le.Enabled {
		o.Directory = daemon.DirectoryURL(le)
		if le.DirectoryCAFile != "" {
			pool, err := caPool(le.DirectoryCAFile)
			if err != nil {
				return o, fmt.Errorf("letsEncrypt.directoryCaFile: %w", err)
			}
			o.DirectoryRoots = pool
		}
	}

	self := doctor.Core{ID: cfg.Core.ID, IP: selfIP(cfg)}
	o.Cores = []doctor.Core{self}
	if !cfg.PlatformDBEnabled() {
		o.PlatformDBSkip = "this configuration runs no PlatformDB (letsEncrypt.enabled, letsEncrypt.atRestKey and dns.active are all off)"
		o.CAASkip = "letsEncrypt.enabled is off"
		return o, nil
	}
	c := newControlClient(cfg, 0, nil)
	c.http.Timeout = doctorStatusTimeout
	var st admin.Status
	if err := c.do(http.MethodGet, "/status", nil, &st); err != nil {
		o.PlatformDBErr = err.Error()
		o.CAASkip = "the running core cannot be reached: its ACME account is not known"
		return o, nil
	}
	o.PlatformDB = platformDBState(st)
	for _, sc := range st.Cores {
		switch {
		case sc.ID == self.ID:
			if sc.IP != "" {
				o.Cores[0].IP = sc.IP
			}
		case sc.IP == "", !sc.Member && !sc.Available:
			// No address to ask, or a core announced but not joined yet.
		default:
			o.Cores = append(o.Cores, doctor.Core{ID: sc.ID, IP: sc.IP})
		}
	}
	if cfg.DNS.Active && cfg.DNS.DNSSEC {
		var res struct {
			Keys []dnsdata.KeyInfo `json:"keys"`
		}
		if err := c.do(http.MethodGet, "/dnssec/keys", nil, &res); err == nil {
			for _, k := range res.Keys {
				o.DS = append(o.DS, k.DS)
			}
		}
		o.DNSSEC = true
	}
	o.CAA, o.CAASkip = caaWant(cfg, c)
	return o, nil
}

// selfIP is this core's public address as the configuration has it.
func selfIP(cfg *config.Config) string {
	for _, ip := range []string{cfg.Core.IP, cfg.DNS.PublicIP, cfg.DNS.IP} {
		if ip != "" && !net.ParseIP(ip).IsUnspecified() {
			return ip
		}
	}
	return "127.0.0.1"
}

func platformDBState(st admin.Status) *doctor.PlatformDBState {
	p := &doctor.PlatformDBState{SelfID: st.Core.ID, Up: st.Core.PlatformDB.Up, Leader: st.Core.PlatformDB.Leader, Unreachable: st.Unreachable}
	for _, c := range st.Cores {
		if c.Member {
			p.Members = append(p.Members, doctor.Member{ID: c.ID, Healthy: c.Healthy})
		}
	}
	return p
}

// caaWant is what the zone's CAA must allow: the options the zone is built
// with (daemon.CAAOptions) and the account the running core holds.
func caaWant(cfg *config.Config, c *controlClient) (*doctor.CAAWant, string) {
	switch {
	case !cfg.LetsEncrypt.Enabled:
		return nil, "letsEncrypt.enabled is off: no ACME here"
	case !cfg.DNS.Active:
		return nil, "dns.active is off"
	}
	operator := len(cfg.DNS.Records.Root.CAA) > 0
	opts := daemon.CAAOptions(cfg)
	if !cfg.LetsEncrypt.CAAOn() && !operator {
		return nil, "letsEncrypt.caa is false and dns.records.root.caa is unset: the zone publishes no CAA record"
	}
	w := &doctor.CAAWant{Identity: cfg.LetsEncrypt.CAAIdentity, Methods: opts.Methods, WildMethods: opts.WildMethods, Operator: operator}
	if !cfg.LetsEncrypt.CAAOn() {
		w.Methods, w.WildMethods = methodsOf(cfg)
	}
	var acct struct {
		URI string `json:"uri"`
	}
	err := c.do(http.MethodGet, "/acme/account?directory="+url.QueryEscape(daemon.DirectoryURL(cfg.LetsEncrypt)), nil, &acct)
	if err != nil && err.Error() != acme.ErrNoAccount.Error() {
		return nil, "the ACME account cannot be read: " + accountError(err).Error()
	}
	w.AccountURI = acct.URI
	return w, ""
}

// methodsOf is caaOptions' split of the plans' challenges when the zone's
// own CAA is off (only the operator's records are then checked).
func methodsOf(cfg *config.Config) (methods, wild []string) {
	on := *cfg
	t := true
	on.LetsEncrypt.CAA = &t
	o := daemon.CAAOptions(&on)
	return o.Methods, o.WildMethods
}

// caPool is the system's roots and the certificates of file.
func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %s", file)
	}
	return pool, nil
}

// printDoctor prints one line per result, then the fixes of what failed
// or warned, then the verdict.
func printDoctor(w io.Writer, rs []doctor.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Check, strings.ToUpper(string(r.Status)), r.Detail)
	}
	_ = tw.Flush()
	var fails, warns []doctor.Result
	for _, r := range rs {
		switch r.Status {
		case doctor.Fail:
			fails = append(fails, r)
		case doctor.Warn:
			warns = append(warns, r)
		}
	}
	list := func(title string, rs []doctor.Result) {
		if len(rs) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s (%d):\n", title, len(rs))
		for _, r := range rs {
			fmt.Fprintf(w, "  - %s: %s\n", r.Check, r.Detail)
			if r.Fix != "" {
				fmt.Fprintf(w, "    fix: %s\n", r.Fix)
			}
		}
	}
	list("Worth a look", warns)
	list("Fails", fails)
	fmt.Fprintln(w)
	if len(fails) == 0 {
		fmt.Fprintln(w, "All checks pass.")
		return
	}
	fmt.Fprintf(w, "%d check(s) fail.\n", len(fails))
}
