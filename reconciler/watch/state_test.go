package watch

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/swarmsec/swarmsec/reconciler/manifest"
)

// doc is a valid NetworkPolicy; version goes into its selector, so a
// snapshot shows which version of a policy is in force.
func doc(name, version string) string {
	return fmt.Sprintf("apiVersion: swarmsec.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: %s\nspec:\n  serviceSelector: {matchLabels: {version: %q}}\n", name, version)
}

const broken = "kind: [\n"

// setFiles makes dir hold exactly files.
func setFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, keep := files[e.Name()]; !keep {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// inForce lists a snapshot's objects as name=version.
func inForce(s Snapshot) []string {
	var out []string
	for _, o := range s.Objects {
		out = append(out, o.Name+"="+o.Network.Spec.ServiceSelector.MatchLabels["version"])
	}
	return out
}

func TestState(t *testing.T) {
	type step struct {
		files      map[string]string // the directory's content; nil removes it
		wantObjs   []string
		wantStale  []string
		wantHeld   bool
		wantErrors []string // substrings, one per error
	}
	tests := []struct {
		name       string
		allowEmpty bool
		steps      []step
	}{
		{
			name: "a broken file keeps its policies",
			steps: []step{
				{files: map[string]string{"a.yaml": doc("a", "1"), "b.yaml": doc("b", "1")}, wantObjs: []string{"a=1", "b=1"}},
				{files: map[string]string{"a.yaml": broken, "b.yaml": doc("b", "2")}, wantObjs: []string{"a=1", "b=2"}, wantStale: []string{"a.yaml"}, wantErrors: []string{"a.yaml:1: invalid YAML"}},
				{files: map[string]string{"a.yaml": doc("a", "3"), "b.yaml": doc("b", "2")}, wantObjs: []string{"a=3", "b=2"}},
			},
		},
		{
			name: "a broken document keeps the whole file's last good policies",
			steps: []step{
				{files: map[string]string{"a.yaml": doc("a", "1") + "---\n" + doc("c", "1")}, wantObjs: []string{"a=1", "c=1"}},
				{files: map[string]string{"a.yaml": doc("a", "2") + "---\n" + strings.Replace(doc("c", "2"), "serviceSelector", "podSelector", 1)},
					wantObjs: []string{"a=1", "c=1"}, wantStale: []string{"a.yaml"}, wantErrors: []string{"a.yaml:12:1: spec.serviceSelector: required", "a.yaml:13:3: spec.podSelector: not supported"}},
			},
		},
		{
			name: "a file never read well contributes its valid documents",
			steps: []step{
				{files: map[string]string{"a.yaml": doc("a", "1") + "---\n" + broken}, wantObjs: []string{"a=1"}, wantErrors: []string{"a.yaml:8: invalid YAML"}},
				{files: map[string]string{"a.yaml": doc("a", "2") + "---\n" + broken}, wantObjs: []string{"a=2"}, wantErrors: []string{"a.yaml:8: invalid YAML"}},
			},
		},
		{
			name: "a deleted file removes its policies",
			steps: []step{
				{files: map[string]string{"a.yaml": doc("a", "1"), "b.yaml": doc("b", "1")}, wantObjs: []string{"a=1", "b=1"}},
				{files: map[string]string{"b.yaml": doc("b", "1")}, wantObjs: []string{"b=1"}},
			},
		},
		{
			name: "a deleted broken file removes its kept policies",
			steps: []step{
				{files: map[string]string{"a.yaml": doc("a", "1"), "b.yaml": doc("b", "1")}, wantObjs: []string{"a=1", "b=1"}},
				{files: map[string]string{"a.yaml": broken, "b.yaml": doc("b", "1")}, wantObjs: []string{"a=1", "b=1"}, wantStale: []string{"a.yaml"}, wantErrors: []string{"a.yaml"}},
				{files: map[string]string{"b.yaml": doc("b", "1")}, wantObjs: []string{"b=1"}},
			},
		},
		{
			name: "an emptied directory is held",
			steps: []step{
				{files: map[string]string{"a.yaml": doc("a", "1"), "b.yaml": doc("b", "1")}, wantObjs: []string{"a=1", "b=1"}},
				{files: map[string]string{}, wantObjs: []string{"a=1", "b=1"}, wantHeld: true},
				{files: map[string]string{"empty.yaml": "# nothing yet\n"}, wantObjs: []string{"a=1", "b=1"}, wantHeld: true},
				{files: map[string]string{"a.yaml": doc("a", "2")}, wantObjs: []string{"a=2"}},
			},
		},
		{
			name:       "an emptied directory with AllowEmpty",
			allowEmpty: true,
			steps: []step{
				{files: map[string]string{"a.yaml": doc("a", "1")}, wantObjs: []string{"a=1"}},
				{files: map[string]string{}},
			},
		},
		{
			name: "an unreadable directory is held",
			steps: []step{
				{files: map[string]string{"a.yaml": doc("a", "1")}, wantObjs: []string{"a=1"}},
				{files: nil, wantObjs: []string{"a=1"}, wantHeld: true, wantErrors: []string{"no such file or directory"}},
				// The files kept their last good state through it.
				{files: map[string]string{"a.yaml": broken}, wantObjs: []string{"a=1"}, wantStale: []string{"a.yaml"}, wantErrors: []string{"a.yaml"}},
			},
		},
		{
			name:       "an unreadable directory with AllowEmpty",
			allowEmpty: true,
			steps: []step{
				{files: map[string]string{"a.yaml": doc("a", "1")}, wantObjs: []string{"a=1"}},
				{files: nil, wantErrors: []string{"no such file or directory"}},
			},
		},
		{
			name: "empty at start is held",
			steps: []step{
				{files: map[string]string{}, wantHeld: true},
				{files: map[string]string{"a.yaml": doc("a", "1")}, wantObjs: []string{"a=1"}},
			},
		},
		{
			name: "only broken files at start are held",
			steps: []step{
				{files: map[string]string{"a.yaml": broken}, wantHeld: true, wantErrors: []string{"a.yaml"}},
			},
		},
		{
			name: "a duplicate name keeps both files' last good policies",
			steps: []step{
				{files: map[string]string{"a.yaml": doc("x", "1")}, wantObjs: []string{"x=1"}},
				{files: map[string]string{"a.yaml": doc("x", "1"), "b.yaml": doc("x", "2")}, wantObjs: []string{"x=1"}, wantStale: []string{"a.yaml"},
					wantErrors: []string{`a.yaml:4:9: metadata.name: duplicate NetworkPolicy "x": also defined at`, `b.yaml:4:9: metadata.name: duplicate NetworkPolicy "x": already defined at`}},
			},
		},
		{
			name: "a policy moved out of a broken file wins over its old copy",
			steps: []step{
				{files: map[string]string{"a.yaml": doc("x", "1")}, wantObjs: []string{"x=1"}},
				{files: map[string]string{"a.yaml": broken, "b.yaml": doc("x", "2")}, wantObjs: []string{"x=2"}, wantStale: []string{"a.yaml"},
					wantErrors: []string{"a.yaml:1: invalid YAML", `a.yaml:1: metadata.name: duplicate NetworkPolicy "x": the one last loaded from this file is dropped for the one in`}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "manifests")
			s := newState(dir, tt.allowEmpty)
			for i, st := range tt.steps {
				if st.files == nil {
					if err := os.RemoveAll(dir); err != nil {
						t.Fatal(err)
					}
				} else {
					setFiles(t, dir, st.files)
				}
				snap := s.update(manifest.Load(dir))
				if got := inForce(snap); !slices.Equal(got, st.wantObjs) {
					t.Errorf("step %d: in force %q, want %q", i, got, st.wantObjs)
				}
				var stale []string
				for _, f := range snap.Stale {
					stale = append(stale, filepath.Base(f))
				}
				if !slices.Equal(stale, st.wantStale) {
					t.Errorf("step %d: stale %q, want %q", i, stale, st.wantStale)
				}
				if (snap.Held != "") != st.wantHeld {
					t.Errorf("step %d: held %q, want held=%v", i, snap.Held, st.wantHeld)
				}
				var errs []string
				for _, e := range snap.Errors {
					errs = append(errs, strings.ReplaceAll(e.Error(), dir+"/", ""))
				}
				ok := len(errs) == len(st.wantErrors)
				for j := 0; ok && j < len(errs); j++ {
					ok = strings.Contains(errs[j], st.wantErrors[j])
				}
				if !ok {
					t.Errorf("step %d: errors\n\t%s\nwant\n\t%s", i, strings.Join(errs, "\n\t"), strings.Join(st.wantErrors, "\n\t"))
				}
			}
		})
	}
}

func TestOnce(t *testing.T) {
	dir := t.TempDir()
	setFiles(t, dir, map[string]string{"a.yaml": doc("a", "1"), "b.yaml": broken})
	snap, err := Once(dir, Options{})
	if err != nil || !slices.Equal(inForce(snap), []string{"a=1"}) || len(snap.Errors) != 1 || snap.Held != "" {
		t.Errorf("Once: %+v, %v", snap, err)
	}
	if _, err := Once(filepath.Join(dir, "missing"), Options{}); err == nil {
		t.Error("Once of a missing path: no error")
	}
	empty := t.TempDir()
	if snap, err := Once(empty, Options{}); err != nil || snap.Held == "" {
		t.Errorf("Once of an empty directory: %+v, %v", snap, err)
	}
	if snap, err := Once(empty, Options{AllowEmpty: true}); err != nil || snap.Held != "" {
		t.Errorf("Once of an empty directory, AllowEmpty: %+v, %v", snap, err)
	}
}
