package reconcile

import (
	"maps"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/reconciler/observe"
)

// With events feeding Changes, a drift on one service costs a read of that
// service and the write that reverts it: no list. The pass after reads
// back what was written, and writes nothing.
func TestDriftPassReadsNoList(t *testing.T) {
	f, ids := shop(t)
	r := newTestReconciler(t, f, shopPolicies())
	r.Limits.Force = true
	r.Changes = observe.NewChanges()
	r.Changes.Watch("start")
	_, res := reconcile(t, r)
	if o := res.Observed; o == nil || !o.Full {
		t.Fatalf("the first pass did not list: %+v", o)
	}
	// The first converge's writes are read back, and found as planned.
	f.ResetCalls()
	pl, res := reconcile(t, r)
	if len(pl.Pending()) != 0 || f.WriteCalls() != 0 {
		t.Fatalf("the pass after the converge planned %+v", pl.Pending())
	}
	if o := res.Observed; o.Full || o.Services != 3 || o.Networks != 2 || !o.Records {
		t.Errorf("the pass after the converge read %+v", o)
	}

	if err := f.UpdateService(ids["shop_db"], func(spec *swarm.ServiceSpec) {
		spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: ids["shop_default"]})
	}); err != nil {
		t.Fatal(err)
	}
	r.Changes.Event(events.Message{Type: events.ServiceEventType, Action: events.ActionUpdate, Actor: events.Actor{ID: ids["shop_db"]}})
	f.ResetCalls()
	pl, res = reconcile(t, r)
	if len(pl.Pending()) != 1 || pl.Pending()[0].Name != "shop_db" {
		t.Fatalf("drift plan: %+v", pl.Pending())
	}
	if want := map[string]int{"ServiceInspectWithRaw": 1, "ServiceUpdate": 1}; !maps.Equal(f.Calls(), want) {
		t.Errorf("the drift's pass made %v, want %v (read %+v)", f.Calls(), want, res.Observed)
	}
	if got := networkNames(t, f, inspect(t, f, ids["shop_db"])); !slices.Equal(got, []string{"swarmsec-db"}) {
		t.Errorf("db networks after drift correction: %v", got)
	}

	f.ResetCalls()
	pl, res = reconcile(t, r)
	if len(pl.Pending()) != 0 || res.Observed.Services != 1 || !maps.Equal(f.Calls(), map[string]int{"ServiceInspectWithRaw": 1}) {
		t.Errorf("the pass after the revert: planned %+v, read %+v, calls %v", pl.Pending(), res.Observed, f.Calls())
	}
}

// A pass whose store, mode, limits and node checks are as when the last
// plan asked for nothing plans nothing again; any change plans anew.
func TestIdlePassReusesItsPlan(t *testing.T) {
	f, ids := shop(t)
	r := newTestReconciler(t, f, shopPolicies())
	r.Limits.Force = true
	reconcile(t, r) // converges
	reconcile(t, r) // reads the converge back
	idle, _ := reconcile(t, r)
	if again, _ := reconcile(t, r); again != idle {
		t.Error("a pass with nothing changed planned again")
	}
	r.Limits.MaxServiceUpdates = 7
	if again, _ := reconcile(t, r); again == idle {
		t.Error("new limits reused the last plan")
	}
	idle, _ = reconcile(t, r)
	if err := f.UpdateService(ids["shop_db"], func(spec *swarm.ServiceSpec) {
		spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: ids["shop_default"]})
	}); err != nil {
		t.Fatal(err)
	}
	if pl, _ := reconcile(t, r); pl == idle || len(pl.Pending()) != 1 {
		t.Errorf("a drift reused the last plan: %+v", pl.Pending())
	}
	reconcile(t, r) // reads the revert back
	idle, _ = reconcile(t, r)
	if err := r.SetPolicies(shopPolicies()[:1]); err != nil {
		t.Fatal(err)
	}
	if pl, _ := reconcile(t, r); pl == idle || len(pl.Pending()) == 0 {
		t.Errorf("new policies reused the last plan: %+v", pl.Pending())
	}
}
