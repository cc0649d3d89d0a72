package plan

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/state"
)

// Limits bound what one pass may do, because every service update replaces
// the service's tasks.
type Limits struct {
	// MaxServiceUpdates caps the service updates of one pass; the rest wait
	// for the next pass. 0 means no cap.
	MaxServiceUpdates int
	// MaxIsolateShare is the largest share (0..1] of all services one pass
	// may newly isolate without Force. 0 means no limit.
	MaxIsolateShare float64
	// Force lets a held pass go ahead.
	Force bool
}

// DefaultLimits are the limits of the CLI unless flags say otherwise.
var DefaultLimits = Limits{MaxServiceUpdates: 20, MaxIsolateShare: 0.5}

// ErrHeld is returned by a pass that the safety limits stopped.
var ErrHeld = errors.New("held by the safety limits")

// ErrBlocked marks a change that cannot go on until the operator acts (an
// encryption migration with a container attached outside any service, a
// service that opts out, a network recreated by someone else). It stops
// where the services still share a network.
var ErrBlocked = errors.New("migration blocked")

// Holds lists the reasons a plan is too dangerous to apply without Force:
// it detaches every service of a stack from all its networks, or isolates
// more than the allowed share of all services at once. It fails closed: a
// store it cannot read holds the plan.
func Holds(tx state.ReadTx, plan *Plan, limits Limits) []string {
	var out []string
	services, err := state.FindServices(tx, state.All())
	if err != nil {
		return []string{fmt.Sprintf("the safety limits cannot be checked: %v", err)}
	}
	if len(services) == 0 {
		return nil
	}
	updates := map[string]*Action{}
	newlyIsolated := 0
	for i := range plan.Actions {
		a := &plan.Actions[i]
		if a.Kind != ActionUpdateService || a.Audit {
			continue
		}
		updates[a.ID] = a
		if a.Service.Isolates {
			newlyIsolated++
		}
	}
	if limits.MaxIsolateShare > 0 {
		share := float64(newlyIsolated) / float64(len(services))
		if share > limits.MaxIsolateShare {
			out = append(out, fmt.Sprintf("the pass isolates %d of %d services at once (%.0f%%, limit %.0f%%)",
				newlyIsolated, len(services), share*100, limits.MaxIsolateShare*100))
		}
	}

	stacks := map[string][]*state.Service{}
	for _, s := range services {
		if ns := s.Labels[v1.LabelStackNamespace]; ns != "" {
			stacks[ns] = append(stacks[ns], s)
		}
	}
	names := make([]string, 0, len(stacks))
	for ns := range stacks {
		names = append(names, ns)
	}
	slices.SortFunc(names, cmp.Compare)
	for _, ns := range names {
		if detachesAll(stacks[ns], updates) {
			out = append(out, fmt.Sprintf("the pass detaches every service of stack %s from all the networks it has now", ns))
		}
	}
	return out
}

// detachesAll reports whether every service of a stack that has networks
// loses all of them in the pass.
func detachesAll(services []*state.Service, updates map[string]*Action) bool {
	withNetworks := 0
	for _, s := range services {
		if len(s.Networks) == 0 {
			continue
		}
		withNetworks++
		a, ok := updates[s.ID]
		if !ok || len(a.Service.Detach) < len(s.Networks) {
			return false
		}
	}
	return withNetworks > 0
}

func detaches(a Action) int {
	if len(a.Service.Detach) > 0 {
		return 1
	}
	return 0
}
