package reconcile

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"pgregory.net/rapid"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// twoStacks deploys stacks s1 and s2, each with api and web on its own
// default network under their short names.
func twoStacks(t *testing.T) (*fake.Swarm, map[string]string) {
	t.Helper()
	f := fake.New()
	ids := map[string]string{}
	for _, stack := range []string{"s1", "s2"} {
		resp, err := f.NetworkCreate(context.Background(), stack+"_default", network.CreateOptions{Driver: "overlay", Scope: "swarm", Labels: map[string]string{v1.LabelStackNamespace: stack}})
		if err != nil {
			t.Fatal(err)
		}
		for _, app := range []string{"api", "web"} {
			spec := swarm.ServiceSpec{}
			spec.Name = stack + "_" + app
			spec.Labels = map[string]string{v1.LabelStackNamespace: stack, "app": app}
			spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "app"}
			spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: resp.ID, Aliases: []string{app}}}
			ids[spec.Name] = f.AddService(spec).ID
		}
	}
	return f, ids
}

// aliasesOn returns a service's aliases on the network of that name, and
// whether it is on it.
func aliasesOn(t *testing.T, f *fake.Swarm, id, name string) ([]string, bool) {
	t.Helper()
	n, err := f.NetworkInspect(context.Background(), name, network.InspectOptions{})
	if err != nil {
		t.Fatalf("network %s: %v", name, err)
	}
	for _, a := range inspect(t, f, id).Spec.TaskTemplate.Networks {
		if a.Target == n.ID {
			return a.Aliases, true
		}
	}
	return nil, false
}

// settled checks that a pass after convergence has nothing to do: no
// action, no write, nothing to look at again.
func settled(t *testing.T, f *fake.Swarm, r *Reconciler) {
	t.Helper()
	f.ResetCalls()
	pl, res := reconcile(t, r)
	if len(pl.Pending()) != 0 || f.WriteCalls() != 0 || res.RequeueAfter != 0 {
		t.Errorf("a pass after convergence planned %+v, wrote %d, looks again in %v", pl.Pending(), f.WriteCalls(), res.RequeueAfter)
	}
}

// s1's web admits every api, so "api" names two services on swarmsec-web
// and is left off there; once the policy is narrowed to s1's api, s1_web
// resolves its stack's "api" again, as the same policy applied from
// scratch gives it.
func TestNarrowedPolicyGivesTheAliasBack(t *testing.T) {
	wide := netpol("web", v1.NetworkPolicySpec{
		ServiceSelector: sel(v1.LabelStackNamespace, "s1", "app", "web"),
		Ingress:         []v1.IngressRule{{From: []v1.Peer{peer("app", "api")}}},
	})
	narrow := netpol("web", v1.NetworkPolicySpec{
		ServiceSelector: sel(v1.LabelStackNamespace, "s1", "app", "web"),
		Ingress:         []v1.IngressRule{{From: []v1.Peer{peer(v1.LabelStackNamespace, "s1", "app", "api")}}},
	})

	f, ids := twoStacks(t)
	r := newTestReconciler(t, f, []*v1.Policy{wide})
	r.Limits.Force = true
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	if got, _ := aliasesOn(t, f, ids["s1_api"], "swarmsec-web"); slices.Contains(got, "api") {
		t.Fatalf("s1_api keeps the ambiguous alias api on swarmsec-web: %v", got)
	}
	if err := r.SetPolicies([]*v1.Policy{narrow}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	got, on := aliasesOn(t, f, ids["s1_api"], "swarmsec-web")
	if !on || !slices.Equal(got, []string{"api"}) {
		t.Errorf("after narrowing, s1_api on swarmsec-web (%v) has aliases %v, want [api]", on, got)
	}
	settled(t, f, r)

	fresh, freshIDs := twoStacks(t)
	r2 := newTestReconciler(t, fresh, []*v1.Policy{narrow})
	r2.Limits.Force = true
	if _, _, err := converge(t, r2); err != nil {
		t.Fatal(err)
	}
	if want, _ := aliasesOn(t, fresh, freshIDs["s1_api"], "swarmsec-web"); !slices.Equal(got, want) {
		t.Errorf("narrowed: s1_api aliases %v; from scratch: %v", got, want)
	}
}

// An alias is a function of who is on the network now: when s2_api
// joins swarmsec-web, "api" would name two services there, so s1_api
// rolls too, to lose it (a name that resolves to either of two services
// would send s1_web to the other stack).
func TestJoinerMakingAnAliasAmbiguousRollsItsHolder(t *testing.T) {
	f, ids := twoStacks(t)
	r := newTestReconciler(t, f, []*v1.Policy{netpol("web", v1.NetworkPolicySpec{
		ServiceSelector: sel(v1.LabelStackNamespace, "s1", "app", "web"),
		Ingress:         []v1.IngressRule{{From: []v1.Peer{peer(v1.LabelStackNamespace, "s1", "app", "api")}}},
	})})
	r.Limits.Force = true
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	if got, _ := aliasesOn(t, f, ids["s1_api"], "swarmsec-web"); !slices.Equal(got, []string{"api"}) {
		t.Fatalf("s1_api aliases on swarmsec-web %v, want [api]", got)
	}
	if err := r.SetPolicies([]*v1.Policy{netpol("web", v1.NetworkPolicySpec{
		ServiceSelector: sel(v1.LabelStackNamespace, "s1", "app", "web"),
		Ingress:         []v1.IngressRule{{From: []v1.Peer{peer("app", "api")}}},
	})}); err != nil {
		t.Fatal(err)
	}
	pl, err := r.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var rolled []string
	for _, a := range pl.Pending() {
		if a.Kind == "update-service" {
			rolled = append(rolled, a.Name)
		}
	}
	if !slices.Equal(rolled, []string{"s1_api", "s2_api"}) {
		t.Errorf("s2_api joining rolls %v, want the joiner and the holder of the alias it makes ambiguous", rolled)
	}
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"s1_api", "s2_api"} {
		if got, on := aliasesOn(t, f, ids[svc], "swarmsec-web"); !on || slices.Contains(got, "api") {
			t.Errorf("%s on swarmsec-web (%v) with aliases %v, want it there without api", svc, on, got)
		}
	}
	settled(t, f, r)
}

// legacyLabel is a record as an earlier swarmsec kept it in the label,
// naming a managed network and a port the service never had.
const legacyLabel = `{"networks":[{"name":"swarmsec-db"}],"ports":[{"Protocol":"tcp","TargetPort":2222,"PublishedPort":2222,"PublishMode":"host"}]}`

// A service swarmsec never isolated that carries a record in the label
// form an earlier swarmsec wrote is left as it is: swarmsec cannot tell
// that it wrote the label, and no policy selects the service.
func TestLegacyLabelOnAServiceNoPolicySelects(t *testing.T) {
	f, ids := shop(t)
	r := newTestReconciler(t, f, shopPolicies())
	r.Limits.Force = true
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	// api is a peer no policy selects; cache is named by none.
	spec := swarm.ServiceSpec{}
	spec.Name = "shop_cache"
	spec.Labels = map[string]string{v1.LabelStackNamespace: "shop", "app": "cache", v1.LabelOriginal: legacyLabel}
	spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "shop/cache"}
	spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: ids["shop_default"], Aliases: []string{"cache"}}}
	ids["shop_cache"] = f.AddService(spec).ID
	if err := f.UpdateService(ids["shop_api"], func(spec *swarm.ServiceSpec) { spec.Labels[v1.LabelOriginal] = legacyLabel }); err != nil {
		t.Fatal(err)
	}
	before := map[string]swarm.Service{}
	for _, name := range []string{"shop_api", "shop_cache"} {
		before[name] = inspect(t, f, ids[name])
	}
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	for name, b := range before {
		got := inspect(t, f, ids[name])
		if got.Version.Index != b.Version.Index {
			t.Errorf("%s was updated: networks %v, ports %+v", name, networkNames(t, f, got), got.Spec.EndpointSpec)
		}
	}
	settled(t, f, r)
}

// A peer that opts out is left as it is, and swarmsec makes no network
// to it: the policies that name it say so, the managed networks it stays
// on are neither used nor removed, and passes settle.
func TestOptedOutPeerSettles(t *testing.T) {
	f, ids := shop(t)
	r := newTestReconciler(t, f, shopPolicies())
	r.Limits.Force = true
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	if err := f.UpdateService(ids["shop_api"], func(spec *swarm.ServiceSpec) { spec.Labels[v1.LabelIgnore] = "true" }); err != nil {
		t.Fatal(err)
	}
	apiBefore := inspect(t, f, ids["shop_api"])
	pl, _, err := converge(t, r)
	if err != nil {
		t.Fatal(err)
	}
	if got := inspect(t, f, ids["shop_api"]); got.Version.Index != apiBefore.Version.Index {
		t.Error("the opted-out service was updated")
	}
	for _, name := range []string{"shop_db", "shop_web"} {
		for _, n := range networkNames(t, f, inspect(t, f, ids[name])) {
			if n == "swarmsec-db" || n == "swarmsec-web" {
				t.Errorf("%s still shares %s with the opted-out api", name, n)
			}
		}
	}
	for _, want := range [][]string{
		{"db", "shop_api", v1.LabelIgnore},
		{"web", "shop_api", v1.LabelIgnore},
		{"swarmsec-db", "shop_api", "keeps"},
	} {
		if !slices.ContainsFunc(pl.Notes, func(n string) bool { return containsAll(n, want...) }) {
			t.Errorf("no note with %q in %q", want, pl.Notes)
		}
	}
	settled(t, f, r)

	// Back under swarmsec: api is connected to db and web again.
	if err := f.UpdateService(ids["shop_api"], func(spec *swarm.ServiceSpec) { delete(spec.Labels, v1.LabelIgnore) }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"shop_db", "shop_web"} {
		nets := networkNames(t, f, inspect(t, f, ids[name]))
		shared := slices.ContainsFunc(networkNames(t, f, inspect(t, f, ids["shop_api"])), func(n string) bool {
			return strings.HasPrefix(n, "swarmsec-") && slices.Contains(nets, n)
		})
		if !shared {
			t.Errorf("%s (%v) shares no managed network with api once it opts in again", name, nets)
		}
	}
	settled(t, f, r)
}

// A service whose record cannot be used keeps its networks when isolation
// ends (Restorable=False), managed ones too: they are not removed while
// it is on them, and passes settle instead of trying every 5 s.
func TestInvalidRecordHoldsItsNetworksWithoutRetrying(t *testing.T) {
	f, ids := shop(t)
	r := newTestReconciler(t, f, shopPolicies())
	r.Limits.Force = true
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	rec := "swarmsec-original-" + ids["shop_db"]
	var recID string
	for _, c := range f.Configs() {
		if c.Spec.Name == rec {
			recID = c.ID
		}
	}
	ctx := context.Background()
	if err := f.ConfigRemove(ctx, recID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ConfigCreate(ctx, swarm.ConfigSpec{
		Annotations: swarm.Annotations{Name: rec, Labels: map[string]string{v1.LabelManaged: "true", v1.LabelPurpose: v1.PurposeOriginal}},
		Data:        []byte("not json"),
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetPolicies(nil); err != nil {
		t.Fatal(err)
	}
	pl, _, err := converge(t, r)
	if err != nil {
		t.Fatal(err)
	}
	if got := networkNames(t, f, inspect(t, f, ids["shop_db"])); !slices.Equal(got, []string{"swarmsec-db"}) {
		t.Errorf("db networks %v, want the ones it has kept", got)
	}
	if !slices.ContainsFunc(pl.Notes, func(n string) bool { return containsAll(n, "swarmsec-db", "shop_db", "keeps") }) {
		t.Errorf("no note on the network db keeps: %q", pl.Notes)
	}
	settled(t, f, r)
}

// A restore that must wait for another service to leave its network is
// split: the service first leaves the networks it blocks. That first part
// keeps its record and label, so the rest of the restore still knows what
// to give back (b lost v and its alias for good, and was recorded as
// having nothing when isolated again).
func TestSplitRestoreKeepsTheRecord(t *testing.T) {
	f := appServices(t, map[string][]string{"a": nil, "b": {"v"}, "f": {"v"}})
	r := migReconciler(t, f, ingressFrom("p0", in("b"), "a"))
	r.Limits.Force = true
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	// p0's network now joins f, still on v, and b's restore onto v waits
	// for f to leave it while f's move onto swarmsec-p0 waits for b.
	if err := r.SetPolicies([]*v1.Policy{ingressFrom("p0", in("f"), "a")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	b := inspect(t, f, "b")
	if got := networkNames(t, f, b); !slices.Equal(got, []string{"v"}) {
		t.Errorf("b networks %v, want v back", got)
	}
	if got, _ := aliasesOn(t, f, b.ID, "v"); !slices.Equal(got, []string{"b"}) {
		t.Errorf("b aliases on v %v, want [b]", got)
	}
	kept := slices.ContainsFunc(f.Configs(), func(c swarm.Config) bool { return c.Spec.Name == "swarmsec-original-"+b.ID })
	if _, ok := b.Spec.Labels[v1.LabelOriginal]; ok || kept {
		t.Errorf("label %q, record kept %v after the restore", b.Spec.Labels[v1.LabelOriginal], kept)
	}
	settled(t, f, r)
}

// Services that opt out and records that are lost or broken, with the
// policies changed at once at random: the cluster is never looser than
// the policies after a write, passes converge, and the pass after has
// nothing to do.
func TestStayersConverge(t *testing.T) {
	apps := []string{"a", "b", "c", "d", "e"}
	rapid.Check(t, func(rt *rapid.T) {
		nets := map[string][]string{}
		for _, a := range apps {
			nets[a] = rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"u", "v"}), 0, 1, rapid.ID[string]).Draw(rt, a+" networks")
		}
		policies := func(label string) []*v1.Policy {
			var out []*v1.Policy
			for i := range rapid.IntRange(0, 3).Draw(rt, label+" policies") {
				name := fmt.Sprintf("p%d", i)
				sel := rapid.SliceOfNDistinct(rapid.SampledFrom(apps), 1, 2, rapid.ID[string]).Draw(rt, label+" "+name+" selects")
				peers := rapid.SliceOfNDistinct(rapid.SampledFrom(apps), 0, 3, rapid.ID[string]).Draw(rt, label+" "+name+" peers")
				out = append(out, ingressFrom(name, in(sel...), peers...))
			}
			return out
		}
		f := appServices(rt, nets)
		r := migReconciler(rt, f, policies("before")...)
		r.Limits.Force = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, _, err := r.Converge(ctx, nil); err != nil {
			rt.Fatalf("before: %v", err)
		}
		for _, a := range rapid.SliceOfNDistinct(rapid.SampledFrom(apps), 0, 2, rapid.ID[string]).Draw(rt, "opt out") {
			if err := f.UpdateService(a, func(spec *swarm.ServiceSpec) { spec.Labels[v1.LabelIgnore] = "true" }); err != nil {
				rt.Fatal(err)
			}
		}
		for _, c := range f.Configs() {
			switch rapid.SampledFrom([]string{"keep", "remove", "break"}).Draw(rt, "record "+c.Spec.Name) {
			case "remove":
				if err := f.ConfigRemove(ctx, c.ID); err != nil {
					rt.Fatal(err)
				}
			case "break":
				if err := f.ConfigRemove(ctx, c.ID); err != nil {
					rt.Fatal(err)
				}
				if _, err := f.ConfigCreate(ctx, swarm.ConfigSpec{Annotations: c.Spec.Annotations, Data: []byte("{")}); err != nil {
					rt.Fatal(err)
				}
			}
		}
		start := sharingOf(rt, f)
		after := policies("after")
		if err := r.SetPolicies(after); err != nil {
			rt.Fatal(err)
		}
		allowed := allowedByName(rt, r, f)
		var violations []string
		checked := &afterEachUpdate{API: f, check: func() { violations = append(violations, looser(sharingOf(rt, f), start, allowed)...) }}
		r2 := migReconciler(rt, checked, after...)
		r2.Limits = r.Limits
		r2.Limits.MaxServiceUpdates = rapid.IntRange(0, 2).Draw(rt, "limit")
		if _, _, err := r2.Converge(ctx, nil); err != nil {
			rt.Fatalf("after: %v", err)
		}
		if len(violations) > 0 {
			rt.Fatalf("looser than the policies after a write: %v", violations)
		}
		p, res, err := r2.Reconcile(ctx)
		if err != nil || len(p.Pending()) != 0 || res.RequeueAfter != 0 {
			rt.Fatalf("the pass after convergence: %v, planned %+v, looks again in %v", err, p.Pending(), res.RequeueAfter)
		}
	})
}
