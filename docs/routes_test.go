package docs_test

// The request paths every proxy sample is replayed with, and the small
// parsers the samples' tests share.

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// refHFS are the reference implementation's HFS routes (internal/front
// implements the same; its tests check it against these).
var refHFS = []*regexp.Regexp{
	regexp.MustCompile(`^/[^/]+/events/[^/]+/series`),
	regexp.MustCompile(`^/[^/]+/series/batch`),
}

func refIsHFS(path string) bool {
	return slices.ContainsFunc(refHFS, func(re *regexp.Regexp) bool { return re.MatchString(path) })
}

// routePaths are request paths both ways of every edge of the two regexps.
var routePaths = []string{
	"/u/events/e1/series", "/u/events/e1/series/", "/u/events/e1/seriesx",
	"/u/events/e1/series/batch", "/u/events/e1/series/deep/path/x",
	"/u/series/batch", "/u/series/batchy", "/u/series/batch/deep/path",
	"/series/series/batch", "/events/events/e1/series",
	"/alice/events/ckqw7q8f5000101/series", "/ü/events/é/series", "/u%2Fv/events/e1/series",
	"/events/e1/series", "//events/e1/series", "/u/events//series", "/u/events/e1",
	"/u/events/e1/x/series", "/u/events/series", "/u/events/events/e1/series",
	"/u/x/events/e1/series", "/a/b/series/batch", "/u/series", "/u/series/",
	"/u/series/batc", "/u/EVENTS/e1/series", "/u/Series/batch", "/alice/streams/series/batch",
	"/alice/accesses/events/e1/series", "/", "/alice/events", "/alice/events/e1",
	"/socket.io/", "/alice/socket.io/", "/system/admin/certs", "/reg/access",
}

func TestRoutePathsCoverBothWays(t *testing.T) {
	var hfs, api int
	for _, p := range routePaths {
		if refIsHFS(p) {
			hfs++
		} else {
			api++
		}
	}
	if hfs < 8 || api < 8 {
		t.Fatalf("the path table must exercise both routes: %d HFS, %d API", hfs, api)
	}
}

// upstreamPort is the port of an upstream default ("http://127.0.0.1:4000").
func upstreamPort(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// stripHashComments drops "# ..." to the end of each line.
func stripHashComments(s string) string {
	return regexp.MustCompile(`(?m)#.*$`).ReplaceAllString(s, "")
}

// braceBlocks returns the bodies of the blocks of s whose header matches
// head (a regexp ending just before "{"), with the header's submatches.
func braceBlocks(s string, head *regexp.Regexp) (bodies []string, heads [][]string) {
	for _, loc := range head.FindAllStringSubmatchIndex(s, -1) {
		open := strings.IndexByte(s[loc[1]:], '{')
		if open < 0 {
			continue
		}
		start := loc[1] + open + 1
		depth := 1
		end := start
		for ; end < len(s) && depth > 0; end++ {
			switch s[end] {
			case '{':
				depth++
			case '}':
				depth--
			}
		}
		var h []string
		for i := 0; i+1 < len(loc); i += 2 {
			if loc[i] >= 0 {
				h = append(h, s[loc[i]:loc[i+1]])
			} else {
				h = append(h, "")
			}
		}
		bodies = append(bodies, s[start:end-1])
		heads = append(heads, h)
	}
	return bodies, heads
}
