package dnsdata

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// AccountPrefix holds the ACME accounts internal/acme registers, one row
// per directory: {directory, uri, caaIdentities, key}. Only the first three
// are read here (key is sealed and never needed).
const AccountPrefix = "acme-account/"

// account is what CAA records are made of: an ACME account row.
type account struct {
	Directory     string   `json:"directory"`
	URI           string   `json:"uri"`
	CAAIdentities []string `json:"caaIdentities"`
}

// CAA binds the apex of the zone to this platform's ACME accounts (RFC 8659
// with RFC 8657's accounturi and validationmethods): only these accounts,
// by these methods, may have certificates issued for the domain's names.
type CAA struct {
	// Directories are the ACME directories in use; the account row of each
	// gets its records. Empty: no CAA record is published.
	Directories []string
	// Identity is the CA's issuer domain for an account whose directory
	// names none in meta.caaIdentities (letsEncrypt.caaIdentity).
	Identity string
	// Methods are the ACME challenges the names other than the wildcard
	// are validated with (the issue records); WildMethods the wildcard's
	// (issuewild). Empty: no record of that tag.
	Methods, WildMethods []string
}

// caaRecords returns the apex CAA records for the accounts, and a warning
// for an account whose CA names no issuer domain.
func (c CAA) records(origin string, ttl uint32, accounts map[string]account) ([]dns.RR, []string) {
	if len(c.Directories) == 0 {
		return nil, nil
	}
	var (
		out      []dns.RR
		warnings []string
	)
	for _, row := range slices.Sorted(maps.Keys(accounts)) {
		a := accounts[row]
		if !slices.Contains(c.Directories, a.Directory) || a.URI == "" {
			continue
		}
		ids := a.CAAIdentities
		if len(ids) == 0 && c.Identity != "" {
			ids = []string{c.Identity}
		}
		if len(ids) == 0 {
			warnings = append(warnings, fmt.Sprintf("%s: no CAA record for the ACME account %s: its directory names no caaIdentities; set letsEncrypt.caaIdentity (e.g. letsencrypt.org)", origin, a.URI))
			continue
		}
		for _, id := range ids {
			for _, t := range []struct {
				tag     string
				methods []string
			}{{"issue", c.Methods}, {"issuewild", c.WildMethods}} {
				if len(t.methods) == 0 {
					continue
				}
				out = append(out, &dns.CAA{
					Hdr:   dns.RR_Header{Name: origin, Rrtype: dns.TypeCAA, Class: dns.ClassINET, Ttl: ttl},
					Tag:   t.tag,
					Value: id + "; accounturi=" + a.URI + "; validationmethods=" + strings.Join(t.methods, ","),
				})
			}
		}
	}
	return out, warnings
}

// parseAccount reads an account row; a row it cannot read is skipped
// (the renewer reports its own rows).
func parseAccount(value []byte) (account, bool) {
	var a account
	if json.Unmarshal(value, &a) != nil || a.Directory == "" {
		return account{}, false
	}
	return a, true
}
