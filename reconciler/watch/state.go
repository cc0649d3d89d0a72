package watch

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
)

// Snapshot is a complete desired set: every policy in force, not a change.
// Its objects are shared with later snapshots: treat them as read-only.
type Snapshot struct {
	// Objects are the policies in force, sorted by kind then name. They
	// include the last good objects of files that are now broken.
	Objects []v1.Policy
	// Errors are the errors of the last read, of every file.
	Errors []manifest.Error
	// Stale lists the files whose last good objects are kept in force
	// despite their errors.
	Stale []string
	// Held is non-empty when the directory was empty or unreadable and the
	// guard kept the last good set; it says why. Objects may then be empty
	// (nothing was ever loaded): that is not a request to remove policies.
	Held string
}

// good is what a file last held when it read without errors.
type good struct {
	objects []v1.Policy
	seq     uint64 // the read that confirmed it; newer wins a name clash
}

// state turns each read of the directory into the snapshot in force. It is
// the watcher's memory: the last good objects of each file.
type state struct {
	path       string
	allowEmpty bool
	good       map[string]good
	seq        uint64
	current    Snapshot
}

func newState(path string, allowEmpty bool) *state {
	return &state{path: path, allowEmpty: allowEmpty, good: map[string]good{}}
}

// update folds one read into the state: set and err are what
// manifest.Load returned.
func (s *state) update(set *manifest.Set, err error) Snapshot {
	if err != nil {
		if s.allowEmpty {
			return s.commit(map[string]good{}, Snapshot{Errors: []manifest.Error{{Message: err.Error()}}})
		}
		return s.hold(fmt.Sprintf("cannot read the manifests: %v", err), []manifest.Error{{Message: err.Error()}})
	}
	s.seq++
	fresh := map[string][]v1.Policy{}
	for _, o := range set.Objects {
		fresh[o.File] = append(fresh[o.File], o)
	}
	broken := map[string]bool{}
	for _, e := range set.Errors {
		broken[e.File] = true
	}
	next := make(map[string]good, len(set.Files))    // remembered as good
	inForce := make(map[string]good, len(set.Files)) // what the snapshot holds
	var stale []string
	for _, f := range set.Files {
		prev, hadGood := s.good[f]
		switch {
		case !broken[f]:
			next[f] = good{objects: fresh[f], seq: s.seq}
			inForce[f] = next[f]
		case hadGood:
			// A broken file keeps what it last held, all of it: half a
			// file's policies may allow less, or more, than either version.
			next[f] = prev
			inForce[f] = prev
			stale = append(stale, f)
		default:
			// Never read well: its valid documents are all there is. They
			// are not remembered as good, since the file is not.
			inForce[f] = good{objects: fresh[f], seq: s.seq}
		}
	}
	snap := Snapshot{Errors: slices.Clone(set.Errors), Stale: stale}
	snap.Objects, snap.Errors = merge(inForce, snap.Errors)
	manifest.SortErrors(snap.Errors)
	if len(snap.Objects) == 0 && !s.allowEmpty {
		return s.hold(fmt.Sprintf("%s holds no policies", s.path), snap.Errors)
	}
	return s.commit(next, snap)
}

// commit makes a snapshot the one in force.
func (s *state) commit(next map[string]good, snap Snapshot) Snapshot {
	s.good = next
	s.current = snap
	return snap
}

// hold keeps the snapshot in force, reporting why and the current errors.
func (s *state) hold(why string, errs []manifest.Error) Snapshot {
	snap := s.current
	snap.Errors = errs
	if n := len(snap.Objects); n > 0 {
		snap.Held = fmt.Sprintf("%s: keeping the %d policies last loaded (AllowEmpty, --allow-empty, lets this remove them)", why, n)
	} else {
		snap.Held = why + ": no policies loaded yet"
	}
	return snap
}

// merge collects the objects of all files. Two files can hold the same name
// only when one of them is kept from the past: the newer read wins, and the
// older file is told.
func merge(files map[string]good, errs []manifest.Error) ([]v1.Policy, []manifest.Error) {
	type entry struct {
		o   v1.Policy
		seq uint64
	}
	byName := map[string]entry{}
	for _, f := range slices.Sorted(maps.Keys(files)) {
		g := files[f]
		for _, o := range g.objects {
			key := o.Kind + "/" + o.Name
			prev, clash := byName[key]
			if !clash {
				byName[key] = entry{o, g.seq}
				continue
			}
			keep, drop := prev, entry{o, g.seq}
			if drop.seq > keep.seq {
				keep, drop = drop, keep
			}
			byName[key] = keep
			errs = append(errs, manifest.Error{
				File: drop.o.File, Line: drop.o.Line, Field: "metadata.name",
				Message: fmt.Sprintf("duplicate %s %q: the one last loaded from this file is dropped for the one in %s", o.Kind, o.Name, keep.o.File),
			})
		}
	}
	objs := make([]v1.Policy, 0, len(byName))
	for _, e := range byName {
		objs = append(objs, e.o)
	}
	slices.SortFunc(objs, func(a, b v1.Policy) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
	return objs, errs
}
