package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runValidate(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"validate"}, args...))
	err := root.Execute()
	var ee exitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.code
	}
	t.Fatalf("validate %v: %v", args, err)
	return "", 0
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "db.yaml")
	err := os.WriteFile(broken, []byte(`apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata:
  name: db
spec:
  serviceSelector:
    matchExpressions:
      - key: app
        operator: Inn
        values: [db]
  ingress:
    - from: [{namespaceSelector: {}}]
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string // lines of text output
	}{
		{"the example manifests", []string{"../../manifests"}, 0, []string{"6 policies in 6 files: valid"}},
		{"a broken file", []string{broken}, 1, []string{
			broken + `:9:19: spec.serviceSelector.matchExpressions[0].operator: unsupported value "Inn": must be one of In, NotIn, Exists, DoesNotExist`,
			broken + `:12:15: spec.ingress[0].from[0].namespaceSelector: not supported: Swarm has no namespaces: to select a stack, use serviceSelector with the label com.docker.stack.namespace=<stack name>`,
			"2 errors in 1 file",
		}},
		{"a missing path", []string{filepath.Join(dir, "nope")}, 1, []string{
			"stat " + filepath.Join(dir, "nope") + ": no such file or directory",
			"1 error",
		}},
		{"an empty directory", []string{t.TempDir()}, 0, []string{"no manifest files found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runValidate(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d", code, tt.wantCode)
			}
			if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("output:\n%s\nwant:\n%s", out, strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestValidateJSON(t *testing.T) {
	out, code := runValidate(t, "-o", "json", "../../manifests")
	var r validation
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if code != 0 || !r.Valid || len(r.Policies) != 6 || len(r.Files) != 6 || len(r.Errors) != 0 {
		t.Errorf("exit %d, %+v", code, r)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("kind: NetworkPolicy\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = runValidate(t, "-o", "json", dir)
	r = validation{}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if code != 1 || r.Valid || len(r.Errors) == 0 || r.Errors[0].Line != 1 || r.Errors[0].Field != "apiVersion" {
		t.Errorf("exit %d, %+v", code, r)
	}
}

func TestValidateBadOutput(t *testing.T) {
	root := newRootCmd()
	root.SetArgs([]string{"validate", "-o", "yaml", "../../manifests"})
	root.SetOut(&bytes.Buffer{})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "must be text or json") {
		t.Errorf("err %v", err)
	}
}
