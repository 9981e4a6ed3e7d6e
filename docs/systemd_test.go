package docs_test

import (
	"bufio"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/config"
)

// parseUnit reads an INI-ish systemd unit: [Section] headers, key=value
// lines (a trailing backslash continues a line), # and ; comments. A key
// may repeat; its values are kept in order.
func parseUnit(t *testing.T, text string) map[string]map[string][]string {
	t.Helper()
	units := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	n, pending := 0, ""
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if pending != "" {
			line = pending + " " + line
			pending = ""
		}
		if strings.HasSuffix(line, `\`) {
			pending = strings.TrimSuffix(line, `\`)
			continue
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				t.Fatalf("pryv-tls.service:%d: bad section header %q", n, line)
			}
			section = line[1 : len(line)-1]
			units[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.TrimSpace(k) == "" || strings.ContainsAny(k, " \t") {
				t.Fatalf("pryv-tls.service:%d: not key=value in a section: %q", n, line)
			}
			units[section][k] = append(units[section][k], strings.TrimSpace(v))
		}
	}
	if pending != "" {
		t.Fatal("pryv-tls.service: ends with a continuation line")
	}
	return units
}

func TestSystemdUnit(t *testing.T) {
	u := parseUnit(t, readDoc(t, filepath.Join(samplesDir, "pryv-tls.service")))
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Fatalf("pryv-tls.service: no [%s] section", s)
		}
	}
	svc := u["Service"]
	one := func(k string) string {
		v := svc[k]
		if len(v) != 1 {
			t.Errorf("[Service] %s is set %d times, want once", k, len(v))
			return ""
		}
		return v[0]
	}
	yes := func(k string) {
		if v := one(k); !slices.Contains([]string{"true", "yes", "1", "on"}, v) {
			t.Errorf("[Service] %s=%q, want true", k, v)
		}
	}
	for k, want := range map[string]string{
		"User":                  "pryv",
		"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
		"ProtectSystem":         "strict",
		"ExecReload":            "/bin/kill -HUP $MAINPID",
		"Restart":               "on-failure",
		"Type":                  "notify", // the daemon sends READY=1 (decision 0019)
		"NotifyAccess":          "main",
	} {
		if got := one(k); got != want {
			t.Errorf("[Service] %s=%q, want %q", k, got, want)
		}
	}
	yes("NoNewPrivileges")
	yes("PrivateTmp")
	if !slices.Contains(strings.Fields(one("AmbientCapabilities")), "CAP_NET_BIND_SERVICE") {
		t.Error("[Service] AmbientCapabilities lacks CAP_NET_BIND_SERVICE (ports 80, 443, 53 without root)")
	}
	wd := one("WorkingDirectory")
	var rw []string
	for _, p := range strings.Fields(one("ReadWritePaths")) {
		rw = append(rw, strings.TrimLeft(p, "-+")) // "-": ignored when missing
	}
	for _, p := range []string{filepath.Join(wd, filepath.Dir(config.DefaultTLSDir)), config.DefaultClusterCAPath} {
		if !slices.Contains(rw, p) {
			t.Errorf("[Service] ReadWritePaths %q lacks %s", rw, p)
		}
	}
	// The default paths are relative: under WorkingDirectory, they must fall
	// inside the writable var-pryv.
	for _, p := range []string{config.DefaultTLSDir, config.DefaultPlatformDBDataDir, config.DefaultControlSocket} {
		if !strings.HasPrefix(filepath.Join(wd, p), filepath.Join(wd, "var-pryv")+"/") {
			t.Errorf("default %s is not under var-pryv/", p)
		}
	}
	exec := strings.Fields(one("ExecStart"))
	if len(exec) < 4 || !filepath.IsAbs(exec[0]) || filepath.Base(exec[0]) != "pryv-tls" || exec[1] != "serve" || !slices.Contains(exec, "--config") {
		t.Errorf("[Service] ExecStart=%q: want /abs/path/pryv-tls serve --config FILE ...", exec)
	}
	// serve drains for 20 s by default (--drain-timeout), then stops PlatformDB.
	if d, err := time.ParseDuration(one("TimeoutStopSec")); err != nil || d <= 20*time.Second {
		t.Errorf("[Service] TimeoutStopSec=%q: want more than the 20 s drain", one("TimeoutStopSec"))
	}
	if got := u["Install"]["WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
		t.Errorf("[Install] WantedBy=%q", got)
	}
}
