package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Source is one configuration layer held in memory; Name is used in messages.
type Source struct {
	Name string
	Data []byte
}

// Load reads the files in order, each later file overriding the earlier ones
// key by key, then applies the defaults and validates. On any problem it
// returns the (partial) config and an Errors holding every problem found.
func Load(paths ...string) (*Config, error) {
	return LoadWithCore(nil, paths)
}

// LoadWithCore reads open-pryv.io's own configuration files first, taking
// only the keys both programs share (decision 0014), then pryv-tls's files
// over them, key by key, as Load does.
func LoadWithCore(coreFiles, paths []string) (*Config, error) {
	l := newLoader()
	for i, p := range append(slices.Clip(coreFiles), paths...) {
		data, err := os.ReadFile(p)
		if err != nil {
			what := "config"
			if i < len(coreFiles) {
				what = "core config"
			}
			l.add(i, 0, 0, fmt.Errorf("reading %s %s: %w", what, p, err))
			continue
		}
		l.decodeLayer(i, p, data, i < len(coreFiles))
	}
	return l.finish()
}

// LoadSources is Load for layers already in memory.
func LoadSources(srcs ...Source) (*Config, error) {
	l := newLoader()
	for i, s := range srcs {
		l.decodeFile(i, s.Name, s.Data)
	}
	return l.finish()
}

// LoadBytes loads a single in-memory layer.
func LoadBytes(name string, data []byte) (*Config, error) {
	return LoadSources(Source{Name: name, Data: data})
}

type located struct {
	file, line, col int
	err             error
}

type loader struct {
	cfg      Config
	errs     []located
	explicit map[string]bool // leaf paths some layer set to a non-null value
	failed   map[string]bool // paths whose value could not be decoded
}

func newLoader() *loader {
	return &loader{explicit: map[string]bool{}, failed: map[string]bool{}}
}

func (l *loader) add(file, line, col int, err error) {
	l.errs = append(l.errs, located{file, line, col, err})
}

func (l *loader) finish() (*Config, error) {
	sort.SliceStable(l.errs, func(i, j int) bool {
		a, b := l.errs[i], l.errs[j]
		if a.file != b.file {
			return a.file < b.file
		}
		if a.line != b.line {
			return a.line < b.line
		}
		return a.col < b.col
	})
	var all Errors
	for i, e := range l.errs {
		// A merged anchor used twice would report its problems twice.
		if i > 0 && e.err.Error() == l.errs[i-1].err.Error() {
			continue
		}
		all = append(all, e.err)
	}
	c := &l.cfg
	all = append(all, applyDefaults(c, l.explicit)...)
	for _, e := range validate(c) {
		// A key that failed to decode is unset, so "required" or range
		// complaints about it would only repeat the decode error.
		var fe *FieldError
		if errors.As(e, &fe) && l.coveredByFailure(fe.Path) {
			continue
		}
		all = append(all, e)
	}
	if len(all) > 0 {
		return c, all
	}
	return c, nil
}

func (l *loader) coveredByFailure(path string) bool {
	for f := range l.failed {
		if path == f || strings.HasPrefix(path, f+".") || strings.HasPrefix(path, f+"[") {
			return true
		}
	}
	return false
}

func (l *loader) decodeFile(idx int, name string, data []byte) {
	l.decodeLayer(idx, name, data, false)
}

func (l *loader) decodeLayer(idx int, name string, data []byte, core bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			l.add(idx, 0, 0, fmt.Errorf("parsing config %s: %w", name, err))
		}
		return
	}
	d := &fileDecoder{l: l, name: name, idx: idx, core: core}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		l.add(idx, 0, 0, fmt.Errorf("parsing config %s: %w", name, err))
		return
	default:
		// Silently reading only the first document would hide the rest.
		if root := documentRoot(&extra); root != nil {
			d.fail(root, "", "only one YAML document per file is supported; remove the extra \"---\" document or split it into another file")
		}
	}
	root := documentRoot(&doc)
	if root == nil {
		return
	}
	if root.Kind != yaml.MappingNode {
		d.fail(root, "", "expected a mapping at the top level")
		return
	}
	d.decode(root, reflect.ValueOf(&l.cfg).Elem(), "")
}

// documentRoot returns the content of a document, nil when it is empty or null.
func documentRoot(doc *yaml.Node) *yaml.Node {
	n := doc
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	n = deref(n)
	if n == nil || isNull(n) {
		return nil
	}
	return n
}
