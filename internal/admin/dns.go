package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/pryv/pryv-tls/internal/apijson"
	"github.com/pryv/pryv-tls/internal/dnsdata"
)

// DNSRows is what the API needs of the DNS rows in PlatformDB.
type DNSRows interface {
	Records(ctx context.Context) ([]dnsdata.Entry, error)
	SetRecords(ctx context.Context, e dnsdata.Entry) error
	DeleteRecords(ctx context.Context, subdomain string) error
	Users(ctx context.Context) ([][2]string, error)
	UserCore(ctx context.Context, username string) (string, error)
	SetUserCore(ctx context.Context, username, coreID string) error
	DeleteUser(ctx context.Context, username string) error
	Cores(ctx context.Context) ([]dnsdata.CoreInfo, error)
}

// dnsRoutes registers the DNS and user endpoints under prefix ("" on the
// control socket, OwnPrefix on the front).
func (a *API) dnsRoutes(mux *http.ServeMux, prefix string) {
	mux.HandleFunc("GET "+prefix+"/dns-records", a.listRecords)
	mux.HandleFunc("POST "+prefix+"/dns-records", a.loadRecords)
	mux.HandleFunc("DELETE "+prefix+"/dns-records/{subdomain}", a.deleteRecords)
	mux.HandleFunc("GET "+prefix+"/users", a.listUsers)
	mux.HandleFunc("GET "+prefix+"/users/{username}", a.getUser)
	mux.HandleFunc("PUT "+prefix+"/users/{username}", a.setUser)
	mux.HandleFunc("DELETE "+prefix+"/users/{username}", a.deleteUser)
	mux.HandleFunc("GET "+prefix+"/cores", a.listCores)
}

func (a *API) noDNS(w http.ResponseWriter) bool {
	if a.DNS == nil {
		apijson.Error(w, http.StatusNotFound, "unknown-resource", "this core runs no PlatformDB DNS rows (set dns.active or letsEncrypt.atRestKey)")
		return true
	}
	return false
}

func (a *API) listRecords(w http.ResponseWriter, r *http.Request) {
	if a.noDNS(w) {
		return
	}
	recs, err := a.DNS.Records(r.Context())
	if err != nil {
		a.storeError(w, "listing DNS records", err)
		return
	}
	if recs == nil {
		recs = []dnsdata.Entry{}
	}
	apijson.Write(w, http.StatusOK, map[string]any{"records": recs})
}

// LoadRequest is the body of POST dns-records: the YAML file's content.
type LoadRequest struct {
	Records []dnsdata.Entry `json:"records"`
	Replace bool            `json:"replace"` // delete rows the file does not name
	DryRun  bool            `json:"dryRun"`  // report, change nothing
}

// LoadResult says what a load did (or would do).
type LoadResult struct {
	Added     []string `json:"added"`
	Changed   []string `json:"changed"`
	Removed   []string `json:"removed"`
	Unchanged []string `json:"unchanged"`
	DryRun    bool     `json:"dryRun"`
}

// loadRecords checks every entry before writing any: a file with one bad
// entry changes nothing.
func (a *API) loadRecords(w http.ResponseWriter, r *http.Request) {
	if a.noDNS(w) {
		return
	}
	var req LoadRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 8<<20)).Decode(&req); err != nil {
		apijson.Error(w, http.StatusBadRequest, "invalid-request-structure", "body must be JSON {records: [{subdomain, records}], replace, dryRun}")
		return
	}
	want := map[string]dnsdata.Records{}
	for i, e := range req.Records {
		sub, err := dnsdata.CheckSubdomain(e.Subdomain)
		if err == nil {
			err = e.Records.Check()
		}
		if err != nil {
			apijson.Error(w, http.StatusBadRequest, "invalid-parameters-format", "records["+strconv.Itoa(i)+"] ("+e.Subdomain+"): "+err.Error())
			return
		}
		if _, dup := want[sub]; dup {
			apijson.Error(w, http.StatusBadRequest, "invalid-parameters-format", "records["+strconv.Itoa(i)+"]: subdomain "+sub+" appears twice")
			return
		}
		want[sub] = e.Records
	}
	cur, err := a.DNS.Records(r.Context())
	if err != nil {
		a.storeError(w, "listing DNS records", err)
		return
	}
	have := map[string]dnsdata.Records{}
	for _, e := range cur {
		have[e.Subdomain] = e.Records
	}
	res := LoadResult{Added: []string{}, Changed: []string{}, Removed: []string{}, Unchanged: []string{}, DryRun: req.DryRun}
	for _, sub := range slices.Sorted(maps.Keys(want)) {
		old, ok := have[sub]
		switch {
		case !ok:
			res.Added = append(res.Added, sub)
		case reflect.DeepEqual(old, want[sub]):
			res.Unchanged = append(res.Unchanged, sub)
			continue
		default:
			res.Changed = append(res.Changed, sub)
		}
		if !req.DryRun {
			if err := a.DNS.SetRecords(r.Context(), dnsdata.Entry{Subdomain: sub, Records: want[sub]}); err != nil {
				a.storeError(w, "writing DNS records", err)
				return
			}
		}
	}
	if req.Replace {
		for _, sub := range slices.Sorted(maps.Keys(have)) {
			if _, keep := want[sub]; keep {
				continue
			}
			res.Removed = append(res.Removed, sub)
			if !req.DryRun {
				if err := a.DNS.DeleteRecords(r.Context(), sub); err != nil {
					a.storeError(w, "deleting DNS records", err)
					return
				}
			}
		}
	}
	apijson.Write(w, http.StatusOK, res)
}

func (a *API) deleteRecords(w http.ResponseWriter, r *http.Request) {
	if a.noDNS(w) {
		return
	}
	sub := r.PathValue("subdomain")
	if err := a.DNS.DeleteRecords(r.Context(), sub); err != nil {
		a.rowError(w, err)
		return
	}
	apijson.Write(w, http.StatusOK, map[string]string{"deleted": strings.ToLower(sub)})
}

// CoreStatus is one core as GET cores shows it.
type CoreStatus struct {
	ID        string `json:"id"`
	URL       string `json:"url"`
	Hosting   string `json:"hosting"`
	Available bool   `json:"available"`
	UserCount int    `json:"userCount"`
	IP        string `json:"ip,omitempty"`
	Member    bool   `json:"member"`  // a PlatformDB member (voting)
	Healthy   bool   `json:"healthy"` // its PlatformDB member answers
}

// UserInfo is a user -> core row.
type UserInfo struct {
	Username string `json:"username"`
	Core     string `json:"core"`
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) {
	if a.noDNS(w) {
		return
	}
	users, err := a.DNS.Users(r.Context())
	if err != nil {
		a.storeError(w, "listing users", err)
		return
	}
	out := make([]UserInfo, 0, len(users))
	for _, u := range users {
		out = append(out, UserInfo{Username: u[0], Core: u[1]})
	}
	apijson.Write(w, http.StatusOK, map[string]any{"users": out})
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request) {
	if a.noDNS(w) {
		return
	}
	u := strings.ToLower(r.PathValue("username"))
	core, err := a.DNS.UserCore(r.Context(), u)
	if err != nil {
		a.rowError(w, err)
		return
	}
	apijson.Write(w, http.StatusOK, UserInfo{Username: u, Core: core})
}

func (a *API) setUser(w http.ResponseWriter, r *http.Request) {
	if a.noDNS(w) {
		return
	}
	var body struct {
		Core string `json:"core"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil || body.Core == "" {
		apijson.Error(w, http.StatusBadRequest, "invalid-request-structure", `body must be JSON {"core": "<core id>"}`)
		return
	}
	u := r.PathValue("username")
	if err := a.DNS.SetUserCore(r.Context(), u, body.Core); err != nil {
		if errors.Is(err, dnsdata.ErrInvalid) {
			apijson.Error(w, http.StatusBadRequest, "invalid-parameters-format", err.Error())
			return
		}
		a.storeError(w, "writing the user row", err)
		return
	}
	apijson.Write(w, http.StatusOK, UserInfo{Username: strings.ToLower(u), Core: body.Core})
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request) {
	if a.noDNS(w) {
		return
	}
	u := r.PathValue("username")
	if err := a.DNS.DeleteUser(r.Context(), u); err != nil {
		a.rowError(w, err)
		return
	}
	apijson.Write(w, http.StatusOK, map[string]string{"deleted": strings.ToLower(u)})
}

func (a *API) listCores(w http.ResponseWriter, r *http.Request) {
	if a.noDNS(w) {
		return
	}
	out, _, err := a.coreStatuses(r.Context())
	if err != nil {
		a.storeError(w, err.what, err.err)
		return
	}
	apijson.Write(w, http.StatusOK, map[string]any{"cores": out})
}

type whatError struct {
	what string
	err  error
}

// coreStatuses is every core-info row with its user count and PlatformDB
// member health (health is nil when it could not be read).
func (a *API) coreStatuses(ctx context.Context) ([]CoreStatus, map[string]bool, *whatError) {
	cores, err := a.DNS.Cores(ctx)
	if err != nil {
		return nil, nil, &whatError{"listing cores", err}
	}
	users, err := a.DNS.Users(ctx)
	if err != nil {
		return nil, nil, &whatError{"listing users", err}
	}
	count := map[string]int{}
	for _, u := range users {
		count[u[1]]++
	}
	var health map[string]bool
	if a.Members != nil {
		health, _ = a.Members(ctx)
	}
	out := make([]CoreStatus, 0, len(cores))
	for _, c := range cores {
		cs := CoreStatus{ID: c.ID, URL: c.URL, Hosting: c.Hosting, Available: c.Available, UserCount: count[c.ID], IP: c.IP}
		if h, member := health[c.ID]; member {
			cs.Member, cs.Healthy = true, h
		}
		out = append(out, cs)
	}
	return out, health, nil
}

func (a *API) rowError(w http.ResponseWriter, err error) {
	if errors.Is(err, dnsdata.ErrNotFound) {
		apijson.Error(w, http.StatusNotFound, "unknown-resource", err.Error())
		return
	}
	if errors.Is(err, dnsdata.ErrInvalid) {
		apijson.Error(w, http.StatusBadRequest, "invalid-parameters-format", err.Error())
		return
	}
	a.storeError(w, "PlatformDB", err)
}
