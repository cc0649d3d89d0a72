// Package schema generates the JSON Schemas of the swarmsec.io/v1 kinds
// from the api/v1 types, for editors (yaml-language-server). swarmsec
// validate stays the authority: the schemas cannot say everything it
// checks (selectors on swarmsec's own labels, CIDRs, ...).
package schema

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"runtime"

	"github.com/invopop/jsonschema"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// Dir is where the schemas are checked in, from the module root.
const Dir = "api/v1/schema"

// Files returns the schema files by name: one per kind, and swarmsec.json
// that accepts either.
func Files() (map[string][]byte, error) {
	out := map[string][]byte{}
	kinds := []struct {
		file, kind string
		v          any
	}{
		{"networkpolicy.json", v1.KindNetworkPolicy, &v1.NetworkPolicy{}},
		{"encryptionpolicy.json", v1.KindEncryptionPolicy, &v1.EncryptionPolicy{}},
	}
	r, err := reflector()
	if err != nil {
		return nil, err
	}
	var oneOf []*jsonschema.Schema
	for _, k := range kinds {
		s := r.Reflect(k.v)
		s.ID = jsonschema.ID("https://swarmsec.io/schemas/v1/" + k.file)
		s.Title = k.kind
		def := s.Definitions[reflect.TypeOf(k.v).Elem().Name()]
		if def != nil && def.Properties != nil {
			if p, ok := def.Properties.Get("apiVersion"); ok {
				p.Const = v1.APIVersion
			}
			if p, ok := def.Properties.Get("kind"); ok {
				p.Const = k.kind
			}
		}
		b, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			return nil, err
		}
		out[k.file] = append(b, '\n')
		oneOf = append(oneOf, &jsonschema.Schema{Ref: "./" + k.file})
	}
	all := &jsonschema.Schema{
		Version: jsonschema.Version, ID: "https://swarmsec.io/schemas/v1/swarmsec.json",
		Title: "swarmsec.io/v1 manifest", OneOf: oneOf,
	}
	b, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return nil, err
	}
	out["swarmsec.json"] = append(b, '\n')
	return out, nil
}

func reflector() (*jsonschema.Reflector, error) {
	r := &jsonschema.Reflector{
		// Unknown fields are errors, as in swarmsec validate.
		AllowAdditionalProperties: false,
		// Required only where the types say so: omitempty is optional.
		RequiredFromJSONSchemaTags: false,
	}
	// The field docs of api/v1 become the descriptions editors show. The
	// library names packages by their path from the module root, so read
	// the sources from there (the generator and its test only).
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..")
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	if err := os.Chdir(root); err != nil {
		return nil, err
	}
	defer func() { _ = os.Chdir(cwd) }()
	if err := r.AddGoComments("github.com/swarmsec/swarmsec", "./api/v1"); err != nil {
		return nil, err
	}
	return r, nil
}
