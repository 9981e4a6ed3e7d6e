package daemon

import (
	"strings"
	"testing"

	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/join"
)

// TestOnCoreIP: a live init-ca-holder moves PlatformDB to core.ip only.
func TestOnCoreIP(t *testing.T) {
	cfg := &config.Config{}
	cfg.Core.IP = "10.0.0.1"
	cases := []struct {
		peer, client string
		want         string // "" for accepted
	}{
		{"10.0.0.1:2380", "10.0.0.1:2379", ""},
		{"10.0.0.2:2380", "10.0.0.1:2379", `address "10.0.0.2:2380": not on core.ip 10.0.0.1`},
		{"10.0.0.1:2380", "10.0.0.1", `address "10.0.0.1"`},
		{"10.0.0.1:99999", "10.0.0.1:2379", `address "10.0.0.1:99999"`},
	}
	for _, c := range cases {
		err := onCoreIP(cfg, join.CAHolderRequest{PeerAddress: c.peer, ClientAddress: c.client})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %s: %v", c.peer, c.client, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %s: %v, want %q", c.peer, c.client, err, c.want)
		}
	}
	if err := onCoreIP(&config.Config{}, join.CAHolderRequest{PeerAddress: "10.0.0.1:2380", ClientAddress: "10.0.0.1:2379"}); err == nil || !strings.Contains(err.Error(), "core.ip") {
		t.Errorf("no core.ip: %v", err)
	}
}
