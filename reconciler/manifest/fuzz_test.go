package manifest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dns1123Label checks names independently of the validation's own check.
var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// FuzzDecode feeds the decoder arbitrary bytes: it must never panic or hang,
// and what it returns must hold together.
func FuzzDecode(f *testing.F) {
	examples, _ := filepath.Glob("../../manifests/*.yaml")
	for _, p := range examples {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		np(sel),
		np("  serviceSelector: &s {matchLabels: {app: web}}\n  ingress: [{from: [{serviceSelector: *s}]}]\n  publish: [{port: 80, protocol: udp, mode: ingress}]\n"),
		np(sel + "  egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: []}}], ports: [{port: 1}]}]\n"),
		ep("  networkSelector: {matchExpressions: [{key: a, operator: NotIn, values: [b]}]}\n"),
		"---\n--- {a: 1}\n...\n%YAML 1.2\n---\n[1, 2]\n",
		aliasBomb(),
		np("  serviceSelector: {matchLabels: {a: on, on: \"\\x85\\u2028\\0\"}}\n"),
		`{"apiVersion": "swarmsec.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "j"}, "spec": {"serviceSelector": {}}}`,
		"a: &a [*a]\n",
		"\xef\xbb\xbfapiVersion: swarmsec.io/v1\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, errs := DecodeFile("fuzz.yaml", data)
		if len(errs) > MaxErrors+1 {
			t.Errorf("%d errors", len(errs))
		}
		for _, e := range errs {
			if e.File != "fuzz.yaml" || e.Line < 0 || e.Column < 0 || e.Message == "" {
				t.Errorf("malformed error %#v", e)
			}
			if strings.HasPrefix(e.Message, "typed decode") {
				t.Errorf("the walk and the typed decode disagree: %v", e)
			}
		}
		if single := !strings.Contains(string(data), "---") && !strings.Contains(string(data), "..."); single && len(errs) > 0 && len(objs) > 0 {
			t.Errorf("a single document gave both objects and errors")
		}
		for _, o := range objs {
			if !dns1123Label.MatchString(o.Name) || len(o.Name) > maxNameLength || len(o.Generation) != 16 || o.Line < 1 {
				t.Errorf("malformed object %+v", o)
			}
			if (o.Network == nil) == (o.Encryption == nil) {
				t.Errorf("object %s holds %v and %v", o.Name, o.Network, o.Encryption)
			}
		}
	})
}
