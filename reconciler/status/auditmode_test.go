package status

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/controller"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/reconciler/watch"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// The controller in audit mode, and an enforce-mode controller with an
// enforcement: audit policy, plan changes, report them as AuditOnly, and
// make no write call to Docker.
func TestAuditModeWritesNothing(t *testing.T) {
	for _, tc := range []struct {
		name        string
		mode        reconcile.Mode
		enforcement v1.Enforcement
	}{
		{"run --mode audit", reconcile.ModeAudit, ""},
		{"enforcement: audit", reconcile.ModeEnforce, v1.EnforcementAudit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := fake.New()
			f.AddNetwork("shop", network.CreateOptions{Driver: "overlay"})
			for _, name := range []string{"web", "api"} {
				s := swarm.ServiceSpec{Annotations: swarm.Annotations{Name: name, Labels: map[string]string{"app": name}}}
				s.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "app:1"}
				s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "shop"}}
				f.AddService(s)
			}
			f.ResetCalls()

			store := state.New()
			tr := NewTracker(tc.mode, store)
			rec := &reconcile.Reconciler{Docker: f, Store: store, Mode: tc.mode, Log: slog.New(slog.DiscardHandler)}
			obj := netPolicy("web", "web", "g1", tc.enforcement)
			if err := rec.SetPolicies([]*v1.Policy{{Name: obj.Name, Kind: obj.Kind, Generation: obj.Generation, Network: obj.Network}}); err != nil {
				t.Fatal(err)
			}
			tr.ObserveSnapshot(watch.Snapshot{Objects: []v1.Policy{obj}})

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			passes := make(chan controller.Pass, 8)
			ctrl := &controller.Controller{Reconciler: rec, Log: slog.New(slog.DiscardHandler), OnPass: func(p controller.Pass) {
				tr.ObservePass(p)
				passes <- p
			}}
			done := make(chan error, 1)
			go func() { done <- ctrl.Run(ctx) }()
			var p controller.Pass
			select {
			case p = <-passes:
			case <-ctx.Done():
				t.Fatal("no pass")
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("controller: %v", err)
			}

			if p.Err != nil {
				t.Fatalf("pass: %v", p.Err)
			}
			if n := f.WriteCalls(); n != 0 {
				t.Fatalf("%d write calls to Docker: %v", n, f.Calls())
			}
			audit := 0
			for _, a := range p.Plan.Actions {
				if a.Audit {
					audit++
				}
			}
			if audit == 0 {
				t.Fatalf("nothing reported as would-be change: %+v", p.Plan.Actions)
			}
			r := tr.Report()
			c := r.Policies[0].Ready()
			if c.Status != v1.ConditionFalse || c.Reason != v1.ReasonAuditOnly {
				t.Fatalf("Ready = %+v", c)
			}
			if len(r.Policies[0].PendingActions) == 0 {
				t.Fatal("no pending actions listed")
			}
		})
	}
}
