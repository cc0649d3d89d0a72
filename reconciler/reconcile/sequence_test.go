package reconcile

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"pgregory.net/rapid"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// drawnPolicy is what a sequence keeps of a policy, to build it again
// when one of its fields changes.
type drawnPolicy struct {
	byTier      bool // selects by tier, else by app
	selects     []string
	peers       []string
	denyOutside bool
	publish     []int
	audit       bool
}

func (d drawnPolicy) build(name string) *v1.Policy {
	sel := in(d.selects...)
	if d.byTier {
		sel = v1.LabelSelector{MatchExpressions: []v1.LabelSelectorRequirement{{Key: "tier", Operator: v1.OpIn, Values: d.selects}}}
	}
	p := ingressFrom(name, sel, d.peers...)
	spec := &p.Network.Spec
	if d.denyOutside {
		spec.PolicyTypes = []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress}
	}
	for _, port := range d.publish {
		spec.Publish = append(spec.Publish, v1.PublishedPort{Port: port, Mode: v1.PublishModeIngress})
	}
	if d.audit {
		spec.Enforcement = v1.EnforcementAudit
	}
	return p
}

// TestChangeSequencesConverge makes random sequences of changes over
// random services: a policy added, modified, deleted or switched between
// audit and enforce, a service relabelled, a user network removed (its
// services detached from it first, as Docker requires), a pass in audit
// mode. Each change goes out under a random cap, never looser than before
// or the new policies after any write, and must reach a plan with nothing
// to do within passBound, with every service the policies do not isolate
// back on its own networks and ports. At the end every policy is removed:
// every service must be back where it was (less the networks removed),
// and swarmsec must leave no network, record or label behind.
func TestChangeSequencesConverge(t *testing.T) {
	apps := []string{"a", "b", "c", "d", "e"}
	tiers := []string{"x", "y"}
	rapid.Check(t, func(rt *rapid.T) {
		apps := apps[:rapid.IntRange(3, len(apps)).Draw(rt, "services")]
		f := fake.New()
		netIDs := map[string]string{}
		for _, n := range []string{"u", "v"} {
			resp, err := f.NetworkCreate(context.Background(), n, network.CreateOptions{Driver: "overlay", Scope: "swarm"})
			if err != nil {
				rt.Fatal(err)
			}
			netIDs[n] = resp.ID
		}
		for i, app := range apps {
			spec := swarm.ServiceSpec{}
			spec.Name = app
			spec.Labels = map[string]string{"app": app, "tier": rapid.SampledFrom(tiers).Draw(rt, app+" tier")}
			spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "swarmsec-test-app"}
			for _, n := range rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"u", "v"}), 0, 2, rapid.ID[string]).Draw(rt, app+" networks") {
				spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: netIDs[n], Aliases: []string{app}})
			}
			if rapid.Bool().Draw(rt, app+" publishes") {
				spec.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{Protocol: swarm.PortConfigProtocolTCP, TargetPort: 80, PublishedPort: uint32(8000 + i), PublishMode: swarm.PortConfigPublishModeIngress}}}
			}
			f.AddService(spec)
		}
		own, ports := userNetworks(rt, f), portsOf(rt, f)

		draw := func(label string) drawnPolicy {
			d := drawnPolicy{byTier: rapid.IntRange(0, 3).Draw(rt, label+" by tier") == 0}
			if d.byTier {
				d.selects = rapid.SliceOfNDistinct(rapid.SampledFrom(tiers), 1, 1, rapid.ID[string]).Draw(rt, label+" selects")
			} else {
				d.selects = rapid.SliceOfNDistinct(rapid.SampledFrom(apps), 1, 2, rapid.ID[string]).Draw(rt, label+" selects")
			}
			d.peers = rapid.SliceOfNDistinct(rapid.SampledFrom(apps), 0, 3, rapid.ID[string]).Draw(rt, label+" peers")
			d.denyOutside = rapid.IntRange(0, 3).Draw(rt, label+" denies outside") == 0
			for i := range apps {
				if rapid.IntRange(0, 3).Draw(rt, fmt.Sprintf("%s publishes %d", label, 8000+i)) == 0 {
					d.publish = append(d.publish, 8000+i)
				}
			}
			return d
		}
		policies := map[string]drawnPolicy{}
		list := func() []*v1.Policy {
			var out []*v1.Policy
			for _, name := range slices.Sorted(maps.Keys(policies)) {
				out = append(out, policies[name].build(name))
			}
			return out
		}

		// One reconciler for the whole sequence, as a controller keeps.
		var (
			mu         sync.Mutex
			start      map[string]map[string]bool
			allowed    func(a, b string) bool
			violations []string
		)
		checked := &afterEachUpdate{API: f, check: func() {
			v := looser(sharingOf(rt, f), start, allowed)
			mu.Lock()
			violations = append(violations, v...)
			mu.Unlock()
		}}
		counter := &updateCounter{API: checked, updated: map[string]int{}}
		r := migReconciler(rt, counter)
		r.Limits.Force = true
		ctx := context.Background()

		// converge applies the policies under a random cap and checks the
		// change: never looser, within the bound, every restore done.
		converge := func(label string) {
			if err := r.SetPolicies(list()); err != nil {
				rt.Fatal(err)
			}
			r.Limits.MaxServiceUpdates = rapid.IntRange(0, 3).Draw(rt, label+" cap")
			pl, err := r.Plan(ctx)
			if err != nil {
				rt.Fatal(err)
			}
			ids := serviceIDs(rt, f)
			mu.Lock()
			start, violations = sharingOf(rt, f), nil
			allowed = func(a, b string) bool { return pl.Desired.Allowed(ids[a], ids[b]) }
			mu.Unlock()
			counter.mu.Lock()
			clear(counter.updated)
			counter.mu.Unlock()
			passes := 0
			if _, passes = settle(rt, r, counter, len(apps)); len(violations) > 0 {
				rt.Fatalf("%s: looser than before and the policies after a write: %s", label, strings.Join(violations, "; "))
			}
			isolated := func(name string) bool {
				ds := pl.Desired.Services[ids[name]]
				return ds != nil && ds.Isolated
			}
			if lost := unrestored(rt, f, own, isolated); len(lost) > 0 {
				rt.Fatalf("%s (%d passes): not restored: %s", label, passes, strings.Join(lost, "; "))
			}
			now := portsOf(rt, f)
			for _, name := range apps {
				if !isolated(name) && now[name] != ports[name] {
					rt.Fatalf("%s: %s publishes %s, not %s as before its isolation", label, name, now[name], ports[name])
				}
			}
		}

		for step := range rapid.IntRange(1, 4).Draw(rt, "changes") {
			label := fmt.Sprintf("change %d", step)
			names := slices.Sorted(maps.Keys(policies))
			op := rapid.SampledFrom([]string{"add", "modify", "delete", "audit", "relabel", "remove network", "audit mode"}).Draw(rt, label)
			if len(names) == 0 && (op == "modify" || op == "delete" || op == "audit") {
				op = "add"
			}
			switch op {
			case "add":
				policies[fmt.Sprintf("p%d", step)] = draw(label)
			case "modify":
				name := rapid.SampledFrom(names).Draw(rt, label+" policy")
				audit := policies[name].audit
				d := draw(label)
				d.audit = audit
				policies[name] = d
			case "delete":
				delete(policies, rapid.SampledFrom(names).Draw(rt, label+" policy"))
			case "audit":
				name := rapid.SampledFrom(names).Draw(rt, label+" policy")
				d := policies[name]
				d.audit = !d.audit
				policies[name] = d
			case "relabel":
				relabel(rt, f, rapid.SampledFrom(apps).Draw(rt, label+" service"), rapid.SampledFrom(tiers).Draw(rt, label+" tier"))
			case "remove network":
				removeNetwork(rt, f, rapid.SampledFrom([]string{"u", "v"}).Draw(rt, label+" network"))
			case "audit mode":
				// A controller run with --mode audit writes nothing.
				if err := r.SetPolicies(list()); err != nil {
					rt.Fatal(err)
				}
				r.Mode = ModeAudit
				counter.mu.Lock()
				clear(counter.updated)
				counter.mu.Unlock()
				if _, _, err := r.Reconcile(ctx); err != nil {
					rt.Fatalf("%s: %v", label, err)
				}
				r.Mode = ModeEnforce
				if len(counter.updated) > 0 {
					rt.Fatalf("%s: audit mode updated %v", label, counter.updated)
				}
			}
			converge(label + " (" + op + ")")
		}

		clear(policies)
		converge("every policy removed")
		if lost := unrestored(rt, f, own, func(string) bool { return false }); len(lost) > 0 {
			rt.Fatalf("every policy removed: not back where they were: %s", strings.Join(lost, "; "))
		}
		if now := portsOf(rt, f); !maps.Equal(now, ports) {
			rt.Fatalf("every policy removed: ports %v, want %v", now, ports)
		}
		left := leftBehind(rt, f)
		if len(left) > 0 {
			rt.Fatalf("every policy removed: swarmsec left %s", strings.Join(left, ", "))
		}
	})
}

func serviceIDs(t tb, f *fake.Swarm) map[string]string {
	t.Helper()
	svcs, err := f.ServiceList(context.Background(), swarm.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, s := range svcs {
		ids[s.Spec.Name] = s.ID
	}
	return ids
}

// portsOf writes each service's published ports, by service name.
func portsOf(t tb, f *fake.Swarm) map[string]string {
	t.Helper()
	svcs, err := f.ServiceList(context.Background(), swarm.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range svcs {
		var ps []string
		if s.Spec.EndpointSpec != nil {
			for _, p := range s.Spec.EndpointSpec.Ports {
				ps = append(ps, fmt.Sprintf("%d:%d/%s %s", p.PublishedPort, p.TargetPort, p.Protocol, p.PublishMode))
			}
		}
		slices.Sort(ps)
		out[s.Spec.Name] = strings.Join(ps, ",")
	}
	return out
}

// relabel sets a service's tier, as its owner would: a service update
// that keeps everything else.
func relabel(t tb, f *fake.Swarm, name, tier string) {
	t.Helper()
	ctx := context.Background()
	s, _, err := f.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := s.Spec
	spec.Labels = maps.Clone(spec.Labels)
	spec.Labels["tier"] = tier
	if _, err := f.ServiceUpdate(ctx, s.ID, s.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// removeNetwork detaches every service from a user network and removes
// it, as an operator must; a network already gone is left so.
func removeNetwork(t tb, f *fake.Swarm, name string) {
	t.Helper()
	ctx := context.Background()
	nets, err := f.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(nets, func(n network.Summary) bool { return n.Name == name })
	if i < 0 {
		return // removed by an earlier change
	}
	n := nets[i]
	svcs, err := f.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		spec := s.Spec
		kept := slices.DeleteFunc(slices.Clone(spec.TaskTemplate.Networks), func(a swarm.NetworkAttachmentConfig) bool { return a.Target == n.ID })
		if len(kept) == len(spec.TaskTemplate.Networks) {
			continue
		}
		spec.TaskTemplate.Networks = kept
		if _, err := f.ServiceUpdate(ctx, s.ID, s.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.NetworkRemove(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
}

// leftBehind lists what swarmsec made that is still there: managed
// networks, records, services labelled with a record.
func leftBehind(t tb, f *fake.Swarm) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	nets, err := f.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		if n.Labels[v1.LabelManaged] == "true" {
			out = append(out, "network "+n.Name)
		}
	}
	cfgs, err := f.ConfigList(ctx, swarm.ConfigListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfgs {
		if strings.HasPrefix(c.Spec.Name, compile.RecordName("")) {
			out = append(out, "record "+c.Spec.Name)
		}
	}
	svcs, err := f.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		if l, ok := s.Spec.Labels[v1.LabelOriginal]; ok {
			out = append(out, fmt.Sprintf("service %s labelled %s=%s", s.Spec.Name, v1.LabelOriginal, l))
		}
	}
	return out
}
