//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"maps"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/swarmsec/swarmsec/e2e/cluster"
	"github.com/swarmsec/swarmsec/internal/testutil/swarmtest"
)

// manager is the client of the cluster's manager engine: create services
// and networks with it.
func manager() *client.Client { return testCluster.Manager().Client }

// createService creates a service of the test app on the cluster (see
// swarmtest.CreateService and its options).
func createService(ctx context.Context, t *testing.T, opts ...swarmtest.ServiceOpt) string {
	t.Helper()
	return swarmtest.CreateService(ctx, t, manager(), append([]swarmtest.ServiceOpt{swarmtest.WithImage(testCluster.AppImage)}, opts...)...)
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
