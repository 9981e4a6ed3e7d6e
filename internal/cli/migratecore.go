package cli

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pryv/pryv-tls/internal/acme"
	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/corerows"
	"github.com/pryv/pryv-tls/internal/daemon"
	"github.com/pryv/pryv-tls/internal/rqlite"
)

const migrateCoreUsage = `usage:
  pryv-tls migrate-core --config FILE [--core-config FILE ...] [--rqlite-url URL]
                        [--directory-url URL] [--dry-run] [--wait DURATION]

Reads what an open-pryv.io v2 core's own ACME (letsEncrypt) left in its rqlite PlatformDB,
and never modifies it:
  tls-cert/<hostname>   each certificate (leaf, issuers, sealed key)
  tls-acme-account      the Let's Encrypt account (sealed key, account URL, email)
opens them with letsEncrypt.atRestKey of --config (it must be the core's own key), checks
each certificate as "certs import" does, and imports them (source "core") and the account
into the running "pryv-tls serve" through control.socket of --config (not with --dry-run).
The account is stored for the ACME directory pryv-tls uses (--directory-url, else
letsEncrypt.directoryUrl / staging), so the renewer orders with it and registers none.
Running it again changes nothing; a newer certificate pryv-tls holds is never replaced.
A core still starting is waited for up to --wait (not with --dry-run, which does without it).
rqlite: --rqlite-url, else storages.engines.rqlite.url (read from --core-config too).
`

// migrateCoreRetries are the pauses before reading rqlite again when it has
// no leader (an election takes a second or two).
var migrateCoreRetries = []time.Duration{time.Second, 2 * time.Second}

// migrateCoreReadTimeout bounds reading every row.
const migrateCoreReadTimeout = 60 * time.Second

func migrateCore(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate-core", flag.ContinueOnError)
	var files, coreFiles stringList
	fs.Var(&files, "config", "pryv-tls's configuration `FILE` (as given to serve); repeatable")
	fs.Var(&coreFiles, "core-config", "open-pryv.io's own configuration `FILE`, read first and only for the keys both share (storages.engines.rqlite.url); repeatable")
	rqliteURL := fs.String("rqlite-url", "", "the core's rqlite `URL` (default: storages.engines.rqlite.url)")
	directory := fs.String("directory-url", "", "the ACME directory `URL` the core's account was registered at (default: the one pryv-tls uses)")
	dryRun := fs.Bool("dry-run", false, "read, check and print; import nothing")
	wait := waitFlag(fs)
	fs.Usage = func() { fmt.Fprint(stderr, migrateCoreUsage); fs.PrintDefaults() }
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	cfg, code := loadConfigWithCore(coreFiles, files, stderr)
	if cfg == nil {
		return code
	}
	if *dryRun {
		*wait = 0 // a dry run does without the running core rather than wait for it
	}
	m, err := newCoreMigration(cfg, *rqliteURL, *directory)
	if m != nil {
		m.ctl = newControlClient(cfg, *wait, stderr)
	}
	if err == nil {
		err = m.run(stdout, *dryRun)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pryv-tls migrate-core: %v\n", err)
		var me *migrateError
		if errors.As(err, &me) {
			return me.code
		}
		return exitFailed
	}
	return exitOK
}

// coreMigration is one run of migrate-core.
type coreMigration struct {
	cfg       *config.Config
	key       []byte // the raw letsEncrypt.atRestKey: the core's envelope key
	keys      *atrest.Keyring
	db        *rqlite.Client
	directory string
	dirFrom   string
	ctl       *controlClient
	now       time.Time
}

func newCoreMigration(cfg *config.Config, rqliteURL, directory string) (*coreMigration, error) {
	m := &coreMigration{cfg: cfg, now: time.Now()}
	if cfg.LetsEncrypt.AtRestKey.Reveal() == "" {
		return nil, refused("letsEncrypt.atRestKey is not set in --config: set it to the core's own letsEncrypt.atRestKey (its rows are sealed with it, and pryv-tls seals what it imports with it)")
	}
	var err error
	if m.key, err = cfg.LetsEncrypt.AtRestKeyBytes(); err != nil {
		return nil, refused("letsEncrypt.atRestKey: %v", err)
	}
	if m.keys, err = atrest.New(m.key); err != nil {
		return nil, refused("letsEncrypt.atRestKey: %v", err)
	}
	from := "--rqlite-url"
	if rqliteURL == "" {
		rqliteURL, from = cfg.Storages.Engines.RQLite.URL, "storages.engines.rqlite.url"
	}
	if m.db, err = rqlite.New(rqlite.Options{URL: rqliteURL, Level: rqlite.Strong}); err != nil {
		return nil, refused("%s: %v", from, err)
	}
	m.directory, m.dirFrom = directory, "--directory-url"
	if directory == "" {
		m.directory, m.dirFrom = daemon.DirectoryURL(cfg.LetsEncrypt), directorySource(cfg.LetsEncrypt)
	}
	if u, err := url.Parse(m.directory); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, refused("%s %q is not an https URL (an ACME directory, e.g. %s)", m.dirFrom, m.directory, daemon.DirectoryURL(config.LetsEncrypt{}))
	}
	return m, nil
}

func directorySource(le config.LetsEncrypt) string {
	switch {
	case le.DirectoryURL != "":
		return "letsEncrypt.directoryUrl"
	case le.Staging:
		return "letsEncrypt.staging"
	}
	return "Let's Encrypt production: letsEncrypt.directoryUrl and staging unset"
}

// certPlan is what will be done with one tls-cert/ row.
type certPlan struct {
	row    *corerows.Cert
	leaf   *x509.Certificate
	rec    *certstore.Record // as pryv-tls would store it (checked like certs import)
	have   *admin.CertInfo   // pryv-tls's record for the hostname, if known
	action string            // actImport, actReplace, actUnchanged, actKeep, actExpired
}

const (
	actImport    = "import"
	actReplace   = "replace"
	actUnchanged = "unchanged"
	actKeep      = "keep"
	actExpired   = "skip"
)

func (m *coreMigration) run(w io.Writer, dryRun bool) error {
	rows, err := m.read()
	if err != nil {
		return err
	}
	if len(rows.Bad) > 0 {
		return m.badRows(rows.Bad)
	}
	if len(rows.Certs) == 0 && rows.Account == nil {
		return refused("rqlite at %s holds no %s row and no %s: nothing to migrate (was letsEncrypt.enabled on the core, and is this its rqlite?)",
			m.db.URL(), corerows.CertPrefix+"*", corerows.AccountRow)
	}
	plans, err := m.checkCerts(rows.Certs)
	if err != nil {
		return err
	}
	var acct *acme.ImportedAccount
	if a := rows.Account; a != nil {
		acct = &acme.ImportedAccount{Directory: m.directory, Email: a.Email, URI: a.URL, Key: a.Key}
		if err := acct.Check(); err != nil {
			return refused("%s: %v", corerows.AccountRow, err)
		}
	}

	// What pryv-tls holds already decides each action; a dry run without
	// the running core says so rather than failing.
	reached := true
	haveCerts, err := m.currentCerts()
	if err != nil {
		if !dryRun {
			return &migrateError{exitFailed, fmt.Errorf("%w\n(nothing was imported)", err)}
		}
		reached = false
	}
	var haveAcct *acme.AccountInfo
	if reached && acct != nil {
		if haveAcct, err = m.currentAccount(); err != nil {
			if !dryRun {
				return &migrateError{exitFailed, fmt.Errorf("%w\n(nothing was imported)", err)}
			}
			reached = false
		}
	}
	for _, p := range plans {
		p.decide(haveCerts)
	}

	m.printPlan(w, plans, accountPlan{core: rows.Account, have: haveAcct}, reached)
	if dryRun {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "dry run: nothing imported; the core's rows were read, not modified\n")
		return nil
	}
	fmt.Fprintln(w)
	stored := 0
	for _, p := range plans {
		if p.action != actImport && p.action != actReplace {
			continue
		}
		var ci admin.CertInfo
		req := admin.ImportRequest{Hostname: p.rec.Hostname, Chain: p.rec.Chain, Key: string(p.row.KeyPEM), Source: certstore.SourceCore}
		if err := m.ctl.do(http.MethodPost, "/certs", req, &ci); err != nil {
			return &migrateError{exitFailed, fmt.Errorf("importing %s: %w\n(%d certificate(s) stored before it; re-run: what is stored is left as it is)", p.row.Row, err, stored)}
		}
		stored++
		fmt.Fprintf(w, "stored %s (serial %s, expires %s, %d days left, source %s); every core serves it now\n",
			ci.Hostname, ci.Serial, ci.ExpiresAt.Format(time.DateOnly), ci.DaysUntilExpiry, ci.Source)
	}
	if acct != nil {
		res, err := m.importAccount(rows.Account)
		if err != nil {
			return &migrateError{exitFailed, fmt.Errorf("importing %s: %w", corerows.AccountRow, err)}
		}
		switch res.Result {
		case acme.AccountImported:
			fmt.Fprintf(w, "stored the ACME account %s for %s; the renewer orders with it and registers no new one\n", res.Account.URI, res.Account.Directory)
		case acme.AccountUnchanged:
			fmt.Fprintf(w, "the ACME account %s was already stored for %s: unchanged\n", res.Account.URI, res.Account.Directory)
		default:
			fmt.Fprintf(w, "kept pryv-tls's own ACME account %s for %s (the core's %s was not imported)\n", res.Account.URI, res.Account.Directory, rows.Account.URL)
		}
	}
	if stored == 0 && len(plans) > 0 {
		fmt.Fprintln(w, "no certificate to store: pryv-tls already holds these or newer ones, or they expired")
	}
	fmt.Fprintln(w, "the core's rows were read, not modified: keep the core's letsEncrypt.enabled false from now on (see docs/operator-guide/migrate-core.md)")
	return nil
}

// read reads the rows, again after a pause while rqlite has no leader.
func (m *coreMigration) read() (*corerows.Rows, error) {
	ctx, cancel := context.WithTimeout(context.Background(), migrateCoreReadTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		rows, err := corerows.Read(ctx, m.db, m.key)
		if err == nil {
			return rows, nil
		}
		if rqlite.IsRetryable(err) && attempt < len(migrateCoreRetries) {
			time.Sleep(migrateCoreRetries[attempt])
			continue
		}
		return nil, failed("cannot read the core's rows from rqlite at %s: %v\n(nothing was imported; is the core's rqlite running and reachable from here? --rqlite-url or storages.engines.rqlite.url)", m.db.URL(), err)
	}
}

// badRows refuses the run: nothing is imported while a row does not open
// or parse, so a half migration never happens silently.
func (m *coreMigration) badRows(bad []error) error {
	var b strings.Builder
	allSealed := true
	for _, err := range bad {
		fmt.Fprintf(&b, "\n  %v", err)
		if !errors.Is(err, corerows.ErrOpen) {
			allSealed = false
		}
	}
	hint := "fix or delete these rows in the core's rqlite, or migrate without them: nothing was imported"
	if allSealed {
		hint = "letsEncrypt.atRestKey in --config must be the core's own letsEncrypt.atRestKey (copy it from the core's configuration): nothing was imported"
	}
	return refused("%d of the core's rows cannot be used:%s\n%s", len(bad), b.String(), hint)
}

// checkCerts checks each pair exactly as "certs import" does
// (certstore.NewRecord), the expired ones aside.
func (m *coreMigration) checkCerts(rows []*corerows.Cert) ([]*certPlan, error) {
	var plans []*certPlan
	var bad []string
	for _, c := range rows {
		p := &certPlan{row: c}
		b, _ := pem.Decode([]byte(c.CertPEM))
		if b == nil || b.Type != "CERTIFICATE" {
			bad = append(bad, fmt.Sprintf("%s: certPem holds no PEM certificate", c.Row))
			continue
		}
		leaf, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: certPem: %v", c.Row, err))
			continue
		}
		p.leaf = leaf
		if m.now.After(leaf.NotAfter) {
			p.action = actExpired
			plans = append(plans, p)
			continue
		}
		rec, _, err := certstore.NewRecord(m.keys, certstore.Input{Hostname: c.Hostname, Source: certstore.SourceCore, Chain: c.FullChain(), Key: c.KeyPEM}, m.now)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", c.Row, err))
			continue
		}
		p.rec = rec
		plans = append(plans, p)
	}
	if len(bad) > 0 {
		return nil, refused("%d of the core's certificates cannot be served:\n  %s\nnothing was imported", len(bad), strings.Join(bad, "\n  "))
	}
	return plans, nil
}

// decide picks the action against pryv-tls's records (nil: not known).
func (p *certPlan) decide(have map[string]admin.CertInfo) {
	if p.action == actExpired {
		return
	}
	p.action = actImport
	if have == nil {
		return
	}
	ci, ok := have[p.rec.Hostname]
	if !ok {
		return
	}
	p.have = &ci
	switch {
	case strings.EqualFold(ci.Serial, p.rec.Serial) && ci.Issuer == p.rec.Issuer:
		p.action = actUnchanged
	case !ci.ExpiresAt.Before(p.rec.ExpiresAt):
		p.action = actKeep
	default:
		p.action = actReplace
	}
}

func (m *coreMigration) currentCerts() (map[string]admin.CertInfo, error) {
	var res struct {
		Certs []admin.CertInfo `json:"certs"`
	}
	if err := m.ctl.do(http.MethodGet, "/certs", nil, &res); err != nil {
		return nil, err
	}
	out := make(map[string]admin.CertInfo, len(res.Certs))
	for _, ci := range res.Certs {
		out[strings.ToLower(ci.Hostname)] = ci
	}
	return out, nil
}

// errNoAccountRoute: the running pryv-tls predates /acme/account.
var errNoAccountRoute = errors.New("the running core has no /acme/account on its control socket: it is older than this pryv-tls; upgrade it first")

// accountError tells "no account" and "no such route" apart in a 404.
func accountError(err error) error {
	if err != nil && strings.Contains(err.Error(), "answered 404") {
		return errNoAccountRoute
	}
	return err
}

// currentAccount is pryv-tls's account for the directory, nil if none.
func (m *coreMigration) currentAccount() (*acme.AccountInfo, error) {
	var info acme.AccountInfo
	err := m.ctl.do(http.MethodGet, "/acme/account?directory="+url.QueryEscape(m.directory), nil, &info)
	if err != nil && err.Error() == acme.ErrNoAccount.Error() {
		return nil, nil
	}
	if err != nil {
		return nil, accountError(err)
	}
	return &info, nil
}

func (m *coreMigration) importAccount(a *corerows.Account) (*acme.AccountImportResponse, error) {
	req := acme.AccountImportRequest{Directory: m.directory, Email: a.Email, URI: a.URL, Key: string(a.KeyPEM)}
	var res acme.AccountImportResponse
	if err := m.ctl.do(http.MethodPost, "/acme/account", req, &res); err != nil {
		return nil, accountError(err)
	}
	if res.Account == nil {
		return nil, errors.New("the core's answer names no account")
	}
	return &res, nil
}

// accountPlan is the core's ACME account row (nil: none) and pryv-tls's
// account for the same directory (nil: none, or not known).
type accountPlan struct {
	core *corerows.Account
	have *acme.AccountInfo
}

func (m *coreMigration) printPlan(w io.Writer, plans []*certPlan, acct accountPlan, reached bool) {
	a, have := acct.core, acct.have
	renewed := map[string]string{}
	for _, p := range m.cfg.Plans() {
		renewed[p.Row()] = p.From
	}
	fmt.Fprintf(w, "open-pryv.io core rows in rqlite at %s (read only)\n", m.db.URL())
	for _, p := range plans {
		l := p.leaf
		fmt.Fprintf(w, "  %s\n", p.row.Row)
		fmt.Fprintf(w, "    covers %s; issuer %s; serial %s\n", strings.Join(leafNames(l), " "), issuerOf(l), l.SerialNumber.Text(16))
		fmt.Fprintf(w, "    valid %s to %s (%d days left)\n", l.NotBefore.UTC().Format(time.DateOnly), l.NotAfter.UTC().Format(time.DateOnly),
			int(l.NotAfter.Sub(m.now).Hours()/24))
		if p.action == actExpired {
			fmt.Fprintf(w, "    -> skip: expired on %s (pryv-tls orders a new one if its topology names it)\n", l.NotAfter.UTC().Format(time.DateOnly))
			continue
		}
		fmt.Fprintf(w, "    key matches, chain links (%d certificate(s), served as the core served it)\n", strings.Count(p.rec.Chain, "BEGIN CERTIFICATE"))
		if from, ok := renewed[p.rec.Hostname]; ok {
			fmt.Fprintf(w, "    renewed by pryv-tls from now on (%s)\n", from)
		} else {
			fmt.Fprintf(w, "    not in pryv-tls's topology: served until it expires, never renewed\n")
		}
		switch p.action {
		case actUnchanged:
			fmt.Fprintf(w, "    -> unchanged: pryv-tls already holds this certificate (source %s)\n", p.have.Source)
		case actKeep:
			fmt.Fprintf(w, "    -> keep pryv-tls's: it holds a newer one (serial %s, expires %s, source %s)\n",
				p.have.Serial, p.have.ExpiresAt.Format(time.DateOnly), p.have.Source)
		case actReplace:
			fmt.Fprintf(w, "    -> replace pryv-tls's older one (serial %s, expires %s) as %s, source %s\n",
				p.have.Serial, p.have.ExpiresAt.Format(time.DateOnly), p.rec.Hostname, certstore.SourceCore)
		default:
			if reached {
				fmt.Fprintf(w, "    -> import as %s, source %s\n", p.rec.Hostname, certstore.SourceCore)
			} else {
				fmt.Fprintf(w, "    -> import as %s, source %s (the running core was not reached: whether it holds one is not known)\n", p.rec.Hostname, certstore.SourceCore)
			}
		}
	}
	if a == nil {
		fmt.Fprintf(w, "  %s: none (pryv-tls registers its own account at its first order)\n", corerows.AccountRow)
		return
	}
	fmt.Fprintf(w, "  %s\n", corerows.AccountRow)
	email := a.Email
	if email == "" {
		email = "no email"
	}
	fmt.Fprintf(w, "    account %s (%s), %s key\n", a.URL, email, a.KeyType())
	fmt.Fprintf(w, "    directory %s (from %s)\n", m.directory, m.dirFrom)
	switch {
	case !reached:
		fmt.Fprintln(w, "    -> import (the running core was not reached: whether it holds one is not known)")
	case have == nil:
		fmt.Fprintln(w, "    -> import: pryv-tls has no account for this directory; its renewer will order with this one")
	case have.URI == a.URL:
		fmt.Fprintln(w, "    -> unchanged: pryv-tls already holds this account")
	default:
		fmt.Fprintf(w, "    -> keep pryv-tls's own account %s (registered or imported before)\n", have.URI)
	}
}

func leafNames(l *x509.Certificate) []string {
	if len(l.DNSNames) > 0 {
		return l.DNSNames
	}
	return []string{l.Subject.CommonName}
}

func issuerOf(l *x509.Certificate) string {
	if l.Issuer.CommonName != "" {
		return l.Issuer.CommonName
	}
	return l.Issuer.String()
}
