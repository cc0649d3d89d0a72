package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Namespace is an open network namespace file; its descriptor keeps the
// namespace alive while open, even after its task stopped.
type Namespace struct {
	f *os.File
}

// Open opens the network namespace file at path (a sandbox key, or
// /proc/PID/ns/net) and checks it is one.
func Open(path string) (*Namespace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	// A sandbox file is an nsfs bind mount; a plain file left behind by a
	// stopped task (or a proc entry) must not be taken for one.
	if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		f.Close()
		return nil, fmt.Errorf("network namespace %s: not a namespace file (filesystem type %#x)", path, st.Type)
	}
	return &Namespace{f: f}, nil
}

// Fd is the namespace's descriptor, valid until Close.
func (n *Namespace) Fd() int { return int(n.f.Fd()) }

// Close releases the namespace.
func (n *Namespace) Close() error { return n.f.Close() }

// Do runs fn in the namespace, on a locked OS thread, and switches the
// thread back afterwards. Goroutines fn starts run elsewhere: only fn's
// own thread is inside.
func (n *Namespace) Do(fn func() error) error {
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("own network namespace: %w", err)
	}
	defer self.Close()
	if err := unix.Setns(n.Fd(), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", n.f.Name(), err)
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime ends it with the goroutine
		// instead of handing another goroutine a thread in the task.
		return fmt.Errorf("leave network namespace %s: %w", n.f.Name(), err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// Do runs fn inside the network namespace at path.
func Do(path string, fn func() error) error {
	n, err := Open(path)
	if err != nil {
		return err
	}
	defer n.Close()
	return n.Do(fn)
}

// Rebase maps a sandbox key the engine gives (/var/run/docker/netns/ID)
// under root, the folder where the agent sees the node's namespaces (its
// container mounts the node's /run elsewhere). An empty root keeps it.
func Rebase(sandboxKey, root string) (string, error) {
	if root == "" {
		return sandboxKey, nil
	}
	base := filepath.Base(sandboxKey)
	if base == "." || base == "/" || base == ".." || strings.ContainsRune(base, 0) {
		return "", fmt.Errorf("sandbox key %q: no namespace name", sandboxKey)
	}
	return filepath.Join(root, base), nil
}
