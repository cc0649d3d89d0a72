package manifest

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// aliasBomb nests aliases inside fields the decoder walks: 100 rules of
// 100 peers of 100 expressions of 100 values, 10^8 values from a 3 KB file.
func aliasBomb() string {
	hundred := func(alias string) string {
		return "[" + strings.TrimSuffix(strings.Repeat(alias+",", 100), ",") + "]"
	}
	return np(sel +
		"  x-defs:\n" +
		"    - &v " + hundred("x") + "\n" +
		"    - &e {key: a, operator: In, values: *v}\n" +
		"    - &el " + hundred("*e") + "\n" +
		"    - &p {serviceSelector: {matchExpressions: *el}}\n" +
		"    - &pl " + hundred("*p") + "\n" +
		"    - &r {from: *pl}\n" +
		"  ingress: " + hundred("*r") + "\n")
}

// aliasedText aliases a 100 KB string 20 times, as a value or as a key:
// few values, but 2 MB of text for the typed decode to copy.
func aliasedText(key bool) string {
	big := strings.Repeat("A", 100000)
	anchor, alias := "{matchLabels: {a: &s "+big+"}}\n", "{x: *s}"
	if key {
		anchor, alias = "\n    matchLabels:\n      ? &s "+big+"\n      : a\n", "{*s : x}"
	}
	return np("  serviceSelector: " + anchor + "  ingress:\n" +
		strings.Repeat("    - from: [{serviceSelector: {matchLabels: "+alias+"}}]\n", 20))
}

func TestDecodeHostile(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}
	tests := []struct {
		name string
		data string
		want string // prefix of the first error
	}{
		{"invalid UTF-8", "apiVersion: swarmsec.io/v1\nkind: Net\xffworkPolicy\n", "f.yaml:2:10: invalid UTF-8"},
		{"too large", strings.Repeat("#", MaxFileSize+1), "f.yaml: file is larger than the limit of 1048576 bytes"},
		{"too many documents", strings.Repeat("---\n", MaxDocuments+1), "f.yaml:1: more than 10000 documents in one file"},
		{"alias bomb", aliasBomb(), "f.yaml:7:3: spec.x-defs: unknown field"},
		{"aliased text", aliasedText(false), `f.yaml:18:50: spec.ingress[10].from[0].serviceSelector.matchLabels["x"]: aliases expand to more than 1048576 bytes in this file`},
		{"aliased keys", aliasedText(true), `f.yaml:21:47: spec.ingress[10].from[0].serviceSelector.matchLabels: aliases expand to more than 1048576 bytes in this file`},
		{"alias cycle in a list", np(sel + "  policyTypes: &t [Ingress, *t]\n"), "f.yaml:7:29: spec.policyTypes[1]: expected a string, got a list"},
		{"alias cycle in a mapping", np("  serviceSelector: &s {matchLabels: *s}\n"), "f.yaml:6:37: spec.serviceSelector.matchLabels[\"matchLabels\"]: expected a string, got a mapping"},
		{"undefined alias", np("  serviceSelector: *nope\n"), "f.yaml:1: invalid YAML: unknown anchor 'nope' referenced"},
		{"deep nesting", strings.Repeat("[", 20000), "f.yaml:1: invalid YAML: exceeded max depth of 10000"},
		{"deep mappings", strings.Repeat("{a: ", 20000), "f.yaml:1: invalid YAML: exceeded max depth of 10000"},
		{"NUL bytes", "apiVersion: swarmsec.io/v1\x00\n", "f.yaml:1: invalid YAML: control characters are not allowed"},
		{"tab indentation", np("\tserviceSelector: {}\n"), "f.yaml:6: invalid YAML: found character that cannot start any token"},
		{"random bytes", string(random), "f.yaml:"},
		{"huge value", strings.Replace(np(sel), "name: p", "name: "+strings.Repeat("A", 500000), 1), `f.yaml:4:9: metadata.name: invalid name "AAAAAAAA`},
		{"custom tag", np("  serviceSelector: !foo {}\n"), "f.yaml:6:20: spec.serviceSelector: expected a mapping, got a mapping tagged !foo"},
		{"binary", np(sel + "  enforcement: !!binary ZW5mb3JjZQ==\n"), "f.yaml:7:16: spec.enforcement: expected a string, got a value tagged !!binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, errs := DecodeFile("f.yaml", []byte(tt.data))
			if len(objs) != 0 || len(errs) == 0 {
				t.Fatalf("objects %d, errors %v", len(objs), errs)
			}
			if got := errs[0].Error(); !strings.HasPrefix(got, tt.want) {
				t.Errorf("first error %s, want %s", got, tt.want)
			}
			for _, e := range errs {
				if len(e.Error()) > 1000 {
					t.Errorf("error of %d bytes", len(e.Error()))
				}
			}
		})
	}
}

// TestDecodeAliasBombBudget checks the bomb is stopped by the alias budget,
// not by luck, and that the budget is the file's: a bomb per document would
// otherwise multiply the work.
func TestDecodeAliasBombBudget(t *testing.T) {
	bombs := strings.Repeat("---\n"+aliasBomb(), 3)
	_, errs := DecodeFile("f.yaml", []byte(bombs))
	found := 0
	for _, e := range errs {
		if strings.Contains(e.Message, "aliases expand to more than 10000 values in this file") {
			found++
		}
	}
	if found != 3 { // once per document, each stopped at its first alias
		t.Errorf("errors %v", errs)
	}
}
