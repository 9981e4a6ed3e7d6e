package config

import (
	"bytes"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Redacted is the effective configuration as YAML, under the spec's key
// names, with every Secret shown as <redacted> and empty keys left out, for
// `config check` and support bundles.
func (c *Config) Redacted() ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(c); err != nil {
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	prune(&n)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2) // as in the spec's snippets
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	return out.Bytes(), nil
}

// prune drops empty strings, nulls and empty lists or mappings (it keeps
// false and 0, which are meaningful settings) and masks URLs' userinfo.
func prune(n *yaml.Node) {
	switch n.Kind {
	case yaml.ScalarNode:
		// URLs are plain strings, but storages.engines.rqlite.url holds
		// rqlite's user:password.
		if strings.Contains(n.Value, "://") {
			n.Value = hideUserinfo(n.Value)
		}
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			prune(c)
		}
	case yaml.MappingNode:
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			prune(v)
			if isEmpty(v) {
				continue
			}
			kept = append(kept, k, v)
		}
		n.Content = kept
	}
}

func isEmpty(n *yaml.Node) bool {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.ShortTag() == "!!null" || (n.ShortTag() == "!!str" && n.Value == "")
	case yaml.SequenceNode, yaml.MappingNode:
		return len(n.Content) == 0
	}
	return false
}
