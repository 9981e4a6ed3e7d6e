package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSocketCommandsTakeCoreConfig: a topology kept only in open-pryv.io's
// files validates for every command that talks to the running core, as it
// does for serve (without --core-config, letsEncrypt has no hostname).
func TestSocketCommandsTakeCoreConfig(t *testing.T) {
	dir := t.TempDir()
	coreFile := filepath.Join(dir, "override-config.yml")
	own := filepath.Join(dir, "pryv-tls.yml")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(coreFile, "http: {port: 3000, hfsPort: 4000}\ndnsLess: {isActive: true, publicUrl: 'https://your-domain.com'}\n")
	write(own, "letsEncrypt: {enabled: true, email: ops@your-domain.com, atRestKey: 'MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=', certRenewer: true}\n"+
		"control: {socket: "+filepath.Join(dir, "run", "none.sock")+"}\n")
	for _, cmd := range [][]string{
		{"certs", "list"}, {"status"}, {"users", "list"}, {"dns-records", "list"}, {"bootstrap", "list-tokens"},
	} {
		var out, errb bytes.Buffer
		without := Main(append(append([]string{}, cmd...), "--wait", "0", "--config", own), &out, &errb)
		if without != exitUsage || !strings.Contains(errb.String(), "configuration is not valid") {
			t.Errorf("%v without --core-config: exit %d, want %d (invalid config):\n%s", cmd, without, exitUsage, errb.String())
		}
		errb.Reset()
		with := Main(append(append([]string{}, cmd...), "--wait", "0", "--core-config", coreFile, "--config", own), &out, &errb)
		if with == exitUsage || strings.Contains(errb.String(), "configuration is not valid") {
			t.Errorf("%v with --core-config: exit %d, the configuration was refused:\n%s", cmd, with, errb.String())
		}
	}
}
