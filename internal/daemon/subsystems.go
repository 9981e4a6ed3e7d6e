package daemon

import (
	"context"
	"log/slog"

	"github.com/pryv/pryv-tls/internal/certs"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/sdnotify"
)

// newCore builds the subsystems, in start order, each given what it
// depends on; it checks what can be checked without opening anything.
//
//	control socket -> certificate files -> metrics/health ->
//	materialised certificates -> DNS server -> ACME -> node identity ->
//	PlatformDB (attaches the materialiser, DNS, ACME, node identity) ->
//	placeholder -> front
func newCore(cfg *config.Config, opts Options) (*core, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &core{opts: opts, bg: newTasks(), hup: newTasks()}
	c.log, c.notify = log, sdnotify.New(log)
	c.sock = newSocketSys(cfg, log)
	c.cfg.Store(cfg)
	c.setLogLevel(cfg)
	keys, err := keyring(cfg)
	if err != nil {
		return nil, err
	}
	store := certs.NewCache()
	store.SetDefaultName(cfg.PrimaryHostname())
	c.ob = newObservability(cfg, store, log)
	files := newFilesSys(cfg, store, log)
	stored := newStoredSys(cfg, keys, storedDeps{cache: store, metrics: c.ob.metrics, log: log})
	dnsS := newDNSSys(cfg, c.ob, log)
	acmeS := newACMESys(cfg, keys, c.ob.metrics, log)
	member := newMemberSys(cfg, c.ob, log)
	c.plat = newPlatformSys(&c.env, cfg, opts.Join, platformDeps{
		sock: c.sock, ob: c.ob, keys: keys, member: member, acme: acmeS,
		attached: []attacher{stored, dnsS, acmeS, member},
		onWired:  c.onWired, caHolder: c.becomeCAHolder,
	})
	ph := newPlaceholderSys(cfg, store, log)
	frontDepsV := frontDeps{ob: c.ob, plat: c.plat, drain: opts.DrainTimeout}
	if cfg.TLSEnabled() {
		frontDepsV.cache = store
		if acmeS.on() {
			frontDepsV.alpn = acmeS.alpn
		}
	}
	if c.front, err = newFrontSys(cfg, frontDepsV, log); err != nil {
		return nil, err
	}
	c.subs = []subsystem{c.sock, files, c.ob, stored, dnsS, acmeS, member, c.plat, ph, c.front}
	c.bg.Go(c.notify.Watchdog)
	c.bg.Go(func(ctx context.Context) { memoryPolicy(ctx, log) })
	return c, nil
}
