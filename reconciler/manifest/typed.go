package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"
)

// decodeTyped decodes the document into target the way Kubernetes does:
// sigs.k8s.io/yaml turns YAML into JSON, which encoding/json decodes
// strictly by the json tags. It is given the JSON the walk wrote, not the
// file: sigs.k8s.io/yaml parses YAML 1.1 (yaml.v2), which reads on and no
// as booleans, not the strings the walk checked, and bounds aliases only by
// their share of a document. Its errors are reported at the field they
// name.
func (d *docDecoder) decodeTyped(target any) bool {
	err := sigsyaml.UnmarshalStrict(d.out, target)
	if err != nil {
		d.typedError(err)
	}
	return err == nil
}

// typedError reports an error of the typed decode. The walk rejects all
// the decode does, so this is the two disagreeing; it is never ignored.
// encoding/json names a field by its struct fields only, no list index or
// map key, and an unknown field by its key only, so the error goes to the
// first node, in document order, that fits.
func (d *docDecoder) typedError(err error) {
	var te *json.UnmarshalTypeError
	unknown, isUnknown := unknownField(err)
	fits := func(fieldNode) bool { return false }
	switch {
	case errors.As(err, &te):
		fits = func(f fieldNode) bool {
			return (f.field == te.Field || strings.HasPrefix(f.field, te.Field+".")) && strings.HasPrefix(te.Value, jsonKind(f.val))
		}
	case isUnknown:
		fits = func(f fieldNode) bool { return f.key != nil && f.key.Value == unknown }
	}
	at, path := d.root, ""
	walkNodes(d.root, "", "", func(f fieldNode) bool {
		if !fits(f) {
			return true
		}
		at, path = f.val, f.path
		if isUnknown {
			at = f.key
		}
		return false
	})
	d.errorf(at, path, "typed decode (sigs.k8s.io/yaml) failed: %s", shorten(err.Error(), 200))
}

const unknownFieldError = `json: unknown field "`

// unknownField finds the key an encoding/json unknown-field error names:
// that error is a plain string.
func unknownField(err error) (string, bool) {
	_, q, ok := strings.Cut(err.Error(), unknownFieldError)
	if !ok {
		return "", false
	}
	key, err := strconv.Unquote(`"` + q)
	return key, err == nil
}

// fieldNode is a node with its path (spec.publish[0].port) and its field as
// encoding/json names it (spec.publish.port).
type fieldNode struct {
	path, field string
	key, val    *yaml.Node // key is nil for list items
}

// walkNodes calls f for every node under n in document order, until f
// returns false. It does not follow aliases, so it ends on alias cycles.
func walkNodes(n *yaml.Node, path, field string, f func(fieldNode) bool) bool {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			node := fieldNode{path: dotted(path, k.Value), field: dotted(field, k.Value), key: k, val: v}
			if !f(node) || !walkNodes(v, node.path, node.field, f) {
				return false
			}
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			node := fieldNode{path: path + "[" + strconv.Itoa(i) + "]", field: field, val: v}
			if !f(node) || !walkNodes(v, node.path, field, f) {
				return false
			}
		}
	}
	return true
}

func dotted(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// jsonKind names a node's type as encoding/json's type errors do.
func jsonKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "object"
	case yaml.SequenceNode:
		return "array"
	case yaml.AliasNode:
		return "alias" // matches nothing
	}
	switch n.ShortTag() {
	case "!!str":
		return "string"
	case "!!int", "!!float":
		return "number"
	case "!!bool":
		return "bool"
	}
	return "null"
}

// appendString writes s as a JSON string that yaml.v2, which
// sigs.k8s.io/yaml reads JSON with, reads back unchanged. Besides quotes,
// backslashes and control characters, it escapes NEL and the line and
// paragraph separators, line breaks to YAML 1.1, and the code points its
// reader rejects. Invalid UTF-8, which yaml.v3 never yields, becomes
// U+FFFD as in encoding/json.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c, size := rune(s[i]), 1
		if c >= utf8.RuneSelf {
			c, size = utf8.DecodeRuneInString(s[i:])
		}
		if plainJSON(c, size) {
			i += size
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', byte(c))
		default:
			b = fmt.Appendf(b, `\u%04x`, c)
		}
		i += size
		start = i
	}
	return append(append(b, s[start:]...), '"')
}

// plainJSON reports whether a rune of size bytes goes into a string as is.
func plainJSON(c rune, size int) bool {
	switch {
	case c < utf8.RuneSelf:
		return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'
	case c == utf8.RuneError && size == 1:
		return false
	}
	return c >= 0xa0 && c != 0x2028 && c != 0x2029 && c != 0xfeff && c != 0xfffe && c != 0xffff
}

// appendZero writes the zero value of t, which sets a pointer to it.
func appendZero(b []byte, t reflect.Type) []byte {
	switch t.Kind() {
	case reflect.String:
		return append(b, `""`...)
	case reflect.Int:
		return append(b, '0')
	case reflect.Slice:
		return append(b, "[]"...)
	case reflect.Pointer:
		return appendZero(b, t.Elem())
	}
	return append(b, "{}"...)
}
