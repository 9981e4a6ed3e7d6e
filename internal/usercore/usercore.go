// Package usercore owns "which core hosts a user" for the users a core's
// zone does not hold: the platform's users written by open-pryv.io cores
// into their own PlatformDB (rqlite), which pryv-tls does not replicate.
// The DNS server asks a Resolver (a dns.Users) about a name one label below
// the domain that its zone does not answer; the Resolver asks a Source —
// the core's public API (GET /reg/cores?username=) or the core's rqlite —
// and maps the answer to a core of this platform's registry (the core-info
// rows), whose records the user then answers with.
//
// What it bounds: answers are cached (found: dns.defaultTTL; absent: a
// shorter negative lifetime) in a fixed number of slots; one upstream
// request per name at a time (a second query for it waits for the first);
// at most MaxPerSecond upstream requests a second; a query waits at most
// Timeout, after which it gets SERVFAIL while its request may still finish
// and fill the cache. Reading the cache takes no lock and allocates
// nothing: it is on the DNS query path.
//
// Usernames are personal data: they are never logged, nor put in an error.
package usercore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pryv/pryv-tls/internal/authdns"
)

// Defaults of Options.
const (
	DefaultTTL          = 300 * time.Second
	DefaultNegativeTTL  = 30 * time.Second
	DefaultTimeout      = time.Second
	DefaultFetchTimeout = 5 * time.Second
	DefaultMaxPerSecond = 50
	DefaultCacheSize    = 8192
	// failureLogEvery spaces the warnings about failing lookups.
	failureLogEvery = 10 * time.Second
)

// ErrUnknown is a Source's answer for a user that does not exist.
var ErrUnknown = errors.New("no such user")

// Source finds which core hosts a user.
type Source interface {
	// Find returns where username is, or an error wrapping ErrUnknown
	// when it does not exist. The error must not contain the username.
	Find(ctx context.Context, username string) (Where, error)
}

// CoreInfos is what a Source may also offer: a core's core-info row, for a
// core id found that is no core of the registry.
type CoreInfos interface {
	CoreInfo(ctx context.Context, id string) (CoreInfo, error)
}

// Where is what a Source knows of a user's core: the URL the core API
// answered, or the core id of the user-core row.
type Where struct {
	URL    string
	CoreID string
}

// CoreInfo is a core-info row as open-pryv.io writes it.
type CoreInfo struct {
	ID    string `json:"id"`
	URL   string `json:"url,omitempty"`
	IP    string `json:"ip,omitempty"`
	IPv6  string `json:"ipv6,omitempty"`
	CNAME string `json:"cname,omitempty"`
}

// Core is a core of the platform's registry: its id (its name in the zone
// is {id}.{domain}) and core.url.
type Core struct {
	ID, URL string
}

// Options configures a Resolver.
type Options struct {
	// Domain is dns.domain ("mc.example.com").
	Domain string
	// SelfName is the name of the zone, relative to Domain, whose records
	// this core answers with (its id, or "core" when its core-info row has
	// no address): a single-core answer (the user's URL is
	// https://{username}.{domain}/) is this core.
	SelfName string
	Source   Source
	// TTL is how long a user found is cached (dns.defaultTTL);
	// NegativeTTL how long an absent one is, and the TTL of its NXDOMAIN
	// (at most TTL). Defaults: DefaultTTL, DefaultNegativeTTL.
	TTL, NegativeTTL time.Duration
	// Timeout bounds a query's wait (dns.userLookup.timeout); FetchTimeout
	// an upstream request's (at least Timeout).
	Timeout, FetchTimeout time.Duration
	// MaxPerSecond bounds the upstream requests started per second
	// (dns.userLookup.maxPerSecond; bursts of as many); a lookup over it
	// gets dns.ErrLookupLimited.
	MaxPerSecond int
	// CacheSize is the number of cache slots (rounded up to a power of two).
	CacheSize int
	Logger    *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Resolver is a dns.Users. Create it with New; Close it to stop its
// requests.
type Resolver struct {
	domain   string // lower case, no trailing dot
	self     authdns.UserHost
	src      Source
	ttl, neg int64 // nanoseconds
	absent   authdns.UserHost
	timeout  time.Duration
	fetchTO  time.Duration
	log      *slog.Logger
	now      func() time.Time

	cache *cache
	reg   atomic.Pointer[registry]

	base context.Context
	stop context.CancelFunc

	mu      sync.Mutex
	flights map[string]*flight
	limit   limiter

	logMu      sync.Mutex
	lastLog    time.Time
	suppressed int
}

// flight is one upstream request; the queries for its name wait for done.
type flight struct {
	done   chan struct{}
	host   authdns.UserHost
	lookup authdns.Lookup
	err    error
}

var _ authdns.Users = (*Resolver)(nil)

// New checks opts and returns a Resolver.
func New(opts Options) (*Resolver, error) {
	domain := strings.TrimSuffix(strings.ToLower(opts.Domain), ".")
	if domain == "" {
		return nil, errors.New("usercore: no domain (dns.domain)")
	}
	if opts.Source == nil {
		return nil, errors.New("usercore: no source")
	}
	if opts.SelfName == "" {
		return nil, errors.New("usercore: no name for this core")
	}
	self, err := authdns.UserAt(opts.SelfName + "." + domain)
	if err != nil {
		return nil, fmt.Errorf("usercore: this core's name %q: %w", opts.SelfName, err)
	}
	r := &Resolver{
		domain:  domain,
		self:    self,
		src:     opts.Source,
		timeout: opts.Timeout,
		fetchTO: opts.FetchTimeout,
		log:     opts.Logger,
		now:     opts.Now,
		flights: map[string]*flight{},
	}
	ttl, neg := opts.TTL, opts.NegativeTTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if neg <= 0 {
		neg = DefaultNegativeTTL
	}
	neg = min(neg, ttl)
	r.ttl, r.neg = int64(ttl), int64(neg)
	r.absent = authdns.UserAbsent(uint32(max(neg/time.Second, 1)))
	if r.timeout <= 0 {
		r.timeout = DefaultTimeout
	}
	if r.fetchTO <= 0 {
		r.fetchTO = DefaultFetchTimeout
	}
	r.fetchTO = max(r.fetchTO, r.timeout)
	perSecond := opts.MaxPerSecond
	if perSecond <= 0 {
		perSecond = DefaultMaxPerSecond
	}
	r.limit = limiter{rate: float64(perSecond), burst: float64(perSecond), tokens: float64(perSecond)}
	size := opts.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	r.cache = newCache(size)
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.base, r.stop = context.WithCancel(context.Background())
	r.SetCores(nil)
	return r, nil
}

// Close stops the upstream requests in flight.
func (r *Resolver) Close() { r.stop() }

// registry is the platform's cores, by id and by core.url host.
type registry struct {
	ids    map[string]bool   // lower case
	byHost map[string]string // lower-case host -> id
}

// SetCores replaces the registry: the core-info rows of the platform's
// PlatformDB. Entries cached stay until they expire.
func (r *Resolver) SetCores(cores []Core) {
	reg := &registry{ids: map[string]bool{}, byHost: map[string]string{}}
	for _, c := range cores {
		id := strings.ToLower(c.ID)
		if id == "" {
			continue
		}
		reg.ids[id] = true
		if h := urlHost(c.URL); h != "" {
			reg.byHost[h] = id
		}
	}
	r.reg.Store(reg)
}

// Cached is the query path: a cache read, or an answer for a label that
// cannot be a Pryv username (no request for it).
func (r *Resolver) Cached(label string) (authdns.UserHost, authdns.Lookup) {
	if !IsUsername(label) {
		return r.absent, authdns.LookupAbsent
	}
	if e := r.cache.get(label, r.now().UnixNano()); e != nil {
		return e.host, e.lookup
	}
	return authdns.UserHost{}, authdns.LookupMiss
}

// Resolve answers from the cache, or joins the request in flight for
// label, or starts one; it waits at most Timeout (or until ctx ends).
func (r *Resolver) Resolve(ctx context.Context, label string) (authdns.UserHost, authdns.Lookup, error) {
	if h, lk := r.Cached(label); lk != authdns.LookupMiss {
		return h, lk, nil
	}
	f, err := r.join(label)
	if err != nil {
		return authdns.UserHost{}, authdns.LookupMiss, err
	}
	t := time.NewTimer(r.timeout)
	defer t.Stop()
	select {
	case <-f.done:
		return f.host, f.lookup, f.err
	case <-t.C:
		return authdns.UserHost{}, authdns.LookupMiss, fmt.Errorf("user lookup: no answer within %s: %w", r.timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		return authdns.UserHost{}, authdns.LookupMiss, fmt.Errorf("user lookup: %w", ctx.Err())
	}
}

// join returns the flight for label, started if there is none and the
// rate limit allows it.
func (r *Resolver) join(label string) (*flight, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.flights[label]; f != nil {
		return f, nil
	}
	if !r.limit.allow(r.now().UnixNano()) {
		return nil, authdns.ErrLookupLimited
	}
	f := &flight{done: make(chan struct{})}
	r.flights[label] = f
	go r.fetch(label, f)
	return f, nil
}

// fetch runs one upstream request and publishes its result: in the cache
// first, so a query after the flight is gone finds it there.
func (r *Resolver) fetch(label string, f *flight) {
	ctx, cancel := context.WithTimeout(r.base, r.fetchTO)
	defer cancel()
	f.host, f.lookup, f.err = r.find(ctx, label)
	if f.err == nil {
		now := r.now().UnixNano()
		life := r.ttl
		if f.lookup == authdns.LookupAbsent {
			life = r.neg
		}
		r.cache.put(&entry{label: label, host: f.host, lookup: f.lookup, expires: now + life}, now)
	} else {
		r.failed(f.err)
	}
	r.mu.Lock()
	delete(r.flights, label)
	r.mu.Unlock()
	close(f.done)
}

// find asks the source and maps its answer to what the user answers.
func (r *Resolver) find(ctx context.Context, label string) (authdns.UserHost, authdns.Lookup, error) {
	w, err := r.src.Find(ctx, label)
	if errors.Is(err, ErrUnknown) {
		return r.absent, authdns.LookupAbsent, nil
	}
	if err != nil {
		return authdns.UserHost{}, authdns.LookupMiss, err
	}
	h, err := r.place(ctx, label, w)
	if err != nil {
		return authdns.UserHost{}, authdns.LookupMiss, err
	}
	return h, authdns.LookupFound, nil
}

// place maps a source's answer to a core of the registry (or, for a core
// id the registry does not know, to its core-info row's records).
func (r *Resolver) place(ctx context.Context, label string, w Where) (authdns.UserHost, error) {
	reg := r.reg.Load()
	if w.URL != "" {
		host := urlHost(w.URL)
		if host == "" {
			return authdns.UserHost{}, errors.New("user lookup: the core answered a URL without a host")
		}
		if host == label+"."+r.domain {
			return r.self, nil // a single core answers with the user's own endpoint
		}
		if id, ok := reg.byHost[host]; ok {
			return r.core(id)
		}
		if id, ok := strings.CutSuffix(host, "."+r.domain); ok && reg.ids[id] {
			return r.core(id)
		}
		if strings.HasSuffix(host, "."+r.domain) {
			// Maybe another user's name: not in the message.
			return authdns.UserHost{}, fmt.Errorf("user lookup: the core answered a URL whose host, under %s, is no core of the platform (no core-info row has that id or that url)", r.domain)
		}
		return authdns.UserHost{}, fmt.Errorf("user lookup: the core answered a URL whose host %q is no core of the platform (no core-info row has that url)", host)
	}
	id := strings.ToLower(w.CoreID)
	if id == "" {
		return authdns.UserHost{}, errors.New("user lookup: the source answered neither a URL nor a core id")
	}
	if reg.ids[id] {
		return r.core(id)
	}
	ci, ok := r.src.(CoreInfos)
	if !ok {
		return authdns.UserHost{}, fmt.Errorf("user lookup: core %q is no core of the platform", id)
	}
	info, err := ci.CoreInfo(ctx, w.CoreID)
	if err != nil {
		return authdns.UserHost{}, err
	}
	rrs, err := infoRecords(info, uint32(r.ttl/int64(time.Second))) //nolint:gosec // G115: the daemon passes dns.defaultTTL, validated at most 2^31-1 s
	if err != nil {
		return authdns.UserHost{}, fmt.Errorf("user lookup: core-info row of %q: %w", w.CoreID, err)
	}
	return authdns.UserWith(rrs)
}

func (r *Resolver) core(id string) (authdns.UserHost, error) {
	return authdns.UserAt(id + "." + r.domain)
}

// failed logs a failed lookup: at most one warning every failureLogEvery,
// saying how many were not logged since.
func (r *Resolver) failed(err error) {
	r.logMu.Lock()
	now := r.now()
	if !r.lastLog.IsZero() && now.Sub(r.lastLog) < failureLogEvery {
		r.suppressed++
		r.logMu.Unlock()
		return
	}
	n := r.suppressed
	r.lastLog, r.suppressed = now, 0
	r.logMu.Unlock()
	r.log.Warn("user lookups failing; those queries get SERVFAIL", "error", err.Error(), "failures_not_logged", n)
}

// IsUsername reports whether label can be an open-pryv.io username
// (api-server's schema: 5 to 60 of a-z, 0-9 and '-', starting and ending
// with a letter or a digit). No other label is looked up.
func IsUsername(label string) bool {
	if len(label) < 5 || len(label) > 60 || label[0] == '-' || label[len(label)-1] == '-' {
		return false
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// urlHost is a URL's host, lower case, without port or trailing dot; "" if
// it has none.
func urlHost(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
}

// limiter is a token bucket, used under Resolver.mu.
type limiter struct {
	rate, burst, tokens float64
	last                int64 // Unix nanoseconds of the last refill
}

func (l *limiter) allow(now int64) bool {
	if l.last != 0 && now > l.last {
		l.tokens = min(l.burst, l.tokens+float64(now-l.last)/1e9*l.rate)
	}
	if l.last == 0 || now > l.last {
		l.last = now
	}
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
