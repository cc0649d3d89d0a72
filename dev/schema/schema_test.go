package schema

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"
)

const root = "../.."

// The checked-in schemas are what the types say now: regenerate them with
// `go run ./dev/schemagen` after changing api/v1.
func TestSchemasAreFresh(t *testing.T) {
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(root, Dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is stale (or missing: %v): run go run ./dev/schemagen", name, err)
		}
	}
}

func compile(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddResource("https://swarmsec.io/schemas/v1/"+name, doc); err != nil {
			t.Fatal(err)
		}
	}
	s, err := c.Compile("https://swarmsec.io/schemas/v1/swarmsec.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validate(t *testing.T, s *jsonschema.Schema, yamlDoc []byte) error {
	t.Helper()
	j, err := yaml.YAMLToJSON(yamlDoc)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(v)
}

// The schema accepts every shipped example and rejects a misspelled field.
func TestSchemaValidatesTheExamples(t *testing.T) {
	s := compile(t)
	paths, _ := filepath.Glob(filepath.Join(root, "manifests", "*.yaml"))
	if len(paths) == 0 {
		t.Fatal("no example manifests")
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range bytes.Split(b, []byte("\n---")) {
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			if err := validate(t, s, doc); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		}
	}
	misspelled := []byte(`apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: web}
spec:
  serviceSelector: {matchLabels: {app: web}}
  ingres: []
`)
	err := validate(t, s, misspelled)
	if err == nil || !strings.Contains(err.Error(), "ingres") {
		t.Errorf("a misspelled field passed: %v", err)
	}
}
