package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/pryv/pryv-tls/internal/atomicfile"
)

// ownKeys are the settings of the override new-core writes that describe
// the joining core rather than the cluster: the holder can only guess them
// (its own http.*, its DNS listen address, no --url given). The override is
// loaded last, so each of them is dropped from it when this core's own
// files (--core-config ones included) set it: the joiner's core.url, http.*
// and DNS addresses stay its own. The cluster's settings (atRestKey, admin
// key, ACME, dns.domain) and the identity the node certificate was issued
// for (core.id, core.ip, platformDB addresses) still win.
var ownKeys = [][]string{
	{"core", "url"}, {"core", "hosting"},
	{"http", "ip"}, {"http", "port"},
	{"dns", "ip"}, {"dns", "port"},
}

// keepOwnSettings rewrites the join override at path without the ownKeys
// that one of own sets (or, for the core.* ones, one of coreFiles: pryv-tls
// reads nothing else of open-pryv.io's files, whose http.* is the API's own
// listener), and without empty ones (new-core without --url wrote url: "").
// It names what it left to this core's files.
func keepOwnSettings(path string, own, coreFiles []string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: not the override a join writes: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: not the override a join writes: the file is empty", path)
	}
	root := doc.Content[0]
	owned, err := roots(own)
	if err != nil {
		return nil, err
	}
	fromCore, err := roots(coreFiles)
	if err != nil {
		return nil, err
	}
	var kept []string
	for _, key := range ownKeys {
		v := lookup(root, key)
		if v == nil {
			continue
		}
		empty := v.Kind == yaml.ScalarNode && v.Value == ""
		sets := func(n *yaml.Node) bool {
			o := lookup(n, key)
			return o != nil && !(o.Kind == yaml.ScalarNode && (o.Tag == "!!null" || o.Value == ""))
		}
		setHere := slices.ContainsFunc(owned, sets) || (key[0] == "core" && slices.ContainsFunc(fromCore, sets))
		if empty || setHere {
			remove(root, key)
			if setHere {
				kept = append(kept, strings.Join(key, "."))
			}
		}
	}
	// The header is written again below: drop the one read back.
	root.HeadComment = ""
	if len(root.Content) > 0 {
		root.Content[0].HeadComment = ""
	}
	var out bytes.Buffer
	out.WriteString("# written by pryv-tls when this core joined the cluster: shared settings and this core's identity\n")
	if len(kept) > 0 {
		out.WriteString("# left to this core's own configuration: " + strings.Join(kept, ", ") + "\n")
	}
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(path, out.Bytes(), 0o600); err != nil {
		return nil, err
	}
	return kept, nil
}

// roots reads each file's top-level YAML mapping (files that do not parse
// are left to the configuration loader to report).
func roots(files []string) ([]*yaml.Node, error) {
	var out []*yaml.Node
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var d yaml.Node
		if yaml.Unmarshal(b, &d) == nil && len(d.Content) > 0 {
			out = append(out, d.Content[0])
		}
	}
	return out, nil
}

// lookup is the value at key in a mapping node, nil if absent.
func lookup(n *yaml.Node, key []string) *yaml.Node {
	for _, k := range key {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		n = next
	}
	return n
}

// remove deletes key from a mapping node, and its parent mapping once empty.
func remove(n *yaml.Node, key []string) {
	parent := lookup(n, key[:len(key)-1])
	if parent == nil || parent.Kind != yaml.MappingNode {
		return
	}
	last := key[len(key)-1]
	for i := 0; i+1 < len(parent.Content); i += 2 {
		if parent.Content[i].Value == last {
			parent.Content = slices.Delete(parent.Content, i, i+2)
			break
		}
	}
	if len(parent.Content) == 0 && len(key) > 1 {
		remove(n, key[:len(key)-1])
	}
}

// keepOwn applies keepOwnSettings to the join override among files (the
// last one named clusterOverrideName, which prepareJoin wrote), against
// every other file serve reads.
func keepOwn(coreFiles, files []string, stderr io.Writer) int {
	at := -1
	for i, f := range files {
		if filepath.Base(f) == clusterOverrideName {
			at = i
		}
	}
	if at < 0 {
		return exitOK
	}
	own := append(slices.Clone(files[:at]), files[at+1:]...)
	kept, err := keepOwnSettings(files[at], own, coreFiles)
	if err != nil {
		fmt.Fprintln(stderr, "serve --bootstrap:", err)
		return exitFailed
	}
	if len(kept) > 0 {
		fmt.Fprintf(stderr, "serve --bootstrap: %s left to this core's own configuration (not taken from the bundle)\n", strings.Join(kept, ", "))
	}
	return exitOK
}
