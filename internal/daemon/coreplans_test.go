package daemon

import (
	"context"
	"log/slog"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/acme"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/platformdb/platformdbtest"
)

// TestCorePlans: in a DNS-less cluster every core registers its core.url,
// and the certRenewer plans one certificate per other available core; the
// sweep of unplanned records counts them as planned.
func TestCorePlans(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := platformdbtest.Open(t)
	load := func(yml string) *config.Config {
		c, err := config.LoadBytes("c.yml", []byte(yml))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	core1 := load("core: {id: core1, ip: 10.0.0.1, url: 'https://core1.example.org'}\n")
	core2 := load("core: {id: core2, ip: 10.0.0.2, url: 'https://core2.example.org'}\n")
	withDNS := load("core: {id: core9, url: 'https://core9.example.org'}\ndns: {active: true, domain: mc.example.com}\n")
	for _, c := range []*config.Config{core1, core2, withDNS} {
		if err := registerCoreURL(ctx, db, c); err != nil {
			t.Fatal(err)
		}
	}
	rows := dnsdata.Rows{KV: db}
	// new-core's pre-registration of a core that has not joined yet.
	if err := rows.SetCoreInfo(ctx, dnsdata.CoreInfo{ID: "core3", URL: "https://core3.example.org"}); err != nil {
		t.Fatal(err)
	}
	cores, _ := rows.Cores(ctx)
	var ids []string
	for _, c := range cores {
		ids = append(ids, c.ID)
		if c.ID == "core2" && (!c.Available || c.URL != "https://core2.example.org" || c.IP != "10.0.0.2") {
			t.Errorf("core2's row: %+v", c)
		}
	}
	if !slices.Equal(ids, []string{"core1", "core2", "core3"}) {
		t.Errorf("core-info rows %v, want core1, core2, core3 (a dns.active core registers with its zone, not here)", ids)
	}

	cp := corePlans{cfg: func() *config.Config { return core1 }, kv: db, log: slog.New(slog.DiscardHandler)}
	if got, want := cp.plans(ctx), []acme.Plan{{Hostnames: []string{"core2.example.org"}, Challenge: config.ChallengeHTTP01}}; !reflect.DeepEqual(got, want) {
		t.Errorf("the certRenewer's extra plans: %v, want %v (not its own, not a core that has not joined)", got, want)
	}
	names, err := cp.planned(ctx)
	if err != nil || !slices.Equal(names, []string{"core1.example.org", "core2.example.org"}) {
		t.Errorf("planned names %v, %v", names, err)
	}
}
