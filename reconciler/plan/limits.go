package plan

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
)

// Limits bound what one pass may do, because every service update replaces
// the service's tasks.
type Limits struct {
	// MaxServiceUpdates caps the service updates of one pass; the rest wait
	// for the next pass. 0 means no cap.
	MaxServiceUpdates int
	// MaxIsolateShare is the largest share (0..1] of all services that one
	// policy may newly isolate at once, unless it is approved (or Force)
	// or isolates no more than BroadMin. 0 means no limit.
	MaxIsolateShare float64
	// BroadMin is how many services a policy may always newly isolate:
	// holding a precise policy over a small cluster would catch intent,
	// not a mistake.
	BroadMin int
	// Force lets every held policy and pass go ahead (apply --force: one
	// command, never a controller's lifetime).
	Force bool
}

// DefaultLimits are the limits of the CLI unless flags say otherwise.
var DefaultLimits = Limits{MaxServiceUpdates: 20, MaxIsolateShare: 0.5, BroadMin: 10}

// HeldPolicy is a policy the safety limits keep out of force: its selector
// newly isolates more services at once than a precise policy would, which
// looks like a mistake (`serviceSelector: {}` merged by accident).
type HeldPolicy struct {
	Name string `json:"name"`
	// Isolates of Services are newly isolated by it.
	Isolates int    `json:"isolates"`
	Services int    `json:"services"`
	Message  string `json:"message"`
}

// BroadPolicies are the enforce-mode NetworkPolicies the limits hold: each
// newly isolates more than MaxIsolateShare of all services and more than
// BroadMin, and carries no approval annotation. desired is the topology
// compiled with every enforced policy; a service is newly isolated when it
// is isolated there and not by swarmsec yet.
func BroadPolicies(tx State, desired *compile.Desired, limits Limits) ([]HeldPolicy, error) {
	if limits.Force || limits.MaxIsolateShare <= 0 {
		return nil, nil
	}
	services, err := tx.Services()
	if err != nil {
		return nil, err
	}
	newly := map[string]int{}
	for _, s := range services {
		ds := desired.Services[s.ID]
		if ds == nil || !ds.Isolated {
			continue
		}
		if _, isolated := s.Labels[v1.LabelOriginal]; isolated {
			continue
		}
		for _, p := range ds.Policies {
			newly[p]++
		}
	}
	var out []HeldPolicy
	for _, name := range slices.Sorted(maps.Keys(newly)) {
		n := newly[name]
		if n <= limits.BroadMin || float64(n) <= limits.MaxIsolateShare*float64(len(services)) {
			continue
		}
		p := tx.Policy(name)
		if p == nil || p.Network == nil || p.Network.Metadata.Annotations[v1.AnnotationApproveBroadSelector] == "true" {
			continue
		}
		out = append(out, HeldPolicy{Name: name, Isolates: n, Services: len(services), Message: fmt.Sprintf(
			"policy %s newly isolates %d of %d services at once (%.0f%%, limit %.0f%% and %d): held as a likely mistake; if it is meant, add the annotation %s: \"true\" to its metadata",
			name, n, len(services), 100*float64(n)/float64(len(services)), 100*limits.MaxIsolateShare, limits.BroadMin, v1.AnnotationApproveBroadSelector)})
	}
	return out, nil
}

// ErrHeld is returned by a pass that the safety limits stopped.
var ErrHeld = errors.New("held by the safety limits")

// ErrBlocked marks a change that cannot go on until the operator acts (an
// encryption migration with a container attached outside any service, a
// service that opts out, a network recreated by someone else). It stops
// where the services still share a network.
var ErrBlocked = errors.New("migration blocked")

// Holds lists the reasons a plan is too dangerous to apply without Force:
// it leaves every service of a stack that has networks of its own (not
// swarmsec's) with none of them, without a policy isolating them (a
// stack-wide default-deny policy explains it and is not held). What the
// plan gives back counts as much as what it takes: ending isolation puts
// services back on their recorded networks, and is never held by it. It
// fails closed: a store it cannot read holds the plan. It lists them even
// under Force, so plan still shows them; the apply paths skip them then.
func Holds(tx State, plan *Plan) []string {
	var out []string
	services, err := tx.Services()
	if err != nil {
		return []string{fmt.Sprintf("the safety limits cannot be checked: %v", err)}
	}
	nets, err := LoadNetworks(tx)
	if err != nil {
		return []string{fmt.Sprintf("the safety limits cannot be checked: %v", err)}
	}
	updates := map[string]*Action{}
	for i := range plan.Actions {
		a := &plan.Actions[i]
		if a.Kind != ActionUpdateService || a.Audit || a.Service == nil {
			continue
		}
		if ds := plan.Desired.Services[a.ID]; ds != nil && ds.Isolated {
			continue // explained: a policy isolates it
		}
		updates[a.ID] = a
	}
	stacks := map[string][]*state.Service{}
	for _, s := range services {
		if ns := s.Labels[v1.LabelStackNamespace]; ns != "" {
			stacks[ns] = append(stacks[ns], s)
		}
	}
	for _, ns := range slices.Sorted(maps.Keys(stacks)) {
		if detachesAll(stacks[ns], updates, nets) {
			out = append(out, fmt.Sprintf("the pass detaches every service of stack %s from all the networks of its own it has now and gives it none back, and no policy isolates them", ns))
		}
	}
	return out
}

// detachesAll reports whether every service of a stack that has networks
// of its own (not swarmsec's) now has none after the pass: it leaves them
// all and joins none. A network left and joined again (new aliases) is
// kept, and one joined (a restore onto its recorded networks) counts like
// one kept. A network missing from the list counts as the service's own.
func detachesAll(services []*state.Service, updates map[string]*Action, nets *Networks) bool {
	withNetworks := 0
	for _, s := range services {
		var own []string // by the names the plan's changes use
		for _, a := range s.Networks {
			if n := nets.Resolve(a.Target); n == nil {
				own = append(own, a.Target)
			} else if !compile.Trusted(n) {
				own = append(own, n.Name)
			}
		}
		if len(own) == 0 {
			continue
		}
		withNetworks++
		a, ok := updates[s.ID]
		if !ok {
			return false // unchanged: it keeps them
		}
		ch := a.Service
		for _, name := range own {
			if !slices.Contains(ch.Detach, name) || slices.Contains(ch.Attach, name) {
				return false
			}
		}
		for _, name := range ch.Attach {
			// A network the pass creates is swarmsec's; only one that
			// exists can be the service's own.
			if n := nets.ByName[name]; n != nil && !compile.Trusted(n) {
				return false
			}
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

// Waves grow by slow start (Kubernetes' slowStartBatch in its job and
// replica-set controllers): the first wave writes at most the cap
// (MaxServiceUpdates), and each wave whose rolling updates finished
// healthy lets the next write twice as many. A paused or failed rolling
// update stops the growth: the next wave is the cap again. So a mistake
// (a broken image, a network the tasks cannot join) shows within the
// first cap's worth of services, and a healthy change of n services takes
// about log2(n/cap) waves instead of n/cap.

// maxWave bounds a wave's size, so the doubling never overflows.
const maxWave = 1 << 30

// WaveSize is the most service updates wave healthy+1 may write: limit
// doubled once for each wave before it that finished healthy. 0 (no cap)
// stays 0.
func WaveSize(limit, healthy int) int {
	if limit <= 0 {
		return 0
	}
	size := limit
	for range healthy {
		if size >= maxWave/2 {
			return maxWave
		}
		size *= 2
	}
	return size
}

// Waves is how many waves updates service updates take under limit when
// every wave finishes healthy (0 for none, 1 without a cap): the waves'
// sizes are limit, 2·limit, 4·limit... A service that must first leave a
// network where it blocks another is written twice, and the order can
// hold an update back a wave, so it is the fewest, not a promise.
func Waves(updates, limit int) int {
	if updates <= 0 {
		return 0
	}
	if limit <= 0 {
		return 1
	}
	waves := 0
	for written := 0; written < updates; waves++ {
		written += WaveSize(limit, waves)
	}
	return waves
}
