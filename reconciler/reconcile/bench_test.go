package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

// BenchmarkCompileDiffNoop measures what a pass with nothing to do spends
// planning once the store holds a converged cluster: compile, diff, the
// migrations' and the safety limits' checks (PlanObserved), for stacks of
// five services with one policy per stack, as plan's BenchmarkCompileDiff
// (which plans a first converge). A resync that finds the store unchanged
// skips even this (planIfChanged).
func BenchmarkCompileDiffNoop(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			r := convergedCluster(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				p, _, err := r.PlanObserved()
				if err != nil || len(p.Actions) != 0 {
					b.Fatalf("%v, %d actions", err, len(p.Actions))
				}
			}
		})
	}
}

func convergedCluster(b *testing.B, services int) *Reconciler {
	b.Helper()
	ctx := context.Background()
	f := fake.New()
	var policies []*v1.Policy
	for k := 0; k*5 < services; k++ {
		stack := fmt.Sprintf("s%05d", k)
		net, err := f.NetworkCreate(ctx, stack+"_default", network.CreateOptions{Driver: "overlay", Scope: "swarm",
			Labels: map[string]string{v1.LabelStackNamespace: stack}})
		if err != nil {
			b.Fatal(err)
		}
		for _, app := range []string{"web", "api", "db", "cache", "worker"} {
			spec := swarm.ServiceSpec{Annotations: swarm.Annotations{Name: stack + "_" + app,
				Labels: map[string]string{v1.LabelStackNamespace: stack, "app": app}}}
			spec.Mode.Replicated = &swarm.ReplicatedService{Replicas: new(uint64)}
			spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "app"}
			spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: net.ID, Aliases: []string{app}}}
			f.AddService(spec)
		}
		policies = append(policies, policytest.NetPol(stack+"-backends", v1.NetworkPolicySpec{
			ServiceSelector: v1.LabelSelector{
				MatchLabels:      map[string]string{v1.LabelStackNamespace: stack},
				MatchExpressions: []v1.LabelSelectorRequirement{{Key: "app", Operator: v1.OpIn, Values: []string{"api", "db", "cache"}}},
			},
			Ingress: []v1.IngressRule{{From: []v1.Peer{policytest.Peer(v1.LabelStackNamespace, stack)}}},
		}))
	}
	r := &Reconciler{Docker: f, Store: state.New(), Mode: ModeEnforce, Log: slog.New(slog.DiscardHandler)}
	r.Limits.Force = true
	if err := r.SetPolicies(policies); err != nil {
		b.Fatal(err)
	}
	if _, _, err := r.Converge(ctx, nil); err != nil {
		b.Fatal(err)
	}
	if p, err := r.Plan(ctx); err != nil || len(p.Actions) != 0 {
		b.Fatalf("not converged: %v, %d actions", err, len(p.Actions))
	}
	return r
}
