package manifest

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// at finds where the field at path is written: the node tree is the
// position map, so the decoder records nothing per value and validation
// looks up only what it checks.
func (d *docDecoder) at(path string) (position, bool) {
	key, val, ok := lookup(d.root, path)
	if !ok {
		return position{}, false
	}
	if key == nil {
		key = val
	}
	return position{
		keyLine: d.offset + key.Line, keyColumn: key.Column,
		line: d.offset + val.Line, column: val.Column,
		null: isNull(resolve(val)),
	}, true
}

// lookup follows a field path (spec.ingress[0].from, matchLabels["a.b"])
// from root. List items have no key node. Of repeated keys the first
// counts, as in decoding.
func lookup(root *yaml.Node, path string) (key, val *yaml.Node, ok bool) {
	val = root
	for path != "" {
		n := resolve(val)
		switch {
		case path[0] == '.':
			path = path[1:]
			continue
		case strings.HasPrefix(path, `["`):
			q, err := strconv.QuotedPrefix(path[1:])
			if err != nil {
				return nil, nil, false
			}
			k, _ := strconv.Unquote(q)
			path = strings.TrimPrefix(path[1+len(q):], "]")
			key, val = entry(n, k)
		case path[0] == '[':
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return nil, nil, false
			}
			i, err := strconv.Atoi(path[1:end])
			path = path[end+1:]
			if err != nil || n == nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return nil, nil, false
			}
			key, val = nil, n.Content[i]
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			key, val = entry(n, path[:end])
			path = path[end:]
		}
		if val == nil {
			return nil, nil, false
		}
	}
	return key, val, true
}

// entry finds a key of a mapping.
func entry(m *yaml.Node, key string) (k, v *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if rk := resolve(m.Content[i]); rk != nil && rk.Kind == yaml.ScalarNode && rk.Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}
