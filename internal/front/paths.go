package front

import (
	"net/http"
	"net/url"
	"path"
	"strings"
)

// normalPath is the path the front routes on and forwards (decision 0023):
// r.URL.Path, which net/http has already percent-decoded (%2e is '.', %2F
// is '/'), with its dot segments removed as RFC 3986 §5.2.4 does and runs of
// slashes merged. nginx (merge_slashes on) and Caddy route on the same
// cleaned path; unlike them, the front then forwards that path, so the
// upstream serves exactly what the route was chosen for.
//
// A path with nothing to clean (every path a browser or SDK sends) is
// returned as it is, without allocating.
func normalPath(p string) string {
	if !needsCleaning(p) {
		return p
	}
	clean := path.Clean(p)
	// RFC 3986 keeps the final slash of "/a/b/", and "/a/b/." and "/a/b/.."
	// end in one too ("/a/b/", "/a/"); path.Clean drops it.
	if clean != "/" && (strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")) {
		clean += "/"
	}
	return clean
}

// needsCleaning reports whether p has an empty, "." or ".." segment. A path
// that does not start with '/' (the "*" of OPTIONS *) is left alone.
func needsCleaning(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] != '/' || i+1 == len(p) {
			continue
		}
		rest := p[i+1:]
		switch {
		case rest[0] == '/':
			return true
		case rest == "." || rest == ".." || strings.HasPrefix(rest, "./") || strings.HasPrefix(rest, "../"):
			return true
		}
	}
	return false
}

// normalising hands next a request whose URL path is normalPath's; the
// request is copied only when its path changes (as http.StripPrefix does), so
// the hot path neither allocates nor writes to the caller's request.
type normalising struct{ next http.Handler }

func (n normalising) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if !needsCleaning(p) && !encodedSlash(r.URL.RawPath) {
		n.next.ServeHTTP(w, r)
		return
	}
	r2 := new(http.Request)
	*r2 = *r
	r2.URL = new(url.URL)
	*r2.URL = *r.URL
	r2.URL.Path = normalPath(p)
	// The raw form is dropped: the upstream gets the cleaned path in its
	// canonical escaping (an encoded slash, a separator for the route, is
	// sent as '/'), not the client's spelling of the uncleaned one.
	r2.URL.RawPath = ""
	n.next.ServeHTTP(w, r2)
}

// encodedSlash reports whether a raw path holds a %2F: the route took it for
// a separator (Path is decoded), so the upstream must get it as one too.
// RawPath is empty unless the client's escaping was not the canonical one.
func encodedSlash(raw string) bool {
	return raw != "" && (strings.Contains(raw, "%2F") || strings.Contains(raw, "%2f"))
}
