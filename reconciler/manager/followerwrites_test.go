package manager

import (
	"context"
	"fmt"
	"testing"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/lease"
	"github.com/swarmsec/swarmsec/reconciler/metrics"
)

// A write the loss of the lease cancelled is no follower's write; any
// other write made while following is counted.
func TestFollowerWritesSkipCancelledWrites(t *testing.T) {
	c := &process{metrics: metrics.New(), elector: &lease.Elector{}}
	c.observeCall(dockerapi.OpNetworkCreate, 0, fmt.Errorf("create network x: %w", context.Canceled))
	c.observeCall(dockerapi.OpServiceUpdate, 0, context.Canceled)
	if n := c.followerWrites.Load(); n != 0 {
		t.Fatalf("%d follower writes for cancelled calls", n)
	}
	c.observeCall(dockerapi.OpServiceUpdate, 0, nil)
	c.observeCall(dockerapi.OpServiceUpdate, 0, context.DeadlineExceeded)
	if n := c.followerWrites.Load(); n != 2 {
		t.Fatalf("%d follower writes, want 2", n)
	}
}
