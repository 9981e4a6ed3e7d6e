package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// open-pryv.io writes some DNS keys in shapes of its own (decision 0014):
// dns.staticEntries as a map subdomain -> {a, aaaa, cname, txt} where a, aaaa
// and txt may be one string, and mx, caa and soa as objects. pryv-tls keeps
// its own shapes (a list of {subdomain, records}, presentation strings) and
// normalises the core's into them here, so nothing past the loader changes.

var (
	recordSetType = reflect.TypeFor[RecordSet]()
	dnsType       = reflect.TypeFor[DNS]()
	stringType    = reflect.TypeFor[string]()
)

// fieldKey is a key of a struct type's YAML mapping.
type fieldKey struct {
	parent reflect.Type
	name   string
}

// coreShape decodes key k when its node is in the core's shape; it reports
// false when the generic walk should go on.
func (d *fileDecoder) coreShape(k fieldKey, n *yaml.Node, v reflect.Value, path string) bool {
	parent, name := k.parent, k.name
	n = deref(n)
	if n == nil {
		return false
	}
	switch {
	case parent == dnsType && name == "staticEntries" && n.Kind == yaml.MappingNode:
		d.staticMap(n, v, path)
	case parent == recordSetType && (name == "mx" || name == "caa") && n.Kind == yaml.SequenceNode:
		d.objectList(n, v, path, name)
	case parent == recordSetType && name == "soa" && n.Kind == yaml.MappingNode:
		if s, ok := d.soaObject(n, path); ok {
			v.SetString(s)
			d.l.explicit[path] = true
		}
	default:
		return false
	}
	return true
}

// staticMap reads the core's map form. Like a list it replaces what an
// earlier layer set: one rule for both shapes.
func (d *fileDecoder) staticMap(n *yaml.Node, v reflect.Value, path string) {
	entries := []StaticEntry{}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], deref(n.Content[i+1])
		p := joinPath(path, k.Value)
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
			d.fail(k, p, "expected a subdomain as the key")
			continue
		}
		if d.duplicate(seen, k, p) {
			continue
		}
		e := StaticEntry{Subdomain: k.Value}
		if val != nil && !isNull(val) {
			if d.coreEntry(val, &e.Records, p) {
				entries = append(entries, e)
			}
			continue
		}
		entries = append(entries, e)
	}
	v.Set(reflect.ValueOf(entries))
	d.l.explicit[path] = true
}

var coreEntryKeys = []string{"a", "aaaa", "cname", "txt"}

// coreEntry reads {a, aaaa, cname, txt}, the keys the core answers for a
// static entry; a, aaaa and txt are a string or a list of strings.
func (d *fileDecoder) coreEntry(n *yaml.Node, r *RecordSet, path string) bool {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, fmt.Sprintf("expected a mapping of %s, got %s", strings.Join(coreEntryKeys, ", "), describeNode(n, stringType)))
		d.l.failed[path] = true
		return false
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := joinPath(path, k.Value)
		if d.duplicate(seen, k, p) {
			continue
		}
		switch k.Value {
		case "a":
			r.A = d.stringOrList(val, p)
		case "aaaa":
			r.AAAA = d.stringOrList(val, p)
		case "txt":
			r.TXT = d.stringOrList(val, p)
		case "cname":
			d.decode(val, reflect.ValueOf(&r.CNAME).Elem(), p)
		default:
			msg := "unknown key"
			if s := suggest(k.Value, coreEntryKeys); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.fail(k, p, msg)
		}
	}
	return true
}

func (d *fileDecoder) stringOrList(n *yaml.Node, path string) []string {
	n = deref(n)
	if n == nil || isNull(n) {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		var s string
		d.leaf(n, reflect.ValueOf(&s).Elem(), path)
		return []string{s}
	}
	var out []string
	d.decode(n, reflect.ValueOf(&out).Elem(), path)
	return out
}

// objectList reads mx or caa, whose items are presentation strings (ours) or
// objects (the core's); both may be mixed in one list.
func (d *fileDecoder) objectList(n *yaml.Node, v reflect.Value, path, kind string) {
	out := make([]string, 0, len(n.Content))
	for i, item := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		item = deref(item)
		if item == nil || item.Kind != yaml.MappingNode {
			var s string
			if item != nil {
				d.decode(item, reflect.ValueOf(&s).Elem(), p)
			}
			out = append(out, s)
			continue
		}
		var s string
		var ok bool
		if kind == "mx" {
			s, ok = d.mxObject(item, p)
		} else {
			s, ok = d.caaObject(item, p)
		}
		if ok {
			out = append(out, s)
		}
	}
	v.Set(reflect.ValueOf(out))
	d.l.explicit[path] = true
}

// fields reads the scalar keys of an object; required keys that are missing
// are reported. ok is false on any problem.
func (d *fileDecoder) fields(n *yaml.Node, path string, keys map[string]reflect.Value, required ...string) bool {
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	ok := true
	seen := map[string]int{}
	before := len(d.l.errs)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := joinPath(path, k.Value)
		if d.duplicate(seen, k, p) {
			continue
		}
		f, known := keys[k.Value]
		if !known {
			msg := "unknown key"
			if s := suggest(k.Value, sortedKeys(names)); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.fail(k, p, msg)
			continue
		}
		if val = deref(val); val != nil && !isNull(val) {
			d.leaf(val, f, p)
		}
	}
	for _, r := range required {
		if _, set := seen[r]; !set {
			d.fail(n, joinPath(path, r), "required")
		}
	}
	if len(d.l.errs) > before {
		ok = false
		d.l.failed[path] = true
	}
	return ok
}

func sortedKeys(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return out
}

func (d *fileDecoder) mxObject(n *yaml.Node, path string) (string, bool) {
	exchange, priority := "", 10 // the core's default priority
	if !d.fields(n, path, map[string]reflect.Value{
		"exchange": reflect.ValueOf(&exchange).Elem(),
		"priority": reflect.ValueOf(&priority).Elem(),
	}, "exchange") {
		return "", false
	}
	return fmt.Sprintf("%d %s", priority, fqdn(exchange)), true
}

func (d *fileDecoder) caaObject(n *yaml.Node, path string) (string, bool) {
	flags, tag, value := 0, "", ""
	if !d.fields(n, path, map[string]reflect.Value{
		"flags": reflect.ValueOf(&flags).Elem(),
		"tag":   reflect.ValueOf(&tag).Elem(),
		"value": reflect.ValueOf(&value).Elem(),
	}, "tag", "value") {
		return "", false
	}
	return fmt.Sprintf("%d %s %s", flags, tag, strconv.Quote(value)), true
}

// soaObject reads the core's SOA object. Its admin mailbox is written the
// RFC 1035 way (hostmaster.example.com., what the core seeds and what its
// DNS library puts on the wire); an address with "@" is taken too, its "@"
// becoming the first label's end.
func (d *fileDecoder) soaObject(n *yaml.Node, path string) (string, bool) {
	var primary, admin string
	var serial, refresh, retry, expiration, minimum uint32
	if !d.fields(n, path, map[string]reflect.Value{
		"primary":    reflect.ValueOf(&primary).Elem(),
		"admin":      reflect.ValueOf(&admin).Elem(),
		"serial":     reflect.ValueOf(&serial).Elem(),
		"refresh":    reflect.ValueOf(&refresh).Elem(),
		"retry":      reflect.ValueOf(&retry).Elem(),
		"expiration": reflect.ValueOf(&expiration).Elem(),
		"minimum":    reflect.ValueOf(&minimum).Elem(),
	}, "primary", "admin", "refresh", "retry", "expiration", "minimum") {
		return "", false
	}
	admin = strings.Replace(admin, "@", ".", 1)
	return fmt.Sprintf("%s %s %d %d %d %d %d", fqdn(primary), fqdn(admin), serial, refresh, retry, expiration, minimum), true
}

func fqdn(s string) string {
	if s == "" || strings.HasSuffix(s, ".") {
		return s
	}
	return s + "."
}
