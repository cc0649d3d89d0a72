package faults

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/agent"
	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/agentrules"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

// mountedSources returns the admitted sources of port 8080 in the rules
// the agent service mounts, as an agent decodes them.
func mountedSources(t *testing.T, f *fake.Swarm) []string {
	t.Helper()
	ctx := context.Background()
	svcs, err := f.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := f.ConfigList(ctx, swarm.ConfigListOptions{})
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
			doc, err := agent.DecodeRules(cfgs[i].Spec.Data)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, p := range doc.Ports {
				for _, b := range p.From {
					out = append(out, b.CIDR)
				}
			}
			return out
		}
	}
	t.Fatal("no agent service")
	return nil
}

func webPolicy(cidr string) *v1.Policy {
	return policytest.NetPol("web", v1.NetworkPolicySpec{
		ServiceSelector: policytest.Sel("app", "web"),
		Egress:          []v1.EgressRule{{To: []v1.Peer{policytest.Peer("app", "api")}}},
		Publish:         []v1.PublishedPort{{Port: 8080, From: []v1.PortSource{{IPBlock: &v1.SourceBlock{CIDR: cidr}}}}},
	})
}

// TestAgentRollbackIsRedelivered rolls the agent service back (docker
// service rollback) onto the rules before the last change, as an operator
// undoing an agent upgrade would: the agents would enforce stale rules, so
// the leader's next pass points the service at the rules in force again.
// The rules document carries no serial an agent could order versions by
// (older agents refuse unknown fields), so the leader is the one that
// knows; an event of the rollback triggers that pass within a second under
// `run` (TestControllerConvergesRevertsDriftAndSurvivesFailures shows the
// events path).
func TestAgentRollbackIsRedelivered(t *testing.T) {
	f, _ := policytest.Shop(t)
	spec := swarm.ServiceSpec{}
	spec.Name = agentrules.DefaultService
	spec.Labels = map[string]string{agentrules.LabelAgent: "true"}
	spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "swarmsec"}
	spec.Mode.Global = &swarm.GlobalService{}
	svc := f.AddService(spec)

	r := &reconcile.Reconciler{Docker: f, Store: state.New(), Mode: reconcile.ModeEnforce, Log: slog.New(slog.DiscardHandler),
		Limits: plan.DefaultLimits, Agent: &agentrules.Delivery{Docker: f}}
	converge := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, _, err := r.Converge(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.SetPolicies([]*v1.Policy{webPolicy("198.51.100.0/24")}); err != nil {
		t.Fatal(err)
	}
	converge()
	// The policy narrows the sources: new rules are delivered.
	if err := r.SetPolicies([]*v1.Policy{webPolicy("198.51.100.8/29")}); err != nil {
		t.Fatal(err)
	}
	converge()
	if got := mountedSources(t, f); !slices.Equal(got, []string{"198.51.100.8/29"}) {
		t.Fatalf("delivered %v", got)
	}

	// The rollback: Swarm puts the previous spec back.
	cur, _, err := f.ServiceInspectWithRaw(context.Background(), svc.ID, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ServiceUpdate(context.Background(), svc.ID, cur.Version, *cur.PreviousSpec, swarm.ServiceUpdateOptions{Rollback: "previous"}); err != nil {
		t.Fatal(err)
	}
	if got := mountedSources(t, f); !slices.Equal(got, []string{"198.51.100.0/24"}) {
		t.Fatalf("setup: the rollback mounts %v, not the older rules", got)
	}
	start := time.Now()
	p, res, err := r.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := mountedSources(t, f); !slices.Equal(got, []string{"198.51.100.8/29"}) {
		t.Errorf("after a pass the agent service mounts %v; want the rules in force (pending %v)", got, p.Pending())
	}
	if res.Agent == nil || !res.Agent.Wrote {
		t.Errorf("the pass did not say it delivered: %+v", res.Agent)
	}
	t.Logf("faults: agent rules rolled back: 1 fault tried; the rules in force delivered again by the next pass (%s)", time.Since(start).Round(time.Microsecond))
}
