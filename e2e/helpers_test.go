//go:build e2e

package e2e

import (
	"context"
	"testing"

	"github.com/docker/docker/client"

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
