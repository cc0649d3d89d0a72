package plan

import (
	"errors"
	"slices"
	"time"
)

// Outcome is what became of one action, in the Flux manner.
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
	Action   Action
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

// Mode says whether a reconciler writes.
type Mode string

const (
	// ModeEnforce writes the changes enforce-mode policies ask for.
	ModeEnforce Mode = "enforce"
	// ModeAudit computes and reports everything and writes nothing.
	ModeAudit Mode = "audit"
)

// Pass is the report of one reconcile pass, for status and metrics.
type Pass struct {
	Start    time.Time
	Duration time.Duration
	Plan     *Plan
	Result   *Result
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
	Agent *AgentDelivery
	// Observed is how the pass brought its view of Swarm up to date (nil
	// when it did not get that far).
	Observed *Observation
}

// Observation is how a pass brought the store up to date: by listing
// everything, or by re-reading only the objects Docker's events named
// since the pass before (package observe).
type Observation struct {
	// Full is set when the pass listed everything; Why says why.
	Full bool   `json:"full"`
	Why  string `json:"why,omitempty"`
	// Services and Networks count the objects re-read one by one;
	// Records is set when the records were listed again.
	Services int  `json:"services,omitempty"`
	Networks int  `json:"networks,omitempty"`
	Records  bool `json:"records,omitempty"`
}

// AgentDelivery is what the leader found of the node agents.
type AgentDelivery struct {
	// Agent is false when no agent service runs: nothing enforces the
	// published-port rules.
	Agent bool `json:"agent"`
	// Config is the rules config the agent service mounts now.
	Config string `json:"config,omitempty"`
	// Wrote is set when the delivery created a config or updated the
	// agent service.
	Wrote bool `json:"wrote,omitempty"`
}
