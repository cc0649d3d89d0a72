package manifest

import (
	"cmp"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// Set is what a load of manifest files and directories found.
type Set struct {
	// Objects are the valid objects, sorted by kind then name. Of several
	// with the same kind and name only the first, by file and line, is here.
	Objects []v1.Policy
	// Errors are the errors of all files, by file and position, including
	// duplicate names across files.
	Errors []Error
	// Files are the manifest files read, sorted, unreadable ones included.
	Files []string
	// Dirs are the directories whose changes can change the set: those
	// walked and those holding the targets of symlinked files. A watcher
	// watches them.
	Dirs []string
}

// Bounds of the walk, against symlink loops the cycle check misses and
// directory trees no one meant to point swarmsec at (a symlink to /usr):
// each read would take seconds and the watcher would hold a watch per
// directory. A walk past one fails, naming it.
const (
	maxDepth = 32
	// MaxDirs is the most directories one load walks (and a watcher
	// watches).
	MaxDirs = 1000
	// MaxFiles is the most manifest files one load reads.
	MaxFiles = 10000
	// MaxEntries is the most directory entries one load looks at.
	MaxEntries = 100000
)

// Load reads manifest files and directories. A directory is read
// recursively: its *.yaml, *.yml and *.json files count, and entries whose
// name starts with "." are skipped, though symlinks are followed, so a
// ConfigMap-style a.yaml -> ..data/a.yaml is read. A file named directly is
// read whatever its name. Names are unique per kind across all paths.
//
// Problems in files are in Set.Errors. The error is for a root or a
// directory under it that cannot be read: then the set is incomplete, and
// what is missing from it must not be taken as deleted.
func Load(paths ...string) (*Set, error) {
	w := &walker{set: &Set{}, seen: map[string]bool{}, dirs: map[string]bool{}}
	for _, root := range paths {
		fi, err := os.Stat(root)
		if err != nil {
			return nil, err // names the path
		}
		if !fi.IsDir() {
			w.addFile(root, "")
			continue
		}
		if err := w.dir(root, 0); err != nil {
			return nil, err // names the path
		}
	}
	if w.full() {
		return nil, fmt.Errorf("%s: more than %d manifest files", strings.Join(paths, ", "), MaxFiles)
	}
	s := w.set
	slices.Sort(s.Files)
	slices.Sort(s.Dirs)
	for _, f := range s.Files {
		objs, errs := LoadFile(f)
		s.Objects = append(s.Objects, objs...)
		s.Errors = append(s.Errors, errs...)
	}
	s.Objects, s.Errors = dedupe(s.Objects, s.Errors)
	slices.SortStableFunc(s.Objects, func(a, b v1.Policy) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
	SortErrors(s.Errors)
	return s, nil
}

// SortErrors orders errors by file and position, keeping the order of
// errors at the same place.
func SortErrors(errs []Error) {
	slices.SortStableFunc(errs, func(a, b Error) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}

// dedupe keeps the first object of each kind and name, in file order, and
// reports every duplicate in both files, so each file shows the conflict.
func dedupe(objs []v1.Policy, errs []Error) ([]v1.Policy, []Error) {
	first := map[string]v1.Policy{}
	kept := objs[:0:0]
	for _, o := range objs {
		key := o.Kind + "/" + o.Name
		f, dup := first[key]
		if !dup {
			first[key] = o
			kept = append(kept, o)
			continue
		}
		errs = append(errs, duplicateError(o, f, "already"), duplicateError(f, o, "also"))
	}
	return kept, errs
}

func duplicateError(at, other v1.Policy, word string) Error {
	return Error{
		File: at.File, Line: at.NameLine, Column: at.NameColumn, Field: "metadata.name",
		Message: fmt.Sprintf("duplicate %s %q: %s defined at %s:%d", at.Kind, at.Name, word, other.File, other.NameLine),
	}
}

// walker collects the manifest files under the roots.
type walker struct {
	set     *Set
	seen    map[string]bool // files and directories found, by resolved path
	dirs    map[string]bool // Set.Dirs so far
	walked  int             // directories read
	entries int             // directory entries looked at
}

// addFile adds a file unless it was found already, by this path or another.
// resolved is its resolved path when known, saving the lookups.
func (w *walker) addFile(path, resolved string) {
	path = filepath.Clean(path)
	key := resolved
	if key == "" {
		var err error
		if key, err = realPath(path); err != nil {
			key = path // a dangling link: LoadFile reports it
		}
	}
	if !w.seen[key] {
		w.seen[key] = true
		w.set.Files = append(w.set.Files, path)
	}
}

// full reports whether the walk found more manifest files than it reads.
func (w *walker) full() bool {
	return len(w.set.Files) > MaxFiles
}

func (w *walker) addDir(path string) {
	if !w.dirs[path] {
		w.dirs[path] = true
		w.set.Dirs = append(w.set.Dirs, path)
	}
}

// dir walks one directory, at depth below its root. A directory found by
// another path already, or by a symlink loop, is not read again.
func (w *walker) dir(path string, depth int) error {
	resolved, err := realPath(path)
	if err != nil {
		return err
	}
	if w.seen[resolved] {
		return nil
	}
	if depth > maxDepth {
		return fmt.Errorf("%s: deeper than %d directories", path, maxDepth)
	}
	w.seen[resolved] = true
	if w.walked++; w.walked > MaxDirs {
		return fmt.Errorf("%s: more than %d directories to read (is a symlink pointing at a large tree?)", path, MaxDirs)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return err
	}
	if w.entries += len(entries); w.entries > MaxEntries {
		return fmt.Errorf("%s: more than %d directory entries to look at (is a symlink pointing at a large tree?)", path, MaxEntries)
	}
	w.addDir(filepath.Clean(path))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(path, e.Name())
		mode := e.Type()
		if mode&fs.ModeSymlink != 0 {
			fi, err := os.Stat(p)
			if err != nil {
				if isManifest(e.Name()) {
					w.addFile(p, "") // LoadFile reports the dangling link
				}
				continue
			}
			mode = fi.Mode().Type()
			if mode.IsRegular() && isManifest(e.Name()) {
				if target, err := realPath(p); err == nil {
					w.addDir(filepath.Dir(target))
				}
			}
		}
		switch {
		case mode.IsDir():
			if err := w.dir(p, depth+1); err != nil {
				return err
			}
		case mode.IsRegular() && isManifest(e.Name()) && e.Type()&fs.ModeSymlink == 0:
			w.addFile(p, filepath.Join(resolved, e.Name()))
		case mode.IsRegular() && isManifest(e.Name()):
			w.addFile(p, "")
		}
	}
	return nil
}

// realPath is the absolute path of p with every symlink resolved.
func realPath(p string) (string, error) {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	return filepath.Abs(r)
}

func isManifest(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}
