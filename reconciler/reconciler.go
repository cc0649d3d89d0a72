package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/state"
)

// Mode says whether the reconciler writes.
type Mode string

const (
	// ModeEnforce writes the changes enforce-mode policies ask for.
	ModeEnforce Mode = "enforce"
	// ModeAudit computes and reports everything and writes nothing.
	ModeAudit Mode = "audit"
)

// Reconciler observes Swarm, plans and applies. It reads state only through
// the store.
type Reconciler struct {
	Docker dockerapi.API
	Store  *state.Store
	Log    *slog.Logger
	Mode   Mode
	// RemoveWait bounds how long a pass waits for a network that tasks
	// still use (see Applier.RemoveWait).
	RemoveWait time.Duration
	// Limits bound what one pass may change.
	Limits Limits
	// OnResult sees every action result.
	OnResult func(ActionResult)
}

// SetPolicies replaces the desired policies.
func (r *Reconciler) SetPolicies(ps []*state.Policy) error {
	return r.Store.Update(func(tx state.Tx) error { return state.ReplacePolicies(tx, ps) })
}

// Plan observes Swarm and computes the actions that make it match the
// policies. Actions only audit-mode policies (or audit mode) ask for are
// marked Audit.
func (r *Reconciler) Plan(ctx context.Context) (*Plan, error) {
	if err := Observe(ctx, r.Docker, r.Store); err != nil {
		return nil, err
	}
	return r.PlanObserved()
}

// PlanObserved plans from the state already in the store, without asking
// Swarm again.
func (r *Reconciler) PlanObserved() (*Plan, error) {
	var (
		plan *Plan
		err  error
	)
	r.Store.View(func(tx state.ReadTx) {
		if r.Mode == ModeAudit {
			// Nothing is enforced: report what all policies would change.
			if plan, err = planFor(tx, nil); err != nil {
				return
			}
			for i := range plan.Actions {
				plan.Actions[i].Audit = true
			}
		} else {
			if plan, err = planFor(tx, enforced); err != nil {
				return
			}
			if err = r.addAuditActions(tx, plan); err != nil {
				return
			}
		}
		if err = addMigrations(tx, plan, r.Mode, r.Limits); err != nil {
			return
		}
		plan.Holds = holds(tx, plan, r.Limits)
	})
	return plan, err
}

func enforced(p *state.Policy) bool { return p.Enforcement() == v1.EnforcementEnforce }

func planFor(tx state.ReadTx, include func(*state.Policy) bool) (*Plan, error) {
	desired, err := Compile(tx, include)
	if err != nil {
		return nil, err
	}
	return Diff(tx, desired)
}

// addAuditActions adds, marked Audit, the actions that audit-mode policies
// would add to plan. Without such policies it costs nothing.
func (r *Reconciler) addAuditActions(tx state.ReadTx, plan *Plan) error {
	policies, err := state.FindPolicies(tx, state.ByKind(v1.KindNetworkPolicy))
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(policies, func(p *state.Policy) bool { return !enforced(p) }) {
		return nil
	}
	full, err := planFor(tx, nil)
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(plan.Actions))
	for _, a := range plan.Actions {
		seen[signature(a)] = true
	}
	for _, a := range full.Actions {
		if !seen[signature(a)] {
			a.Audit = true
			plan.Actions = append(plan.Actions, a)
		}
	}
	return nil
}

func signature(a Action) string {
	return string(a.Kind) + "\x00" + a.Name + "\x00" + strings.Join(a.Reasons, "\x00")
}

// Reconcile runs one pass: observe, plan, apply. It returns the plan and
// what became of each action.
func (r *Reconciler) Reconcile(ctx context.Context) (*Plan, *Result, error) {
	plan, err := r.Plan(ctx)
	if err != nil {
		return nil, nil, err
	}
	if r.Mode == ModeAudit {
		for _, a := range plan.Actions {
			r.logger().Info("audit: would change", "action", a.Kind, "object", a.Name,
				"policy", strings.Join(a.Policies, ","), "reason", strings.Join(a.Reasons, "; "))
		}
		return plan, &Result{}, nil
	}
	if len(plan.Holds) > 0 && !r.Limits.Force {
		return plan, &Result{}, fmt.Errorf("%w: %s; nothing was written (use --force to go ahead)", ErrHeld, strings.Join(plan.Holds, "; "))
	}
	mp, err := r.migrateFirst(ctx, plan)
	if mp.stop {
		return mp.plan, mp.result, err
	}
	plan = mp.plan
	ap := &Applier{
		Docker: r.Docker, Store: r.Store, Log: r.Log, Retries: 5, RemoveWait: r.RemoveWait,
		MaxServiceUpdates: mp.maxUpdates, OnResult: r.OnResult,
	}
	res := mp.merge(ap.Apply(ctx, plan))
	for _, a := range plan.Actions {
		if a.Audit {
			r.logger().Info("audit: would change", "action", a.Kind, "object", a.Name,
				"policy", strings.Join(a.Policies, ","), "reason", strings.Join(a.Reasons, "; "))
		}
	}
	return plan, res, res.Err()
}

func (r *Reconciler) logger() *slog.Logger {
	if r.Log == nil {
		return slog.Default()
	}
	return r.Log
}
