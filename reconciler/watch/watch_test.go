package watch

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// These tests run the real watcher on real directories. They never sleep:
// they wait for the snapshot they expect, and the deadline only bounds a
// failure.
const deadline = 10 * time.Second

func start(t *testing.T, path string) *Watcher {
	t.Helper()
	w := New(path, Options{
		Debounce: 10 * time.Millisecond,
		Resync:   time.Hour, // changes must be seen through events
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return w
}

// await waits for a snapshot with the objects want in force and, when
// given, the stale files.
func await(t *testing.T, w *Watcher, want []string, stale ...string) Snapshot {
	t.Helper()
	timeout := time.After(deadline)
	var last Snapshot
	for {
		select {
		case s := <-w.Updates():
			var st []string
			for _, f := range s.Stale {
				st = append(st, filepath.Base(f))
			}
			if slices.Equal(inForce(s), want) && slices.Equal(st, stale) {
				return s
			}
			last = s
		case <-timeout:
			t.Fatalf("no snapshot with %q, stale %q; last %q (stale %q, errors %v, held %q)", want, stale, inForce(last), last.Stale, last.Errors, last.Held)
		}
	}
}

// awaitHeld waits for a snapshot held by the empty-directory guard.
func awaitHeld(t *testing.T, w *Watcher) Snapshot {
	t.Helper()
	timeout := time.After(deadline)
	for {
		select {
		case s := <-w.Updates():
			if s.Held != "" {
				return s
			}
		case <-timeout:
			t.Fatal("no held snapshot")
		}
	}
}

// write replaces a file the way editors and sync tools do: a new file
// renamed over the old one.
func write(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	tmp := link + ".tmp"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil { // atomic, over an old link
		t.Fatal(err)
	}
}

func TestWatcherEdits(t *testing.T) {
	dir := t.TempDir()
	setFiles(t, dir, map[string]string{"a.yaml": doc("a", "1")})
	w := start(t, dir)
	await(t, w, []string{"a=1"})

	write(t, filepath.Join(dir, "b.yaml"), doc("b", "1"))
	await(t, w, []string{"a=1", "b=1"})

	// In place, as some editors save.
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(doc("a", "2")), 0o644); err != nil {
		t.Fatal(err)
	}
	await(t, w, []string{"a=2", "b=1"})

	write(t, filepath.Join(dir, "a.yaml"), broken)
	s := await(t, w, []string{"a=2", "b=1"}, "a.yaml")
	if len(s.Errors) != 1 || s.Errors[0].File != filepath.Join(dir, "a.yaml") {
		t.Errorf("errors %v", s.Errors)
	}

	if err := os.Remove(filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	await(t, w, []string{"a=2"}, "a.yaml")

	// A new directory, and a file in it at once: the watch on the
	// directory comes after the file, and the read after the watch sees it.
	write(t, filepath.Join(dir, "a.yaml"), doc("a", "3"))
	if err := os.MkdirAll(filepath.Join(dir, "sub", "deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "sub", "deeper", "c.yaml"), doc("c", "1"))
	await(t, w, []string{"a=3", "c=1"})
	write(t, filepath.Join(dir, "sub", "deeper", "c.yaml"), doc("c", "2"))
	await(t, w, []string{"a=3", "c=2"})

	// Emptied: held (with what the last read before empty found, as the
	// files go one by one), then filled again.
	setFiles(t, dir, map[string]string{})
	awaitHeld(t, w)
	write(t, filepath.Join(dir, "d.yaml"), doc("d", "1"))
	await(t, w, []string{"d=1"})
}

// TestWatcherGitSync re-points the watched path, a symlink, as git-sync
// does after each pull.
func TestWatcherGitSync(t *testing.T) {
	base := t.TempDir()
	setFiles(t, filepath.Join(base, "rev1"), map[string]string{"a.yaml": doc("a", "1")})
	setFiles(t, filepath.Join(base, "rev2"), map[string]string{"a.yaml": doc("a", "2"), "b.yaml": doc("b", "2")})
	root := filepath.Join(base, "current")
	symlink(t, "rev1", root)
	w := start(t, root)
	await(t, w, []string{"a=1"})

	symlink(t, "rev2", root)
	await(t, w, []string{"a=2", "b=2"})
	if err := os.RemoveAll(filepath.Join(base, "rev1")); err != nil {
		t.Fatal(err)
	}
	// The watch moved to the new target.
	write(t, filepath.Join(base, "rev2", "b.yaml"), doc("b", "3"))
	await(t, w, []string{"a=2", "b=3"})

	// A link to nowhere, as in a half-finished sync: held.
	symlink(t, "rev3", root)
	if s := awaitHeld(t, w); !slices.Equal(inForce(s), []string{"a=2", "b=3"}) {
		t.Errorf("held %q", inForce(s))
	}
	setFiles(t, filepath.Join(base, "rev3"), map[string]string{"c.yaml": doc("c", "1")})
	await(t, w, []string{"c=1"})
}

// TestWatcherConfigMap swaps a Kubernetes ConfigMap-style mount: the files
// are links through ..data, which is re-pointed to a new timestamped
// directory.
func TestWatcherConfigMap(t *testing.T) {
	dir := t.TempDir()
	setFiles(t, filepath.Join(dir, "..2026_01_01"), map[string]string{"a.yaml": doc("a", "1")})
	symlink(t, "..2026_01_01", filepath.Join(dir, "..data"))
	symlink(t, "..data/a.yaml", filepath.Join(dir, "a.yaml"))
	w := start(t, dir)
	await(t, w, []string{"a=1"})

	// The kubelet's update: new directory, ..data swapped, links for new
	// keys, the old directory removed.
	swap := func(stamp string, files map[string]string) {
		setFiles(t, filepath.Join(dir, stamp), files)
		symlink(t, stamp, filepath.Join(dir, "..data"))
		for name := range files {
			if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
				symlink(t, "..data/"+name, filepath.Join(dir, name))
			}
		}
	}
	swap("..2026_01_02", map[string]string{"a.yaml": doc("a", "2"), "b.yaml": doc("b", "2")})
	if err := os.RemoveAll(filepath.Join(dir, "..2026_01_01")); err != nil {
		t.Fatal(err)
	}
	await(t, w, []string{"a=2", "b=2"})

	swap("..2026_01_03", map[string]string{"a.yaml": broken, "b.yaml": doc("b", "3")})
	await(t, w, []string{"a=2", "b=3"}, "a.yaml")
}

// TestPublish checks what reaches the reader: equal results are dropped,
// and a slow reader gets the latest set, not a backlog.
func TestPublish(t *testing.T) {
	w := New(t.TempDir(), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	one := Snapshot{Objects: []v1.Policy{{Kind: "NetworkPolicy", Name: "a", Generation: "1"}}}
	two := Snapshot{Objects: []v1.Policy{{Kind: "NetworkPolicy", Name: "a", Generation: "2"}}}
	w.publish(one)
	if got := <-w.Updates(); !slices.Equal(inForceGen(got), []string{"a@1"}) {
		t.Fatalf("first %v", got)
	}
	w.publish(Snapshot{Objects: []v1.Policy{{Kind: "NetworkPolicy", Name: "a", Generation: "1"}}})
	if n := len(w.updates); n != 0 {
		t.Fatalf("an equal snapshot was sent")
	}
	w.publish(two)
	w.publish(one)
	if n := len(w.updates); n != 1 {
		t.Fatalf("%d snapshots waiting", n)
	}
	if got := <-w.Updates(); !slices.Equal(inForceGen(got), []string{"a@1"}) {
		t.Fatalf("latest %v", got)
	}
}

func inForceGen(s Snapshot) []string {
	var out []string
	for _, o := range s.Objects {
		out = append(out, o.Name+"@"+o.Generation)
	}
	return out
}
