package manifest

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// position is where a field sits in its file: its key and its value. List
// items have no key; theirs is the item's own position.
type position struct {
	keyLine, keyColumn int
	line, column       int
	null               bool // written as null (or nothing), which counts as absent
}

// docDecoder checks one YAML document against a v1 type on the node tree,
// the way encoding/json with DisallowUnknownFields would decode it, but
// reporting every error, not just the first, each with its position and
// field path. What it accepts it writes as JSON for the typed decode
// (sigs.k8s.io/yaml, see typed.go). A value with an error is left out of the
// JSON, as a decoder would leave it unset, so validation still sees the
// rest of the document.
type docDecoder struct {
	file    *fileDecoder
	offset  int        // file lines before the document's chunk
	root    *yaml.Node // the document's top mapping
	inAlias int        // depth of aliases being expanded
	aborted bool       // aliases expanded to too much
	// firstError is the index of the document's first error in the file's.
	firstError int
	out        []byte // the document as JSON, but for long keys (see key)
}

// stop reports whether decoding should give up: aliases expanded to too
// much or the file has all the errors it may report.
func (d *docDecoder) stop() bool { return d.aborted || d.file.full() }

// errorf reports an error about the value node n at path.
func (d *docDecoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.file.add(Error{Line: d.offset + n.Line, Column: n.Column, Field: path, Message: fmt.Sprintf(format, args...)})
}

// missing reports an error about a field that is not written: it points at
// the nearest enclosing field that is.
func (d *docDecoder) missing(path, format string, args ...any) {
	parent := d.enclosing(path)
	for _, e := range d.file.errs[d.firstError:] {
		if e.Field == parent && parent != "" {
			return // the parent is of the wrong type: its fields are moot
		}
	}
	p, _ := d.at(parent)
	d.file.add(Error{Line: p.keyLine, Column: p.keyColumn, Field: path, Message: fmt.Sprintf(format, args...)})
}

// enclosing returns the nearest ancestor of path that was written.
func (d *docDecoder) enclosing(path string) string {
	for path != "" {
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return ""
		}
		path = path[:i]
		if _, ok := d.at(path); ok {
			return path
		}
	}
	return ""
}

// spend charges size bytes of text copied through aliases to the file. The
// JSON holds a copy of every aliased value, so a long string aliased many
// times must be bounded in bytes, not only in values.
func (d *docDecoder) spend(n *yaml.Node, path string, size int) bool {
	if d.file.aliasedBytes += size; d.file.aliasedBytes <= MaxAliasedBytes {
		return true
	}
	d.errorf(n, path, "aliases expand to more than %d bytes in this file", MaxAliasedBytes)
	d.aborted = true
	return false
}

// sep separates JSON items. yaml.v2, which sigs.k8s.io/yaml reads the JSON
// with, keeps the tokens of a line queued while a simple key may start on
// it: a line per item keeps the queue short and halves its memory.
const sep = ",\n"

// value checks n against t and writes it as JSON; it writes nothing for a
// null or a value with an error.
func (d *docDecoder) value(n *yaml.Node, path string, t reflect.Type) {
	if d.stop() {
		return
	}
	if n.Kind == yaml.AliasNode {
		d.inAlias++
		defer func() { d.inAlias-- }()
	}
	if d.inAlias > 0 {
		if d.file.aliased++; d.file.aliased > MaxAliasedValues {
			d.errorf(n, path, "aliases expand to more than %d values in this file", MaxAliasedValues)
			d.aborted = true
			return
		}
	}
	n = deref(n)
	if n == nil || isNull(n) {
		return // as in JSON, null leaves the field unset
	}
	if tag := n.ShortTag(); n.Kind == yaml.MappingNode && tag != "!!map" || n.Kind == yaml.SequenceNode && tag != "!!seq" {
		d.errorf(n, path, "expected %s, got %s", expected(t), describe(n))
		return
	}
	switch t.Kind() {
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			d.wrongType(n, path, "a string")
			return
		}
		if d.inAlias > 0 && !d.spend(n, path, len(n.Value)) {
			return
		}
		d.out = appendString(d.out, n.Value)
	case reflect.Int:
		d.int(n, path)
	case reflect.Pointer:
		start := len(d.out)
		d.value(n, path, t.Elem())
		if len(d.out) == start {
			// A value that is written sets the pointer, errors or not, so
			// validation sees the peer's ipBlock even when it is wrong.
			d.out = appendZero(d.out, t.Elem())
		}
	case reflect.Slice:
		d.slice(n, path, t)
	case reflect.Map:
		d.stringMap(n, path, t)
	case reflect.Struct:
		d.structure(n, path, t)
	default:
		panic(fmt.Sprintf("manifest: cannot decode into %s", t))
	}
}

// key writes a mapping key. yaml.v2 takes a key without "?" within 1024
// characters only, as YAML 1.1 says; a longer one gets the "?", which JSON
// lacks but YAML's flow mappings have.
func (d *docDecoder) key(key string) {
	start := len(d.out)
	d.out = append(appendString(d.out, key), ':')
	if len(d.out)-start > maxSimpleKey {
		d.out = slices.Insert(d.out, start, '?', ' ')
	}
}

// maxSimpleKey is the longest key written as JSON, in bytes, which are at
// least as many as characters: yaml.v2's limit is 1024 characters.
const maxSimpleKey = 1000

func (d *docDecoder) int(n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.wrongType(n, path, "an integer")
		return
	}
	var i int64
	if err := n.Decode(&i); err != nil || i < math.MinInt32 || i > math.MaxInt32 {
		d.errorf(n, path, "integer %s out of range", truncate(n.Value))
		return
	}
	d.out = strconv.AppendInt(d.out, i, 10)
}

func (d *docDecoder) slice(n *yaml.Node, path string, t reflect.Type) {
	if n.Kind != yaml.SequenceNode {
		d.wrongType(n, path, "a list")
		return
	}
	d.out = append(d.out, '[')
	for i, item := range n.Content {
		if d.stop() {
			return // the JSON stays unfinished: it is not decoded
		}
		if i > 0 {
			d.out = append(d.out, sep...)
		}
		p := path + "[" + strconv.Itoa(i) + "]"
		if isNull(resolve(item)) {
			d.errorf(item, p, "expected %s, got null", expected(t.Elem()))
			d.out = append(d.out, "null"...)
			continue
		}
		start := len(d.out)
		d.value(item, p, t.Elem())
		if len(d.out) == start {
			d.out = append(d.out, "null"...) // an item with an error stays zero
		}
	}
	d.out = append(d.out, ']')
}

// stringMap checks labels and annotations: string keys, string values.
func (d *docDecoder) stringMap(n *yaml.Node, path string, t reflect.Type) {
	if n.Kind != yaml.MappingNode {
		d.wrongType(n, path, "a mapping")
		return
	}
	d.out = append(d.out, '{')
	first := len(d.out)
	d.pairs(n, path, t, func(key string, _, val *yaml.Node) {
		p := join(path, key, t)
		if isNull(resolve(val)) {
			d.errorf(val, p, `expected a string, got null (write "" for an empty value)`)
			return
		}
		if len(d.out) > first {
			d.out = append(d.out, sep...)
		}
		d.key(key)
		start := len(d.out)
		d.value(val, p, t.Elem())
		if len(d.out) == start {
			d.out = append(d.out, "null"...) // the key stays, its value empty
		}
	})
	d.out = append(d.out, '}')
}

func (d *docDecoder) structure(n *yaml.Node, path string, t reflect.Type) {
	if n.Kind != yaml.MappingNode {
		d.wrongType(n, path, "a mapping")
		return
	}
	fields := fieldsOf(t)
	d.out = append(d.out, '{')
	first := len(d.out)
	d.pairs(n, path, t, func(key string, k, val *yaml.Node) {
		p := join(path, key, t)
		ft, ok := fields.byName[key]
		if !ok {
			if why, ok := unsupported[t][key]; ok {
				d.errorf(k, p, "not supported: %s", why)
				return
			}
			msg := "unknown field"
			if s := suggest(key, fields.names); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
			d.errorf(k, p, "%s", msg)
			return
		}
		mark := len(d.out)
		if mark > first {
			d.out = append(d.out, sep...)
		}
		d.key(key)
		start := len(d.out)
		d.value(val, p, ft)
		if len(d.out) == start {
			d.out = d.out[:mark] // null or an error: the field stays unset
		}
	})
	d.out = append(d.out, '}')
}

// pairs calls f for each entry of a mapping, checked against t, whose key
// is a string, and reports the keys that are not or that repeat.
func (d *docDecoder) pairs(n *yaml.Node, path string, t reflect.Type, f func(key string, k, v *yaml.Node)) {
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		if d.stop() {
			return
		}
		k, val := n.Content[i], n.Content[i+1]
		rk := resolve(k)
		switch {
		case rk == nil || rk.Kind != yaml.ScalarNode:
			d.errorf(k, path, "mapping key must be a string, got %s", describe(rk))
			continue
		case rk.ShortTag() == "!!merge":
			d.errorf(k, join(path, "<<", t), "merge keys are not supported: write the fields out")
			continue
		case rk.ShortTag() != "!!str":
			d.errorf(k, path, "mapping key must be a string, got %s %s", describe(rk), quoteScalar(rk))
			continue
		}
		if first, dup := seen[rk.Value]; dup {
			d.errorf(k, join(path, rk.Value, t), "duplicate key %s (first at line %d)", strconv.Quote(truncate(rk.Value)), first)
			continue
		}
		seen[rk.Value] = d.offset + k.Line
		if (d.inAlias > 0 || k.Kind == yaml.AliasNode) && !d.spend(k, path, len(rk.Value)) {
			return
		}
		f(rk.Value, k, val)
	}
}

func (d *docDecoder) wrongType(n *yaml.Node, path, want string) {
	got := describe(n)
	switch {
	case n.Kind != yaml.ScalarNode:
		d.errorf(n, path, "expected %s, got %s", want, got)
	case want == "a string":
		d.errorf(n, path, "expected a string, got %s %s (quote it: %s)", got, truncate(n.Value), strconv.Quote(truncate(n.Value)))
	default:
		d.errorf(n, path, "expected %s, got %s %s", want, got, quoteScalar(n))
	}
}

// join makes the path of a mapping entry: a.b for a struct field,
// a["b"] for a map key, which may hold dots.
func join(path, key string, t reflect.Type) string {
	switch {
	case t.Kind() == reflect.Map:
		return path + "[" + strconv.Quote(key) + "]"
	case path == "":
		return key
	}
	return path + "." + key
}

// deref follows an alias to its anchored node, keeping the alias's position
// for errors: the mistake is where the alias is used.
func deref(n *yaml.Node) *yaml.Node {
	if n == nil || n.Kind != yaml.AliasNode || n.Alias == nil {
		return n
	}
	c := *n.Alias
	c.Line, c.Column = n.Line, n.Column
	return &c
}

// resolve follows an alias to its anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names the YAML type of a node for errors.
func describe(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch t := n.ShortTag(); {
	case n.Kind == yaml.MappingNode && t == "!!map":
		return "a mapping"
	case n.Kind == yaml.MappingNode:
		return "a mapping tagged " + truncate(t)
	case n.Kind == yaml.SequenceNode && t == "!!seq":
		return "a list"
	case n.Kind == yaml.SequenceNode:
		return "a list tagged " + truncate(t)
	}
	switch n.Kind {
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case "!!str":
		return "a string"
	case "!!int":
		return "an integer"
	case "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "null"
	case "!!timestamp":
		return "a timestamp"
	}
	return "a value tagged " + truncate(n.ShortTag())
}

// expected names what a Go type is decoded from.
func expected(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int:
		return "an integer"
	case reflect.Slice:
		return "a list"
	}
	return "a mapping"
}

// structFields maps the JSON names of a struct's fields, embedded ones
// included, to their types.
type structFields struct {
	byName map[string]reflect.Type
	names  []string
}

var fieldCache sync.Map // reflect.Type → *structFields

func fieldsOf(t reflect.Type) *structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*structFields)
	}
	f := &structFields{byName: map[string]reflect.Type{}}
	collectFields(t, f)
	slices.Sort(f.names)
	fieldCache.Store(t, f)
	return f
}

func collectFields(t reflect.Type, f *structFields) {
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" || !sf.IsExported() {
			continue
		}
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			collectFields(sf.Type, f)
			continue
		}
		if name == "" {
			name = sf.Name
		}
		f.byName[name] = sf.Type
		f.names = append(f.names, name)
	}
}

// suggest returns the known field closest to a misspelt one, if any is close.
func suggest(key string, names []string) string {
	best, bestDist := "", len(key)/3+2
	for _, n := range names {
		if d := distance(strings.ToLower(key), strings.ToLower(n)); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// distance is the Levenshtein distance of two strings, bounded in cost by
// giving up on long keys.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
