package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// DecodeFile decodes and validates the documents of one file. name is used
// in errors and in Policy.File. It returns the valid objects, in document
// order, and every error found, ordered by position; a document with an
// error yields no object. JSON is YAML, so .json files decode the same way.
func DecodeFile(name string, data []byte) ([]v1.Policy, []Error) {
	f := &fileDecoder{name: name}
	if len(data) > MaxFileSize {
		f.add(Error{Message: errTooLarge.Error()})
		return nil, f.errs
	}
	docs := 0
	for _, c := range split(data) {
		if !utf8.Valid(c.data) {
			line, col := invalidUTF8(c)
			f.add(Error{Line: line, Column: col, Message: "invalid UTF-8"})
			continue
		}
		dec := yaml.NewDecoder(bytes.NewReader(c.data))
		for !f.full() {
			var doc yaml.Node
			err := parse(dec, &doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if docs++; docs > MaxDocuments {
				f.add(Error{Line: c.line, Message: fmt.Sprintf("more than %d documents in one file", MaxDocuments)})
				return f.result()
			}
			if err != nil {
				f.add(syntaxError(err, c.line))
				break // the parser cannot go on past a syntax error
			}
			f.document(&doc, c.line-1)
		}
		if f.full() {
			break
		}
	}
	return f.result()
}

// parse reads the next document of a stream. The YAML library has panicked
// on malformed input before (CVE-2022-28948); a manifest must never take the
// controller down, so a panic becomes an error.
func parse(dec *yaml.Decoder, doc *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: parser failed: %v", r)
		}
	}()
	return dec.Decode(doc)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a YAML parser error into an Error at its file line.
func syntaxError(err error, chunkLine int) Error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return Error{Line: chunkLine + n - 1, Message: "invalid YAML: " + m[2]}
	}
	msg, _ = strings.CutPrefix(msg, "yaml: ")
	return Error{Line: chunkLine, Message: "invalid YAML: " + msg}
}

// invalidUTF8 finds the line and column of the first invalid byte of c.
func invalidUTF8(c chunk) (line, col int) {
	line, col = c.line, 1
	for i := 0; i < len(c.data); {
		r, size := utf8.DecodeRune(c.data[i:])
		if r == utf8.RuneError && size <= 1 {
			return line, col
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return line, col
}

// fileDecoder collects the objects and errors of one file.
type fileDecoder struct {
	name         string
	aliased      int // values decoded through aliases so far
	aliasedBytes int // bytes of text decoded through aliases so far
	objects      []v1.Policy
	errs         []Error
	truncated    bool // an error past MaxErrors was dropped
}

func (f *fileDecoder) add(e Error) {
	if len(f.errs) >= MaxErrors {
		f.truncated = true
		return
	}
	e.File = f.name
	f.errs = append(f.errs, e)
}

// full reports whether no more errors can be reported, so decoding can stop.
func (f *fileDecoder) full() bool { return len(f.errs) >= MaxErrors }

func (f *fileDecoder) result() ([]v1.Policy, []Error) {
	slices.SortStableFunc(f.errs, func(a, b Error) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
	if f.full() {
		f.errs = append(f.errs, Error{File: f.name, Message: fmt.Sprintf("too many errors: stopped after %d", MaxErrors)})
	}
	return f.objects, f.errs
}

// document decodes one parsed document; offset is the number of file lines
// before its chunk.
func (f *fileDecoder) document(doc *yaml.Node, offset int) {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return
	}
	root := doc.Content[0]
	if isNull(root) {
		return // an empty document is allowed
	}
	d := &docDecoder{
		file:       f,
		offset:     offset,
		root:       root,
		firstError: len(f.errs),
	}
	errsBefore := len(f.errs)
	if root.Kind != yaml.MappingNode {
		d.errorf(root, "", "expected a mapping with apiVersion and kind, got %s", describe(root))
		return
	}
	kind := scalarField(root, "kind")
	if kind == nil {
		d.missing("kind", "required: one of %s", kindList())
		return
	}
	newPolicy, ok := kinds[kind.Value]
	if !ok || kind.Kind != yaml.ScalarNode || kind.ShortTag() != "!!str" {
		d.errorf(kind, "kind", "unsupported value %s: must be one of %s", quoteScalar(kind), kindList())
		if api := scalarField(root, "apiVersion"); api != nil && (api.ShortTag() != "!!str" || api.Value != v1.APIVersion) {
			d.errorf(api, "apiVersion", "unsupported value %s: must be %s", quoteScalar(api), v1.APIVersion)
		}
		return
	}
	p := newPolicy()
	d.value(root, "", reflect.TypeOf(p.target()).Elem())
	if d.stop() {
		return // aliases ran out or errors did: the JSON may be unfinished
	}
	if d.decodeTyped(p.target()) {
		p.validate(&checker{d: d})
	}
	if len(f.errs) > errsBefore || f.truncated {
		return
	}
	o := p.object()
	o.File = f.name
	o.Line = offset + root.Line
	o.Generation = generation(p.canonicalSpec())
	np, _ := d.at("metadata.name")
	o.NameLine, o.NameColumn = np.line, np.column
	f.objects = append(f.objects, o)
}

// scalarField finds the value of key in a mapping, following an alias.
func scalarField(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			return resolve(m.Content[i+1])
		}
	}
	return nil
}

// quoteScalar shows a node's value in an error: quoted when it is a scalar.
func quoteScalar(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return strconv.Quote(truncate(n.Value))
	}
	return describe(n)
}

// truncate shortens a value quoted into an error, so hostile input cannot
// blow up the report.
func truncate(s string) string { return shorten(s, 64) }

// shorten cuts s to at most limit bytes and a "...", at a rune boundary.
func shorten(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
