package migrate

import (
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
)

// State is the immutable view of the store the migration planner reads:
// a plan's reads and one service by ID. state.ReadTx implements it.
type State interface {
	plan.State
	// Service returns the observed service with this ID, or nil.
	Service(id string) *state.Service
}

var _ State = state.ReadTx{}
