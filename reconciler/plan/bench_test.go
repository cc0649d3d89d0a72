package plan

import (
	"fmt"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

// benchCluster builds stacks of five services (web, api, db, cache, worker)
// on one stack network each, web publishing 8080 through the mesh, and one
// policy per stack (about one policy per five services): db, cache and api
// isolated, reachable from their callers.
func benchCluster(b *testing.B, services int) *state.Store {
	var svcs []*state.Service
	var nets []*state.Network
	var policies []*v1.Policy
	apps := []string{"web", "api", "db", "cache", "worker"}
	for k := 0; k*5 < services; k++ {
		stack := fmt.Sprintf("s%05d", k)
		netID := "net-" + stack
		nets = append(nets, state.NewNetwork(network.Summary{ID: netID, Name: stack + "_default", Driver: "overlay", Scope: "swarm",
			Labels: map[string]string{v1.LabelStackNamespace: stack}}))
		for _, app := range apps {
			s := swarm.Service{ID: "id-" + stack + "_" + app}
			s.Version.Index = 10
			s.Spec.Name = stack + "_" + app
			s.Spec.Labels = map[string]string{v1.LabelStackNamespace: stack, "app": app}
			s.Spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: netID, Aliases: []string{app}}}
			if app == "web" {
				s.Spec.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{PublishedPort: 8080, TargetPort: 8080, Protocol: "tcp"}}}
			}
			svcs = append(svcs, state.NewService(s))
		}
		policies = append(policies, policytest.NetPol(stack+"-backends", v1.NetworkPolicySpec{
			ServiceSelector: v1.LabelSelector{
				MatchLabels:      map[string]string{v1.LabelStackNamespace: stack},
				MatchExpressions: []v1.LabelSelectorRequirement{{Key: "app", Operator: v1.OpIn, Values: []string{"api", "db", "cache"}}},
			},
			Ingress: []v1.IngressRule{{From: []v1.Peer{policytest.Peer(v1.LabelStackNamespace, stack)}}},
		}))
	}
	return storeWith(b, svcs, nets, policies)
}

// BenchmarkCompileDiff measures a whole plan from the store: compile the
// policies, then diff against the observed services and networks.
func BenchmarkCompileDiff(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st := benchCluster(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				var err error
				st.View(func(tx state.ReadTx) {
					var d *compile.Desired
					if d, err = compile.Compile(tx, nil); err != nil {
						return
					}
					var p *Plan
					p, err = Diff(tx, d)
					if err == nil && len(p.Actions) == 0 {
						err = fmt.Errorf("no actions planned")
					}
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
