package front

// benchLocalPaths are the paths the daemon mounts on the front (health and
// admin.PublicPaths, copied: front does not import admin); the last one is
// a prefix.
var benchLocalPaths = []string{"/system/pryv-tls/healthz", "/system/pryv-tls/readyz",
	"/system/admin/certs", "/system/admin/certs/force-renew", "/system/pryv-tls/admin/"}
