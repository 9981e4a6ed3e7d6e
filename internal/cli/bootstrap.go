package cli

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pryv/pryv-tls/internal/atomicfile"
	"github.com/pryv/pryv-tls/internal/clusterca"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/daemon"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/join"
)

const bootstrapUsage = `usage:
  pryv-tls bootstrap init-ca-holder --config FILE ... [--out FILE]
  pryv-tls bootstrap new-core --config FILE ... --id ID --ip IP [--url URL] [--hosting NAME] [--out FILE] [--token-ttl 24h]
  pryv-tls bootstrap list-tokens --config FILE ...
  pryv-tls bootstrap revoke-token --config FILE ... ID
  pryv-tls bootstrap remove-core --config FILE ... [--force] ID
init-ca-holder on a running core switches it live (no restart); with no core
running it prepares the next start. new-core, list-tokens, revoke-token and
remove-core reach the running core through its control socket; a core that is still starting (its control socket not there yet, or answering
"starting") is waited for, up to --wait (default 30s; 0: fail at once).
On the new core:
  pryv-tls serve --config FILE --bootstrap BUNDLE --bootstrap-passphrase-file FILE
`

// clusterOverrideName is the override file the cluster commands write next
// to the operator's last configuration file.
const clusterOverrideName = "cluster-config.yml"

var coreIDRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func bootstrapCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, bootstrapUsage)
		return exitUsage
	}
	sub := args[0]
	var files stringList
	fs := flag.NewFlagSet("bootstrap "+sub, flag.ContinueOnError)
	fs.Var(&files, "config", "configuration `FILE` (as given to serve)")
	coreFiles := coreConfigFlag(fs)
	out := fs.String("out", "", "init-ca-holder: the override file to write; new-core: the bundle file")
	id := fs.String("id", "", "new-core: the new core's id")
	ip := fs.String("ip", "", "new-core: the new core's address (the others reach it there)")
	coreURL := fs.String("url", "", "new-core: the new core's public URL (core.url)")
	hosting := fs.String("hosting", "", "new-core: its hosting name")
	ttl := fs.Duration("token-ttl", 24*time.Hour, "new-core: how long the join token is valid")
	force := fs.Bool("force", false, "remove-core: remove even the core it runs on, or the last voting member")
	wait := waitFlag(fs)
	fs.SetOutput(stderr)
	operands, err := parseInterleaved(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	cfg, code := loadConfigWithCore(*coreFiles, files, stderr)
	if cfg == nil {
		return code
	}
	c := newControlClient(cfg, *wait, stderr)
	run := bootstrapRun{c: c, cfg: cfg, files: files, stdout: stdout, stderr: stderr}
	switch {
	case sub == "init-ca-holder" && len(operands) == 0:
		err = initCAHolder(run, *out)
	case sub == "new-core" && len(operands) == 0:
		err = newCore(run, newCoreArgs{id: *id, ip: *ip, coreURL: *coreURL, hosting: *hosting, out: *out, ttl: *ttl})
	case sub == "remove-core" && len(operands) == 1:
		err = removeCore(c, operands[0], *force, stdout)
	case sub == "list-tokens" && len(operands) == 0:
		err = listTokens(c, stdout)
	case sub == "revoke-token" && len(operands) == 1:
		var res map[string]string
		if err = c.do("DELETE", "/cluster/join-tokens/"+url.PathEscape(operands[0]), nil, &res); err == nil {
			fmt.Fprintf(stdout, "revoked the join token of %s\n", operands[0])
		}
	default:
		fmt.Fprint(stderr, bootstrapUsage)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "pryv-tls bootstrap %s: %v\n", sub, err)
		return exitFailed
	}
	return exitOK
}

// bootstrapRun is what every bootstrap subcommand works with: the running
// core's control socket, the configuration loaded from files, the output.
type bootstrapRun struct {
	c              *controlClient
	cfg            *config.Config
	files          []string // the --config files, as given
	stdout, stderr io.Writer
}

// newCoreArgs are new-core's flags.
type newCoreArgs struct {
	id, ip, coreURL, hosting string
	out                      string // the bundle file ("": <id>-join.bundle)
	ttl                      time.Duration
}

// initCAHolder makes this core the CA holder: the cluster CA, and an
// override that binds PlatformDB on core.ip so other cores can reach it.
// When the core runs, it is asked to switch live (its member reopened on
// core.ip with a node certificate from the cluster CA, its join listener
// started); otherwise the override is for its next start. It can be run
// again: the CA is kept, the override rewritten the same.
func initCAHolder(run bootstrapRun, out string) error {
	c, cfg, files, stdout := run.c, run.cfg, run.files, run.stdout
	if cfg.Core.ID == "" || cfg.Core.IP == "" {
		return errors.New("set core.id and core.ip (the address the other cores reach this one at) first")
	}
	if !coreIDRE.MatchString(cfg.Core.ID) {
		return fmt.Errorf("core.id %q: must be one DNS label (it names the PlatformDB member and {id}.{domain})", cfg.Core.ID)
	}
	ca, err := clusterca.LoadOrCreateCA(cfg.Cluster.CA.Path)
	if err != nil {
		return err
	}
	if out == "" {
		out = filepath.Join(filepath.Dir(files[len(files)-1]), clusterOverrideName)
	}
	req := join.CAHolderRequest{
		PeerAddress:   net.JoinHostPort(cfg.Core.IP, port(cfg.PlatformDB.PeerAddress)),
		ClientAddress: net.JoinHostPort(cfg.Core.IP, port(cfg.PlatformDB.ClientAddress)),
	}
	override := map[string]any{
		"platformDB": map[string]any{"peerAddress": req.PeerAddress, "clientAddress": req.ClientAddress},
	}
	if err := writeOverride(out, "written by pryv-tls bootstrap init-ca-holder: PlatformDB on core.ip, for the other cores", override); err != nil {
		return err
	}
	fmt.Fprintf(stdout, `cluster CA: %s (fingerprint %s)
  certificate %s, key %s
override:   %s
`, cfg.Cluster.CA.Path, ca.Fingerprint(), ca.CertFile(), filepath.Join(cfg.Cluster.CA.Path, clusterca.CAKeyName), out)
	if filepath.Base(ca.CertFile()) != clusterca.CoreCACertName {
		// LoadOrCreateCA could not add ca.crt: without it, open-pryv.io's
		// bootstrap would make a new CA key over this one.
		crt := filepath.Join(cfg.Cluster.CA.Path, clusterca.CoreCACertName)
		fmt.Fprintf(stdout, "Before running open-pryv.io's bootstrap on this host, give it this CA: cp -p %s %s (it would otherwise write a new %s over this one)\n",
			ca.CertFile(), crt, clusterca.CAKeyName)
	}
	if abs, err := filepath.Abs(out); err == nil {
		req.Override = abs
	}
	if !coreRunning(cfg) {
		fmt.Fprintf(stdout, `No core is running with this configuration. Start it with the override, so PlatformDB listens on %s with node certificates from the cluster CA:
  pryv-tls serve %s--config %s
Then add cores with: pryv-tls bootstrap new-core --id ID --ip IP ...
`, cfg.Core.IP, configFlags(files), out)
		return nil
	}
	var res join.CAHolderResponse
	if err := c.do(http.MethodPost, join.CAHolderPath, req, &res); err != nil {
		return fmt.Errorf("the running core did not switch (the CA and the override are written; restart it with --config %s to switch instead): %w", out, err)
	}
	what := "switched live, without a restart"
	if !res.Changed {
		what = "already was the CA holder there"
	}
	fmt.Fprintf(stdout, `The running core %s: PlatformDB member %s at %s (clients %s), node certificate from the cluster CA; joins answered at %s.
For its next start, add the override to its command line (the unit's ExecStart=):
  pryv-tls serve %s--config %s
Add cores now with: pryv-tls bootstrap new-core --id ID --ip IP ...
`, what, res.Member, res.PeerURL, res.ClientAddress, res.JoinAddress, configFlags(files), out)
	return nil
}

// coreRunning tells whether a core answers on the control socket (a
// leftover socket file of a stopped core does not).
func coreRunning(cfg *config.Config) bool {
	if !cfg.PlatformDBEnabled() {
		return false
	}
	conn, err := net.DialTimeout("unix", cfg.Control.Socket, time.Second)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

// removeCore takes a core out of the cluster through the running core.
func removeCore(c *controlClient, id string, force bool, stdout io.Writer) error {
	if !coreIDRE.MatchString(id) {
		return fmt.Errorf("core id %q: must be one DNS label (lower case letters, digits, hyphens)", id)
	}
	path := join.RemoveCorePath + url.PathEscape(id)
	if force {
		path += "?force=true"
	}
	var res join.Removal
	if err := c.do(http.MethodDelete, path, nil, &res); err != nil {
		return err
	}
	member := "no PlatformDB member (it never joined)"
	if res.MemberRemoved {
		member = "its PlatformDB member removed"
	}
	deleted := strings.Join(res.DeletedRows, ", ")
	if deleted == "" {
		deleted = "none"
	}
	fmt.Fprintf(stdout, "removed %s: %s; %d node certificate(s) refused from now on by every PlatformDB listener and the join listener; %d lock(s) released; rows deleted: %s\n",
		res.CoreID, member, len(res.DeniedCerts), res.LeasesRevoked, deleted)
	if len(res.DeniedCerts) == 0 {
		fmt.Fprintf(stdout, "warning: no node certificate was recorded for %s (it joined before pryv-tls recorded them): its certificate is not on the denylist; rotate the cluster CA if it must lose access for sure\n", res.CoreID)
	}
	if res.UsersPinned > 0 {
		fmt.Fprintf(stdout, "%d user(s) are still pinned to %s: move them with \"pryv-tls users set-core USER CORE\"\n", res.UsersPinned, res.CoreID)
	}
	return nil
}

// newCore prepares a core's join: node certificate, one-time token (stored
// hashed, with the core pre-registered as unavailable), and the sealed bundle.
// If a step fails, what the earlier ones created is removed.
func newCore(run bootstrapRun, a newCoreArgs) error {
	c, cfg, stdout, stderr := run.c, run.cfg, run.stdout, run.stderr
	id, ip, coreURL, hosting, out, ttl := a.id, a.ip, a.coreURL, a.hosting, a.out, a.ttl
	if !coreIDRE.MatchString(id) {
		return fmt.Errorf("--id %q: must be one DNS label (lower case letters, digits, hyphens)", id)
	}
	nip := net.ParseIP(ip)
	if nip == nil {
		return fmt.Errorf("--ip %q: not an IP address", ip)
	}
	if id == cfg.Core.ID {
		return fmt.Errorf("--id %s is this core's own id", id)
	}
	ca, err := clusterca.LoadCA(cfg.Cluster.CA.Path)
	if err != nil {
		return fmt.Errorf("not the CA holder (run \"pryv-tls bootstrap init-ca-holder\" first, as a user who can read %s): %w", cfg.Cluster.CA.Path, err)
	}
	var names []string
	if cfg.DNS.Domain != "" {
		names = append(names, id+"."+cfg.DNS.Domain)
	}
	certPEM, keyPEM, err := ca.IssueNode(id, names, []net.IP{nip, net.IPv4(127, 0, 0, 1)}, clusterca.DefaultNodeValidity)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	token, err := join.NewToken()
	if err != nil {
		return err
	}
	pass, err := join.NewPassphrase()
	if err != nil {
		return err
	}
	override, err := joinerOverride(cfg, joiner{id: id, ip: ip, url: coreURL, hosting: hosting})
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	nc := join.NodeCertOf(id, leaf, now) // recorded with the token: remove-core denies it
	peerURL := "https://" + net.JoinHostPort(ip, port(cfg.PlatformDB.PeerAddress))
	b := &join.Bundle{
		Version: 1, CoreID: id, IP: ip,
		CACert: string(ca.CertPEM()), NodeCert: string(certPEM), NodeKey: string(keyPEM),
		Token:     token,
		JoinURL:   "https://" + net.JoinHostPort(cfg.Core.IP, strconv.Itoa(cfg.Cluster.JoinPort)) + "/join",
		PeerURL:   peerURL,
		Override:  override,
		ExpiresAt: now.Add(ttl),
	}
	sealed, err := b.Seal(pass)
	if err != nil {
		return err
	}
	var res map[string]string
	err = c.do("POST", "/cluster/join-tokens", daemon.TokenRequest{
		Token: join.Token{CoreID: id, Hash: join.HashToken(token), NodeFingerprint: join.Fingerprint(leaf.Raw),
			NodeSerial: nc.Serial, NodeSPKI: nc.SPKI, NodeNotAfter: nc.NotAfter,
			PeerURL: peerURL, CreatedAt: now, ExpiresAt: b.ExpiresAt},
		Core: dnsdata.CoreInfo{ID: id, IP: ip, URL: coreURL, Hosting: hosting},
	}, &res)
	if err != nil {
		return err
	}
	if out == "" {
		out = id + "-join.bundle"
	}
	if err := atomicfile.Write(out, sealed, 0o600); err != nil {
		_ = c.do("DELETE", "/cluster/join-tokens/"+url.PathEscape(id), nil, &res) // roll back
		return fmt.Errorf("writing the bundle (the token was revoked again): %w", err)
	}
	fmt.Fprintf(stderr, `join bundle for %s: %s (valid until %s)
Copy it to the new core, send the passphrase over another channel, and there run:
  pryv-tls serve --config <its config> --bootstrap %s --bootstrap-passphrase-file <file with the passphrase>
`, id, out, b.ExpiresAt.Format(time.RFC3339), filepath.Base(out))
	fmt.Fprintf(stdout, "passphrase: %s\n", pass)
	return nil
}

// joiner is the new core's identity: core.id, core.ip, core.url and
// core.hosting of its configuration.
type joiner struct{ id, ip, url, hosting string }

// joinerOverride is the configuration the new core must share with the
// cluster (atRestKey, admin key, ACME and DNS settings), with its own
// identity and addresses, as YAML it writes next to its configuration.
func joinerOverride(cfg *config.Config, j joiner) (string, error) {
	id, ip, coreURL, hosting := j.id, j.ip, j.url, j.hosting
	own := func(addr string) string { // an address of the holder's becomes the joiner's
		if addr == cfg.Core.IP {
			return ip
		}
		return addr
	}
	le := cfg.LetsEncrypt
	leMap := map[string]any{
		"enabled": le.Enabled, "certRenewer": false, "renewBeforeDays": le.RenewBeforeDays,
		"staging": le.Staging, "http01Port": le.HTTP01Port, "keyType": le.KeyType, "challenge": le.Challenge,
	}
	for k, v := range map[string]string{"email": le.Email, "atRestKey": le.AtRestKey.Reveal(), "atRestKeyPrevious": le.AtRestKeyPrevious.Reveal(), "directoryUrl": le.DirectoryURL,
		"directoryCaFile": le.DirectoryCAFile, "profile": le.Profile, "onRotateScript": le.OnRotateScript} {
		if v != "" {
			leMap[k] = v
		}
	}
	m := map[string]any{
		"core": map[string]any{"id": id, "ip": ip, "url": coreURL, "hosting": hosting},
		"http": map[string]any{"ip": own(cfg.HTTP.IP), "port": cfg.HTTP.Port},
		"platformDB": map[string]any{
			"peerAddress":   net.JoinHostPort(ip, port(cfg.PlatformDB.PeerAddress)),
			"clientAddress": net.JoinHostPort(ip, port(cfg.PlatformDB.ClientAddress)),
		},
		"letsEncrypt": leMap,
		"cluster":     map[string]any{"joinPort": cfg.Cluster.JoinPort},
		"dnsLess":     map[string]any{"isActive": cfg.DNSLess.IsActive, "publicUrl": cfg.DNSLess.PublicURL},
	}
	if key := cfg.Auth.AdminAccessKey.Reveal(); key != "" {
		m["auth"] = map[string]any{"adminAccessKey": key}
	}
	if cfg.DNS.Active || cfg.DNS.Domain != "" {
		dns := map[string]any{"active": cfg.DNS.Active, "domain": cfg.DNS.Domain, "ip": own(cfg.DNS.IP),
			"port": cfg.DNS.Port, "defaultTTL": cfg.DNS.DefaultTTL}
		if cfg.DNS.DNSSEC {
			dns["dnssec"] = true // every core must sign, or resolvers reaching it fail validation
		}
		m["dns"] = dns
	}
	b, err := yaml.Marshal(m)
	if err != nil {
		return "", err
	}
	return "# written by pryv-tls when this core joined the cluster: shared settings and this core's identity\n" + string(b), nil
}

func writeOverride(path, comment string, m map[string]any) error {
	b, err := yaml.Marshal(m)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append([]byte("# "+comment+"\n"), b...), 0o600)
}

func listTokens(c *controlClient, w io.Writer) error {
	var res struct {
		Tokens []join.Token `json:"tokens"`
	}
	if err := c.do("GET", "/cluster/join-tokens", nil, &res); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CORE\tCREATED\tEXPIRES\tSTATE")
	now := time.Now()
	for _, t := range res.Tokens {
		state := "unused"
		switch {
		case !t.ConsumedAt.IsZero():
			state = "used " + t.ConsumedAt.Format(time.RFC3339)
		case now.After(t.ExpiresAt):
			state = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.CoreID, t.CreatedAt.Format(time.RFC3339), t.ExpiresAt.Format(time.RFC3339), state)
	}
	return tw.Flush()
}

func port(hostport string) string {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	return p
}

func configFlags(files []string) string {
	s := ""
	for _, f := range files {
		s += "--config " + f + " "
	}
	return s
}

// configLayers are the files serve's reloads read: those it was started
// with, and the override a live init-ca-holder added (what then runs).
type configLayers struct {
	mu    sync.Mutex
	files []string
}

func (l *configLayers) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.files)
}

func (l *configLayers) add(file string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	abs, _ := filepath.Abs(file)
	for _, f := range l.files {
		if a, _ := filepath.Abs(f); a == abs {
			return
		}
	}
	l.files = append(l.files, file)
}
