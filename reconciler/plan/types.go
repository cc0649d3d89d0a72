package plan

import (
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
)

// The plan and its parts: what other packages read (the writer, status,
// the commands that print it). Data only; the diff fills it.

// ActionKind names what an action does to Swarm.
type ActionKind string

// The actions, in the order they are applied: networks are created before
// services move onto them and removed after services leave them.
const (
	ActionCreateNetwork ActionKind = "create-network"
	ActionUpdateService ActionKind = "update-service"
	ActionRemoveNetwork ActionKind = "remove-network"
	// ActionCreateRecord and ActionRemoveRecord write and remove the
	// config that records what a service had before its isolation.
	ActionCreateRecord ActionKind = "create-record"
	ActionRemoveRecord ActionKind = "remove-record"
	// ActionMigrateNetwork replaces an unencrypted overlay network by an
	// encrypted one of the same name, moving its services over; its Steps
	// are the writes of this pass (package migrate plans them).
	ActionMigrateNetwork ActionKind = "migrate-network"
)

// Action is one write swarmsec would make, with why.
type Action struct {
	Kind ActionKind `json:"kind"`
	// Name is the network or service name.
	Name string `json:"name"`
	// ID is the Swarm ID of an existing object.
	ID string `json:"id,omitempty"`
	// Policies are the policies behind the action.
	Policies []string `json:"policies,omitempty"`
	// Reasons explain the action, one change each. A service update's are
	// rendered from its change when asked for: read them with Why.
	Reasons []string `json:"reasons"`
	// Audit marks actions that only audit-mode policies ask for: reported,
	// never written.
	Audit bool `json:"audit,omitempty"`

	// Network is the network to create.
	Network *compile.DesiredNetwork `json:"network,omitempty"`
	// Service is the change to a service.
	Service *ServiceChange `json:"service,omitempty"`
	// Steps are the writes a migrate-network action makes in this pass.
	Steps []Step `json:"steps,omitempty"`
	// Waits, when set, says why the action cannot be written yet (a
	// record whose service's restore is still rolling): the writer reports
	// it pending, and a later pass writes it.
	Waits string `json:"waits,omitempty"`
	// Wave numbers the service updates that may be written together (see
	// Schedule).
	Wave int `json:"-"`
}

// Step is one write: a network created or removed, or a service updated.
// Policy actions are one step each; a migration is a sequence of them.
type Step struct {
	Kind ActionKind `json:"kind"`
	// Name is the network or service name; ID the Swarm ID of an existing
	// object.
	Name string `json:"name"`
	ID   string `json:"id,omitempty"`
	// What says what the step does, for logs.
	What string `json:"what"`
	// Create holds the options of a network to create.
	Create *network.CreateOptions `json:"-"`
	// Service is the change to a service.
	Service *ServiceChange `json:"-"`
	// Guard, when set, is the ID of a network that no container outside a
	// service may be attached to when the step is written: a migration
	// must not strand one.
	Guard string `json:"-"`
}

// ServiceChange is everything one service update changes: one update per
// service per pass.
type ServiceChange struct {
	// Version is the service version the change was planned from.
	Version uint64   `json:"version"`
	Attach  []string `json:"attach,omitempty"`
	Detach  []string `json:"detach,omitempty"`
	// Ports describes published-port changes, e.g. "8080/tcp removed".
	Ports []string `json:"ports,omitempty"`
	// Isolates is set when the update begins the service's isolation: the
	// safety limits count these.
	Isolates bool `json:"isolates,omitempty"`
	// whyLabel and whyDetach are what Why renders reasons from (see
	// labelWhy); here, they fill Isolates' padding.
	whyLabel  labelWhy
	whyDetach uint32
	// CreateRecord is the data of the record of what the service had, to
	// write before the update. A record is never removed with an update:
	// a later pass removes it (ActionRemoveRecord) once the service is
	// seen restored and its rolling update is done.
	CreateRecord []byte `json:"-"`

	// Target is what the fields swarmsec owns must become.
	Target Target `json:"-"`
	// Owned are the owned fields as planned from (see OwnedOf): a writer
	// that meets a newer version of the service may write Target onto it
	// only while they are unchanged.
	Owned Owned `json:"-"`
}

// Plan is the set of actions that makes the cluster match the policies.
type Plan struct {
	Actions []Action `json:"actions"`
	// Notes explain what swarmsec cannot do or what the operator should know.
	Notes []string `json:"notes,omitempty"`
	// Problems are what is wrong with the records of what to restore.
	Problems []compile.Problem `json:"problems,omitempty"`
	// Held are the policies the safety limits keep out of force.
	Held []HeldPolicy `json:"held,omitempty"`
	// Holds are the reasons the safety limits stop this plan unless forced.
	Holds []string `json:"holds,omitempty"`
	// EncryptionHolds are the changes held, and the networks as they are,
	// where tasks of an encrypted network span a node that cannot carry
	// encrypted overlay traffic (ReasonEncryptionUnavailable).
	EncryptionHolds []EncryptionHold `json:"encryptionHolds,omitempty"`
	// Ports are the published ports whose sources or logging the policies
	// restrict: what the node agent enforces, by service and port.
	Ports   []PortRule       `json:"ports,omitempty"`
	Desired *compile.Desired `json:"-"`
	// Audit are the audit-mode policies as the node agent would enforce
	// them (compiled beside the enforced ones): the agent installs them
	// as log-only rules, reporting what they would drop as would-block.
	Audit []compile.PolicyRules `json:"-"`
}

// PortRule is who may connect to one published port of a service.
type PortRule struct {
	Service string         `json:"service"`
	Port    string         `json:"port"`
	Mode    v1.PublishMode `json:"mode"`
	compile.Admission
}

// AgentNote says plainly who enforces source lists, so no operator
// mistakes a planned rule for a closed port.
const AgentNote = "published-port sources and logging (spec.publish[].from, log) are enforced by the node agent (the stack's agent service, swarmsec agent): on a node where it does not run, every source still reaches these ports"

// Pending returns the actions that would be written (audit ones excluded).
func (p *Plan) Pending() []Action {
	var out []Action
	for _, a := range p.Actions {
		if !a.Audit {
			out = append(out, a)
		}
	}
	return out
}

// Target is the part of a service spec swarmsec owns, as it must be.
type Target struct {
	Networks []Attachment
	Ports    []swarm.PortConfig
	// Original is the value of the swarmsec.io/original label; empty means
	// the label must be absent.
	Original string
}

// Attachment is a network attachment by network name: new networks have no
// ID until they are created.
type Attachment struct {
	Network    string
	ID         string
	Aliases    []string
	DriverOpts map[string]string
}

// Networks indexes the observed networks by ID and by name.
type Networks struct {
	ByID   map[string]*state.Network
	ByName map[string]*state.Network
}
