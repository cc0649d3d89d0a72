package compile

import (
	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/state"
)

// State is the immutable view of the store the compiler reads: exactly the
// reads it makes, as nomad's scheduler reads its State. state.ReadTx
// implements it; a test can feed the compiler a plain in-memory one. Results
// are shared with the store: never modify them.
type State interface {
	// PoliciesOf returns the desired policies of a kind, by name.
	PoliciesOf(kind string) ([]*v1.Policy, error)
	// Services returns every observed service, by ID.
	Services() ([]*state.Service, error)
	// Networks returns every observed network, by ID.
	Networks() ([]*state.Network, error)
	// Network returns the network with this ID, or nil.
	Network(id string) *state.Network
	// NetworkNamed returns the first network of this name, by ID, or nil.
	NetworkNamed(name string) *state.Network
	// Records returns every observed record config.
	Records() ([]*state.Record, error)
}

var _ State = state.ReadTx{}
