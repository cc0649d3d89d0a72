package reconcile

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/agent"
	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/agentrules"
	"github.com/swarmsec/swarmsec/reconciler/plan"
)

// deliveredPorts returns the ports the agent service's mounted rules hold.
func deliveredPorts(t *testing.T, r *Reconciler) []string {
	t.Helper()
	ctx := context.Background()
	svcs, err := r.Docker.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := r.Docker.ConfigList(ctx, swarm.ConfigListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		if s.Spec.Name != agentrules.DefaultService {
			continue
		}
		for _, ref := range s.Spec.TaskTemplate.ContainerSpec.Configs {
			i := slices.IndexFunc(cfgs, func(c swarm.Config) bool { return c.ID == ref.ConfigID })
			if i < 0 {
				t.Fatalf("the agent mounts config %s, which does not exist", ref.ConfigName)
			}
			doc, err := agent.DecodeRules(cfgs[i].Spec.Data) // as the agents read it
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, p := range doc.Ports {
				out = append(out, p.Service+" "+p.Key())
			}
			return out
		}
	}
	return nil
}

// A policy in force that look-alike services would make too broad is
// held: it isolates none of them, and stays in force, port rules too, on
// what it isolated before. (Holding the whole policy restored web onto
// shop_default and delivered empty rules, opening its port.)
func TestHeldPolicyKeepsWhatItEnforced(t *testing.T) {
	f, ids := shop(t)
	agent := swarm.ServiceSpec{}
	agent.Name = agentrules.DefaultService
	agent.Labels = map[string]string{agentrules.LabelAgent: "true"}
	agent.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "swarmsec"}
	agent.Mode.Global = &swarm.GlobalService{}
	f.AddService(agent)
	web := netpol("web", v1.NetworkPolicySpec{
		ServiceSelector: sel("app", "web"),
		Egress:          []v1.EgressRule{{To: []v1.Peer{peer("app", "api"), {IPBlock: &v1.IPBlock{CIDR: v1.AnyIPv4}}}}},
		Publish:         []v1.PublishedPort{{Port: 8080, From: []v1.PortSource{{IPBlock: &v1.SourceBlock{CIDR: "203.0.113.0/24"}}}}},
	})
	r := newTestReconciler(t, f, []*v1.Policy{web})
	r.Limits = plan.DefaultLimits
	r.Agent = &agentrules.Delivery{Docker: f}
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	isolated := networkNames(t, f, inspect(t, f, ids["shop_web"]))
	if want := []string{"shop_web 8080/tcp"}; !slices.Equal(deliveredPorts(t, r), want) {
		t.Fatalf("delivered %v, want %v", deliveredPorts(t, r), want)
	}

	for i := range 12 {
		s := swarm.ServiceSpec{}
		s.Name = fmt.Sprintf("lookalike%d", i)
		s.Labels = map[string]string{"app": "web"}
		s.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "x"}
		f.AddService(s)
	}
	p, _, err := converge(t, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Held) != 1 || p.Held[0].Name != "web" {
		t.Fatalf("held %+v, want web", p.Held)
	}
	if got := networkNames(t, f, inspect(t, f, ids["shop_web"])); !slices.Equal(got, isolated) {
		t.Errorf("holding web moved shop_web from %v to %v", isolated, got)
	}
	if want := []string{"shop_web 8080/tcp"}; !slices.Equal(deliveredPorts(t, r), want) {
		t.Errorf("holding web delivered %v, want %v", deliveredPorts(t, r), want)
	}
	for _, a := range p.Pending() {
		if a.Kind == plan.ActionUpdateService {
			t.Errorf("a held policy isolates %s", a.Name)
		}
	}
}
