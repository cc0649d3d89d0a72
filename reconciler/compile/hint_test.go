package compile

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"pgregory.net/rapid"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/state"
)

// cluster is what the compile reads of a Swarm, kept by hand: services
// (name -> ID) on managed networks, by name.
type cluster struct {
	ids      map[string]string
	on       map[string][]string // service name -> network names
	networks map[string]*DesiredNetwork
}

func newCluster(ids map[string]string) *cluster {
	return &cluster{ids: ids, on: map[string][]string{}, networks: map[string]*DesiredNetwork{}}
}

// create makes the networks of d that do not exist yet, as swarmsec would.
func (c *cluster) create(d *Desired) {
	for name, dn := range d.Networks {
		if c.networks[name] == nil {
			c.networks[name] = dn
		}
	}
}

// move puts service name on its networks in d, as its update would.
func (c *cluster) move(d *Desired, name string) {
	c.on[name] = nil
	if ds := d.Services[c.ids[name]]; ds != nil {
		c.on[name] = slices.Clone(ds.Networks)
	}
}

// compile compiles policies over the cluster with target as the hint.
func (c *cluster) compile(t interface {
	Helper()
	Fatal(...any)
}, policies []*v1.Policy, target Hint) *Desired {
	t.Helper()
	var svcs []*state.Service
	for _, name := range slices.Sorted(maps.Keys(c.ids)) {
		s := swarm.Service{ID: c.ids[name]}
		s.Spec.Name = name
		s.Spec.Labels = map[string]string{"app": name}
		for _, n := range c.on[name] {
			s.Spec.TaskTemplate.Networks = append(s.Spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: "net-" + n})
		}
		svcs = append(svcs, state.NewService(s))
	}
	var nets []*state.Network
	for name, dn := range c.networks {
		labels := map[string]string{v1.LabelManaged: "true", v1.LabelPurpose: dn.Purpose}
		if dn.Owner != "" {
			labels[v1.LabelOwner] = dn.Owner
		}
		nets = append(nets, state.NewNetwork(network.Summary{ID: "net-" + name, Name: name, Driver: "overlay", Scope: "swarm",
			Internal: dn.Internal, Options: map[string]string{"encrypted": ""}, Labels: labels}))
	}
	st := state.New()
	if err := st.Update(func(tx state.Tx) error {
		if err := state.ReplaceServices(tx, svcs); err != nil {
			return err
		}
		if err := state.ReplaceNetworks(tx, nets); err != nil {
			return err
		}
		return state.ReplacePolicies(tx, policies)
	}); err != nil {
		t.Fatal(err)
	}
	var d *Desired
	var err error
	st.View(func(tx state.ReadTx) { d, err = Hinted(tx, nil, nil, target) })
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// shape writes a topology's networks, flags and members, one a line.
func shape(d *Desired) string {
	var lines []string
	for _, dn := range d.SortedNetworks() {
		lines = append(lines, fmt.Sprintf("%s %s owner=%s internal=%v %v", dn.Name, dn.Purpose, dn.Owner, dn.Internal, dn.Members))
	}
	return strings.Join(lines, "\n")
}

func appPolicy(name string, selected []string, peers ...string) *v1.Policy {
	spec := v1.NetworkPolicySpec{
		ServiceSelector: v1.LabelSelector{MatchExpressions: []v1.LabelSelectorRequirement{{Key: "app", Operator: v1.OpIn, Values: selected}}},
		Ingress:         []v1.IngressRule{},
	}
	if len(peers) > 0 {
		p := v1.LabelSelector{MatchExpressions: []v1.LabelSelectorRequirement{{Key: "app", Operator: v1.OpIn, Values: peers}}}
		spec.Ingress = []v1.IngressRule{{From: []v1.Peer{{ServiceSelector: &p}}}}
	}
	return netpol(name, spec)
}

// TestTargetHintSurvivesAPartialPass is issue #24's capped passes: a-e
// share swarmsec-p0 (p0 isolates a with the others as peers), then p1
// isolates e with b as its peer. Read as the hint, a network half left
// by a capped pass looked exact again (swarmsec-p0 without a is b..e,
// and c and d need nothing there), so the next pass moved a back, and
// the pass after moved it out again. With the target as the hint, every
// half-moved state compiles to the target, whichever services moved and
// in every ID order tried.
func TestTargetHintSurvivesAPartialPass(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e"}
	before := []*v1.Policy{appPolicy("p0", []string{"a"}, "b", "c", "d", "e")}
	after := append(slices.Clone(before), appPolicy("p1", []string{"e"}, "b"))
	for _, order := range orders(names) {
		ids := map[string]string{}
		for i, n := range order {
			ids[n] = fmt.Sprintf("id-%d", i)
		}
		c := newCluster(ids)
		start := c.compile(t, before, nil)
		c.create(start)
		for _, n := range names {
			c.move(start, n)
		}
		target := c.compile(t, after, nil)
		c.create(target)
		for moved := range 1 << len(names) {
			half := newCluster(ids)
			half.networks = c.networks
			for i, n := range names {
				half.on[n] = c.on[n]
				if moved&(1<<i) != 0 {
					half.move(target, n)
				}
			}
			if got := half.compile(t, after, target.Hint()); shape(got) != shape(target) {
				t.Fatalf("IDs %v, moved %05b: the target hint compiles to\n%s\nnot the target\n%s", order, moved, shape(got), shape(target))
			}
		}
	}
}

// orders are ID orders of xs: its rotations, each forwards and backwards,
// so that every service comes first and last.
func orders(xs []string) [][]string {
	var out [][]string
	for i := range xs {
		rot := slices.Concat(xs[i:], xs[:i])
		back := slices.Clone(rot)
		slices.Reverse(back)
		out = append(out, rot, back)
	}
	return out
}

// TestTargetIsAFixedPoint checks, on random policy changes, what
// convergence under the safety limits rests on: with the target as the
// hint, any mix of moved and unmoved services compiles to the target; and
// once every service has moved, today's networks compile to it too, so
// the pass after the last one finds nothing to do.
func TestTargetIsAFixedPoint(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e", "f"}
	policies := func(rt *rapid.T, label string) []*v1.Policy {
		var ps []*v1.Policy
		for i := range rapid.IntRange(0, 3).Draw(rt, label+" policies") {
			sel := rapid.SliceOfNDistinct(rapid.SampledFrom(names), 1, 3, rapid.ID[string]).Draw(rt, fmt.Sprintf("%s %d selects", label, i))
			peers := rapid.SliceOfNDistinct(rapid.SampledFrom(names), 0, 4, rapid.ID[string]).Draw(rt, fmt.Sprintf("%s %d peers", label, i))
			p := appPolicy(fmt.Sprintf("p%d", i), sel, peers...)
			if rapid.Bool().Draw(rt, fmt.Sprintf("%s %d denies outside", label, i)) {
				p.Network.Spec.PolicyTypes = []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress}
			}
			ps = append(ps, p)
		}
		return ps
	}
	rapid.Check(t, func(rt *rapid.T) {
		order := rapid.Permutation(names).Draw(rt, "ID order")
		ids := map[string]string{}
		for i, n := range order {
			ids[n] = fmt.Sprintf("id-%d", i)
		}
		c := newCluster(ids)
		before, after := policies(rt, "before"), policies(rt, "after")
		start := c.compile(rt, before, nil)
		c.create(start)
		for _, n := range names {
			c.move(start, n)
		}
		target := c.compile(rt, after, nil)
		c.create(target)
		moved := rapid.SliceOfDistinct(rapid.SampledFrom(names), rapid.ID[string]).Draw(rt, "moved")
		for _, n := range moved {
			c.move(target, n)
		}
		if got := c.compile(rt, after, target.Hint()); shape(got) != shape(target) {
			rt.Fatalf("moved %v: the target hint compiles to\n%s\nnot the target\n%s", moved, shape(got), shape(target))
		}
		for _, n := range names {
			c.move(target, n)
		}
		if got := c.compile(rt, after, nil); shape(got) != shape(target) {
			rt.Fatalf("converged, today's networks compile to\n%s\nnot the target\n%s", shape(got), shape(target))
		}
	})
}
