package apply

import (
	"errors"
	"slices"
	"time"

	"github.com/swarmsec/swarmsec/reconciler/plan"
)

// Outcome is what became of one action, in the Flux manner (fluxcd/pkg
// ssa's Action): the writer makes it, so it is the writer's.
type Outcome string

// Outcomes of an action.
const (
	OutcomeCreated    Outcome = "created"
	OutcomeConfigured Outcome = "configured"
	OutcomeDeleted    Outcome = "deleted"
	OutcomeUnchanged  Outcome = "unchanged"
	OutcomeSkipped    Outcome = "skipped"
	// OutcomePending: not written in this pass (capped, a network still
	// held by tasks being replaced, an object changed meanwhile); a later
	// pass does it.
	OutcomePending Outcome = "pending"
	OutcomeFailed  Outcome = "failed"
)

// ActionResult is the outcome of one action.
type ActionResult struct {
	Action   plan.Action
	Outcome  Outcome
	Err      error
	Duration time.Duration
	// Detail says why an action is pending or skipped.
	Detail string
	// Warnings are what Docker said alongside a successful write.
	Warnings []string
}

// Result is the outcome of applying a plan.
type Result struct {
	Results []ActionResult
}

// Err joins the errors of the failed actions.
func (r *Result) Err() error {
	var errs []error
	for _, ar := range r.Results {
		if ar.Err != nil {
			errs = append(errs, ar.Err)
		}
	}
	return errors.Join(errs...)
}

// Pending reports whether some action must be done by a later pass.
func (r *Result) Pending() bool {
	return slices.ContainsFunc(r.Results, func(ar ActionResult) bool { return ar.Outcome == OutcomePending })
}

// Writes counts the writes made.
func (r *Result) Writes() int {
	n := 0
	for _, ar := range r.Results {
		switch ar.Outcome {
		case OutcomeCreated, OutcomeConfigured, OutcomeDeleted:
			n++
		}
	}
	return n
}
