package cluster

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// dirPrefix starts the name of a run's host folder.
const dirPrefix = "swarmsec-e2e-"

// SweepLeftovers removes what e2e runs whose test process is gone left on
// the machine's engine (an interrupted or timed-out run cannot clean up
// after itself): their containers, volumes and bridge networks, their
// socket folders and their nodes' cgroups. Runs still alive, such as
// another engineer's, are left alone.
func SweepLeftovers(ctx context.Context, host *client.Client, logf func(string, ...any)) error {
	f := filters.NewArgs(filters.Arg("label", LabelE2E))
	runs := map[string]bool{} // run ID -> its process is gone
	note := func(labels map[string]string) {
		run := labels[swarmtest.LabelRun]
		if _, ok := runs[run]; ok {
			return
		}
		pid, err := strconv.Atoi(labels[LabelPID])
		runs[run] = err != nil || pid <= 0 || (pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH)
	}
	var errs []error
	ctrs, err := host.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	errs = append(errs, err)
	for _, c := range ctrs {
		note(c.Labels)
	}
	vols, err := host.VolumeList(ctx, volume.ListOptions{Filters: f})
	errs = append(errs, err)
	for _, v := range vols.Volumes {
		note(v.Labels)
	}
	nets, err := host.NetworkList(ctx, network.ListOptions{Filters: f})
	errs = append(errs, err)
	for _, n := range nets {
		note(n.Labels)
	}
	for run, gone := range runs {
		if !gone || run == "" {
			continue
		}
		logf("e2e: sweeping the leftovers of run %s", run)
		errs = append(errs, swarmtest.Sweep(ctx, host, LabelE2E, swarmtest.LabelRun+"="+run))
	}
	// Host folders of dead runs: swarmsec-e2e-<run>-p<pid>-<random>.
	folders, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*-p*-*"))
	for _, d := range folders {
		parts := strings.Split(strings.TrimPrefix(filepath.Base(d), dirPrefix), "-")
		if len(parts) != 3 || !strings.HasPrefix(parts[1], "p") {
			continue
		}
		pid, err := strconv.Atoi(parts[1][1:])
		switch {
		case err != nil || pid <= 0:
		case pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH:
			errs = append(errs, os.RemoveAll(d))
		default:
			// A live run, perhaps one starting beside this one (make
			// test-e2e runs two) whose containers were not listed above:
			// its folder comes first, so its cgroups are left alone below.
			runs[parts[0]] = false
		}
	}
	// Cgroups of dead runs: removing one that is in use fails, so a live
	// run's stay.
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/swarmsec-e2e-*")
	more, _ := filepath.Glob("/sys/fs/cgroup/swarmsec-e2e-*")
	for _, d := range append(dirs, more...) {
		run := strings.TrimPrefix(filepath.Base(d), "swarmsec-e2e-")
		if gone, known := runs[run]; known && !gone {
			continue
		}
		_ = removeCgroupTree(d)
	}
	return errors.Join(errs...)
}

// removeCgroups removes the cgroup tree parent (an absolute cgroup path)
// from every hierarchy mounted under /sys/fs/cgroup. The nodes' engines are
// killed with their containers' cgroups still in place; those are empty
// then and can be removed.
func removeCgroups(parent string) error {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
	if _, err := os.Stat("/sys/fs/cgroup" + parent); err == nil {
		dirs = append(dirs, "/sys/fs/cgroup"+parent)
	}
	var errs []error
	for _, d := range dirs {
		errs = append(errs, removeCgroupTree(d))
	}
	return errors.Join(errs...)
}

// removeCgroupTree removes a cgroup directory and its children, deepest
// first (cgroup directories are removed with rmdir, never recursively).
func removeCgroupTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	slices.Reverse(dirs)
	var errs []error
	for _, d := range dirs {
		if err := syscall.Rmdir(d); err != nil && err != syscall.ENOENT {
			errs = append(errs, &os.PathError{Op: "rmdir", Path: d, Err: err})
		}
	}
	return errors.Join(errs...)
}
