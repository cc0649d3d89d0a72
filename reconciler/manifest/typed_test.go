package manifest

import (
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// TestDecodeYAML12 checks the typed decode sees what the walk checked,
// YAML 1.2, though sigs.k8s.io/yaml parses YAML 1.1, where on is true.
func TestDecodeYAML12(t *testing.T) {
	doc := np("  serviceSelector:\n    matchLabels: {a: on, b: yes, c: off, on: n, d: \"\\x85\\u2028\\0\\ufeff\\uffff\", e: é😀}\n")
	objs, errs := DecodeFile("f.yaml", []byte(doc))
	if len(errs) > 0 || len(objs) != 1 {
		t.Fatalf("objects %v, errors %v", objs, errs)
	}
	want := map[string]string{"a": "on", "b": "yes", "c": "off", "on": "n", "d": "\u0085\u2028\x00\ufeff\uffff", "e": "é😀"}
	if got := objs[0].Network.Spec.ServiceSelector.MatchLabels; !maps.Equal(got, want) {
		t.Errorf("labels %q, want %q", got, want)
	}
}

// TestDecodeLong checks keys and values past YAML 1.1's 1024 characters
// for a key written without "?".
func TestDecodeLong(t *testing.T) {
	long := strings.Repeat("k", 5000)
	doc := np("  serviceSelector:\n    matchLabels:\n      ? " + long + "\n      : " + long + "\n" +
		"    matchExpressions: [{key: " + long[:1000] + ", operator: In, values: [" + long + "]}]\n")
	objs, errs := DecodeFile("f.yaml", []byte(doc))
	if len(errs) > 0 || len(objs) != 1 {
		t.Fatalf("objects %v, errors %v", objs, errs)
	}
	s := objs[0].Network.Spec.ServiceSelector
	if s.MatchLabels[long] != long || s.MatchExpressions[0].Values[0] != long {
		t.Errorf("selector %+v", s)
	}
}

// TestAppendString checks every string survives the trip through
// sigs.k8s.io/yaml unchanged.
func TestAppendString(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cases := []string{"", `"\`, "a\tb\r\n", "\x00\x1f\x7f\u0080\u0085\u009f\u00a0", "\u2028\u2029\ufeff\ufffe\uffff\U0010ffff", "on", "~", "- a: b", "&a *a !!int 1"}
	for range 2000 {
		var b strings.Builder
		for range rng.IntN(8) {
			r := rune(rng.IntN(0x110000))
			if rng.IntN(2) == 0 {
				r = rune(rng.IntN(0x3000))
			}
			if utf8.ValidRune(r) {
				b.WriteRune(r)
			}
		}
		cases = append(cases, b.String())
	}
	for _, s := range cases {
		var got string
		if err := sigsyaml.UnmarshalStrict(appendString(nil, s), &got); err != nil || got != s {
			t.Errorf("%q: got %q, %v", s, got, err)
		}
	}
}

// TestTypedError checks an error of the typed decode, should the walk ever
// let one through, is reported at the field it names.
func TestTypedError(t *testing.T) {
	doc := np(sel + "  publish:\n    - {port: 80}\n    - {port: x}\n  serviceSelecter: {}\n")
	tests := []struct {
		json string
		want string
	}{
		{`{"spec":{"publish":[{"port":80},{"port":"x"}]}}`, `f.yaml:9:14: spec.publish[1].port: typed decode (sigs.k8s.io/yaml) failed: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string`},
		{`{"spec":{"serviceSelecter":{}}}`, `f.yaml:10:3: spec.serviceSelecter: typed decode (sigs.k8s.io/yaml) failed: error unmarshaling JSON: while decoding JSON: json: unknown field "serviceSelecter"`},
		{`{"spec":`, `f.yaml:1:1: typed decode (sigs.k8s.io/yaml) failed: error converting YAML to JSON`},
	}
	for _, tt := range tests {
		var root yaml.Node
		if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
			t.Fatal(err)
		}
		f := &fileDecoder{name: "f.yaml"}
		d := &docDecoder{file: f, root: root.Content[0], out: []byte(tt.json)}
		if d.decodeTyped(&v1.NetworkPolicy{}) || len(f.errs) != 1 || !strings.HasPrefix(f.errs[0].Error(), tt.want) {
			t.Errorf("%s: errors %v, want %s", tt.json, f.errs, tt.want)
		}
	}
}
