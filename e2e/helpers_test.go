//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"maps"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/e2e/cluster"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// manager is the client of the cluster's manager engine: create services
// and networks with it.
func manager() *client.Client { return testCluster.Manager().Client }

// createService creates a service of the test app on the cluster (see
// swarmtest.CreateService and its options).
func createService(ctx context.Context, t *testing.T, opts ...swarmtest.ServiceOpt) {
	t.Helper()
	swarmtest.CreateService(ctx, t, manager(), append([]swarmtest.ServiceOpt{swarmtest.WithImage(testCluster.AppImage)}, opts...)...)
}

// probe runs `testapp probe addr` in a task of fromService, on whichever
// node the task runs.
func probe(ctx context.Context, t *testing.T, fromService, addr string, opts ...swarmtest.ProbeOpt) (bool, string) {
	t.Helper()
	return swarmtest.Probe(ctx, t, manager(), fromService, addr, testCluster.ProbeOpts(opts...)...)
}

// RunSwarmsec runs the swarmsec binary (built once per run) with args
// against the cluster's manager, failing the test only if it cannot be
// built or started; its exit code is returned.
func RunSwarmsec(ctx context.Context, t *testing.T, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	res, err := testCluster.Swarmsec(ctx, args...)
	if err != nil {
		t.Fatalf("swarmsec %v: %v", args, err)
	}
	t.Logf("swarmsec %v: exit %d", args, res.ExitCode)
	return res.Stdout, res.Stderr, res.ExitCode
}

// writeFiles writes files (path inside the node, without the leading
// slash, to content) into each node's own filesystem, the folders they
// need too: how a test puts manifests where a stack's bind mount reads
// them.
func writeFiles(ctx context.Context, t *testing.T, nodes []*cluster.Node, files map[string][]byte) {
	t.Helper()
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	dirs := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		var parents []string
		for d := path.Dir(name); d != "." && !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			dirs[parents[i]] = true
			if err := tw.WriteHeader(&tar.Header{Name: parents[i] + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(name, "/"), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[name]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(files[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := testCluster.Host.CopyToContainer(ctx, n.Container, "/", bytes.NewReader(archive.Bytes()), container.CopyToContainerOptions{}); err != nil {
			t.Fatalf("%s: %v", n.Hostname, err)
		}
	}
}

// deploySwarmsec builds the image, loads it into every node and deploys
// deploy/swarmsec.yml as the stack swarmsec (controllers on the managers,
// an agent on every node), reading the managers' manifests directory (a
// path inside the nodes) and the override compose files given. The
// returned func removes the stack and what it leaves (the lease, the
// agents' rules configs) and gives the services their networks back; call
// it when the test ends.
func deploySwarmsec(ctx context.Context, t *testing.T, manifests string, overrides ...string) (remove func()) {
	t.Helper()
	root, err := swarmtest.ModuleRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "make", "-C", root, "image").CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	if err := testCluster.LoadImage(ctx, "swarmsec/swarmsec:latest"); err != nil {
		t.Fatal(err)
	}
	args := []string{"stack", "deploy", "--resolve-image", "never", "-c", filepath.Join(root, "deploy/swarmsec.yml")}
	for _, o := range overrides {
		args = append(args, "-c", o)
	}
	env := []string{"SWARMSEC_DOCKER_SOCKET=/var/run/dind/docker.sock", "SWARMSEC_DOCKER_GID=0", "SWARMSEC_MANIFESTS=" + manifests}
	if out, err := docker(ctx, testCluster.Manager(), env, append(args, "swarmsec")...); err != nil {
		t.Fatalf("docker stack deploy: %v\n%s", err, out)
	}
	return func() { removeSwarmsec(ctx, t) }
}

// removeSwarmsec removes the swarmsec stack and what it leaves.
func removeSwarmsec(ctx context.Context, t *testing.T) {
	ctx = context.WithoutCancel(ctx)
	mgr := testCluster.Manager()
	// Right after a manager came back, the managers may still be settling
	// Raft: retry a while before calling it a failure.
	if err := swarmtest.PollE(ctx, time.Minute, func() (bool, string) {
		out, err := docker(ctx, mgr, nil, "stack", "rm", "swarmsec")
		return err == nil || strings.Contains(string(out), "Nothing found in stack"), fmt.Sprintf("%v: %s", err, out)
	}); err != nil {
		t.Errorf("stack rm: %v", err)
	}
	// stack rm returns before the tasks stop, and a controller still
	// running leads (it takes the lease again once removed): it would revert
	// the restore below as drift (apply refuses while one leads).
	removed := time.Now()
	if err := swarmtest.PollE(ctx, time.Minute, func() (bool, string) {
		for _, n := range testCluster.Nodes {
			cs, err := n.Client.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.stack.namespace=swarmsec"))})
			if err == nil && len(cs) > 0 {
				return false, fmt.Sprintf("%s still runs %s", n.Hostname, cs[0].Names)
			}
			// An engine that does not answer runs nothing.
		}
		return true, ""
	}); err != nil {
		t.Errorf("the stack's tasks did not stop: %v", err)
	}
	t.Logf("the stack's tasks stopped %s after stack rm", time.Since(removed).Round(100*time.Millisecond))
	// The lease goes with the stack: a later controller need not wait for
	// a dead holder's lease to expire. The rules configs stay in use until
	// the agents' tasks are gone.
	_ = swarmtest.PollE(ctx, time.Minute, func() (bool, string) {
		out, err := docker(ctx, mgr, nil, "config", "rm", "swarmsec-leader")
		return err == nil || strings.Contains(string(out), "not found"), string(out)
	})
	_ = swarmtest.PollE(ctx, time.Minute, func() (bool, string) {
		out, _ := docker(ctx, mgr, nil, "config", "ls", "-q", "--filter", "name=swarmsec-agent-rules-")
		ids := strings.Fields(string(out))
		if len(ids) == 0 {
			return true, ""
		}
		b, err := docker(ctx, mgr, nil, append([]string{"config", "rm"}, ids...)...)
		return err == nil, string(b)
	})
	// Give the services their networks back.
	if _, stderr, code := RunSwarmsec(ctx, t, "apply", "--manifests", t.TempDir(), "--allow-empty"); code != 0 {
		t.Errorf("restore: %s", stderr)
	}
	checkRestored(ctx, t)
}

// checkRestored fails the test for every service an empty apply left
// isolated: on a network swarmsec manages, or labelled with a record.
func checkRestored(ctx context.Context, t *testing.T) {
	t.Helper()
	nets, err := manager().NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", v1.LabelManaged+"=true"))})
	if err != nil {
		t.Errorf("after the restore: %v", err)
		return
	}
	managed := map[string]string{}
	for _, n := range nets {
		managed[n.ID] = n.Name
	}
	svcs, err := manager().ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		t.Errorf("after the restore: %v", err)
		return
	}
	for _, s := range svcs {
		for _, a := range s.Spec.TaskTemplate.Networks {
			if name, ok := managed[a.Target]; ok {
				t.Errorf("after the restore, %s is still on %s", s.Spec.Name, name)
			}
		}
		if rec, ok := s.Spec.Labels[v1.LabelOriginal]; ok {
			t.Errorf("after the restore, %s still names its record %s", s.Spec.Name, rec)
		}
	}
}
