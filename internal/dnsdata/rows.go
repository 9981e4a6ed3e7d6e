// Package dnsdata owns what the embedded DNS server answers: the PlatformDB
// rows behind the zone (user -> core, core info, runtime records, ACME
// DNS-01 values), the zone built from them and the static configuration,
// the watcher that rebuilds and swaps the zone when a row changes, and the
// DNS-01 challenge provider that publishes through those rows.
package dnsdata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"github.com/pryv/pryv-tls/internal/authdns"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// PlatformDB tables (the part after the prefix is the row).
const (
	UserCorePrefix  = "user-core/"  // <username> -> UserCore
	CoreInfoPrefix  = "core-info/"  // <coreId>   -> CoreInfo
	RecordPrefix    = "dns-record/" // <subdomain> -> Records
	ChallengePrefix = "acme-dns01/" // <fqdn>/<hash of value> -> the TXT value
)

// UserCore says which core hosts a user.
type UserCore struct {
	Core string `json:"core"`
}

// CoreInfo is one core as DNS (and the admin API) sees it.
type CoreInfo struct {
	ID        string `json:"id"`
	IP        string `json:"ip,omitempty"`
	IPv6      string `json:"ipv6,omitempty"`
	CNAME     string `json:"cname,omitempty"`
	URL       string `json:"url,omitempty"`
	Hosting   string `json:"hosting,omitempty"`
	Available bool   `json:"available"`
}

// Records are the records of one name, values in zone-file presentation
// format (mx "10 mail.example.com.", caa `0 issue "letsencrypt.org"`). The
// field names are those of the YAML of dns.staticEntries and of
// "pryv-tls dns-records load".
type Records struct {
	A     []string `json:"a,omitempty" yaml:"a,omitempty"`
	AAAA  []string `json:"aaaa,omitempty" yaml:"aaaa,omitempty"`
	CNAME string   `json:"cname,omitempty" yaml:"cname,omitempty"`
	NS    []string `json:"ns,omitempty" yaml:"ns,omitempty"`
	MX    []string `json:"mx,omitempty" yaml:"mx,omitempty"`
	TXT   []string `json:"txt,omitempty" yaml:"txt,omitempty"`
	CAA   []string `json:"caa,omitempty" yaml:"caa,omitempty"`
}

// Empty reports whether r holds no record.
func (r Records) Empty() bool {
	return len(r.A)+len(r.AAAA)+len(r.NS)+len(r.MX)+len(r.TXT)+len(r.CAA) == 0 && r.CNAME == ""
}

// Entry is a subdomain and its records, the unit of dns-records files.
type Entry struct {
	Subdomain string  `json:"subdomain" yaml:"subdomain"`
	Records   Records `json:"records" yaml:"records"`
}

// KV is what the rows need of PlatformDB.
type KV interface {
	Get(ctx context.Context, key string) (platformdb.Entry, error)
	Put(ctx context.Context, key string, value []byte) (int64, error)
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix string) ([]platformdb.Entry, int64, error)
}

// ErrNotFound is returned for a row that does not exist; ErrInvalid (via
// errors.Is) for a name or record that cannot be stored.
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid")
)

type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(format string, args ...any) error { return &invalidError{fmt.Sprintf(format, args...)} }

var (
	usernameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$|^[a-z0-9]$`)
)

// CheckUsername refuses what cannot be a single DNS label.
func CheckUsername(u string) (string, error) {
	l := strings.ToLower(u)
	if !usernameRE.MatchString(l) {
		return "", invalid("username %q: must be one DNS label (letters, digits, hyphens; 1-63 characters; no leading or trailing hyphen)", u)
	}
	return l, nil
}

// CheckSubdomain refuses what cannot be a name under the domain ("" or "@"
// is not accepted: the apex is configured with dns.records.root). It is
// dns.CheckRelativeName, the check dns.staticEntries gets too.
func CheckSubdomain(s string) (string, error) {
	l, err := authdns.CheckRelativeName(s)
	if err != nil {
		return "", invalid("subdomain %v", err)
	}
	return l, nil
}

// Check validates record values (addresses, one CNAME alone); the full
// presentation-format check happens when the zone is built.
func (r Records) Check() error {
	for _, a := range r.A {
		if ip, err := netip.ParseAddr(a); err != nil || !ip.Is4() {
			return invalid("a: %q is not an IPv4 address", a)
		}
	}
	for _, a := range r.AAAA {
		if ip, err := netip.ParseAddr(a); err != nil || !ip.Is6() || ip.Is4In6() {
			return invalid("aaaa: %q is not an IPv6 address", a)
		}
	}
	if r.CNAME != "" && (len(r.A)+len(r.AAAA)+len(r.NS)+len(r.MX)+len(r.TXT)+len(r.CAA) > 0) {
		return invalid("cname: a name with a CNAME can hold no other record")
	}
	if r.Empty() {
		return invalid("no record")
	}
	return nil
}

// Rows reads and writes the DNS rows.
type Rows struct{ KV KV }

func (s Rows) put(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := s.KV.Put(ctx, key, data); err != nil {
		return fmt.Errorf("writing %s: %w", key, err)
	}
	return nil
}

func (s Rows) get(ctx context.Context, key string, v any) error {
	e, err := s.KV.Get(ctx, key)
	if errors.Is(err, platformdb.ErrNotFound) {
		return fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value, v); err != nil {
		return fmt.Errorf("%s: unreadable row: %w", key, err)
	}
	return nil
}

func (s Rows) del(ctx context.Context, key string) error {
	if _, err := s.KV.Get(ctx, key); errors.Is(err, platformdb.ErrNotFound) {
		return fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	if err := s.KV.Delete(ctx, key); err != nil {
		return fmt.Errorf("deleting %s: %w", key, err)
	}
	return nil
}

// SetUserCore records that username is hosted on coreID.
func (s Rows) SetUserCore(ctx context.Context, username, coreID string) error {
	u, err := CheckUsername(username)
	if err != nil {
		return err
	}
	if coreID == "" {
		return invalid("core id: required")
	}
	return s.put(ctx, UserCorePrefix+u, UserCore{Core: coreID})
}

// UserCore returns the core hosting username.
func (s Rows) UserCore(ctx context.Context, username string) (string, error) {
	var uc UserCore
	err := s.get(ctx, UserCorePrefix+strings.ToLower(username), &uc)
	return uc.Core, err
}

// DeleteUser removes username's row.
func (s Rows) DeleteUser(ctx context.Context, username string) error {
	return s.del(ctx, UserCorePrefix+strings.ToLower(username))
}

// Users lists username -> core, sorted by username.
func (s Rows) Users(ctx context.Context) ([][2]string, error) {
	entries, _, err := s.KV.List(ctx, UserCorePrefix)
	if err != nil {
		return nil, err
	}
	out := make([][2]string, 0, len(entries))
	for _, e := range entries {
		var uc UserCore
		if json.Unmarshal(e.Value, &uc) == nil {
			out = append(out, [2]string{strings.TrimPrefix(e.Key, UserCorePrefix), uc.Core})
		}
	}
	return out, nil
}

// SetCoreInfo writes a core's row.
func (s Rows) SetCoreInfo(ctx context.Context, c CoreInfo) error {
	if c.ID == "" {
		return errors.New("core id: required")
	}
	return s.put(ctx, CoreInfoPrefix+c.ID, c)
}

// Cores lists every core's row, sorted by id.
func (s Rows) Cores(ctx context.Context) ([]CoreInfo, error) {
	entries, _, err := s.KV.List(ctx, CoreInfoPrefix)
	if err != nil {
		return nil, err
	}
	var out []CoreInfo
	for _, e := range entries {
		var c CoreInfo
		if json.Unmarshal(e.Value, &c) == nil {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// SetRecords writes a runtime record row after checking it.
func (s Rows) SetRecords(ctx context.Context, e Entry) error {
	sub, err := CheckSubdomain(e.Subdomain)
	if err != nil {
		return err
	}
	if err := e.Records.Check(); err != nil {
		return invalid("subdomain %s: %v", sub, err)
	}
	if _, err := buildRRs(sub+".check.invalid.", 60, e.Records); err != nil {
		return invalid("subdomain %s: %v", sub, err)
	}
	return s.put(ctx, RecordPrefix+sub, e.Records)
}

// DeleteRecords removes a runtime record row.
func (s Rows) DeleteRecords(ctx context.Context, subdomain string) error {
	sub, err := CheckSubdomain(subdomain)
	if err != nil {
		return err
	}
	return s.del(ctx, RecordPrefix+sub)
}

// Records lists the runtime record rows, sorted by subdomain.
func (s Rows) Records(ctx context.Context) ([]Entry, error) {
	entries, _, err := s.KV.List(ctx, RecordPrefix)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, e := range entries {
		var r Records
		if json.Unmarshal(e.Value, &r) == nil {
			out = append(out, Entry{Subdomain: strings.TrimPrefix(e.Key, RecordPrefix), Records: r})
		}
	}
	return out, nil
}
