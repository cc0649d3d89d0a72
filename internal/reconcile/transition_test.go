package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"pgregory.net/rapid"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/internal/dockerapi/fake"
	"github.com/swarmsec/swarmsec/internal/plan"
	"github.com/swarmsec/swarmsec/state"
)

// tb is what the helpers need of a test: *testing.T and *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// afterEachUpdate stands between a reconciler and the fake and runs check
// after every service update that went through.
type afterEachUpdate struct {
	dockerapi.API
	check func()
}

func (a *afterEachUpdate) ServiceUpdate(ctx context.Context, id string, v swarm.Version, spec swarm.ServiceSpec, o swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	resp, err := a.API.ServiceUpdate(ctx, id, v, spec, o)
	if err == nil {
		a.check()
	}
	return resp, err
}

// sharingOf returns, by service name, the names of the networks each
// service's spec attaches.
func sharingOf(t tb, f *fake.Swarm) map[string]map[string]bool {
	t.Helper()
	ctx := context.Background()
	svcs, err := f.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nets, err := f.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, n := range nets {
		names[n.ID] = n.Name
	}
	out := map[string]map[string]bool{}
	for _, s := range svcs {
		set := map[string]bool{}
		for _, a := range s.Spec.TaskTemplate.Networks {
			set[names[a.Target]] = true
		}
		out[s.Spec.Name] = set
	}
	return out
}

// looser lists the pairs that share a network now although they shared
// none before and the policies do not allow them.
func looser(now, before map[string]map[string]bool, allowed func(a, b string) bool) []string {
	var out []string
	names := make([]string, 0, len(now))
	for n := range now {
		names = append(names, n)
	}
	slices.Sort(names)
	for i, a := range names {
		for _, b := range names[i+1:] {
			if shares(now[a], now[b]) && !shares(before[a], before[b]) && !allowed(a, b) {
				out = append(out, fmt.Sprintf("%s-%s on %v", a, b, common(now[a], now[b])))
			}
		}
	}
	return out
}

func shares(x, y map[string]bool) bool { return len(common(x, y)) > 0 }

func common(x, y map[string]bool) []string {
	var out []string
	for n := range x {
		if y[n] {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// transition converges f under before, then changes the policies to after
// and converges again in passes of at most limit updates (0: no cap),
// checking the cluster after every single write. It returns the pairs
// that were ever looser than both the old state and the new policies.
func transition(t tb, f *fake.Swarm, before, after []*state.Policy, limit int) []string {
	t.Helper()
	return transitionWith(t, f, before, after, limit, nil)
}

// transitionWith is transition with the second reconciler set up by
// setup (nil: as the first).
func transitionWith(t tb, f *fake.Swarm, before, after []*state.Policy, limit int, setup func(*Reconciler)) []string {
	t.Helper()
	r := migReconciler(t, f, before...)
	r.Limits.Force = true
	ctx := context.Background()
	if _, _, err := r.Converge(ctx, nil); err != nil {
		t.Fatalf("before: %v", err)
	}
	start := sharingOf(t, f)
	if err := r.SetPolicies(after); err != nil {
		t.Fatal(err)
	}
	pl, err := r.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	desired := pl.Desired
	ids := map[string]string{}
	svcs, _ := f.ServiceList(ctx, swarm.ServiceListOptions{})
	for _, s := range svcs {
		ids[s.Spec.Name] = s.ID
	}
	allowed := func(a, b string) bool { return desired.Allowed(ids[a], ids[b]) }
	var (
		mu         sync.Mutex
		violations []string
	)
	checked := &afterEachUpdate{API: f, check: func() {
		v := looser(sharingOf(t, f), start, allowed)
		mu.Lock()
		violations = append(violations, v...)
		mu.Unlock()
	}}
	r2 := migReconciler(t, checked, after...)
	r2.Limits = r.Limits
	r2.Limits.MaxServiceUpdates = limit
	if setup != nil {
		setup(r2)
	}
	if _, _, err := r2.Converge(ctx, nil); err != nil && !errors.Is(err, plan.ErrEncryptionUnavailable) {
		t.Fatalf("after: %v", err)
	}
	if v := looser(sharingOf(t, f), start, allowed); len(v) > 0 {
		t.Fatalf("converged looser than the policies: %v", v)
	}
	return violations
}

// appServices deploys services named by their app label, each on the
// given user networks ("u", "v").
func appServices(t tb, nets map[string][]string) *fake.Swarm {
	t.Helper()
	f := fake.New()
	ids := map[string]string{}
	for _, n := range []string{"u", "v"} {
		resp, err := f.NetworkCreate(context.Background(), n, network.CreateOptions{Driver: "overlay", Scope: "swarm"})
		if err != nil {
			t.Fatal(err)
		}
		ids[n] = resp.ID
	}
	names := make([]string, 0, len(nets))
	for n := range nets {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		spec := swarm.ServiceSpec{}
		spec.Name = name
		spec.Labels = map[string]string{"app": name}
		spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "swarmsec-test-app"}
		for _, n := range nets[name] {
			spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: ids[n], Aliases: []string{name}})
		}
		f.AddService(spec)
	}
	return f
}

func in(values ...string) v1.LabelSelector {
	return v1.LabelSelector{MatchExpressions: []v1.LabelSelectorRequirement{{Key: "app", Operator: v1.OpIn, Values: values}}}
}

func ingressFrom(name string, selected v1.LabelSelector, peers ...string) *state.Policy {
	spec := v1.NetworkPolicySpec{ServiceSelector: selected, Ingress: []v1.IngressRule{}}
	if len(peers) > 0 {
		s := in(peers...)
		spec.Ingress = []v1.IngressRule{{From: []v1.Peer{{ServiceSelector: &s}}}}
	}
	return netpol(name, spec)
}

// The review's first example: q's peers change from [a, c] to [c, d]
// while a stays isolated by p; with one update a pass, d joined
// swarmsec-q while a was still on it.
func TestTransitionPeersChange(t *testing.T) {
	for _, limit := range []int{0, 1} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			f := appServices(t, map[string][]string{"t": {"u"}, "a": {"u"}, "c": {"u"}, "d": {"u"}})
			p := ingressFrom("p", in("a"), "c")
			before := []*state.Policy{ingressFrom("q", in("t"), "a", "c"), p}
			after := []*state.Policy{ingressFrom("q", in("t"), "c", "d"), p}
			if v := transition(t, f, before, after, limit); len(v) > 0 {
				t.Errorf("looser than the policies after a write: %v", v)
			}
		})
	}
}

// The review's second form: r and x share u; lock isolates r, then x
// instead: r was restored onto u while x, now isolated, was still there.
func TestTransitionIsolationMoves(t *testing.T) {
	for _, limit := range []int{0, 1} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			f := appServices(t, map[string][]string{"r": {"u"}, "x": {"u"}})
			before := []*state.Policy{ingressFrom("lock", in("r"))}
			after := []*state.Policy{ingressFrom("lock", in("x"))}
			if v := transition(t, f, before, after, limit); len(v) > 0 {
				t.Errorf("looser than the policies after a write: %v", v)
			}
		})
	}
}

// TestTransitionsNeverLooser changes random policies over random services
// and checks the invariant after every single write, capped and not.
func TestTransitionsNeverLooser(t *testing.T) {
	apps := []string{"a", "b", "c", "d", "e"}
	rapid.Check(t, func(rt *rapid.T) {
		nets := map[string][]string{}
		for _, a := range apps[:rapid.IntRange(3, len(apps)).Draw(rt, "services")] {
			on := rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"u", "v"}), 1, 2, rapid.ID[string]).Draw(rt, a+" networks")
			nets[a] = on
		}
		names := make([]string, 0, len(nets))
		for n := range nets {
			names = append(names, n)
		}
		slices.Sort(names)
		before, after := randomPolicies(rt, names, "before"), randomPolicies(rt, names, "after")
		limit := rapid.IntRange(0, 2).Draw(rt, "limit")
		f := appServices(rt, nets)
		if v := transition(rt, f, before, after, limit); len(v) > 0 {
			rt.Fatalf("looser than the policies after a write: %s", strings.Join(v, "; "))
		}
	})
}

// randomPolicies draws up to three ingress policies over the services
// named, each selecting one or two and naming up to three peers.
func randomPolicies(rt *rapid.T, names []string, label string) []*state.Policy {
	var ps []*state.Policy
	for i := range rapid.IntRange(0, 3).Draw(rt, label+" policies") {
		sel := rapid.SliceOfNDistinct(rapid.SampledFrom(names), 1, 2, rapid.ID[string]).Draw(rt, fmt.Sprintf("%s %d selects", label, i))
		peers := rapid.SliceOfNDistinct(rapid.SampledFrom(names), 0, 3, rapid.ID[string]).Draw(rt, fmt.Sprintf("%s %d peers", label, i))
		ps = append(ps, ingressFrom(fmt.Sprintf("p%d", i), in(sel...), peers...))
	}
	return ps
}
