package reconcile

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"
	"pgregory.net/rapid"

	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// twoNodes adds a second node to f; services placed after spread over
// both. It returns the IDs of the first and the second.
func twoNodes(t tb, f *fake.Swarm) (first, second string) {
	t.Helper()
	nodes, err := f.NodeList(context.Background(), swarm.NodeListOptions{})
	if err != nil || len(nodes) != 1 {
		t.Fatalf("nodes: %v, %v", nodes, err)
	}
	n := f.AddNode(swarm.Node{Description: swarm.NodeDescription{Hostname: "worker-noesp"}})
	return nodes[0].ID, n.ID
}

func withReplicas(t tb, f *fake.Swarm, name string, n uint64) {
	t.Helper()
	if err := f.UpdateService(name, func(s *swarm.ServiceSpec) {
		s.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &n}}
	}); err != nil {
		t.Fatal(err)
	}
}

func TestEncryptionUnavailableHoldsOnlyWhatWouldBeCutOff(t *testing.T) {
	f := appServices(t, map[string][]string{"api": {"u"}, "db": {"u"}, "cache": {"u"}})
	_, bad := twoNodes(t, f)
	withReplicas(t, f, "api", 2) // one task on each node
	r := migReconciler(t, f, ingressFrom("db", in("db"), "api"), ingressFrom("cache", in("cache")))
	r.Nodes = func(context.Context) (map[string]plan.NodeEncryption, error) {
		return map[string]plan.NodeEncryption{bad: {Hostname: "worker-noesp", Why: "no ESP", Fix: "modprobe esp4"}}, nil
	}
	p, _, err := converge(t, r)
	if err != nil && !errors.Is(err, plan.ErrEncryptionUnavailable) {
		t.Fatal(err)
	}
	held := map[string]plan.EncryptionHold{}
	for _, h := range p.EncryptionHolds {
		if h.Held {
			held[h.Service] = h
		}
	}
	// api and db would share an encrypted network while api's tasks run
	// on both nodes: both updates are held. cache, alone on one node, is
	// isolated as asked.
	for _, svc := range []string{"api", "db"} {
		h, ok := held[svc]
		if !ok || !slices.Contains(h.Nodes, "worker-noesp") || !strings.Contains(h.Message, "modprobe esp4") {
			t.Errorf("%s: not held, or the hold does not name the node and the fix: %+v", svc, h)
		}
	}
	if _, ok := held["cache"]; ok {
		t.Errorf("cache held although all its tasks are on one node")
	}
	share := sharingOf(t, f)
	if !share["db"]["u"] || share["api"]["swarmsec-db"] || share["cache"]["u"] {
		t.Errorf("api and db must stay as they were, cache leave u: %v", share)
	}

	// Once the node can, the held changes go through.
	r.Nodes = func(context.Context) (map[string]plan.NodeEncryption, error) {
		return map[string]plan.NodeEncryption{bad: {Hostname: "worker-noesp", OK: true}}, nil
	}
	if p, _, err = converge(t, r); err != nil || len(p.EncryptionHolds) != 0 {
		t.Fatalf("after the fix: holds %+v, %v", p.EncryptionHolds, err)
	}
	if share := sharingOf(t, f); !share["api"]["swarmsec-db"] || share["db"]["u"] {
		t.Errorf("db not isolated with api after the fix: %v", share)
	}

	// Tasks that move onto such a node later are reported, not undone.
	r.Nodes = func(context.Context) (map[string]plan.NodeEncryption, error) {
		return map[string]plan.NodeEncryption{bad: {Hostname: "worker-noesp", Why: "no ESP"}}, nil
	}
	p, err = r.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Pending()) != 0 || !slices.ContainsFunc(p.EncryptionHolds, func(h plan.EncryptionHold) bool { return !h.Held && slices.Contains(h.Policies, "db") }) {
		t.Errorf("a network already spanning the node: pending %v, holds %+v", p.Pending(), p.EncryptionHolds)
	}
}

// TestTransitionsWithEncryptionHoldsNeverLooser is TestTransitionsNeverLooser
// with some services' tasks on a node that cannot encrypt: the held updates
// are left out, and no write of what remains is looser than before or the
// new policies.
func TestTransitionsWithEncryptionHoldsNeverLooser(t *testing.T) {
	apps := []string{"a", "b", "c", "d"}
	rapid.Check(t, func(rt *rapid.T) {
		nets := map[string][]string{}
		for _, a := range apps {
			nets[a] = rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"u", "v"}), 1, 2, rapid.ID[string]).Draw(rt, a+" networks")
		}
		before, after := randomPolicies(rt, apps, "before"), randomPolicies(rt, apps, "after")
		f := appServices(rt, nets)
		_, bad := twoNodes(rt, f)
		for _, a := range apps {
			if rapid.Bool().Draw(rt, a+" spans both nodes") {
				withReplicas(rt, f, a, 2)
			}
		}
		holdAfter := func(r *Reconciler) {
			r.Nodes = func(context.Context) (map[string]plan.NodeEncryption, error) {
				return map[string]plan.NodeEncryption{bad: {Hostname: "bad"}}, nil
			}
		}
		if v := transitionWith(rt, f, before, after, rapid.IntRange(0, 2).Draw(rt, "limit"), holdAfter); len(v) > 0 {
			rt.Fatalf("looser than the policies after a write: %s", strings.Join(v, "; "))
		}
	})
}

// While the agents run, a node whose agent has not reported holds what
// would span it, as one that cannot encrypt does.
func TestUnreportedNodeHolds(t *testing.T) {
	f := appServices(t, map[string][]string{"api": {"u"}, "db": {"u"}})
	good, _ := twoNodes(t, f)
	withReplicas(t, f, "api", 2)
	r := migReconciler(t, f, ingressFrom("db", in("db"), "api"))
	r.Nodes = func(context.Context) (map[string]plan.NodeEncryption, error) {
		return map[string]plan.NodeEncryption{good: {OK: true}, plan.AnyOtherNode: {Why: "its node agent has not reported"}}, nil
	}
	p, _, err := converge(t, r)
	if err != nil && !errors.Is(err, plan.ErrEncryptionUnavailable) {
		t.Fatal(err)
	}
	if held := p.EncryptionHeld(); len(held) != 2 || !strings.Contains(held[0], "worker-noesp") || !strings.Contains(held[0], "has not reported") {
		t.Errorf("held %q", held)
	}
}
