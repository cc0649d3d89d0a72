package plan

import (
	"slices"
	"strings"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
)

// Enforced counts a policy by its own enforcement.
func Enforced(p *v1.Policy) bool { return p.Enforcement() == v1.EnforcementEnforce }

// Policies plans the NetworkPolicy part of a pass. With audit set nothing
// is enforced: every action is what all policies would change, marked
// Audit. Otherwise the plan holds what enforce-mode policies ask for, plus,
// marked Audit, what audit-mode policies would add; a policy the limits
// hold (see BroadPolicies) is left out and listed in Held.
func Policies(tx State, audit bool, limits Limits) (*Plan, error) {
	return PoliciesToward(tx, audit, limits, nil)
}

// PoliciesToward is Policies with the target of a pass whose updates are
// still pending as the compile's hint (see compile.Hint): what that pass
// began, this one goes on with.
func PoliciesToward(tx State, audit bool, limits Limits, target compile.Hint) (*Plan, error) {
	if audit {
		p, err := forPolicies(tx, nil, target)
		if err != nil {
			return nil, err
		}
		for i := range p.Actions {
			p.Actions[i].Audit = true
		}
		return p, nil
	}
	desired, err := compile.Hinted(tx, Enforced, nil, target)
	if err != nil {
		return nil, err
	}
	held, err := BroadPolicies(tx, desired, limits)
	if err != nil {
		return nil, err
	}
	notHeld := func(p *v1.Policy) bool {
		return !slices.ContainsFunc(held, func(h HeldPolicy) bool { return h.Name == p.Name })
	}
	if len(held) > 0 {
		// In force where it already was, isolating nothing new.
		if desired, err = compile.Hinted(tx, Enforced, func(p *v1.Policy) bool { return !notHeld(p) }, target); err != nil {
			return nil, err
		}
	}
	p, err := Diff(tx, desired)
	if err != nil {
		return nil, err
	}
	p.Held = held
	return p, addAuditActions(tx, p, notHeld, target)
}

func forPolicies(tx State, include func(*v1.Policy) bool, target compile.Hint) (*Plan, error) {
	desired, err := compile.Hinted(tx, include, nil, target)
	if err != nil {
		return nil, err
	}
	return Diff(tx, desired)
}

// addAuditActions adds, marked Audit, the actions that audit-mode policies
// would add to plan. Without such policies it costs nothing.
func addAuditActions(tx State, plan *Plan, include func(*v1.Policy) bool, target compile.Hint) error {
	policies, err := tx.PoliciesOf(v1.KindNetworkPolicy)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(policies, func(p *v1.Policy) bool { return !Enforced(p) }) {
		return nil
	}
	full, err := forPolicies(tx, include, target)
	if err != nil {
		return err
	}
	audit := map[string]bool{}
	for _, p := range policies {
		audit[p.Name] = !Enforced(p) && include(p)
	}
	plan.Audit = nil
	for _, pr := range full.Desired.Policies {
		if audit[pr.Name] {
			plan.Audit = append(plan.Audit, pr)
		}
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
	return string(a.Kind) + "\x00" + a.Name + "\x00" + strings.Join(a.Why(), "\x00")
}
