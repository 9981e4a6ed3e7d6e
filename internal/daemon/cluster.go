package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/pryv/pryv-tls/internal/cluster"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/dnsdata"
	"github.com/pryv/pryv-tls/internal/join"
	"github.com/pryv/pryv-tls/internal/platformdb"
)

// Join is a join in progress (serve --bootstrap): done before this core's
// PlatformDB member first starts.
type Join struct {
	Bundle *join.Bundle
}

// Do calls the CA holder.
func (j *Join) Do(ctx context.Context) (*join.Response, error) {
	return join.Call(ctx, j.Bundle)
}

// JoinURLName keeps the CA holder's join URL on a joined core, for the
// renewal of its node certificate.
const JoinURLName = "join-url"

// JoinedBefore tells, for a core given a bundle, whether it already runs a
// PlatformDB member: of this cluster (a join re-run: nothing to do), or of
// its own (it must not be merged: the operator moves it aside first).
func JoinedBefore(cfg *config.Config, b *join.Bundle) (member, sameCluster bool) {
	if !hasMember(cfg.PlatformDB.DataDir) {
		return false, false
	}
	ca, err := os.ReadFile(filepath.Join(nodeTLSDir(cfg), MemberCAName))
	return true, err == nil && string(ca) == b.CACert
}

// InstallBundle writes a bundle's cluster CA and node certificate where
// nodeTLS looks for them (the key 0600), replacing any earlier ones.
func InstallBundle(cfg *config.Config, b *join.Bundle) error {
	dir := nodeTLSDir(cfg)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data string
		mode os.FileMode
	}{
		{cluster.NodeKeyName, b.NodeKey, 0o600},
		{cluster.NodeCertName, b.NodeCert, 0o644},
		{MemberCAName, b.CACert, 0o644},
		{JoinURLName, b.JoinURL + "\n", 0o644},
	} {
		tmp := filepath.Join(dir, "."+f.name+".tmp")
		if err := os.WriteFile(tmp, []byte(f.data), f.mode); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
			return err
		}
	}
	return nil
}

// TokenRequest is the body of POST /cluster/join-tokens on the control
// socket: the token row (hash only) and the new core's info, pre-registered
// as unavailable until it joins.
type TokenRequest struct {
	Token join.Token       `json:"token"`
	Core  dnsdata.CoreInfo `json:"core"`
}

// clusterAPI serves /cluster/ on the control socket of the CA holder.
type clusterAPI struct {
	cfg *config.Config
	db  *platformdb.Etcd
}

func (c *clusterAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tokens := join.Tokens{KV: c.db}
	rows := dnsdata.Rows{KV: c.db}
	ctx := r.Context()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/cluster/join-tokens":
		var req TokenRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.Token.CoreID == "" {
			jsonError(w, http.StatusBadRequest, "body must be a TokenRequest")
			return
		}
		if ms, err := c.db.Members(ctx); err == nil {
			for _, m := range ms {
				if m.Name == req.Token.CoreID {
					jsonError(w, http.StatusConflict, fmt.Sprintf("core %s is already a PlatformDB member", req.Token.CoreID))
					return
				}
			}
		}
		req.Core.Available = false
		if err := tokens.Put(ctx, req.Token); err != nil {
			jsonError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		if err := rows.SetCoreInfo(ctx, req.Core); err != nil {
			_ = tokens.Revoke(ctx, req.Token.CoreID) // all or nothing
			jsonError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		writeJSON(w, map[string]string{"coreId": req.Token.CoreID})
	case r.Method == http.MethodGet && r.URL.Path == "/cluster/join-tokens":
		list, err := tokens.List(ctx)
		if err != nil {
			jsonError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		for i := range list {
			list[i].Hash = "" // never leaves the store
		}
		writeJSON(w, map[string]any{"tokens": list})
	case r.Method == http.MethodDelete && len(r.URL.Path) > len("/cluster/join-tokens/"):
		id := r.URL.Path[len("/cluster/join-tokens/"):]
		if err := tokens.Revoke(ctx, id); err != nil {
			status := http.StatusServiceUnavailable
			if errors.Is(err, join.ErrTokenUnknown) {
				status = http.StatusNotFound
			}
			jsonError(w, status, err.Error())
			return
		}
		// A core that never joined is not left listed as a core.
		if _, err := c.memberByName(ctx, id); err != nil {
			_ = c.db.Delete(ctx, dnsdata.CoreInfoPrefix+id)
		}
		writeJSON(w, map[string]string{"revoked": id})
	default:
		jsonError(w, http.StatusNotFound, "unknown cluster endpoint")
	}
}

func (c *clusterAPI) memberByName(ctx context.Context, name string) (platformdb.Member, error) {
	ms, err := c.db.Members(ctx)
	if err != nil {
		return platformdb.Member{}, err
	}
	for _, m := range ms {
		if m.Name == name {
			return m, nil
		}
	}
	return platformdb.Member{}, errors.New("not a member")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"id": "cluster", "message": msg}})
}
