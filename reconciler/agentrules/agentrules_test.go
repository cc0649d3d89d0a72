package agentrules

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/agent"
	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/testing/fake"
)

func agentSpec(name string, label bool) swarm.ServiceSpec {
	spec := swarm.ServiceSpec{}
	spec.Name = name
	spec.Labels = map[string]string{}
	if label {
		spec.Labels[LabelAgent] = "true"
	}
	spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "swarmsec/swarmsec"}
	spec.Mode.Global = &swarm.GlobalService{}
	return spec
}

func doc(cidr string) *agentv1.Rules {
	return &agentv1.Rules{APIVersion: agentv1.APIVersion, Kind: agentv1.KindRules, Ports: []agentv1.Port{{
		Service: "web", Port: 8080, Protocol: v1.ProtocolTCP, From: []v1.SourceBlock{{CIDR: cidr}}, Log: v1.PortLogBlocked,
	}}}
}

func mountedName(t *testing.T, f *fake.Swarm, name string) string {
	t.Helper()
	svcs, err := f.ServiceList(context.Background(), swarm.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		if s.Spec.Name == name {
			if r := mounted(&s); r != nil {
				return r.ConfigName
			}
		}
	}
	return ""
}

func mustService(t *testing.T, f *fake.Swarm, name string) swarm.Service {
	t.Helper()
	s, _, err := f.ServiceInspectWithRaw(context.Background(), name, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDeliverMountsTheRulesOnceAndCollectsOldOnes(t *testing.T) {
	ctx := context.Background()
	f := fake.New()
	f.AddService(agentSpec(DefaultService, true))
	d := &Delivery{Docker: f}

	out, err := d.Deliver(ctx, doc("192.0.2.0/24"))
	if err != nil || !out.Agent || !out.Wrote {
		t.Fatalf("first delivery: %+v, %v", out, err)
	}
	if got := mountedName(t, f, DefaultService); got != out.Config {
		t.Fatalf("agent mounts %q, want %q", got, out.Config)
	}
	// Nothing drifted: no write.
	again, err := d.Deliver(ctx, doc("192.0.2.0/24"))
	if err != nil || again.Wrote || again.Config != out.Config {
		t.Fatalf("second delivery wrote: %+v, %v", again, err)
	}
	// Verified once, the mount costs a read of the agent service, no list.
	f.ResetCalls()
	if again, err := d.Deliver(ctx, doc("192.0.2.0/24")); err != nil || again.Wrote || again.Config != out.Config {
		t.Fatalf("third delivery: %+v, %v", again, err)
	}
	if calls := f.Calls(); !maps.Equal(calls, map[string]int{"ServiceInspectWithRaw": 1}) {
		t.Errorf("a delivery with nothing changed made %v", calls)
	}
	// Someone mounts another config: the delivery looks again and puts
	// the rules back.
	svc := mustService(t, f, DefaultService)
	svc.Spec.TaskTemplate.ContainerSpec.Configs = nil
	if _, err := f.ServiceUpdate(ctx, svc.ID, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if back, err := d.Deliver(ctx, doc("192.0.2.0/24")); err != nil || !back.Wrote || mountedName(t, f, DefaultService) != out.Config {
		t.Fatalf("after an unmount: %+v, %v", back, err)
	}
	changed, err := d.Deliver(ctx, doc("198.51.100.0/24"))
	if err != nil || !changed.Wrote || changed.Config == out.Config {
		t.Fatalf("changed rules: %+v, %v", changed, err)
	}
	third, err := d.Deliver(ctx, doc("203.0.113.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Deliver(ctx, doc("203.0.113.0/24")); err != nil {
		t.Fatal(err)
	}
	// The one mounted, and the one before it (a rollback goes back to
	// it), stay; older ones go.
	cfgs, err := d.configs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, first := cfgs[out.Config]
	_, previous := cfgs[changed.Config]
	_, current := cfgs[third.Config]
	if first || !previous || !current || len(cfgs) != 2 {
		t.Fatalf("rules configs %v: want %s and %s only", slices.Collect(maps.Keys(cfgs)), changed.Config, third.Config)
	}
}

func TestDeliverTrustsNothingItDidNotWrite(t *testing.T) {
	ctx := context.Background()
	f := fake.New()
	// A service with the label but another name, and one with the name
	// but no label: neither is the agent.
	f.AddService(agentSpec("impostor", true))
	f.AddService(agentSpec(DefaultService, false))
	d := &Delivery{Docker: f}
	if out, err := d.Deliver(ctx, doc("192.0.2.0/24")); err != nil || out.Agent || out.Wrote {
		t.Fatalf("delivered to a service that is not the agent: %+v, %v", out, err)
	}

	// A config squatting the rules' name with other data is never mounted.
	f2 := fake.New()
	f2.AddService(agentSpec(DefaultService, true))
	want := doc("192.0.2.0/24")
	if _, err := f2.ConfigCreate(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: agentv1.ConfigName(Encode(want)), Labels: labels()}, Data: Encode(doc("0.0.0.0/0"))}); err != nil {
		t.Fatal(err)
	}
	out, err := (&Delivery{Docker: f2}).Deliver(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if out.Config == agentv1.ConfigName(Encode(want)) || mountedName(t, f2, DefaultService) != out.Config {
		t.Fatalf("mounted the squatted config: %+v", out)
	}
}

// The agent reads what the leader writes, and nothing else (the decoder is
// the agent's; this side makes the files it must accept).
func TestDecodeRefusesOtherFiles(t *testing.T) {
	for _, data := range []string{
		`{"apiVersion":"v1","kind":"ConfigMap","ports":[]}`,
		`{"apiVersion":"swarmsec.io/v1","kind":"AgentRules","ports":[{"service":"x","port":0,"protocol":"tcp"}]}`,
		`{"apiVersion":"swarmsec.io/v1","kind":"AgentRules","ports":[],"extra":1}`,
		`not json`,
	} {
		if _, err := agent.DecodeRules([]byte(data)); err == nil {
			t.Errorf("Decode(%s) accepted it", data)
		}
	}
	d, err := agent.DecodeRules(Encode(doc("192.0.2.0/24")))
	if err != nil || len(d.Ports) != 1 {
		t.Fatalf("round trip: %+v, %v", d, err)
	}
}

// A leader of this version writes the bytes one of the version before
// wrote for the same rules (so the same config name): agents and leaders
// of both run side by side while the stack rolls.
func TestEncodeKeepsTheBytes(t *testing.T) {
	const old = `{
  "apiVersion": "swarmsec.io/v1",
  "kind": "AgentRules",
  "ports": [
    {
      "service": "web",
      "port": 8080,
      "protocol": "tcp",
      "from": [
        {
          "cidr": "192.0.2.0/24"
        }
      ],
      "log": "blocked"
    }
  ]
}
`
	if got := string(Encode(doc("192.0.2.0/24"))); got != old {
		t.Errorf("encoded\n%s\nwant\n%s", got, old)
	}
	if got := agentv1.ConfigName([]byte(old)); got != "swarmsec-agent-rules-78659f7326c1" {
		t.Errorf("config name %s", got)
	}
}
