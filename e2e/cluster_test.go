//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// TestCluster checks the harness's cluster and reports what it found out
// about this machine.
func TestCluster(t *testing.T) {
	ctx := context.Background()
	c := testCluster
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) { return c.NodesReady(ctx) })
	if len(c.Nodes) != 3 || len(c.Workers()) != 2 {
		t.Fatalf("%d nodes, want 1 manager and 2 workers", len(c.Nodes))
	}
	for _, n := range c.Nodes {
		info, err := n.Client.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Swarm.NodeID != n.ID || info.Swarm.ControlAvailable != n.Manager {
			t.Errorf("%s: node %s, manager %t; want %s, %t", n.Hostname, info.Swarm.NodeID, info.Swarm.ControlAvailable, n.ID, n.Manager)
		}
		t.Logf("node %-12s %-15s Swarm node %s, manager %t", n.Hostname, n.IP, n.ID, n.Manager)
	}
	t.Logf("cluster up in %s:", bringUp.Round(time.Millisecond))
	for _, s := range c.Timings {
		t.Logf("  %-36s %s", s.Step, s.Duration.Round(time.Millisecond))
	}
	t.Log(c.EncryptionReport)
	t.Logf("outside target: %s", c.Outside.Addr())
}
