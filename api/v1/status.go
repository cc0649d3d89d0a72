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

// ConditionRestorable says whether swarmsec can give the services a policy
// isolates back what they had when the isolation ends: False names a
// service whose record is missing, invalid or not named by its label.
const ConditionRestorable = "Restorable"

// ConditionEncryptionAvailable says whether every node the tasks of a
// policy's services run on can carry their encrypted overlay traffic, as
// the node agents found (reason EncryptionUnavailable when one cannot).
const ConditionEncryptionAvailable = "EncryptionAvailable"

// ReasonEncryptionAvailable is the reason when every node can.
const ReasonEncryptionAvailable = "EncryptionAvailable"

// ConditionEnforced says, per node, whether the node agent holds the
// rules in force that the leader delivered: ports, directions and egress
// blocks per task, published-port sources, audit-mode logging. Where it is
// False, the network layer alone holds on that node. A NetworkPolicy's
// Enforced says whether every node its services' tasks run on is.
const ConditionEnforced = "Enforced"

// Reasons of the Enforced condition.
const (
	ReasonRulesInForce      = "RulesInForce"
	ReasonNoAgent           = "NoAgent"
	ReasonAgentNotReporting = "AgentNotReporting"
	ReasonRulesNotInForce   = "RulesNotInForce"
	// ReasonNodesNotEnforced: a policy's services run tasks on nodes whose
	// Enforced is False.
	ReasonNodesNotEnforced = "NodesNotEnforced"
)

// ReasonRecorded is the reason when every service's record of what to restore is in place.
const ReasonRecorded = "Recorded"

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

// PolicyStatus is the status of one policy.
type PolicyStatus struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"`
	File        string `json:"file"`
	Line        int    `json:"line"`
	Generation  string `json:"generation"`
	Enforcement string `json:"enforcement"`
	// Conditions holds Ready.
	Conditions []Condition `json:"conditions"`
	// Services are the services a NetworkPolicy selects, by name.
	Services []string `json:"services"`
	// Networks are the networks an EncryptionPolicy selects, by name.
	Networks []string `json:"networks,omitempty"`
	// PendingActions are the changes of the last pass that are not (or not
	// yet) written for this policy.
	PendingActions []PendingAction `json:"pendingActions"`
	// PublishedPorts are the ports a NetworkPolicy restricts to some sources
	// or asks to log, as it writes them.
	PublishedPorts []PortRule `json:"publishedPorts,omitempty"`
}

// PortRule is what a policy asks of one published port.
type PortRule struct {
	// Port is "port/protocol".
	Port string      `json:"port"`
	Mode PublishMode `json:"mode"`
	// From are the admitted blocks; empty admits any source.
	From []string `json:"from,omitempty"`
	Log  PortLog  `json:"log"`
	// Enforced is set once the leader has delivered the rules to the node
	// agent service (each agent applies them within its resync); while it
	// is false, every source still connects.
	Enforced bool `json:"enforced"`
}

// Ready returns the policy's Ready condition, or nil.
func (p *PolicyStatus) Ready() *Condition {
	for i := range p.Conditions {
		if p.Conditions[i].Type == ConditionReady {
			return &p.Conditions[i]
		}
	}
	return nil
}

// Pending states.
const (
	// PendingWaiting: planned, not written yet (capped, held, a network
	// still in use).
	PendingWaiting = "pending"
	// PendingFailed: the write failed; the next pass retries.
	PendingFailed = "failed"
	// PendingAudit: reported only, never written (audit mode).
	PendingAudit = "audit"
)

// PendingAction is a change not written.
type PendingAction struct {
	Kind    string   `json:"kind"`
	Name    string   `json:"name"`
	Reasons []string `json:"reasons"`
	State   string   `json:"state"`
	Error   string   `json:"error,omitempty"`
}
