package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme"
	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/atrest"
	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/corerows/corerowstest"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/platformdb"
	"github.com/pryv/pryv-tls/internal/platformdb/platformdbtest"
	"github.com/pryv/pryv-tls/internal/rqlite/rqlitetest"
)

// The tests below run migrate-core against a stand-in rqlite holding rows
// sealed as the core seals them, and the real control-socket API
// (admin.Local + acme.AccountAPI) over a real embedded PlatformDB.

const (
	mcDomain    = "mc.example.com"
	mcDirectory = "https://ca.example/directory"
	mcAccount   = "https://ca.example/acct/42"
)

type mcEnv struct {
	t       *testing.T
	key     []byte // letsEncrypt.atRestKey, raw: the core's and pryv-tls's
	rq      *rqlitetest.Server
	db      *platformdb.Etcd
	keys    *atrest.Keyring
	catalog *certstore.Catalog
	config  string
	inter   *devpki.CA
	acctKey []byte // the account key's PEM as the core holds it
}

func newMCEnv(t *testing.T) *mcEnv {
	t.Helper()
	e := &mcEnv{t: t, key: make([]byte, 32), rq: rqlitetest.Start(t)}
	_, _ = rand.Read(e.key)
	var err error
	if e.keys, err = atrest.New(e.key); err != nil {
		t.Fatal(err)
	}
	e.db = platformdbtest.Open(t)
	e.catalog = &certstore.Catalog{KV: e.db, Keys: e.keys}

	dir := t.TempDir()
	sock := filepath.Join(dir, "c.sock")
	ln, err := admin.ListenSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	api := &admin.API{Certs: e.catalog, ACME: &acme.AccountAPI{KV: e.db, Keys: e.keys, Logger: slog.New(slog.DiscardHandler)}, Logger: slog.New(slog.DiscardHandler)}
	sctx, scancel := context.WithCancel(context.Background())
	go api.ServeSocket(sctx, ln)
	t.Cleanup(scancel)
	e.config = filepath.Join(dir, "pryv-tls.yml")
	e.writeConfig(base64.StdEncoding.EncodeToString(e.key), sock)

	root, err := devpki.NewCA("core test root")
	if err != nil {
		t.Fatal(err)
	}
	if e.inter, err = root.NewIntermediate("core test R11"); err != nil {
		t.Fatal(err)
	}
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(rk)
	e.acctKey = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return e
}

func (e *mcEnv) writeConfig(atRestKey, sock string) {
	e.t.Helper()
	yml := "control:\n  socket: " + sock + "\n" +
		"dns:\n  domain: " + mcDomain + "\n" +
		"letsEncrypt:\n  atRestKey: '" + atRestKey + "'\n  directoryUrl: " + mcDirectory + "\n" +
		"storages:\n  engines:\n    rqlite:\n      url: " + e.rq.URL + "\n"
	if err := os.WriteFile(e.config, []byte(yml), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *mcEnv) issue(names []string, notBefore, notAfter time.Time) *devpki.Issued {
	e.t.Helper()
	is, err := e.inter.Issue(devpki.Leaf{Names: names, KeyType: "rsa2048", NotBefore: notBefore, NotAfter: notAfter})
	if err != nil {
		e.t.Fatal(err)
	}
	return is
}

// coreRows writes what a core's Strategy A leaves: the wildcard + apex
// certificate, one for core.url, and the account.
func (e *mcEnv) coreRows() (wild, api *devpki.Issued) {
	wild = e.issue([]string{"*." + mcDomain, mcDomain}, time.Time{}, time.Time{})
	api = e.issue([]string{"api." + mcDomain + ".example.org"}, time.Time{}, time.Time{})
	e.rq.Set("tls-cert/*."+mcDomain, corerowstest.CertValue(e.key, wild.FullChain, wild.KeyPEM))
	e.rq.Set("tls-cert/api."+mcDomain+".example.org", corerowstest.CertValue(e.key, api.FullChain, api.KeyPEM))
	e.rq.Set("tls-acme-account", corerowstest.AccountValue(e.key, e.acctKey, mcAccount, "ops@"+mcDomain))
	e.rq.Set("user-core/alice", "core-a") // other rows are not read
	return wild, api
}

func (e *mcEnv) run(args ...string) (int, string, string) {
	e.t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(append([]string{"migrate-core", "--config", e.config}, args...), &stdout, &stderr)
	all := stdout.String() + stderr.String()
	if strings.Contains(all, "PRIVATE KEY") || strings.Contains(all, base64.StdEncoding.EncodeToString(e.key)) {
		e.t.Fatalf("key material in the output:\n%s", all)
	}
	return code, stdout.String(), stderr.String()
}

func (e *mcEnv) stored() map[string]*certstore.Record {
	e.t.Helper()
	recs, errs, err := e.catalog.List(context.Background())
	if err != nil || len(errs) > 0 {
		e.t.Fatalf("catalog List: %v %v", err, errs)
	}
	out := map[string]*certstore.Record{}
	for _, r := range recs {
		out[r.Hostname] = r
	}
	return out
}

func (e *mcEnv) revisions() map[string]int64 {
	e.t.Helper()
	entries, _, err := e.db.List(context.Background(), "")
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]int64{}
	for _, en := range entries {
		out[en.Key] = en.Revision
	}
	return out
}

func mustContain(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestMigrateCoreDryRun(t *testing.T) {
	e := newMCEnv(t)
	wild, _ := e.coreRows()
	before := e.revisions()
	code, out, errs := e.run("--dry-run")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	mustContain(t, out,
		"tls-cert/*."+mcDomain, "covers *."+mcDomain+" "+mcDomain+"; issuer core test R11; serial "+wild.Cert.SerialNumber.Text(16),
		"key matches, chain links (2 certificate(s)", "renewed by pryv-tls from now on (dns.domain)",
		"-> import as *."+mcDomain+", source core",
		"tls-cert/api."+mcDomain+".example.org", "not in pryv-tls's topology",
		"account "+mcAccount+" (ops@"+mcDomain+"), RSA 2048 key", "directory "+mcDirectory+" (from letsEncrypt.directoryUrl)",
		"-> import: pryv-tls has no account", "dry run: nothing imported")
	if after := e.revisions(); len(after) != len(before) {
		t.Fatalf("a dry run wrote to PlatformDB: %v -> %v", before, after)
	}
	if len(e.stored()) != 0 {
		t.Fatal("a dry run stored certificates")
	}

	// A dry run needs no running core.
	e.writeConfig(base64.StdEncoding.EncodeToString(e.key), filepath.Join(t.TempDir(), "none.sock"))
	code, out, errs = e.run("--dry-run")
	if code != exitOK {
		t.Fatalf("dry run without a core: exit %d\n%s", code, errs)
	}
	mustContain(t, out, "the running core was not reached")
}

func TestMigrateCoreImport(t *testing.T) {
	e := newMCEnv(t)
	wild, api := e.coreRows()
	code, out, errs := e.run()
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	mustContain(t, out, "stored *."+mcDomain+" (serial "+wild.Cert.SerialNumber.Text(16), "source core",
		"stored the ACME account "+mcAccount+" for "+mcDirectory)

	recs := e.stored()
	for host, is := range map[string]*devpki.Issued{"*." + mcDomain: wild, "api." + mcDomain + ".example.org": api} {
		r := recs[host]
		if r == nil {
			t.Fatalf("%s not stored (have %v)", host, recs)
		}
		// Served exactly as the core served it: the same chain, the same key.
		if r.Source != certstore.SourceCore || r.Chain != string(is.FullChain) {
			t.Errorf("%s: source %q, chain equal %v", host, r.Source, r.Chain == string(is.FullChain))
		}
		_, keyPEM, err := r.Open(e.keys, time.Now())
		if err != nil || !bytes.Equal(keyPEM, is.KeyPEM) {
			t.Errorf("%s: stored key opens %v, equal %v", host, err, bytes.Equal(keyPEM, is.KeyPEM))
		}
	}
	info, err := acme.LoadAccountInfo(context.Background(), e.db, e.keys, mcDirectory)
	if err != nil || info.URI != mcAccount || info.Email != "ops@"+mcDomain || info.KeyType != "RSA 2048" {
		t.Fatalf("account: %+v %v", info, err)
	}

	// Again: nothing changes, nothing is written.
	before := e.revisions()
	code, out, errs = e.run()
	if code != exitOK {
		t.Fatalf("second run: exit %d\n%s", code, errs)
	}
	mustContain(t, out, "-> unchanged: pryv-tls already holds this certificate", "-> unchanged: pryv-tls already holds this account",
		"was already stored for "+mcDirectory+": unchanged", "no certificate to store")
	if after := e.revisions(); !equalRevs(before, after) {
		t.Fatalf("the second run wrote: %v -> %v", before, after)
	}
}

func equalRevs(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A newer certificate pryv-tls holds stays; an older one is replaced; an
// account pryv-tls registered stays.
func TestMigrateCoreNoDowngrade(t *testing.T) {
	e := newMCEnv(t)
	wild, api := e.coreRows()
	ctx := context.Background()
	newer := e.issue([]string{"*." + mcDomain, mcDomain}, time.Now().Add(-time.Hour), wild.Cert.NotAfter.Add(24*time.Hour))
	older := e.issue([]string{"api." + mcDomain + ".example.org"}, time.Now().Add(-2*time.Hour), api.Cert.NotAfter.Add(-24*time.Hour))
	if _, err := e.catalog.Store(ctx, certstore.Input{Hostname: "*." + mcDomain, Source: certstore.SourceACME, Chain: newer.FullChain, Key: newer.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.catalog.Store(ctx, certstore.Input{Hostname: "api." + mcDomain + ".example.org", Source: certstore.SourceACME, Chain: older.FullChain, Key: older.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	ek, _ := rsa.GenerateKey(rand.Reader, 2048)
	own := acme.ImportedAccount{Directory: mcDirectory, URI: "https://ca.example/acct/own", Key: ek}
	if _, _, err := acme.ImportAccount(ctx, e.db, e.keys, own); err != nil {
		t.Fatal(err)
	}

	code, out, errs := e.run()
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	mustContain(t, out, "-> keep pryv-tls's: it holds a newer one (serial "+newer.Cert.SerialNumber.Text(16),
		"-> replace pryv-tls's older one (serial "+older.Cert.SerialNumber.Text(16),
		"-> keep pryv-tls's own account https://ca.example/acct/own",
		"kept pryv-tls's own ACME account https://ca.example/acct/own")
	recs := e.stored()
	if r := recs["*."+mcDomain]; r.Serial != newer.Cert.SerialNumber.Text(16) || r.Source != certstore.SourceACME {
		t.Errorf("the newer wildcard was replaced: serial %s source %s", r.Serial, r.Source)
	}
	if r := recs["api."+mcDomain+".example.org"]; r.Serial != api.Cert.SerialNumber.Text(16) || r.Source != certstore.SourceCore {
		t.Errorf("the older api certificate was kept: serial %s source %s", r.Serial, r.Source)
	}
	if info, _ := acme.LoadAccountInfo(ctx, e.db, e.keys, mcDirectory); info == nil || info.URI != own.URI {
		t.Errorf("pryv-tls's own account was replaced: %+v", info)
	}
}

func TestMigrateCoreRefuses(t *testing.T) {
	other := make([]byte, 32)
	_, _ = rand.Read(other)
	tests := []struct {
		name     string
		setup    func(e *mcEnv)
		args     []string
		contains []string
	}{
		{"another atRestKey", func(e *mcEnv) {
			e.coreRows()
			e.writeConfig(base64.StdEncoding.EncodeToString(other), filepath.Join(t.TempDir(), "x.sock"))
		}, nil, []string{"3 of the core's rows cannot be used",
			"cannot open tls-cert/*." + mcDomain + " (keyPem): wrong letsEncrypt.atRestKey or tampered row",
			"cannot open tls-acme-account (accountKey): wrong letsEncrypt.atRestKey or tampered row",
			"must be the core's own letsEncrypt.atRestKey"}},
		{"tampered row", func(e *mcEnv) {
			e.coreRows()
			is := e.issue([]string{"x." + mcDomain}, time.Time{}, time.Time{})
			v := corerowstest.CertValue(e.key, is.FullChain, is.KeyPEM)
			i := strings.Index(v, `"keyPem":"`) + len(`"keyPem":"`) + 50
			c := byte('A')
			if v[i] == 'A' {
				c = 'B'
			}
			e.rq.Set("tls-cert/x."+mcDomain, v[:i]+string(c)+v[i+1:])
		}, nil, []string{"cannot open tls-cert/x." + mcDomain + " (keyPem): wrong letsEncrypt.atRestKey or tampered row"}},
		{"key of another certificate", func(e *mcEnv) {
			a := e.issue([]string{"a." + mcDomain}, time.Time{}, time.Time{})
			b := e.issue([]string{"b." + mcDomain}, time.Time{}, time.Time{})
			e.rq.Set("tls-cert/a."+mcDomain, corerowstest.CertValue(e.key, a.FullChain, b.KeyPEM))
		}, nil, []string{"tls-cert/a." + mcDomain + ": the private key does not match the certificate", "nothing was imported"}},
		{"broken chain", func(e *mcEnv) {
			a := e.issue([]string{"a." + mcDomain}, time.Time{}, time.Time{})
			stranger, _ := devpki.NewCA("stranger")
			leaf, _ := corerowstest.SplitChain(string(a.FullChain))
			e.rq.Set("tls-cert/a."+mcDomain, corerowstest.CertValue(e.key, []byte(leaf+string(stranger.CertPEM())), a.KeyPEM))
		}, nil, []string{"tls-cert/a." + mcDomain + ": broken chain"}},
		{"row for a name the certificate does not cover", func(e *mcEnv) {
			a := e.issue([]string{"a." + mcDomain}, time.Time{}, time.Time{})
			e.rq.Set("tls-cert/b."+mcDomain, corerowstest.CertValue(e.key, a.FullChain, a.KeyPEM))
		}, nil, []string{"tls-cert/b." + mcDomain + ": the certificate does not cover b." + mcDomain}},
		{"not JSON", func(e *mcEnv) { e.rq.Set("tls-cert/a", "certificate") }, nil, []string{"tls-cert/a: not the core's certificate JSON"}},
		{"staging account for the production directory", func(e *mcEnv) {
			e.rq.Set("tls-acme-account", corerowstest.AccountValue(e.key, e.acctKey, "https://acme-staging-v02.api.letsencrypt.org/acme/acct/1", "e@x"))
		}, []string{"--directory-url", "https://acme-v02.api.letsencrypt.org/directory"}, []string{"tls-acme-account: account https://acme-staging-v02.api.letsencrypt.org/acme/acct/1 is not at the CA of directory https://acme-v02.api.letsencrypt.org/directory"}},
		{"nothing to migrate", func(e *mcEnv) { e.rq.Set("user-core/alice", "a") }, nil, []string{"holds no tls-cert/* row and no tls-acme-account: nothing to migrate"}},
		{"http directory", func(e *mcEnv) { e.coreRows() }, []string{"--directory-url", "http://ca/dir"}, []string{`--directory-url "http://ca/dir" is not an https URL`}},
		{"bad rqlite url", func(e *mcEnv) {}, []string{"--rqlite-url", "localhost:4001"}, []string{"--rqlite-url: rqlite: URL localhost:4001: scheme must be http or https"}},
		{"no atRestKey", func(e *mcEnv) {
			e.coreRows()
			if err := os.WriteFile(e.config, []byte("control:\n  socket: /nonexistent.sock\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil, []string{"letsEncrypt.atRestKey is not set in --config: set it to the core's own letsEncrypt.atRestKey"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newMCEnv(t)
			tt.setup(e)
			code, out, errs := e.run(tt.args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, exitUsage, out, errs)
			}
			mustContain(t, errs, tt.contains...)
			if len(e.stored()) != 0 {
				t.Fatal("something was imported")
			}
			if _, err := acme.LoadAccountInfo(context.Background(), e.db, e.keys, mcDirectory); !errors.Is(err, acme.ErrNoAccount) {
				t.Fatalf("an account was imported (%v)", err)
			}
		})
	}
}

// Expired rows are skipped, not refused: pryv-tls orders a new one.
func TestMigrateCoreExpired(t *testing.T) {
	e := newMCEnv(t)
	old := e.issue([]string{"*." + mcDomain, mcDomain}, time.Now().Add(-100*24*time.Hour), time.Now().Add(-10*24*time.Hour))
	e.rq.Set("tls-cert/*."+mcDomain, corerowstest.CertValue(e.key, old.FullChain, old.KeyPEM))
	code, out, errs := e.run()
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	mustContain(t, out, "-> skip: expired on", "tls-acme-account: none", "no certificate to store")
	if len(e.stored()) != 0 {
		t.Fatal("an expired certificate was imported")
	}
}

func TestMigrateCoreUnreachable(t *testing.T) {
	old := migrateCoreRetries
	migrateCoreRetries = []time.Duration{time.Millisecond, time.Millisecond}
	t.Cleanup(func() { migrateCoreRetries = old })

	t.Run("election ridden through", func(t *testing.T) {
		e := newMCEnv(t)
		e.coreRows()
		e.rq.NoLeader(2)
		code, _, errs := e.run()
		if code != exitOK || len(e.stored()) != 2 {
			t.Fatalf("exit %d, %d stored\n%s", code, len(e.stored()), errs)
		}
	})
	t.Run("no leader", func(t *testing.T) {
		e := newMCEnv(t)
		e.coreRows()
		e.rq.NoLeader(100)
		code, _, errs := e.run()
		if code != exitFailed {
			t.Fatalf("exit %d, want %d\n%s", code, exitFailed, errs)
		}
		mustContain(t, errs, "cannot read the core's rows from rqlite at "+e.rq.URL, "no leader")
		if n := e.rq.Queries(); n != 3 {
			t.Errorf("%d queries, want 3 (one and two retries)", n)
		}
	})
	t.Run("rqlite down", func(t *testing.T) {
		e := newMCEnv(t)
		e.rq.Close()
		code, _, errs := e.run()
		if code != exitFailed {
			t.Fatalf("exit %d, want %d\n%s", code, exitFailed, errs)
		}
		mustContain(t, errs, "cannot read the core's rows from rqlite at "+e.rq.URL, "nothing was imported")
	})
	t.Run("running core unreachable", func(t *testing.T) {
		e := newMCEnv(t)
		e.coreRows()
		e.writeConfig(base64.StdEncoding.EncodeToString(e.key), filepath.Join(t.TempDir(), "none.sock"))
		start := time.Now()
		code, _, errs := e.run("--wait", "300ms")
		if time.Since(start) > 10*time.Second {
			t.Errorf("--wait 300ms took %v", time.Since(start))
		}
		if code != exitFailed {
			t.Fatalf("exit %d, want %d\n%s", code, exitFailed, errs)
		}
		mustContain(t, errs, "cannot reach the running core through its control socket", "nothing was imported")
	})
	t.Run("running core older than /acme/account", func(t *testing.T) {
		e := newMCEnv(t)
		e.coreRows()
		sock := filepath.Join(t.TempDir(), "old.sock")
		ln, err := admin.ListenSocket(sock)
		if err != nil {
			t.Fatal(err)
		}
		old := &admin.API{Certs: e.catalog, Logger: slog.New(slog.DiscardHandler)} // no ACME: the route is not there
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go old.ServeSocket(ctx, ln)
		e.writeConfig(base64.StdEncoding.EncodeToString(e.key), sock)
		code, _, errs := e.run()
		if code != exitFailed {
			t.Fatalf("exit %d, want %d\n%s", code, exitFailed, errs)
		}
		mustContain(t, errs, "the running core has no /acme/account on its control socket: it is older than this pryv-tls; upgrade it first")
		if len(e.stored()) != 0 {
			t.Fatal("certificates were imported though the account cannot be")
		}
	})
	t.Run("rqlite url from the flag", func(t *testing.T) {
		e := newMCEnv(t)
		e.coreRows()
		other := rqlitetest.Start(t)
		code, _, errs := e.run("--dry-run", "--rqlite-url", other.URL)
		if code != exitUsage || other.Queries() == 0 {
			t.Fatalf("exit %d, %d queries to --rqlite-url\n%s", code, other.Queries(), errs)
		}
	})
}
