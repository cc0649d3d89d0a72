package v1

import "time"

// ConditionStatus is True, False or Unknown, as in Kubernetes.
type ConditionStatus string

// The condition statuses.
const (
	ConditionTrue    ConditionStatus = "True"
	ConditionFalse   ConditionStatus = "False"
	ConditionUnknown ConditionStatus = "Unknown"
)

// ConditionReady is the condition type that says whether a policy is in force.
const ConditionReady = "Ready"

// Reasons of the Ready condition. A reason is CamelCase and never empty.
const (
	ReasonConverged          = "Converged"
	ReasonProgressing        = "Progressing"
	ReasonInvalidSpec        = "InvalidSpec"
	ReasonApplyFailed        = "ApplyFailed"
	ReasonAuditOnly          = "AuditOnly"
	ReasonNoServicesSelected = "NoServicesSelected"
	ReasonHeld               = "Held"
	// ReasonReconcileFailed: a pass could not read Swarm, so nothing is
	// known about the policy's state.
	ReasonReconcileFailed = "ReconcileFailed"
)

// Condition is one aspect of a policy's state, in the Kubernetes shape.
type Condition struct {
	// Type of the condition, e.g. Ready.
	Type string `json:"type"`
	// Status is True, False or Unknown.
	Status ConditionStatus `json:"status"`
	// Reason is a CamelCase word for machines; never empty.
	Reason string `json:"reason"`
	// Message explains the reason to people.
	Message string `json:"message"`
	// ObservedGeneration is the hash of the spec the condition speaks of.
	ObservedGeneration string `json:"observedGeneration"`
	// LastTransitionTime is when Status last changed.
	LastTransitionTime time.Time `json:"lastTransitionTime"`
}
