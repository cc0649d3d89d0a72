package reconcile

import (
	"context"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi/fake"
	"github.com/swarmsec/swarmsec/state"
)

// aliasesOn returns a service's aliases on the network of that name, and
// whether it is on it.
func aliasesOn(t *testing.T, f *fake.Swarm, id, name string) ([]string, bool) {
	t.Helper()
	n, err := f.NetworkInspect(context.Background(), name, network.InspectOptions{})
	if err != nil {
		t.Fatalf("network %s: %v", name, err)
	}
	for _, a := range inspect(t, f, id).Spec.TaskTemplate.Networks {
		if a.Target == n.ID {
			return a.Aliases, true
		}
	}
	return nil, false
}

// settled checks that a pass after convergence has nothing to do: no
// action, no write, nothing to look at again.
func settled(t *testing.T, f *fake.Swarm, r *Reconciler) {
	t.Helper()
	f.ResetCalls()
	pl, res := reconcile(t, r)
	if len(pl.Pending()) != 0 || f.WriteCalls() != 0 || res.RequeueAfter != 0 {
		t.Errorf("a pass after convergence planned %+v, wrote %d, looks again in %v", pl.Pending(), f.WriteCalls(), res.RequeueAfter)
	}
}

// A restore that must wait for another service to leave its network is
// split: the service first leaves the networks it blocks. That first part
// keeps its record and label, so the rest of the restore still knows what
// to give back (b lost v and its alias for good, and was recorded as
// having nothing when isolated again).
func TestSplitRestoreKeepsTheRecord(t *testing.T) {
	f := appServices(t, map[string][]string{"a": nil, "b": {"v"}, "f": {"v"}})
	r := migReconciler(t, f, ingressFrom("p0", in("b"), "a"))
	r.Limits.Force = true
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	// p0's network now joins f, still on v, and b's restore onto v waits
	// for f to leave it while f's move onto swarmsec-p0 waits for b.
	if err := r.SetPolicies([]*state.Policy{ingressFrom("p0", in("f"), "a")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	b := inspect(t, f, "b")
	if got := networkNames(t, f, b); !slices.Equal(got, []string{"v"}) {
		t.Errorf("b networks %v, want v back", got)
	}
	if got, _ := aliasesOn(t, f, b.ID, "v"); !slices.Equal(got, []string{"b"}) {
		t.Errorf("b aliases on v %v, want [b]", got)
	}
	kept := slices.ContainsFunc(f.Configs(), func(c swarm.Config) bool { return c.Spec.Name == "swarmsec-original-"+b.ID })
	if _, ok := b.Spec.Labels[v1.LabelOriginal]; ok || kept {
		t.Errorf("label %q, record kept %v after the restore", b.Spec.Labels[v1.LabelOriginal], kept)
	}
	settled(t, f, r)
}
