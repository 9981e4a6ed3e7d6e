package config

import (
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

var (
	durationType = reflect.TypeFor[Duration]()
	secretType   = reflect.TypeFor[Secret]()
)

// fileDecoder applies one YAML layer onto the config by walking the node tree
// against the struct, so that every problem is reported with its file, line
// and full key path instead of yaml.v3's first-error-only messages.
type fileDecoder struct {
	l      *loader
	name   string
	idx    int
	visits int
	// core marks a file of open-pryv.io's own (--core-config): only the
	// keys both programs share are read from it (sharedKeys).
	core bool
}

// maxVisits bounds the walk: merge keys over aliases can expand
// exponentially ("billion laughs"), and a real config has a few hundred nodes.
const maxVisits = 50_000

func (d *fileDecoder) fail(n *yaml.Node, path, msg string) {
	d.l.add(d.idx, n.Line, n.Column, &FieldError{File: d.name, Line: n.Line, Path: path, Msg: msg})
}

func (d *fileDecoder) typeError(n *yaml.Node, t reflect.Type, path string) {
	d.fail(n, path, fmt.Sprintf("expected %s, got %s", describeType(t), describeNode(n, t)))
	d.l.failed[path] = true
}

// decode applies n onto v. A null node means "not set in this layer" and
// leaves whatever an earlier layer put there.
func (d *fileDecoder) decode(n *yaml.Node, v reflect.Value, path string) {
	n = deref(n)
	if n == nil || isNull(n) {
		return
	}
	if d.visits++; d.visits > maxVisits {
		if d.visits == maxVisits+1 {
			d.fail(n, path, "too many nodes once aliases are expanded; stopped reading this file")
		}
		return
	}
	t := v.Type()
	switch {
	case t == durationType:
		d.leaf(n, v, path)
	case t.Kind() == reflect.Struct:
		d.mapping(n, v, path)
	case t.Kind() == reflect.Slice:
		d.sequence(n, v, path)
	default:
		d.leaf(n, v, path)
	}
}

func (d *fileDecoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, v.Type(), path)
		return
	}
	fields := fieldsOf(v.Type())
	// Merge keys first: in YAML a mapping's own keys win over merged ones
	// wherever they appear.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			d.merge(n.Content[i+1], v, path)
		}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			continue
		}
		name := k.Value
		p := joinPath(path, name)
		if d.core && !isShared(p) {
			continue
		}
		if d.duplicate(seen, k, p) {
			continue
		}
		f, ok := fields.byName[name]
		if !ok && d.core && !underShared(p) {
			// A section on the way to a shared key this build does not read.
			continue
		}
		if !ok {
			msg := "unknown key"
			if s := suggest(name, fields.names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.fail(k, p, msg)
			continue
		}
		if d.coreShape(fieldKey{v.Type(), name}, val, v.Field(f), p) {
			continue
		}
		d.decode(val, v.Field(f), p)
	}
}

func (d *fileDecoder) merge(n *yaml.Node, v reflect.Value, path string) {
	n = deref(n)
	if n != nil && n.Kind == yaml.SequenceNode {
		for _, item := range n.Content {
			d.decode(item, v, path)
		}
		return
	}
	d.decode(n, v, path)
}

// sequence replaces the whole list: merging lists item by item across layers
// would make it impossible to remove an entry in an override file.
func (d *fileDecoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.typeError(n, v.Type(), path)
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
	d.l.explicit[path] = true
}

func (d *fileDecoder) leaf(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	if n.Kind != yaml.ScalarNode {
		d.typeError(n, t, path)
		return
	}
	// yaml.v3 truncates 443.9 into an int; a port of 443.9 is a typo.
	if isInt(t) && t != durationType && n.ShortTag() == "!!float" {
		d.typeError(n, t, path)
		return
	}
	tmp := reflect.New(t)
	if err := n.Decode(tmp.Interface()); err != nil {
		d.typeError(n, t, path)
		return
	}
	v.Set(tmp.Elem())
	d.l.explicit[path] = true
}

type structFields struct {
	byName map[string]int
	names  []string // in declaration order, for stable suggestions
}

func fieldsOf(t reflect.Type) structFields {
	fs := structFields{byName: map[string]int{}}
	for i := range t.NumField() {
		name, ok := yamlName(t.Field(i))
		if !ok {
			continue
		}
		fs.byName[name] = i
		fs.names = append(fs.names, name)
	}
	return fs
}

// yamlName mirrors yaml.v3's naming so that loading and Redacted agree.
func yamlName(f reflect.StructField) (string, bool) {
	if !f.IsExported() {
		return "", false
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return "", false
	}
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name, true
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// deref follows aliases; the parser already refuses self-referencing anchors,
// the bound only guards against a malformed tree.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func isInt(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

func describeType(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		return "a duration such as 90s or 2m"
	case isInt(t):
		return "an integer"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Slice:
		return "a list"
	case t.Kind() == reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

// describeNode quotes a wrong scalar so the operator sees what was read,
// except where the value may be a secret typed one level too high.
func describeNode(n *yaml.Node, target reflect.Type) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	if holdsSecret(target) {
		return "a scalar value"
	}
	return fmt.Sprintf("%q", n.Value)
}

func holdsSecret(t reflect.Type) bool {
	switch {
	case t == secretType:
		return true
	case t.Kind() == reflect.Slice:
		return holdsSecret(t.Elem())
	case t.Kind() == reflect.Struct:
		for i := range t.NumField() {
			if holdsSecret(t.Field(i).Type) {
				return true
			}
		}
	}
	return false
}

// duplicate reports k when an earlier key of the same mapping had its name
// (YAML forbids it; the parser does not say), else notes it in seen (name
// to line).
func (d *fileDecoder) duplicate(seen map[string]int, k *yaml.Node, p string) bool {
	if first, dup := seen[k.Value]; dup {
		d.fail(k, p, fmt.Sprintf("duplicate key (first set on line %d)", first))
		return true
	}
	seen[k.Value] = k.Line
	return false
}
