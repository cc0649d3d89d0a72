package reconcile

import (
	"context"
	"maps"
	"reflect"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/migrate"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/plan"
)

// observeSwarm brings the store up to date for a pass: through Changes
// when events feed it, by listing everything otherwise.
func (r *Reconciler) observeSwarm(ctx context.Context) (*observe.Observation, error) {
	if r.Changes != nil {
		return r.Changes.Observe(ctx, r.Docker, r.Store, r.needTasks())
	}
	if err := observe.Observe(ctx, r.Docker, r.Store, r.needTasks()); err != nil {
		return nil, err
	}
	return &observe.Observation{Full: true, Why: "no events feed this reconciler"}, nil
}

// writer is the API a pass writes through: with Changes, every write is
// noted so the next pass reads the object back from Swarm.
func (r *Reconciler) writer() dockerapi.API {
	if r.Changes == nil {
		return r.Docker
	}
	return r.Changes.Track(r.Docker)
}

// idlePlan is a plan that asked for nothing, with what it was planned
// from.
type idlePlan struct {
	gen    uint64
	mode   Mode
	limits plan.Limits
	nodes  map[string]plan.NodeEncryption
	plan   *plan.Plan
	report migrate.Report
}

// from reports whether l was planned from what r would plan from now: the
// store's generation gen, the mode, the limits and the node checks.
func (l *idlePlan) from(gen uint64, r *Reconciler) bool {
	return l != nil && l.gen == gen && l.mode == r.Mode && reflect.DeepEqual(l.limits, r.Limits) && maps.Equal(l.nodes, r.nodes)
}

// planIfChanged plans from the store, unless nothing a plan depends on
// changed since the last one and that one asked for nothing: planning is a
// function of the store, the mode, the limits and the node checks, and at
// 5,000 services compiling and diffing again would cost a resync that finds
// nothing to do more than its reads.
func (r *Reconciler) planIfChanged() (*plan.Plan, migrate.Report, error) {
	gen := r.Store.Generation()
	if l := r.idle; l.from(gen, r) {
		return l.plan, l.report, nil
	}
	// The plan Plan just made (apply's check for held policies) serves
	// the first pass once, if nothing it was made from moved since.
	if l := r.fresh; l != nil {
		r.fresh = nil
		if l.from(gen, r) && !r.hasTarget() {
			return l.plan, l.report, nil
		}
	}
	r.idle = nil
	p, rep, err := r.PlanObserved()
	if err == nil && len(p.Actions) == 0 && len(p.Holds) == 0 {
		r.idle = &idlePlan{gen: gen, mode: r.Mode, limits: r.Limits, nodes: maps.Clone(r.nodes), plan: p, report: rep}
	}
	return p, rep, err
}
