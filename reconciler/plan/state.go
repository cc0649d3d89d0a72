package plan

import (
	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
)

// State is the immutable view of the store a plan reads: the compiler's
// reads and the few the diff, the safety limits and the encryption holds
// add (nomad's scheduler State). state.ReadTx implements it; a test can feed
// a plan a plain in-memory one. Results are shared with the store: never
// modify them.
type State interface {
	compile.State
	// Policy returns the desired policy with this name, or nil.
	Policy(name string) *v1.Policy
	// ManagedNetworks returns the networks swarmsec created.
	ManagedNetworks() ([]*state.Network, error)
	// Nodes returns every observed node.
	Nodes() ([]*state.Node, error)
	// Tasks returns every observed task (the store holds tasks only
	// while a migration needs them).
	Tasks() ([]*state.Task, error)
}

var _ State = state.ReadTx{}
