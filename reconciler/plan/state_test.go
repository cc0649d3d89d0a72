package plan

import (
	"cmp"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/network"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/state"
)

// memState is State over plain slices, in the store's orders: the plan
// needs no memdb.
type memState struct {
	policies []*v1.Policy
	services []*state.Service
	networks []*state.Network
	records  []*state.Record
	nodes    []*state.Node
	tasks    []*state.Task
}

var _ State = (*memState)(nil)

func (m *memState) Policy(name string) *v1.Policy {
	i := slices.IndexFunc(m.policies, func(p *v1.Policy) bool { return p.Name == name })
	if i < 0 {
		return nil
	}
	return m.policies[i]
}

func (m *memState) PoliciesOf(kind string) ([]*v1.Policy, error) {
	out := slices.DeleteFunc(slices.Clone(m.policies), func(p *v1.Policy) bool { return p.Kind != kind })
	slices.SortFunc(out, func(a, b *v1.Policy) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

func (m *memState) Services() ([]*state.Service, error) {
	out := slices.Clone(m.services)
	slices.SortFunc(out, func(a, b *state.Service) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

func (m *memState) Networks() ([]*state.Network, error) { return m.byID(), nil }

func (m *memState) byID() []*state.Network {
	out := slices.Clone(m.networks)
	slices.SortFunc(out, func(a, b *state.Network) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (m *memState) Network(id string) *state.Network {
	i := slices.IndexFunc(m.networks, func(n *state.Network) bool { return n.ID == id })
	if i < 0 {
		return nil
	}
	return m.networks[i]
}

func (m *memState) NetworkNamed(name string) *state.Network {
	all := m.byID()
	i := slices.IndexFunc(all, func(n *state.Network) bool { return n.Name == name })
	if i < 0 {
		return nil
	}
	return all[i]
}

func (m *memState) ManagedNetworks() ([]*state.Network, error) {
	return slices.DeleteFunc(m.byID(), func(n *state.Network) bool { return !n.Managed() }), nil
}

func (m *memState) Records() ([]*state.Record, error) { return slices.Clone(m.records), nil }

func (m *memState) Nodes() ([]*state.Node, error) { return slices.Clone(m.nodes), nil }

func (m *memState) Tasks() ([]*state.Task, error) { return slices.Clone(m.tasks), nil }

// TestPlanReadsThroughState feeds compile and plan a State without memdb:
// the plan isolates db as it does from the store, action for action.
func TestPlanReadsThroughState(t *testing.T) {
	svcs := []*state.Service{shopService("api", "net-shop"), shopService("db", "net-shop")}
	nets := []*state.Network{state.NewNetwork(network.Summary{ID: "net-shop", Name: "shop_default", Driver: "overlay", Scope: "swarm"})}
	policies := []*v1.Policy{dbPolicy()}

	mem, err := Policies(&memState{policies: policies, services: svcs, networks: nets}, false, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var stored *Plan
	storeWith(t, svcs, nets, policies).View(func(tx state.ReadTx) { stored, err = Policies(tx, false, Limits{}) })
	if err != nil {
		t.Fatal(err)
	}

	i := slices.IndexFunc(mem.Actions, func(a Action) bool { return a.Kind == ActionUpdateService && a.Name == "shop_db" })
	if i < 0 || !slices.Contains(mem.Actions[i].Why(), "isolate: selected by db") {
		t.Fatalf("the in-memory plan does not isolate shop_db: %+v", mem.Actions)
	}
	if len(mem.Actions) != len(stored.Actions) {
		t.Fatalf("in memory %d actions, from the store %d:\n%+v\n%+v", len(mem.Actions), len(stored.Actions), mem.Actions, stored.Actions)
	}
	for i := range mem.Actions {
		m, s := mem.Actions[i], stored.Actions[i]
		if m.Kind != s.Kind || m.Name != s.Name || !slices.Equal(m.Why(), s.Why()) {
			t.Errorf("action %d: in memory %s %s %q, from the store %s %s %q", i, m.Kind, m.Name, m.Why(), s.Kind, s.Name, s.Why())
		}
	}
}
