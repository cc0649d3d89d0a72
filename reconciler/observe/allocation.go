package observe

import (
	"context"
	"time"

	"github.com/docker/docker/api/types/network"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// Swarm lists a network its allocator has not processed yet without a
// driver or options (they come from the allocation, not the spec), so a
// network swarmsec created a moment ago reads as a look-alike that is not
// encrypted: the next pass would take its name for a squatter's. A read
// waits a little for such a network to be allocated. Only young networks
// with swarmsec's label count, and the wait is bounded: a network whose
// subnet Swarm can never allocate, or one someone else keeps creating,
// delays a pass by AllocationWait at most and is then judged as it is.
const (
	// AllocationWait bounds the wait of one read.
	AllocationWait = 2 * time.Second
	// allocationYoung is how recent a network must be to be waited for.
	allocationYoung = 30 * time.Second
	allocationPoll  = 50 * time.Millisecond
)

// unallocated reports whether n looks like a network swarmsec created that
// Swarm's allocator has not reached yet.
func unallocated(n network.Summary, now time.Time) bool {
	return n.Scope == "swarm" && n.Driver == "" && n.Labels[v1.LabelManaged] == "true" && now.Sub(n.Created) < allocationYoung
}

// awaitAllocation calls read until none of the networks it returns is
// unallocated, or AllocationWait has passed, and returns the last answer.
func awaitAllocation[T any](ctx context.Context, read func(context.Context) (T, error), nets func(T) []network.Summary) (T, error) {
	deadline := time.Now().Add(AllocationWait)
	for {
		v, err := read(ctx)
		if err != nil {
			return v, err
		}
		waiting := false
		now := time.Now()
		for _, n := range nets(v) {
			if unallocated(n, now) {
				waiting = true
				break
			}
		}
		if !waiting || now.After(deadline) {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return v, nil
		case <-time.After(allocationPoll):
		}
	}
}
