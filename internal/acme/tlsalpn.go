package acme

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-acme/lego/v5/challenge/tlsalpn01"

	"github.com/pryv/pryv-tls/internal/platformdb"
)

// tlsALPNPrefix holds TLS-ALPN-01 key authorisations (RFC 8737):
// acme-tlsalpn01/<domain> -> keyAuth. Like HTTP-01 tokens they are public
// values (the CA computes them too), so they are not sealed.
const tlsALPNPrefix = "acme-tlsalpn01/"

// ACMETLS1 is the ALPN protocol a TLS-ALPN-01 validation offers, alone.
const ACMETLS1 = tlsalpn01.ACMETLS1Protocol

// TLSALPN01Provider is lego's challenge.Provider for TLS-ALPN-01: it
// publishes the key authorisation in PlatformDB, from which every core's
// front builds the validation certificate, so whichever core the CA's
// validator reaches on port 443 answers.
type TLSALPN01Provider struct {
	KV KV
}

// Present stores the key authorisation under the domain the CA will name
// in its SNI.
func (p *TLSALPN01Provider) Present(ctx context.Context, domain, _, keyAuth string) error {
	if _, err := p.KV.Put(ctx, tlsALPNPrefix+alpnName(domain), []byte(keyAuth)); err != nil {
		return fmt.Errorf("publishing the TLS-ALPN-01 key authorisation for %s: %w", domain, err)
	}
	return nil
}

// CleanUp removes it, even when the order was cancelled (see HTTP01Provider.CleanUp).
func (p *TLSALPN01Provider) CleanUp(ctx context.Context, domain, _, _ string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := p.KV.Delete(ctx, tlsALPNPrefix+alpnName(domain)); err != nil {
		return fmt.Errorf("removing the TLS-ALPN-01 key authorisation for %s: %w", domain, err)
	}
	return nil
}

func alpnName(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// WatchKV is what the responder reads of PlatformDB.
type WatchKV interface {
	Get(ctx context.Context, key string) (platformdb.Entry, error)
	List(ctx context.Context, prefix string) ([]platformdb.Entry, int64, error)
	Watch(ctx context.Context, prefix string, from int64) <-chan platformdb.Event
}

// alpnCert is a validation certificate and the key authorisation it proves.
type alpnCert struct {
	keyAuth string
	cert    *tls.Certificate
}

// TLSALPN01Responder answers the front's acme-tls/1 handshakes. Its
// certificates are built when their rows arrive (a PlatformDB watch), so a
// validation handshake reads an atomic snapshot; an ordinary handshake never
// reaches it. A name not in the snapshot yet (the CA was faster than the
// watch) is read from PlatformDB, a few names at a time: a flood of
// acme-tls/1 hellos cannot be turned into a load on the store.
type TLSALPN01Responder struct {
	Logger *slog.Logger

	certs atomic.Pointer[map[string]alpnCert]
	kv    atomic.Pointer[WatchKV] // set while Run runs, for the misses
	slots chan struct{}

	mu      sync.Mutex // misses only: never taken by a name in the snapshot
	flights map[string]*flight
}

// alpnMissReads bounds the concurrent store reads of names not in the snapshot.
const alpnMissReads = 2

// NewTLSALPN01Responder returns a responder with nothing to answer until Run.
func NewTLSALPN01Responder(log *slog.Logger) *TLSALPN01Responder {
	if log == nil {
		log = slog.Default()
	}
	r := &TLSALPN01Responder{Logger: log, slots: make(chan struct{}, alpnMissReads), flights: map[string]*flight{}}
	r.certs.Store(&map[string]alpnCert{})
	return r
}

// GetCertificate is for acme-tls/1 hellos only (the front passes it a
// hello that offers acme-tls/1 and no other protocol): the validation
// certificate of the name the hello asks for, or an error (the
// handshake fails, as RFC 8737 wants for a name with no challenge).
func (r *TLSALPN01Responder) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := alpnName(hello.ServerName)
	if name == "" {
		return nil, errors.New("acme-tls/1 handshake without a server name")
	}
	if c, ok := (*r.certs.Load())[name]; ok {
		return c.cert, nil
	}
	return r.lookup(hello.Context(), name)
}

// lookup reads name's row from PlatformDB and builds its certificate. The
// CA validates from several places at once (Pebble from 3, Let's Encrypt
// from 5): concurrent misses for one name share one read and one build, and
// at most alpnMissReads names are read at a time.
func (r *TLSALPN01Responder) lookup(ctx context.Context, name string) (*tls.Certificate, error) {
	kv := r.kv.Load()
	if kv == nil {
		return nil, fmt.Errorf("no TLS-ALPN-01 challenge for %s (PlatformDB not attached)", name)
	}
	r.mu.Lock()
	if f, ok := r.flights[name]; ok {
		r.mu.Unlock()
		select {
		case <-f.done:
			return f.cert, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	select {
	case r.slots <- struct{}{}:
	default:
		r.mu.Unlock()
		return nil, fmt.Errorf("no TLS-ALPN-01 challenge for %s in memory, and the store is busy with other lookups", name)
	}
	f := &flight{done: make(chan struct{})}
	r.flights[name] = f
	r.mu.Unlock()

	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second) // the flight's waiters may outlive its first caller
	e, err := (*kv).Get(rctx, tlsALPNPrefix+name)
	cancel()
	if err != nil {
		f.err = fmt.Errorf("no TLS-ALPN-01 challenge for %s: %w", name, err)
	} else {
		f.cert, f.err = tlsalpn01.ChallengeCert(name, string(e.Value))
	}
	r.mu.Lock()
	delete(r.flights, name)
	r.mu.Unlock()
	<-r.slots
	close(f.done)
	return f.cert, f.err
}

// flight is one miss being read; its waiters take its outcome.
type flight struct {
	done chan struct{}
	cert *tls.Certificate
	err  error
}

// Run keeps the snapshot in step with PlatformDB until ctx ends.
func (r *TLSALPN01Responder) Run(ctx context.Context, kv WatchKV) {
	r.kv.Store(&kv)
	defer r.kv.Store(nil)
	backoff := time.Second
	for ctx.Err() == nil {
		entries, rev, err := kv.List(ctx, tlsALPNPrefix)
		if err != nil {
			if ctx.Err() == nil {
				r.Logger.Debug("listing TLS-ALPN-01 challenges; retrying", "error", err.Error())
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		cur := *r.certs.Load()
		next := make(map[string]alpnCert, len(entries))
		for _, e := range entries {
			name := strings.TrimPrefix(e.Key, tlsALPNPrefix)
			if c, ok := cur[name]; ok && c.keyAuth == string(e.Value) {
				next[name] = c
			} else if c, ok := r.build(name, e.Value); ok {
				next[name] = c
			}
		}
		r.certs.Store(&next)
		r.follow(ctx, kv, rev)
	}
}

// follow applies the watch's events after revision rev; it returns when
// the watch ends (ctx) or asks for a new List.
func (r *TLSALPN01Responder) follow(ctx context.Context, kv WatchKV, rev int64) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for ev := range kv.Watch(wctx, tlsALPNPrefix, rev+1) {
		if ev.Type == platformdb.EventReset {
			return
		}
		if ev.Entry.Revision != 0 && ev.Entry.Revision <= rev {
			continue
		}
		name := strings.TrimPrefix(ev.Entry.Key, tlsALPNPrefix)
		next := maps.Clone(*r.certs.Load())
		switch ev.Type {
		case platformdb.EventPut:
			c, ok := r.build(name, ev.Entry.Value)
			if !ok {
				continue
			}
			next[name] = c
		case platformdb.EventDelete:
			delete(next, name)
		}
		r.certs.Store(&next)
	}
}

func (r *TLSALPN01Responder) build(name string, keyAuth []byte) (alpnCert, bool) {
	cert, err := tlsalpn01.ChallengeCert(name, string(keyAuth))
	if err != nil {
		r.Logger.Debug("building a TLS-ALPN-01 certificate", "hostname", name, "error", err.Error())
		return alpnCert{}, false
	}
	return alpnCert{keyAuth: string(keyAuth), cert: cert}, true
}
