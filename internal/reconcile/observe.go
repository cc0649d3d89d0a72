package reconcile

import (
	"context"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/internal/observe"
	"github.com/swarmsec/swarmsec/internal/plan"
)

// observeSwarm brings the store up to date for a pass: through Changes
// when events feed it, by listing everything otherwise.
func (r *Reconciler) observeSwarm(ctx context.Context) (*plan.Observation, error) {
	if r.Changes != nil {
		return r.Changes.Observe(ctx, r.Docker, r.Store, r.needTasks())
	}
	if err := observe.Observe(ctx, r.Docker, r.Store, r.needTasks()); err != nil {
		return nil, err
	}
	return &plan.Observation{Full: true, Why: "no events feed this reconciler"}, nil
}

// writer is the API a pass writes through: with Changes, every write is
// noted so the next pass reads the object back from Swarm.
func (r *Reconciler) writer() dockerapi.API {
	if r.Changes == nil {
		return r.Docker
	}
	return r.Changes.Track(r.Docker)
}
