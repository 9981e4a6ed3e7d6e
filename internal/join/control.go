package join

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/pryv/pryv-tls/internal/apijson"
)

// The control socket's cluster routes this package answers (the daemon
// mounts them beside /cluster/join-tokens).
const (
	// RemoveCorePath + <coreId> [?force=true], DELETE: bootstrap remove-core.
	RemoveCorePath = "/cluster/cores/"
	// CAHolderPath, POST CAHolderRequest: bootstrap init-ca-holder on a
	// running core.
	CAHolderPath = "/cluster/ca-holder"
)

// CAHolderRequest asks the running core to become the CA holder: its
// PlatformDB member moves to these addresses (on core.ip) with a node
// certificate from the cluster CA, and its join listener starts.
type CAHolderRequest struct {
	PeerAddress   string `json:"peerAddress"`
	ClientAddress string `json:"clientAddress"`
	// Override is the file init-ca-holder wrote (absolute): the core's
	// reloads read it last from then on, as its next start will.
	Override string `json:"override,omitempty"`
}

// CAHolderResponse is what the running core did.
type CAHolderResponse struct {
	Member        string `json:"member"`
	PeerURL       string `json:"peerUrl"`
	ClientAddress string `json:"clientAddress"`
	JoinAddress   string `json:"joinAddress"`
	CAFingerprint string `json:"caFingerprint"`
	Changed       bool   `json:"changed"` // false: it already was the CA holder there
}

// RemoveHandler answers DELETE RemoveCorePath<id> with the Removal, or an
// error naming why nothing was done.
func RemoveHandler(db Cluster, domain string, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, RemoveCorePath)
		if r.Method != http.MethodDelete || id == "" || strings.Contains(id, "/") {
			apijson.Error(w, http.StatusNotFound, "cluster", "DELETE "+RemoveCorePath+"<core id>")
			return
		}
		force := r.URL.Query().Get("force") == "true"
		res, err := Remove(r.Context(), db, RemoveRequest{ID: id, Force: force, Domain: domain})
		if err != nil {
			status := http.StatusServiceUnavailable
			switch {
			case errors.Is(err, ErrNoSuchCore):
				status = http.StatusNotFound
			case errors.Is(err, ErrRemoveSelf), errors.Is(err, ErrLastVoter):
				status = http.StatusConflict
			}
			if log != nil {
				log.Warn("remove-core refused or cut short", "core", id, "error", err.Error())
			}
			apijson.Error(w, status, "cluster", err.Error())
			return
		}
		if log != nil {
			log.Info("core removed from the cluster", "core", id, "memberRemoved", res.MemberRemoved,
				"deniedCertificates", len(res.DeniedCerts), "deletedRows", len(res.DeletedRows), "usersPinned", res.UsersPinned)
		}
		apijson.Write(w, http.StatusOK, res)
	})
}
