// Package watch turns a manifest directory into a stream of complete desired
// sets. It watches directories, not files, since editors, git-sync and
// Kubernetes ConfigMap mounts replace files by rename; coalesces bursts of
// events; re-reads the whole tree each time; drops a result equal to the
// last one; and re-reads periodically in case an event was missed.
package watch

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/swarmsec/swarmsec/reconciler/manifest"
)

// Defaults of Options.
const (
	DefaultDebounce = 150 * time.Millisecond
	DefaultResync   = time.Minute
)

// maxBurst bounds, in Debounce periods, how long events can delay a read.
const maxBurst = 5

// Options tune a Watcher. Zero values take the defaults.
type Options struct {
	// Debounce is how long the directory must be quiet after an event
	// before it is read: a git checkout or a ConfigMap swap is a burst.
	Debounce time.Duration
	// Resync is the period of full re-reads without any event.
	Resync time.Duration
	// AllowEmpty lets an empty or unreadable directory remove every
	// policy. Without it, the last good set is kept (Snapshot.Held).
	AllowEmpty bool
	// Logger receives errors and changes; slog.Default() when nil.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.Resync <= 0 {
		o.Resync = DefaultResync
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Watcher watches one manifest file or directory.
type Watcher struct {
	path    string
	opts    Options
	log     *slog.Logger
	state   *state
	updates chan Snapshot
	sent    bool
	last    Snapshot
}

// New returns a watcher of path, a directory or a file; Run starts it.
func New(path string, opts Options) *Watcher {
	opts = opts.withDefaults()
	return &Watcher{
		path:    path,
		opts:    opts,
		log:     opts.Logger.With("manifests", path),
		state:   newState(path, opts.AllowEmpty),
		updates: make(chan Snapshot, 1),
	}
}

// Updates delivers complete sets: the first read, then each result that
// differs from the one before. A reader that falls behind gets the latest
// set, never a backlog. The channel is never closed; stop reading when the
// context given to Run is done.
func (w *Watcher) Updates() <-chan Snapshot { return w.updates }

// Once reads path one time, with the same rules as the first snapshot of a
// watcher, for commands that act once. Callers that write should refuse a
// snapshot with Errors or Held. The error is for a path that cannot be read.
func Once(path string, opts Options) (Snapshot, error) {
	set, err := manifest.Load(path)
	if err != nil {
		return Snapshot{}, err
	}
	return newState(path, opts.AllowEmpty).update(set, nil), nil
}

// Run watches until ctx is done. It returns an error only when it cannot
// watch at all.
func (w *Watcher) Run(ctx context.Context) error {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", w.path, err)
	}
	defer fsw.Close()

	// The parent is watched for the root itself being replaced: git-sync
	// re-points a symlink, a volume is mounted over the directory.
	abs, err := filepath.Abs(w.path)
	if err != nil {
		return fmt.Errorf("watch %s: %w", w.path, err)
	}
	parent := filepath.Dir(abs)

	debounce := time.NewTimer(w.opts.Debounce)
	debounce.Stop()
	resync := time.NewTicker(w.opts.Resync)
	defer resync.Stop()

	// Watches are set before each read, so no change after it is missed.
	// A read that finds new directories is followed by another, for the
	// changes made in them before they were watched.
	var burst time.Time // when the pending burst of events began
	read := func() {
		burst = time.Time{}
		w.watch(fsw, parent, nil)
		set, err := manifest.Load(w.path)
		if w.watch(fsw, parent, set) {
			debounce.Reset(w.opts.Debounce)
		}
		w.publish(w.state.update(set, err))
	}
	read()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fsw.Events:
			if !ok {
				return fmt.Errorf("watch %s: event stream closed", w.path)
			}
			// Any change but a mode change may matter. In the parent, a
			// sibling may be what a dangling root will point to.
			if ev.Op == fsnotify.Chmod {
				continue
			}
			// Each event restarts the wait, but a directory that never
			// goes quiet is still read every few Debounce periods.
			if burst.IsZero() {
				burst = time.Now()
			}
			if time.Since(burst) < maxBurst*w.opts.Debounce {
				debounce.Reset(w.opts.Debounce)
			}
		case err, ok := <-fsw.Errors:
			if !ok {
				return fmt.Errorf("watch %s: event stream closed", w.path)
			}
			// Typically an event queue overflow: events were lost, so read.
			w.log.Warn("watching manifests", "error", err)
			debounce.Reset(w.opts.Debounce)
		case <-debounce.C:
			read()
		case <-resync.C:
			read()
		}
	}
}

// watch makes the watched directories those a read of set needs, resolved
// through symlinks, since a watch follows the inode a path named when it
// was added. It reports whether a directory was added.
func (w *Watcher) watch(fsw *fsnotify.Watcher, parent string, set *manifest.Set) bool {
	want := map[string]bool{parent: true}
	if fi, err := os.Stat(w.path); err == nil && fi.IsDir() {
		if d, ok := resolve(w.path); ok {
			want[d] = true
		}
	}
	if set != nil {
		for _, d := range set.Dirs {
			if r, ok := resolve(d); ok {
				want[r] = true
			}
		}
	}
	have := map[string]bool{}
	for _, d := range fsw.WatchList() {
		have[d] = true
	}
	added := false
	for d := range want {
		if have[d] {
			continue
		}
		if err := fsw.Add(d); err != nil {
			// Gone already, or not yet there: the next read tries again.
			w.log.Debug("cannot watch directory", "dir", d, "error", err)
			continue
		}
		added = true
	}
	if set == nil {
		return added // a partial view: remove nothing yet
	}
	for d := range have {
		if !want[d] {
			_ = fsw.Remove(d) // fails when the directory is gone, which removed the watch
		}
	}
	return added
}

// resolve returns the absolute path of dir with symlinks resolved.
func resolve(dir string) (string, bool) {
	r, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", false
	}
	r, err = filepath.Abs(r)
	return r, err == nil
}

// publish sends a snapshot unless it equals the last one sent, replacing
// one the reader has not taken yet.
func (w *Watcher) publish(s Snapshot) {
	if w.sent && reflect.DeepEqual(s, w.last) {
		return
	}
	w.logChanges(s)
	w.sent, w.last = true, s
	select {
	case w.updates <- s:
	default:
		select {
		case <-w.updates:
		default:
		}
		w.updates <- s // the only sender, and the buffer is now empty
	}
}

// logChanges logs the errors that are new since the last snapshot, so a
// broken file is reported once, not on every read.
func (w *Watcher) logChanges(s Snapshot) {
	seen := map[string]bool{}
	for _, e := range w.last.Errors {
		seen[e.Error()] = true
	}
	for _, e := range s.Errors {
		if !seen[e.Error()] {
			w.log.Warn("manifest error", "error", e.Error())
		}
	}
	if s.Held != "" && s.Held != w.last.Held {
		w.log.Warn("manifests held", "reason", s.Held)
	}
	w.log.Info("manifests loaded", "policies", len(s.Objects), "errors", len(s.Errors), "stale", len(s.Stale))
}
