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
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// updateCounter counts, by service ID, the service updates that went
// through.
type updateCounter struct {
	dockerapi.API
	mu      sync.Mutex
	updated map[string]int
}

func (u *updateCounter) ServiceUpdate(ctx context.Context, id string, v swarm.Version, spec swarm.ServiceSpec, o swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	resp, err := u.API.ServiceUpdate(ctx, id, v, spec, o)
	if err == nil {
		u.mu.Lock()
		u.updated[id]++
		u.mu.Unlock()
	}
	return resp, err
}

// needs is what a change may roll a service for: the peers a policy
// lets it talk to (each needs a shared network), whether it is isolated,
// its outside access and its published ports.
func needs(d *compile.Desired, id string) string {
	var b strings.Builder
	for _, e := range d.Edges() {
		switch id {
		case e[0]:
			b.WriteString(e[1] + ",")
		case e[1]:
			b.WriteString(e[0] + ",")
		}
	}
	if ds := d.Services[id]; ds != nil {
		fmt.Fprintf(&b, " isolated=%v outside=%v publish=%v", ds.Isolated, ds.Outside, ds.Publish)
	}
	return b.String()
}

// sharedAliases says, for each managed network of a service, which
// other members there answer to its alias too: the alias is left off that
// network (a name must resolve to one service), so a change that makes
// it ambiguous there, or no longer, may roll the service that carries it.
func sharedAliases(d *compile.Desired, id string, alias map[string]string) string {
	ds := d.Services[id]
	if ds == nil || alias[ds.Name] == "" {
		return ""
	}
	var out []string
	for _, n := range ds.Networks {
		var with []string
		for _, m := range d.Networks[n].Members {
			if m != ds.Name && alias[m] == alias[ds.Name] {
				with = append(with, m)
			}
		}
		if len(with) > 0 {
			out = append(out, strings.Join(with, "+"))
		}
	}
	slices.Sort(out)
	return fmt.Sprintf(" alias %s shared with %v", alias[ds.Name], out)
}

// checkAliases checks that on every managed network a service answers to
// its alias exactly when no other member does, whatever came before.
func checkAliases(t tb, f *fake.Swarm, alias map[string]string) {
	t.Helper()
	ctx := context.Background()
	nets, err := f.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := f.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		if n.Labels[v1.LabelManaged] != "true" {
			continue
		}
		holders := map[string]int{}
		for _, s := range svcs {
			for _, a := range s.Spec.TaskTemplate.Networks {
				if a.Target == n.ID && alias[s.Spec.Name] != "" {
					holders[alias[s.Spec.Name]]++
				}
			}
		}
		for _, s := range svcs {
			for _, a := range s.Spec.TaskTemplate.Networks {
				if a.Target != n.ID {
					continue
				}
				var want []string
				if al := alias[s.Spec.Name]; al != "" && holders[al] == 1 {
					want = []string{al}
				}
				if !slices.Equal(a.Aliases, want) {
					t.Fatalf("%s on %s answers to %v, want %v", s.Spec.Name, n.Name, a.Aliases, want)
				}
			}
		}
	}
}

// inexactMembers are the services on a managed network that the new
// policies no longer allow: a pair of its members may not talk, or it is
// open while a member may not reach outside. A change may roll them.
func inexactMembers(t tb, f *fake.Swarm, d *compile.Desired) map[string]bool {
	t.Helper()
	ctx := context.Background()
	nets, err := f.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := f.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	members := map[string][]string{}
	for _, s := range svcs {
		for _, a := range s.Spec.TaskTemplate.Networks {
			members[a.Target] = append(members[a.Target], s.ID)
		}
	}
	out := map[string]bool{}
	for _, n := range nets {
		if n.Labels[v1.LabelManaged] != "true" {
			continue
		}
		ms := members[n.ID]
		exact := true
		for i, a := range ms {
			for _, b := range ms[i+1:] {
				exact = exact && d.Allowed(a, b)
			}
			if ds := d.Services[a]; !n.Internal && ds != nil && ds.Isolated && !ds.Outside {
				exact = false
			}
		}
		if !exact {
			for _, m := range ms {
				out[m] = true
			}
		}
	}
	return out
}

// TestChangesRollOnlyWhatTheyConcern makes random sequences of policy
// changes (add, modify, delete) over random services and counts the
// service updates of services whose allowed peers, outside access and
// ports did not change and that were on no network the change made
// inexact: there must be none. Network shapes chosen from the global
// allowed relation used to rename other policies' networks and roll their
// members. Services share aliases at random (as two stacks' api do): a
// change that makes an alias ambiguous on a network, or no longer, rolls
// the members that carry it, which is the one other roll allowed, and
// every member answers to its alias there exactly when no other does.
func TestChangesRollOnlyWhatTheyConcern(t *testing.T) {
	apps := []string{"a", "b", "c", "d", "e", "f"}
	rapid.Check(t, func(rt *rapid.T) {
		nets := map[string][]string{}
		for _, a := range apps {
			nets[a] = rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"u", "v"}), 0, 1, rapid.ID[string]).Draw(rt, a+" networks")
		}
		policy := func(name, label string) *v1.Policy {
			sel := rapid.SliceOfNDistinct(rapid.SampledFrom(apps), 1, 3, rapid.ID[string]).Draw(rt, label+" selects")
			peers := rapid.SliceOfNDistinct(rapid.SampledFrom(apps), 1, 4, rapid.ID[string]).Draw(rt, label+" peers")
			p := ingressFrom(name, in(sel...), peers...)
			if rapid.IntRange(0, 3).Draw(rt, label+" denies outside") == 0 {
				p.Network.Spec.PolicyTypes = []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress}
			}
			return p
		}
		current := map[string]*v1.Policy{}
		for i := range rapid.IntRange(1, 3).Draw(rt, "policies") {
			name := fmt.Sprintf("p%d", i)
			current[name] = policy(name, name)
		}
		f := appServices(rt, nets)
		alias := map[string]string{}
		for _, a := range apps {
			if len(nets[a]) == 0 {
				continue // no network of its own: no alias to carry
			}
			if alias[a] = rapid.SampledFrom([]string{a, "x"}).Draw(rt, a+" alias"); alias[a] != a {
				if err := f.UpdateService(a, func(spec *swarm.ServiceSpec) {
					for i := range spec.TaskTemplate.Networks {
						spec.TaskTemplate.Networks[i].Aliases = []string{alias[a]}
					}
				}); err != nil {
					rt.Fatal(err)
				}
			}
		}
		list := func() []*v1.Policy { return slices.Collect(maps.Values(current)) }
		r := migReconciler(rt, f, list()...)
		r.Limits.Force = true
		ctx := context.Background()
		if _, _, err := r.Converge(ctx, nil); err != nil {
			rt.Fatalf("first converge: %v", err)
		}
		checkAliases(rt, f, alias)
		svcs, _ := f.ServiceList(ctx, swarm.ServiceListOptions{})
		ids, names := []string{}, map[string]string{}
		for _, s := range svcs {
			ids = append(ids, s.ID)
			names[s.ID] = s.Spec.Name
		}
		slices.Sort(ids)
		before, err := r.Plan(ctx)
		if err != nil {
			rt.Fatal(err)
		}
		for step := range rapid.IntRange(1, 3).Draw(rt, "changes") {
			label := fmt.Sprintf("change %d", step)
			existing := slices.Sorted(maps.Keys(current))
			switch op := rapid.SampledFrom([]string{"add", "modify", "delete"}).Draw(rt, label); {
			case op == "add" || len(existing) == 0:
				name := fmt.Sprintf("n%d", step)
				current[name] = policy(name, label)
			case op == "modify":
				name := rapid.SampledFrom(existing).Draw(rt, label+" policy")
				current[name] = policy(name, label)
			default:
				delete(current, rapid.SampledFrom(existing).Draw(rt, label+" policy"))
			}
			counter := &updateCounter{API: f, updated: map[string]int{}}
			r2 := migReconciler(rt, counter, list()...)
			r2.Limits = r.Limits
			after, err := r2.Plan(ctx)
			if err != nil {
				rt.Fatal(err)
			}
			exempt := inexactMembers(rt, f, after.Desired)
			if _, _, err := r2.Converge(ctx, nil); err != nil {
				rt.Fatalf("%s: %v", label, err)
			}
			var needless []string
			for _, id := range slices.Sorted(maps.Keys(counter.updated)) {
				was, is := needs(before.Desired, id)+sharedAliases(before.Desired, id, alias), needs(after.Desired, id)+sharedAliases(after.Desired, id, alias)
				if was == is && !exempt[id] {
					needless = append(needless, fmt.Sprintf("%s (%d updates; needs %s)", names[id], counter.updated[id], is))
				}
			}
			if len(needless) > 0 {
				rt.Fatalf("%s rolled services it does not concern: %s", label, strings.Join(needless, ", "))
			}
			checkAliases(rt, f, alias)
			before = after
		}
	})
}
