package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/doctor"
)

// TestDoctorOptions: the cores come from the running core's status (this
// core first, each at its core-info address), the members from its cores;
// without a running core the checks run on this core alone and PlatformDB
// fails with the socket's error.
func TestDoctorOptions(t *testing.T) {
	st := &admin.Status{
		Core: admin.Self{ID: "core1", PlatformDB: admin.MemberState{Up: true}},
		Cores: []admin.CoreStatus{
			{ID: "core2", IP: "192.0.2.2", Available: true, Member: true, Healthy: false},
			{ID: "core1", IP: "192.0.2.1", Available: true, Member: true, Healthy: true},
			{ID: "core4", Available: true, Member: true}, // no row address: nothing to ask
			{ID: "core5", IP: "192.0.2.5"},               // announced, not joined yet
		},
	}
	sockCfg := fakeCore(t, st)
	topo := filepath.Join(t.TempDir(), "topo.yml")
	if err := os.WriteFile(topo, []byte("core: {id: core1, ip: 198.51.100.1, url: 'https://core1.mc.example.com'}\n"+
		"dns: {active: true, domain: mc.example.com, port: 5300}\nhttp: {port: 8443}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(files ...string) *config.Config {
		t.Helper()
		cfg, err := config.LoadWithCore(nil, files)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	o, err := doctorOptions(load(sockCfg, topo), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []doctor.Core{{ID: "core1", IP: "192.0.2.1"}, {ID: "core2", IP: "192.0.2.2"}}
	if !reflect.DeepEqual(o.Cores, want) {
		t.Errorf("cores %+v, want %+v", o.Cores, want)
	}
	if o.Domain != "mc.example.com" || o.DNSPort != 5300 || o.FrontPort != 8443 || !reflect.DeepEqual(o.Names, []string{"mc.example.com"}) {
		t.Errorf("domain %q, dns port %d, front port %d, names %v", o.Domain, o.DNSPort, o.FrontPort, o.Names)
	}
	if p := o.PlatformDB; p == nil || !p.Up || !reflect.DeepEqual(p.Members, []doctor.Member{{ID: "core2"}, {ID: "core1", Healthy: true}, {ID: "core4"}}) {
		t.Errorf("platformDB %+v", p)
	}
	if o.CAA != nil || o.CAASkip == "" || o.Directory != "" {
		t.Errorf("no ACME here: CAA %+v (%q), directory %q", o.CAA, o.CAASkip, o.Directory)
	}
	if o, _ := doctorOptions(load(sockCfg, topo), 53); o.DNSPort != 53 {
		t.Errorf("--dns-port 53: %d", o.DNSPort)
	}

	gone := filepath.Join(t.TempDir(), "gone.yml")
	if err := os.WriteFile(gone, []byte("control: {socket: "+filepath.Join(t.TempDir(), "none.sock")+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err = doctorOptions(load(gone, topo), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.Cores, []doctor.Core{{ID: "core1", IP: "198.51.100.1"}}) || o.PlatformDB != nil ||
		!strings.Contains(o.PlatformDBErr, "cannot reach the running core through its control socket") {
		t.Errorf("no running core: cores %+v, platformDB %+v, error %q", o.Cores, o.PlatformDB, o.PlatformDBErr)
	}
}

// TestDoctorCommand: --json is the list of results; a failure exits 1
// and the text names the fix.
func TestDoctorCommand(t *testing.T) {
	gone := filepath.Join(t.TempDir(), "gone.yml")
	if err := os.WriteFile(gone, []byte("control: {socket: "+filepath.Join(t.TempDir(), "none.sock")+"}\nletsEncrypt: {atRestKey: '"+
		strings.Repeat("A", 43)+"='}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := Main([]string{"doctor", "--config", gone, "--json"}, &out, &errOut); code != exitFailed {
		t.Fatalf("exit %d, want 1 (no running core)\n%s%s", code, out.String(), errOut.String())
	}
	var rs []doctor.Result
	if err := json.Unmarshal(out.Bytes(), &rs); err != nil {
		t.Fatalf("--json: %v\n%s", err, out.String())
	}
	got := map[string]doctor.Status{}
	for _, r := range rs {
		got[r.Check] = r.Status
	}
	if got["platformdb"] != doctor.Fail || got["dns"] != doctor.Skip || got["public dns"] != doctor.Skip {
		t.Errorf("results %+v", rs)
	}
	out.Reset()
	if code := Main([]string{"doctor", "--config", gone}, &out, &errOut); code != exitFailed ||
		!strings.Contains(out.String(), "fix: start pryv-tls serve with this configuration") || !strings.Contains(out.String(), "1 check(s) fail.") {
		t.Errorf("text (exit %d):\n%s", code, out.String())
	}
	if code := Main([]string{"doctor"}, &out, &errOut); code != exitUsage {
		t.Errorf("no --config: exit %d", code)
	}
}
