package controller

import (
	"time"

	"github.com/swarmsec/swarmsec/reconciler/agentrules"
	"github.com/swarmsec/swarmsec/reconciler/apply"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/plan"
)

// Pass is the report of one reconcile pass, for status and metrics: the
// loop makes it, so it lives beside the loop (as controller-runtime keeps
// its Result beside the reconciler).
type Pass struct {
	Start    time.Time
	Duration time.Duration
	Plan     *plan.Plan
	Result   *apply.Result
	Err      error
	// Trigger says what asked for the pass (last trigger before it ran).
	Trigger string
	// Follower is set when the pass wrote nothing because another replica
	// leads.
	Follower bool
	// Requeue is set when the pass left work for a pass soon (a migration
	// under way, a write that must wait).
	Requeue bool
	// Agent is what delivering the node agent's rules found (nil when
	// the pass did not deliver).
	Agent *agentrules.Outcome
	// Observed is how the pass brought its view of Swarm up to date (nil
	// when it did not get that far).
	Observed *observe.Observation
}
