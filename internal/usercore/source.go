package usercore

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// maxAnswerBytes bounds what is read of an upstream's answer.
const maxAnswerBytes = 64 << 10

// API asks the core's public API: GET {URL}/reg/cores?username=NAME
// (open-pryv.io's auth.cores method). It answers 200
// {"core":{"url":"https://core2.mc.example.com/"}} (multi-core: the core
// that hosts the user; single-core: the user's own endpoint) or 404
// {"error":{"id":"unknown-resource",...}} for an unknown user.
type API struct {
	URL    string // upstreams.api, e.g. http://127.0.0.1:3000
	Client *http.Client
}

// NewAPI checks base (upstreams.api) and returns its source.
func NewAPI(base string) (*API, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("usercore: upstreams.api %q is not an http(s) URL (e.g. http://127.0.0.1:3000)", base)
	}
	return &API{
		URL: strings.TrimSuffix(base, "/"),
		Client: &http.Client{
			Transport: &http.Transport{
				Proxy:               nil, // the core is local: never through HTTP_PROXY
				DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
				MaxIdleConnsPerHost: 16,
				IdleConnTimeout:     90 * time.Second,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// Find implements Source.
func (a *API) Find(ctx context.Context, username string) (Where, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		a.URL+"/reg/cores?username="+url.QueryEscape(username), nil)
	if err != nil {
		return Where{}, fmt.Errorf("core API: %w", errors.New("bad request URL (upstreams.api)"))
	}
	req.Header.Set("Accept", "application/json")
	hc := a.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		// A *url.Error names the URL, which holds the username.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Where{}, fmt.Errorf("core API GET /reg/cores: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return Where{}, fmt.Errorf("core API GET /reg/cores: reading the answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var ans struct {
			Core struct {
				URL string `json:"url"`
			} `json:"core"`
		}
		if err := json.Unmarshal(body, &ans); err != nil {
			return Where{}, fmt.Errorf("core API GET /reg/cores: 200 answer is not JSON {\"core\":{\"url\":...}}: %v", jsonErr(err))
		}
		if ans.Core.URL == "" {
			return Where{}, errors.New("core API GET /reg/cores: 200 answer has no core.url")
		}
		return Where{URL: ans.Core.URL}, nil
	case http.StatusNotFound:
		var ans struct {
			Error struct {
				ID      string `json:"id"`
				Message string `json:"message"`
			} `json:"error"`
		}
		// The core says unknown-resource for an unknown user ("Unknown
		// user ...") and for a path it does not have ("Unknown resource ",
		// a core without /reg/cores): only the first is an answer. Never
		// NXDOMAIN on a guess.
		if json.Unmarshal(body, &ans) == nil && ans.Error.ID == "unknown-resource" {
			if strings.HasPrefix(ans.Error.Message, "Unknown user") {
				return Where{}, fmt.Errorf("core API: %w", ErrUnknown)
			}
			return Where{}, fmt.Errorf("core API GET /reg/cores: 404 unknown-resource, not for a user (does the core at upstreams.api %s have /reg/cores, open-pryv.io v2?)", a.URL)
		}
		return Where{}, fmt.Errorf("core API GET /reg/cores: 404 without error id unknown-resource (is upstreams.api %s an open-pryv.io core?)", a.URL)
	default:
		return Where{}, fmt.Errorf("core API GET /reg/cores: answered %d", resp.StatusCode)
	}
}

// jsonErr keeps a decoding error's kind, not the text it quotes (which
// could be the user's).
func jsonErr(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("%s where %s was expected (field %s)", te.Value, te.Type, te.Field)
	}
	return "not JSON"
}

// KV is what RQLite needs of an rqlite client: one keyValue row's value
// (rqlite.Client's Get: POST /db/query?level=strong with
// [["SELECT value FROM keyValue WHERE key = ?", key]]).
type KV interface {
	Get(ctx context.Context, key string) (value string, found bool, err error)
}

// RQLite reads the core's PlatformDB, as its DNS server does:
// user-core/<token> holds the core id, core-info/<id> the core.
type RQLite struct {
	KV KV
	// Key is the HMAC key (base64-decoded platform.piiHmacKey) when
	// platform.piiMode is hashed; nil in cleartext mode.
	Key []byte
}

// NewRQLite returns the source; piiMode is "hashed" or "cleartext",
// hmacKey platform.piiHmacKey (base64 of 32 bytes; hashed mode only).
func NewRQLite(kv KV, piiMode, hmacKey string) (*RQLite, error) {
	switch piiMode {
	case "cleartext":
		return &RQLite{KV: kv}, nil
	case "hashed", "":
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(hmacKey))
		if err != nil || len(key) != 32 {
			return nil, errors.New("usercore: platform.piiHmacKey must be base64 of exactly 32 bytes (the cores' own value) when platform.piiMode is hashed")
		}
		return &RQLite{KV: kv, Key: key}, nil
	}
	return nil, fmt.Errorf("usercore: platform.piiMode %q: want hashed or cleartext", piiMode)
}

// Token is the user-core row's key part for username in hashed mode:
// lower-case hex of HMAC-SHA256(key, "username" 0x00 username), the
// username trimmed, its case kept (open-pryv.io's PiiHasher).
func Token(key []byte, username string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("username"))
	m.Write([]byte{0})
	m.Write([]byte(strings.TrimSpace(username)))
	return hex.EncodeToString(m.Sum(nil))
}

// Find implements Source.
func (q *RQLite) Find(ctx context.Context, username string) (Where, error) {
	tok := username
	if q.Key != nil {
		tok = Token(q.Key, username)
	}
	key := "user-core/" + tok
	v, found, err := q.KV.Get(ctx, key)
	if err != nil {
		return Where{}, fmt.Errorf("rqlite user-core row: %s", strings.ReplaceAll(err.Error(), tok, "<user>"))
	}
	if !found {
		return Where{}, fmt.Errorf("rqlite: %w", ErrUnknown)
	}
	if v = strings.TrimSpace(v); v == "" {
		return Where{}, errors.New("rqlite user-core row: empty core id")
	}
	return Where{CoreID: v}, nil
}

// CoreInfo implements CoreInfos.
func (q *RQLite) CoreInfo(ctx context.Context, id string) (CoreInfo, error) {
	v, found, err := q.KV.Get(ctx, "core-info/"+id)
	if err != nil {
		return CoreInfo{}, fmt.Errorf("rqlite core-info row of %q: %w", id, err)
	}
	if !found {
		return CoreInfo{}, fmt.Errorf("rqlite: core %q has no core-info row (and no core-info row in this platform's PlatformDB)", id)
	}
	var ci CoreInfo
	if err := json.Unmarshal([]byte(v), &ci); err != nil {
		return CoreInfo{}, fmt.Errorf("rqlite core-info row of %q is not JSON {id, ip, ipv6, cname, ...}: %w", id, err)
	}
	return ci, nil
}

// infoRecords are a core-info row's records, as the zone makes them for a
// core: its A and AAAA, or its CNAME when it has no address.
func infoRecords(c CoreInfo, ttl uint32) ([]dns.RR, error) {
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: ".", Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	var rrs []dns.RR
	if c.IP != "" {
		ip := net.ParseIP(c.IP).To4()
		if ip == nil {
			return nil, fmt.Errorf("ip %q is not an IPv4 address", c.IP)
		}
		rrs = append(rrs, &dns.A{Hdr: hdr(dns.TypeA), A: ip})
	}
	if c.IPv6 != "" {
		ip := net.ParseIP(c.IPv6)
		if ip == nil || ip.To4() != nil {
			return nil, fmt.Errorf("ipv6 %q is not an IPv6 address", c.IPv6)
		}
		rrs = append(rrs, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: ip})
	}
	if len(rrs) == 0 && c.CNAME != "" {
		if _, ok := dns.IsDomainName(c.CNAME); !ok {
			return nil, fmt.Errorf("cname %q is not a domain name", c.CNAME)
		}
		rrs = append(rrs, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: dns.Fqdn(c.CNAME)})
	}
	if len(rrs) == 0 {
		return nil, errors.New("no ip, ipv6 nor cname")
	}
	return rrs, nil
}
