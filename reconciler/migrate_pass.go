package reconciler

import (
	"context"
	"fmt"
	"strings"
)

// migrationPass is what the migrations of a pass leave for its
// NetworkPolicy part.
type migrationPass struct {
	plan   *Plan
	result *Result
	// maxUpdates is the blast radius left for the NetworkPolicy updates.
	maxUpdates int
	// stop ends the pass after the migrations: the blast radius is spent,
	// the new plan is held, or Swarm could not be read.
	stop bool
}

// migrateFirst runs the migrations a plan asks for before its
// NetworkPolicy actions, which it then plans again from what Swarm shows:
// those were computed against networks the migration replaced. Migrations
// and policy updates share one blast radius.
func (r *Reconciler) migrateFirst(ctx context.Context, plan *Plan) (*migrationPass, error) {
	mp := &migrationPass{plan: plan, result: &Result{}, maxUpdates: r.Limits.MaxServiceUpdates}
	byName := map[string]Action{}
	for _, a := range plan.Pending() {
		if a.Kind == ActionMigrateNetwork {
			byName[a.Name] = a
		}
	}
	if len(byName) == 0 {
		return mp, nil
	}
	rep, err := r.Migrate(ctx)
	if err != nil {
		mp.stop = true
		return mp, err
	}
	ap := &Applier{Log: r.Log, OnResult: r.OnResult}
	for _, nm := range rep.Networks {
		a, ok := byName[nm.Name]
		if !ok {
			a = Action{Kind: ActionMigrateNetwork, Name: nm.Name}
		}
		if nm.Detail != "" {
			a.Reasons = append(append([]string(nil), a.Reasons...), nm.Detail)
		}
		mp.result.add(ap, ActionResult{Action: a, Outcome: nm.Outcome, Err: nm.Err, Duration: nm.Duration})
	}
	if rep.Wrote() {
		if mp.plan, err = r.Plan(ctx); err != nil {
			mp.stop = true
			return mp, err
		}
		if len(mp.plan.Holds) > 0 && !r.Limits.Force {
			mp.stop = true
			return mp, fmt.Errorf("%w: %s; only the network migrations were written (use --force to go ahead)", ErrHeld, strings.Join(mp.plan.Holds, "; "))
		}
	}
	if max := r.Limits.MaxServiceUpdates; max > 0 {
		mp.maxUpdates = max - rep.Updates
		if mp.maxUpdates <= 0 {
			// Spent: every policy update waits for the next pass.
			mp.stop = true
			for _, a := range mp.plan.Pending() {
				if a.Kind == ActionUpdateService {
					mp.result.add(ap, ActionResult{Action: a, Outcome: OutcomePending})
				}
			}
			return mp, mp.result.Err()
		}
	}
	return mp, nil
}

// merge puts the migration results before those of the policy actions.
func (mp *migrationPass) merge(res *Result) *Result {
	res.Results = append(mp.result.Results, res.Results...)
	return res
}
