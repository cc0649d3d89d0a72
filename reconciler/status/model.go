// Package status keeps what an operator needs to know about the controller
// without reading its logs: per-policy conditions in the Kubernetes shape,
// the services each policy selects, the actions still pending, the manifest
// files that fail to load, and whether the controller is ready. A Tracker is
// fed by the manifest watcher and by the reconcile loop; Report is the JSON
// that /status serves and `swarmsec status` prints.
package status

import (
	"time"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/reconciler/agentrules"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
	"github.com/swarmsec/swarmsec/reconciler/plan"
)

// Report is the controller's status, as /status serves it.
type Report struct {
	// Mode is enforce or audit.
	Mode string `json:"mode"`
	// Leader says whether this replica writes; Identity names it (with
	// leader election off, it always leads).
	Leader   bool   `json:"leader"`
	Identity string `json:"identity"`
	// LeaderIdentity names the replica that holds the lease, as last seen.
	LeaderIdentity string `json:"leaderIdentity,omitempty"`
	// FollowerWrites counts the Docker writes this replica made while it
	// did not lead: 0, always.
	FollowerWrites int64 `json:"followerWrites"`
	// Ready is what /readyz answers; Checks say why.
	Ready  bool    `json:"ready"`
	Checks []Check `json:"checks"`
	// LastPass is the most recent reconcile pass.
	LastPass *PassSummary `json:"lastPass,omitempty"`
	// LastSuccessfulPass is when the last pass without error ended.
	LastSuccessfulPass *time.Time `json:"lastSuccessfulPass,omitempty"`
	// Held says why the manifest watcher keeps the last good set (an empty
	// or unreadable directory).
	Held string `json:"held,omitempty"`
	// Policies are the policies in force, by name.
	Policies []v1.PolicyStatus `json:"policies"`
	// ManifestErrors are the errors of the last read of the manifests.
	ManifestErrors []manifest.Error `json:"manifestErrors"`
	// StaleFiles are manifest files with errors whose last good policies
	// stay in force.
	StaleFiles []string `json:"staleFiles"`
	// Nodes are the node agents' checks, by node; NodesError says why they
	// could not be read.
	Nodes      []agentv1.Report `json:"nodes,omitempty"`
	NodesError string           `json:"nodesError,omitempty"`
	// Agent is what the leader last found of the node agents.
	Agent *agentrules.Outcome `json:"agent,omitempty"`
	// Enforcement says, node by node, whether the node agent holds the
	// rules the leader delivered in force (the Enforced condition), while
	// the rules ask anything of the agents.
	Enforcement []NodeEnforcement `json:"enforcement,omitempty"`
	// Encryption lists the changes held, and the networks as they are,
	// where tasks span a node that cannot carry encrypted traffic.
	Encryption []plan.EncryptionHold `json:"encryption,omitempty"`
}

// NodeEnforcement is one node's data path: Conditions holds Enforced.
type NodeEnforcement struct {
	Node   string `json:"node"`
	NodeID string `json:"nodeID,omitempty"`
	// Conditions holds Enforced, whose observedGeneration is the rules
	// (their content's name) it speaks of.
	Conditions []v1.Condition `json:"conditions"`
}

// Check is one readiness condition.
type Check struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Message string `json:"message"`
}

// PassSummary describes one reconcile pass.
type PassSummary struct {
	Start           time.Time `json:"start"`
	DurationSeconds float64   `json:"durationSeconds"`
	Trigger         string    `json:"trigger"`
	Error           string    `json:"error,omitempty"`
	// Planned counts the actions the pass planned to write; Applied those
	// it wrote; Audit those it only reported.
	Planned int `json:"planned"`
	Applied int `json:"applied"`
	Audit   int `json:"audit"`
	// RemainingUpdates counts the service updates the pass left for the
	// next ones (the --max-service-updates cap, a wait).
	RemainingUpdates int      `json:"remainingUpdates"`
	Holds            []string `json:"holds,omitempty"`
	// Held names the policies the safety limits keep out of force.
	Held  []string `json:"held,omitempty"`
	Notes []string `json:"notes,omitempty"`
}
