package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Handle is an open network namespace. Holding it keeps the namespace
// alive even once its task is gone; Close it when done.
type Handle struct {
	path string
	f    *os.File
}

// Open opens the namespace at path: a task's sandbox key
// (/var/run/docker/netns/<id>), an overlay's namespace, or /proc/<pid>/ns/net.
func Open(path string) (*Handle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil || (st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC) {
		f.Close()
		return nil, fmt.Errorf("network namespace %s: not a namespace file", path)
	}
	return &Handle{path: path, f: f}, nil
}

// Fd is the descriptor netlink sockets are opened in (nftables.WithNetNSFd,
// nflog.Config.NetNS). It stays valid until Close.
func (h *Handle) Fd() int { return int(h.f.Fd()) }

// Path is where the namespace was opened.
func (h *Handle) Path() string { return h.path }

// Close releases the handle.
func (h *Handle) Close() error { return h.f.Close() }

// Do runs fn on an OS thread switched into the namespace, and switches it
// back after. If the thread cannot be switched back it is left locked, so
// the Go runtime retires it rather than run other goroutines in the task's
// namespace.
func (h *Handle) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("own network namespace: %w", err)
			return
		}
		defer self.Close()
		if err := unix.Setns(h.Fd(), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter %s: %w", h.path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays locked and dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("leave %s: %w", h.path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
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
