package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// doc is a valid NetworkPolicy document.
func doc(name string) string {
	return fmt.Sprintf("apiVersion: swarmsec.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: %s\nspec:\n  serviceSelector: {matchLabels: {app: %s}}\n", name, name)
}

// writeFiles creates files under dir; a value starting with "->" makes a
// symlink to the rest.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// summary lists a set's objects as kind/name@file:line and its errors,
// paths relative to dir.
func summary(dir string, s *Set) (objs, files, errs []string) {
	rel := func(p string) string {
		if r, err := filepath.Rel(dir, p); err == nil {
			return r
		}
		return p
	}
	for _, o := range s.Objects {
		objs = append(objs, fmt.Sprintf("%s/%s@%s:%d", o.Kind, o.Name, rel(o.File), o.Line))
	}
	for _, f := range s.Files {
		files = append(files, rel(f))
	}
	for _, e := range s.Errors {
		e.File = rel(e.File)
		errs = append(errs, strings.ReplaceAll(e.Error(), dir+string(filepath.Separator), ""))
	}
	return objs, files, errs
}

func TestLoad(t *testing.T) {
	enc := "apiVersion: swarmsec.io/v1\nkind: EncryptionPolicy\nmetadata: {name: a}\nspec: {networkSelector: {}}\n"
	tests := []struct {
		name      string
		files     map[string]string
		roots     []string // relative to the directory; "." when empty
		wantObjs  []string
		wantFiles []string
		wantErrs  []string
	}{
		{
			name: "recursive, extensions, dot entries",
			files: map[string]string{
				"a.yaml":            doc("a"),
				"sub/b.yml":         doc("b"),
				"sub/deeper/c.json": `{"apiVersion": "swarmsec.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "c"}, "spec": {"serviceSelector": {}}}`,
				"D.YAML":            doc("d"),
				"empty.yaml":        "",
				"notes.txt":         "not a manifest",
				".hidden.yaml":      doc("a"),
				".git/x.yaml":       doc("a"),
				"sub/.swp/y.yaml":   "{{{",
			},
			wantObjs:  []string{"NetworkPolicy/a@a.yaml:1", "NetworkPolicy/b@sub/b.yml:1", "NetworkPolicy/c@sub/deeper/c.json:1", "NetworkPolicy/d@D.YAML:1"},
			wantFiles: []string{"D.YAML", "a.yaml", "empty.yaml", "sub/b.yml", "sub/deeper/c.json"},
		},
		{
			name:      "objects sorted by kind then name",
			files:     map[string]string{"1.yaml": doc("z") + "---\n" + enc, "2.yaml": doc("b")},
			wantObjs:  []string{"EncryptionPolicy/a@1.yaml:8", "NetworkPolicy/b@2.yaml:1", "NetworkPolicy/z@1.yaml:1"},
			wantFiles: []string{"1.yaml", "2.yaml"},
		},
		{
			name:      "duplicate names across files",
			files:     map[string]string{"a.yaml": doc("x"), "b.yaml": "# x again\n" + doc("x")},
			wantObjs:  []string{"NetworkPolicy/x@a.yaml:1"},
			wantFiles: []string{"a.yaml", "b.yaml"},
			wantErrs: []string{
				`a.yaml:4:9: metadata.name: duplicate NetworkPolicy "x": also defined at b.yaml:5`,
				`b.yaml:5:9: metadata.name: duplicate NetworkPolicy "x": already defined at a.yaml:4`,
			},
		},
		{
			name:      "duplicate names in one file",
			files:     map[string]string{"a.yaml": doc("x") + "---\n" + doc("x")},
			wantObjs:  []string{"NetworkPolicy/x@a.yaml:1"},
			wantFiles: []string{"a.yaml"},
			wantErrs: []string{
				`a.yaml:4:9: metadata.name: duplicate NetworkPolicy "x": also defined at a.yaml:11`,
				`a.yaml:11:9: metadata.name: duplicate NetworkPolicy "x": already defined at a.yaml:4`,
			},
		},
		{
			name:      "a name is unique per kind",
			files:     map[string]string{"a.yaml": doc("a"), "b.yaml": enc},
			wantObjs:  []string{"EncryptionPolicy/a@b.yaml:1", "NetworkPolicy/a@a.yaml:1"},
			wantFiles: []string{"a.yaml", "b.yaml"},
		},
		{
			name:      "a file named directly counts whatever its name",
			files:     map[string]string{"policy.txt": doc("a"), "other.yaml": doc("b")},
			roots:     []string{"policy.txt"},
			wantObjs:  []string{"NetworkPolicy/a@policy.txt:1"},
			wantFiles: []string{"policy.txt"},
		},
		{
			name:      "overlapping roots read a file once",
			files:     map[string]string{"a.yaml": doc("a")},
			roots:     []string{".", "a.yaml", "./a.yaml"},
			wantObjs:  []string{"NetworkPolicy/a@a.yaml:1"},
			wantFiles: []string{"a.yaml"},
		},
		{
			name:      "broken file next to good ones",
			files:     map[string]string{"a.yaml": doc("a"), "b.yaml": "kind: [\n"},
			wantObjs:  []string{"NetworkPolicy/a@a.yaml:1"},
			wantFiles: []string{"a.yaml", "b.yaml"},
			wantErrs:  []string{"b.yaml:1: invalid YAML: did not find expected node content"},
		},
		{
			name: "ConfigMap-style mount",
			files: map[string]string{
				"..2026_01_01/a.yaml": doc("a"),
				"..2026_01_01/b.yaml": doc("b"),
				"..data":              "->..2026_01_01",
				"a.yaml":              "->..data/a.yaml",
				"b.yaml":              "->..data/b.yaml",
			},
			wantObjs:  []string{"NetworkPolicy/a@a.yaml:1", "NetworkPolicy/b@b.yaml:1"},
			wantFiles: []string{"a.yaml", "b.yaml"},
		},
		{
			name: "a directory or file found twice is read once",
			files: map[string]string{
				"real/a.yaml": doc("a"),
				"linked":      "->real",
				"real/loop":   "->..",
				"b.yaml":      doc("b"),
				"c.yaml":      "->b.yaml",
			},
			wantObjs:  []string{"NetworkPolicy/a@linked/a.yaml:1", "NetworkPolicy/b@b.yaml:1"},
			wantFiles: []string{"b.yaml", "linked/a.yaml"},
		},
		{
			name:      "dangling symlink",
			files:     map[string]string{"a.yaml": "->gone.yaml", "b": "->gone"},
			wantFiles: []string{"a.yaml"},
			wantErrs:  []string{"a.yaml: stat: no such file or directory"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tt.files)
			roots := []string{dir}
			if tt.roots != nil {
				roots = nil
				for _, r := range tt.roots {
					roots = append(roots, filepath.Join(dir, r))
				}
			}
			set, err := Load(roots...)
			if err != nil {
				t.Fatal(err)
			}
			objs, files, errs := summary(dir, set)
			if !slices.Equal(objs, tt.wantObjs) {
				t.Errorf("objects %q, want %q", objs, tt.wantObjs)
			}
			if !slices.Equal(files, tt.wantFiles) {
				t.Errorf("files %q, want %q", files, tt.wantFiles)
			}
			slices.Sort(errs)
			slices.Sort(tt.wantErrs)
			if !slices.Equal(errs, tt.wantErrs) {
				t.Errorf("errors:\n\t%s\nwant:\n\t%s", strings.Join(errs, "\n\t"), strings.Join(tt.wantErrs, "\n\t"))
			}
		})
	}
}

func TestLoadRootErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("missing root: %v", err)
	}
	writeFiles(t, dir, map[string]string{"dangling": "->nowhere"})
	if _, err := Load(filepath.Join(dir, "dangling")); err == nil {
		t.Error("dangling root: no error")
	}
}

// TestLoadFIFO checks that a pipe named like a manifest is reported, not
// opened: opening it would block until a writer came.
func TestLoadFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "p.yaml"), 0o644); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	set, err := Load(dir, filepath.Join(dir, "p.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, errs := summary(dir, set)
	if !slices.Equal(errs, []string{"p.yaml: not a regular file"}) {
		t.Errorf("errors %q", errs)
	}
}

// TestLoadSwaps reads the same path before and after the atomic swaps that
// git-sync and Kubernetes ConfigMap volumes do.
func TestLoadSwaps(t *testing.T) {
	t.Run("git-sync re-points the root", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"rev1/a.yaml": doc("a"), "rev2/b.yaml": doc("b"), "current": "->rev1"})
		root := filepath.Join(dir, "current")
		assertNames(t, root, "a")
		swapSymlink(t, root, "rev2")
		assertNames(t, root, "b")
	})
	t.Run("ConfigMap swaps ..data", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{
			"..v1/a.yaml": doc("a"), "..v2/a.yaml": doc("a2"),
			"..data": "->..v1", "a.yaml": "->..data/a.yaml",
		})
		assertNames(t, dir, "a")
		swapSymlink(t, filepath.Join(dir, "..data"), "..v2")
		assertNames(t, dir, "a2")
	})
}

// swapSymlink re-points link atomically, as git-sync and the kubelet do:
// a new link renamed over the old one.
func swapSymlink(t testing.TB, link, target string) {
	t.Helper()
	tmp := link + ".tmp"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

func assertNames(t *testing.T, root string, want ...string) {
	t.Helper()
	set, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range set.Objects {
		names = append(names, o.Name)
	}
	if !slices.Equal(names, want) || len(set.Errors) > 0 {
		t.Errorf("names %q, errors %v; want %q", names, set.Errors, want)
	}
}

// BenchmarkLoad reads a directory of 1,000 policies, one per file, each
// with rules and published ports.
func BenchmarkLoad(b *testing.B) {
	dir := b.TempDir()
	files := map[string]string{}
	for i := range 1000 {
		files[fmt.Sprintf("stack%02d/svc%03d.yaml", i%50, i)] = fmt.Sprintf(`# service %[1]d of stack %[2]d
apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata:
  name: svc-%[1]d
  labels: {team: t%[2]d}
spec:
  serviceSelector:
    matchLabels:
      com.docker.stack.namespace: stack%[2]d
      app: svc%[1]d
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - serviceSelector:
            matchLabels: {com.docker.stack.namespace: stack%[2]d}
            matchExpressions:
              - {key: tier, operator: In, values: [front, back]}
  egress:
    - to:
        - serviceSelector: {matchLabels: {app: db}}
        - ipBlock: {cidr: 0.0.0.0/0}
  publish:
    - {port: %[3]d, protocol: tcp, mode: host}
`, i, i%50, 10000+i)
	}
	writeFiles(b, dir, files)
	b.ResetTimer()
	for b.Loop() {
		set, err := Load(dir)
		if err != nil || len(set.Objects) != 1000 || len(set.Errors) > 0 {
			b.Fatalf("objects %d, errors %v, err %v", len(set.Objects), set.Errors, err)
		}
	}
}

// TestLoadFIFOSwappedIn puts a pipe in a manifest's place between the walk
// and the read: the read fails at once instead of blocking.
func TestLoadFIFOSwappedIn(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a.yaml": doc("a")})
	p := filepath.Join(dir, "a.yaml")
	beforeOpen = func(path string) {
		if path == p {
			_ = os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Skip("no FIFOs here:", err)
			}
		}
	}
	t.Cleanup(func() { beforeOpen = func(string) {} })
	done := make(chan []Error, 1)
	go func() { _, errs := LoadFile(p); done <- errs }()
	select {
	case errs := <-done:
		if len(errs) != 1 || errs[0].Message != "not a regular file" {
			t.Errorf("errors %v", errs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO swapped in blocked")
	}
}

// TestLoadBoundsLargeTrees: a symlink into a large tree fails the load,
// naming the bound, instead of reading (and watching) all of it.
func TestLoadBoundsLargeTrees(t *testing.T) {
	big := t.TempDir()
	for i := range MaxDirs + 1 {
		if err := os.Mkdir(filepath.Join(big, fmt.Sprintf("d%04d", i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a.yaml": doc("a"), "vendor": "->" + big})
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("more than %d directories", MaxDirs)) {
		t.Fatalf("err = %v, want the directory bound", err)
	}
}
