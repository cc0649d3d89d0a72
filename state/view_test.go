package state

import (
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// TestGetters reads through every Get helper and every method of the read
// view, on an empty store and a filled one: get panics on a table and
// index the schema does not pair, so a wrong pair fails here.
func TestGetters(t *testing.T) {
	st := New()
	st.View(func(tx ReadTx) {
		if GetPolicy(tx, "p") != nil || GetService(tx, "s") != nil || GetServiceByName(tx, "s") != nil ||
			GetNetwork(tx, "n") != nil || GetNetworkByName(tx, "n") != nil ||
			tx.Policy("p") != nil || tx.Service("s") != nil || tx.Network("n") != nil || tx.NetworkNamed("n") != nil {
			t.Error("an empty store found something")
		}
	})
	// Two networks of one name (a local and a swarm one): the first by ID.
	nets := []*Network{
		NewNetwork(network.Summary{ID: "n2", Name: "web", Scope: "local"}),
		NewNetwork(network.Summary{ID: "n1", Name: "web", Scope: "swarm", Labels: map[string]string{v1.LabelManaged: "true"}}),
	}
	if err := st.Update(func(tx Tx) error {
		if err := ReplacePolicies(tx, []*v1.Policy{{Name: "p", Kind: v1.KindEncryptionPolicy}, {Name: "q", Kind: v1.KindNetworkPolicy}}); err != nil {
			return err
		}
		if err := ReplaceServices(tx, []*Service{svc("s1", "api", nil, "n1")}); err != nil {
			return err
		}
		if err := ReplaceNetworks(tx, nets); err != nil {
			return err
		}
		if err := ReplaceNodes(tx, []*Node{NewNode(swarm.Node{ID: "node1", Description: swarm.NodeDescription{Hostname: "h1"}})}); err != nil {
			return err
		}
		if err := ReplaceTasks(tx, []*Task{NewTask(swarm.Task{ID: "t1", ServiceID: "s1"})}); err != nil {
			return err
		}
		return ReplaceRecords(tx, []*Record{NewRecord(swarm.Config{ID: "c1", Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: "r1"}}})})
	}); err != nil {
		t.Fatal(err)
	}
	st.View(func(tx ReadTx) {
		if p := tx.Policy("q"); p == nil || p != GetPolicy(tx, "q") {
			t.Errorf("Policy(q) = %+v", p)
		}
		if ps, err := tx.PoliciesOf(v1.KindNetworkPolicy); err != nil || len(ps) != 1 || ps[0].Name != "q" {
			t.Errorf("PoliciesOf = %+v (%v)", ps, err)
		}
		if s := tx.Service("s1"); s == nil || s != GetServiceByName(tx, "api") {
			t.Errorf("Service(s1) = %+v", s)
		}
		if ss, err := tx.Services(); err != nil || len(ss) != 1 {
			t.Errorf("Services = %+v (%v)", ss, err)
		}
		if n := tx.Network("n2"); n == nil || n.Scope != "local" {
			t.Errorf("Network(n2) = %+v", n)
		}
		if n := tx.NetworkNamed("web"); n == nil || n.ID != "n1" || n != GetNetworkByName(tx, "web") {
			t.Errorf("NetworkNamed(web) = %+v, want n1", n)
		}
		if ns, err := tx.Networks(); err != nil || len(ns) != 2 {
			t.Errorf("Networks = %+v (%v)", ns, err)
		}
		if ns, err := tx.ManagedNetworks(); err != nil || len(ns) != 1 || ns[0].ID != "n1" {
			t.Errorf("ManagedNetworks = %+v (%v)", ns, err)
		}
		if ns, err := tx.Nodes(); err != nil || len(ns) != 1 {
			t.Errorf("Nodes = %+v (%v)", ns, err)
		}
		if ts, err := tx.Tasks(); err != nil || len(ts) != 1 {
			t.Errorf("Tasks = %+v (%v)", ts, err)
		}
		if rs, err := tx.Records(); err != nil || len(rs) != 1 {
			t.Errorf("Records = %+v (%v)", rs, err)
		}
	})
}
