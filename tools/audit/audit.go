// Package audit inspects a Swarm, read-only, for the hardening problems
// that matter for its networking, and, given policies, for drift from them.
// Checks run over the state store, so they are the same whether the store
// was filled from Docker (Run) or by a test.
package audit

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/docker/docker/api/types/network"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/state"
)

// Severity ranks a finding.
type Severity string

// Severities, from least to most urgent.
const (
	SeverityLow    Severity = "low"
	SeverityMedium Severity = "medium"
	SeverityHigh   Severity = "high"
)

func (s Severity) rank() int {
	switch s {
	case SeverityHigh:
		return 3
	case SeverityMedium:
		return 2
	}
	return 1
}

// Kinds of object a finding is about.
const (
	KindNetwork = "network"
	KindService = "service"
)

// Finding is one problem found.
type Finding struct {
	// Check is the stable id of the check that found it.
	Check    string   `json:"check"`
	Severity Severity `json:"severity"`
	// Kind is network or service; Name names the object.
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Message string `json:"message"`
	// Fix is a concrete remedy.
	Fix string `json:"fix"`
	// DockerBench is the docker-bench-security (CIS Docker Benchmark
	// v1.6.0) id of the same recommendation, when there is one.
	DockerBench string `json:"dockerBench,omitempty"`
}

// Report is the result of an audit.
type Report struct {
	// Findings, most severe first.
	Findings []Finding `json:"findings"`
	// Networks and Services count what was inspected; objects labeled
	// swarmsec.io/ignore=true are skipped.
	Networks int `json:"networks"`
	Services int `json:"services"`
	Ignored  int `json:"ignored"`
	// Nodes counts the node agents' reports read (AddNodes).
	Nodes int `json:"nodes"`
	// Policies counts the policies drift was checked against (0: none
	// given, so the manifest checks did not run).
	Policies int `json:"policies"`
}

// Run reads services, networks and nodes from Docker into a fresh store
// and audits them. It only lists: it never writes to Docker. policies, when
// not nil, enable the checks against manifests.
func Run(ctx context.Context, api dockerapi.API, policies []*v1.Policy) (*Report, error) {
	st, err := load0(ctx, api, policies)
	if err != nil {
		return nil, err
	}
	var r *Report
	st.View(func(tx state.ReadTx) { r, err = Check(tx, policies != nil) })
	return r, err
}

// load0 reads services, networks and nodes from Docker into a fresh
// store, with the policies when not nil.
func load0(ctx context.Context, api dockerapi.API, policies []*v1.Policy) (*state.Store, error) {
	st := state.New()
	if err := observe.Observe(ctx, api, st); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := resolveTargets(ctx, api, st); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if policies != nil {
		if err := st.Update(func(tx state.Tx) error { return state.ReplacePolicies(tx, policies) }); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	return st, nil
}

// resolveTargets adds to the store the networks that services attach to
// but that NetworkList leaves out: Swarm's own "host" network, which a
// service created with --network host names by an ID no list shows.
func resolveTargets(ctx context.Context, api dockerapi.API, st *state.Store) error {
	var (
		missing []string
		err     error
	)
	st.View(func(tx state.ReadTx) {
		var svcs []*state.Service
		if svcs, err = state.FindServices(tx, state.All()); err != nil {
			return
		}
		for _, s := range svcs {
			for _, a := range s.Networks {
				if state.GetNetwork(tx, a.Target) == nil && state.GetNetworkByName(tx, a.Target) == nil && !slices.Contains(missing, a.Target) {
					missing = append(missing, a.Target)
				}
			}
		}
	})
	if err != nil {
		return fmt.Errorf("services: %w", err)
	}
	var found []*state.Network
	for _, id := range missing {
		n, err := api.NetworkInspect(ctx, id, network.InspectOptions{})
		if dockerapi.IsNotFound(err) {
			continue // removed since: the check names the bare target
		}
		if err != nil {
			return fmt.Errorf("inspect network %s: %w", id, err)
		}
		found = append(found, state.NewNetwork(n))
	}
	return st.Update(func(tx state.Tx) error {
		for _, n := range found {
			if err := state.UpsertNetwork(tx, n); err != nil {
				return err
			}
		}
		return nil
	})
}

// Check audits the state in tx. withPolicies runs the checks that compare
// the cluster with the policies in the store.
func Check(tx state.ReadTx, withPolicies bool) (*Report, error) {
	in, err := load(tx)
	if err != nil {
		return nil, err
	}
	r := &Report{Findings: []Finding{}, Networks: len(in.networks), Services: len(in.services), Ignored: in.ignored}
	for _, c := range checks {
		if c.narrowedByPolicies && withPolicies {
			continue
		}
		r.Findings = append(r.Findings, c.run(c, in)...)
	}
	if withPolicies {
		ps, err := state.FindPolicies(tx, state.All())
		if err != nil {
			return nil, err
		}
		r.Policies = len(ps)
		found, err := policyChecks(tx, in)
		if err != nil {
			return nil, err
		}
		r.Findings = append(r.Findings, found...)
	}
	slices.SortFunc(r.Findings, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(b.Severity.rank(), a.Severity.rank()), cmp.Compare(a.Check, b.Check),
			cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
	return r, nil
}

// Counts returns the number of findings of each severity.
func (r *Report) Counts() map[Severity]int {
	out := map[Severity]int{SeverityHigh: 0, SeverityMedium: 0, SeverityLow: 0}
	for _, f := range r.Findings {
		out[f.Severity]++
	}
	return out
}

// inventory is the observed state a check looks at, ignored objects left
// out.
type inventory struct {
	services []*state.Service
	networks []*state.Network
	byID     map[string]*state.Network
	byName   map[string]*state.Network
	ignored  int
}

func load(tx state.ReadTx) (*inventory, error) {
	svcs, err := state.FindServices(tx, state.All())
	if err != nil {
		return nil, err
	}
	nets, err := state.FindNetworks(tx, state.All())
	if err != nil {
		return nil, err
	}
	in := &inventory{byID: map[string]*state.Network{}, byName: map[string]*state.Network{}}
	for _, s := range svcs {
		if s.Ignored() {
			in.ignored++
			continue
		}
		in.services = append(in.services, s)
	}
	for _, n := range nets {
		// Resolve attachments through every network, ignored or not.
		in.byID[n.ID] = n
		if prev, ok := in.byName[n.Name]; !ok || prev.Scope != "swarm" {
			in.byName[n.Name] = n
		}
		if n.Ignored() {
			in.ignored++
			continue
		}
		in.networks = append(in.networks, n)
	}
	slices.SortFunc(in.services, func(a, b *state.Service) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(in.networks, func(a, b *state.Network) int { return cmp.Compare(a.Name, b.Name) })
	return in, nil
}

// resolve finds the network an attachment names (an ID, or a name in specs
// written through the API).
func (in *inventory) resolve(target string) *state.Network {
	if n, ok := in.byID[target]; ok {
		return n
	}
	return in.byName[target]
}
