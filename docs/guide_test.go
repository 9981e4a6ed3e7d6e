package docs_test

// The guide's pages against the files and the binary they describe: the
// embedded samples, the relative links, the commands and flags.

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestGuideEmbedsSamples checks each "<!-- sample: samples/NAME -->" marker
// is followed by a fenced block holding exactly that file, and that every
// sample is shown or linked somewhere in the guide.
func TestGuideEmbedsSamples(t *testing.T) {
	pages, err := filepath.Glob(filepath.Join(guideDir, "*.md"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no pages in %s: %v", guideDir, err)
	}
	marker := regexp.MustCompile("(?s)<!-- sample: (samples/[^ ]+) -->\n```[a-z]*\n(.*?)```\n")
	all := ""
	for _, page := range pages {
		text := readDoc(t, page)
		all += text
		for _, m := range marker.FindAllStringSubmatch(text, -1) {
			want := readDoc(t, filepath.Join(guideDir, m[1]))
			if m[2] != want {
				t.Errorf("%s: the block after the marker for %s is not that file's content", filepath.Base(page), m[1])
			}
		}
		if n, m := strings.Count(text, "<!-- sample: "), len(marker.FindAllString(text, -1)); n != m {
			t.Errorf("%s: %d sample markers, %d followed by a fenced block", filepath.Base(page), n, m)
		}
	}
	samples, _ := os.ReadDir(samplesDir)
	for _, s := range samples {
		if !strings.Contains(all, "samples/"+s.Name()) {
			t.Errorf("samples/%s is neither shown nor linked by any page of the guide", s.Name())
		}
	}
}

// TestDocLinks checks the relative links of docs/ point at files that exist.
func TestDocLinks(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)#\s]+)(?:#[^)]*)?\)`)
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".md") {
			return err
		}
		for _, m := range link.FindAllStringSubmatch(readDoc(t, path), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), target)); err != nil {
				t.Errorf("%s: broken link %s", path, target)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// cliSource is the non-test Go source of internal/cli.
func cliSource(t *testing.T) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(moduleRoot, "internal", "cli", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("internal/cli: %v", err)
	}
	var b strings.Builder
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			b.WriteString(readDoc(t, f))
		}
	}
	return b.String()
}

func TestGuideCommandsExist(t *testing.T) {
	src := cliSource(t)
	flags := map[string]bool{"h": true}
	for _, m := range regexp.MustCompile(`fs\.(?:String|Bool|Duration|Int|Var|BoolVar|StringVar|DurationVar)\((?:&\w+, )?"([a-z0-9-]+)"`).FindAllStringSubmatch(src, -1) {
		flags[m[1]] = true
	}
	if !flags["config"] || !flags["bootstrap-passphrase-file"] {
		t.Fatalf("could not read the flags of internal/cli (found %d)", len(flags))
	}
	// Subcommands: the words after "pryv-tls CMD" in the usage texts.
	usage := strings.Join(regexp.MustCompile("(?s)Usage = `(.*?)`|usage = `(.*?)`").FindAllString(src, -1), "\n")
	sub := map[string]bool{}
	for _, m := range regexp.MustCompile(`pryv-tls ([a-z0-9-]+)(?: ([a-z|-]+))?`).FindAllStringSubmatch(usage, -1) {
		sub[m[1]] = true
		for _, s := range strings.Split(m[2], "|") {
			if s != "" {
				sub[m[1]+" "+s] = true
			}
		}
	}
	withSub := map[string]bool{"config": true, "certs": true, "dns-records": true, "users": true, "bootstrap": true}

	pages, _ := filepath.Glob(filepath.Join(guideDir, "*.md"))
	// A command is "pryv-tls" at the start of a code segment or after sudo,
	// a directory, "&&", "|", ";" or "$(" — not inside a quoted message.
	cmdRE := regexp.MustCompile(`(?:^|&& |\|\| |\| |; |\$\(|sudo -u \S+ |/)pryv-tls ([a-z][a-z0-9-]*)(?: ([a-z][a-z0-9-]*))?`)
	flagRE := regexp.MustCompile(`(?:^|\s)--([a-z][a-z0-9-]*)`)
	comment := regexp.MustCompile(`(^|\s)#.*$`)
	for _, page := range pages {
		for _, seg := range codeSegments(readDoc(t, page)) {
			where := filepath.Base(page) + ":" + strconv.Itoa(seg.line)
			text := strings.TrimSpace(comment.ReplaceAllString(seg.text, ""))
			for _, loc := range cmdRE.FindAllStringSubmatchIndex(text, -1) {
				cmd := text[loc[2]:loc[3]]
				arg := ""
				if loc[4] >= 0 {
					arg = text[loc[4]:loc[5]]
				}
				if !sub[cmd] {
					t.Errorf("%s: pryv-tls %s is not a command", where, cmd)
					continue
				}
				if withSub[cmd] && arg != "" && !sub[cmd+" "+arg] {
					t.Errorf("%s: pryv-tls %s %s is not a subcommand", where, cmd, arg)
				}
				rest := text[loc[0]:]
				for _, stop := range []string{" && ", " | ", "; ", " >"} {
					if j := strings.Index(rest, stop); j >= 0 {
						rest = rest[:j]
					}
				}
				for _, m := range flagRE.FindAllStringSubmatch(rest, -1) {
					if !flags[m[1]] {
						t.Errorf("%s: --%s is not a flag of pryv-tls", where, m[1])
					}
				}
			}
		}
	}
}

type codeSegment struct {
	line int
	text string
}

// codeSegments returns the lines of fenced code blocks and the inline code
// spans of the other lines: where a page shows commands.
func codeSegments(md string) []codeSegment {
	var out []codeSegment
	fenced := false
	inline := regexp.MustCompile("`([^`]+)`")
	for i, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			out = append(out, codeSegment{i + 1, line})
			continue
		}
		for _, m := range inline.FindAllStringSubmatch(line, -1) {
			out = append(out, codeSegment{i + 1, m[1]})
		}
	}
	return out
}
