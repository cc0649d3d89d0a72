package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

var (
	shop         = policytest.Shop
	shopPolicies = policytest.ShopPolicies
	inspect      = policytest.Inspect
	networkNames = policytest.NetworkNames
	sel          = policytest.Sel
	peer         = policytest.Peer
	netpol       = policytest.NetPol
)

func newTestReconciler(t *testing.T, f *fake.Swarm, policies []*v1.Policy) *Reconciler {
	t.Helper()
	r := &Reconciler{Docker: f, Store: state.New(), Mode: ModeEnforce, Log: slog.New(slog.DiscardHandler)}
	if err := r.SetPolicies(policies); err != nil {
		t.Fatal(err)
	}
	return r
}

func reconcile(t *testing.T, r *Reconciler) (*plan.Plan, *Result) {
	t.Helper()
	pl, res, err := r.Reconcile(context.Background())
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	return pl, res
}

func TestReconcileIsolatesAndIsIdempotent(t *testing.T) {
	f, ids := shop(t)
	webBefore := inspect(t, f, ids["shop_web"])
	r := newTestReconciler(t, f, shopPolicies())
	r.Limits.Force = true
	f.ResetCalls()
	_, res := reconcile(t, r)
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	// A converge costs four list calls plus one call per change (the two
	// isolated services' records among them): no per-service reads.
	wantCalls := map[string]int{"ServiceList": 1, "NetworkList": 1, "NodeList": 1, "ConfigList": 1, "NetworkCreate": 2, "ConfigCreate": 2, "ServiceUpdate": 3}
	if got := f.Calls(); !maps.Equal(got, wantCalls) {
		t.Errorf("converging the shop made %v, want %v", got, wantCalls)
	}

	for name, want := range map[string][]string{
		"shop_db": {"swarmsec-db"},
		// web may reach outside and api is not isolated: their network is
		// web's gateway, no network of its own needed.
		"shop_web": {"swarmsec-web"},
		"shop_api": {"shop_default", "swarmsec-db", "swarmsec-web"},
	} {
		got := networkNames(t, f, inspect(t, f, ids[name]))
		if !slices.Equal(got, want) {
			t.Errorf("%s networks: got %v, want %v", name, got, want)
		}
	}
	// Every managed network is encrypted, not attachable, and labelled.
	nets, _ := f.NetworkList(context.Background(), network.ListOptions{})
	for _, n := range nets {
		if n.Labels[v1.LabelManaged] != "true" {
			continue
		}
		if _, ok := n.Options["encrypted"]; !ok || n.Attachable || n.Driver != "overlay" {
			t.Errorf("managed network %s: options %v attachable %t driver %s", n.Name, n.Options, n.Attachable, n.Driver)
		}
	}
	web := inspect(t, f, ids["shop_web"])
	if ports := web.Spec.EndpointSpec.Ports; len(ports) != 1 || ports[0].PublishedPort != 8080 || ports[0].PublishMode != swarm.PortConfigPublishModeHost {
		t.Errorf("web ports: %+v", ports)
	}
	// Compared as the engine sees them: as JSON.
	if jsonOf(t, web.Spec.TaskTemplate.ContainerSpec) != jsonOf(t, webBefore.Spec.TaskTemplate.ContainerSpec) ||
		jsonOf(t, web.Spec.Mode) != jsonOf(t, webBefore.Spec.Mode) {
		t.Errorf("fields swarmsec does not own changed:\n%+v\n%+v", web.Spec.TaskTemplate.ContainerSpec, webBefore.Spec.TaskTemplate.ContainerSpec)
	}
	for _, a := range web.Spec.TaskTemplate.Networks {
		if !slices.Equal(a.Aliases, []string{"web"}) {
			t.Errorf("web lost its stack alias on %s: %v", a.Target, a.Aliases)
		}
	}

	// A second pass plans nothing and writes nothing; it costs a constant
	// number of list calls, none per service.
	f.ResetCalls()
	pl, _ := reconcile(t, r)
	if len(pl.Pending()) != 0 {
		t.Errorf("second pass planned %+v", pl.Pending())
	}
	if w := f.WriteCalls(); w != 0 {
		t.Errorf("a no-op pass made %d write calls", w)
	}
	calls := f.Calls()
	total := 0
	for _, n := range calls {
		total += n
	}
	if total != 4 || calls["ServiceList"] != 1 || calls["NetworkList"] != 1 || calls["NodeList"] != 1 || calls["ConfigList"] != 1 {
		t.Errorf("a no-op pass made %v", calls)
	}
}

func TestReconcileRevertsDrift(t *testing.T) {
	f, ids := shop(t)
	r := newTestReconciler(t, f, shopPolicies())
	r.Limits.Force = true
	reconcile(t, r)

	// An operator attaches db back to the stack network by hand.
	if err := f.UpdateService(ids["shop_db"], func(spec *swarm.ServiceSpec) {
		spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: ids["shop_default"]})
	}); err != nil {
		t.Fatal(err)
	}
	pl, _ := reconcile(t, r)
	if len(pl.Pending()) != 1 || pl.Pending()[0].Name != "shop_db" {
		t.Fatalf("drift plan: %+v", pl.Pending())
	}
	if got := networkNames(t, f, inspect(t, f, ids["shop_db"])); !slices.Equal(got, []string{"swarmsec-db"}) {
		t.Errorf("db networks after drift correction: %v", got)
	}
}

func TestReconcileRestoresWhenPoliciesGo(t *testing.T) {
	f, ids := shop(t)
	before := map[string]swarm.ServiceSpec{}
	for _, name := range []string{"shop_web", "shop_api", "shop_db"} {
		before[name] = inspect(t, f, ids[name]).Spec
	}
	r := newTestReconciler(t, f, shopPolicies())
	r.Limits.Force = true
	reconcile(t, r)

	if err := r.SetPolicies(nil); err != nil {
		t.Fatal(err)
	}
	_, res := reconcile(t, r)
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	for name, spec := range before {
		got := inspect(t, f, ids[name]).Spec
		if !slices.EqualFunc(got.TaskTemplate.Networks, spec.TaskTemplate.Networks, func(a, b swarm.NetworkAttachmentConfig) bool {
			return a.Target == b.Target && slices.Equal(a.Aliases, b.Aliases)
		}) {
			t.Errorf("%s networks: got %+v, want %+v", name, got.TaskTemplate.Networks, spec.TaskTemplate.Networks)
		}
		if spec.EndpointSpec != nil && !slices.Equal(got.EndpointSpec.Ports, spec.EndpointSpec.Ports) {
			t.Errorf("%s ports: got %+v, want %+v", name, got.EndpointSpec.Ports, spec.EndpointSpec.Ports)
		}
		if _, ok := got.Labels[v1.LabelOriginal]; ok {
			t.Errorf("%s keeps %s", name, v1.LabelOriginal)
		}
	}
	nets, _ := f.NetworkList(context.Background(), network.ListOptions{})
	for _, n := range nets {
		if n.Labels[v1.LabelManaged] == "true" {
			t.Errorf("managed network %s left behind", n.Name)
		}
	}
}

func TestReconcileRetriesOutOfSequence(t *testing.T) {
	f, ids := shop(t)
	r := newTestReconciler(t, f, shopPolicies())
	r.Limits.Force = true
	bumped := false
	f.BeforeServiceUpdate = func(id string) {
		if id == ids["shop_db"] && !bumped {
			bumped = true
			// Swarm moves the service on between our read and our write.
			if err := f.UpdateService(id, func(spec *swarm.ServiceSpec) { spec.Labels["touched"] = "yes" }); err != nil {
				t.Error(err)
			}
		}
	}
	_, res := reconcile(t, r)
	if err := res.Err(); err != nil {
		t.Fatalf("an out-of-sequence update was not retried: %v", err)
	}
	db := inspect(t, f, ids["shop_db"])
	if db.Spec.Labels["touched"] != "yes" {
		t.Error("the retry lost the concurrent change")
	}
	if got := networkNames(t, f, db); !slices.Equal(got, []string{"swarmsec-db"}) {
		t.Errorf("db networks: %v", got)
	}
}

func TestAuditWritesNothing(t *testing.T) {
	t.Run("audit mode", func(t *testing.T) {
		f, _ := shop(t)
		r := newTestReconciler(t, f, shopPolicies())
		r.Mode = ModeAudit
		f.ResetCalls()
		pl, _ := reconcile(t, r)
		if f.WriteCalls() != 0 {
			t.Errorf("audit mode wrote %d times", f.WriteCalls())
		}
		if len(pl.Actions) == 0 || len(pl.Pending()) != 0 {
			t.Errorf("audit mode must report every action as audit-only: %d actions, %d pending", len(pl.Actions), len(pl.Pending()))
		}
	})
	t.Run("audit mode on an enforced cluster", func(t *testing.T) {
		f, _ := shop(t)
		r := newTestReconciler(t, f, shopPolicies())
		r.Limits.Force = true
		reconcile(t, r)
		// The same policies in audit mode: nothing would change, so there
		// is nothing to report (not "undo everything").
		r.Mode = ModeAudit
		pl, _ := reconcile(t, r)
		if len(pl.Actions) != 0 {
			t.Errorf("audit mode on a converged cluster reports %+v", pl.Actions)
		}
	})
	t.Run("audit policy", func(t *testing.T) {
		f, ids := shop(t)
		ps := shopPolicies()
		ps[0].Network.Spec.Enforcement = v1.EnforcementAudit // db
		r := newTestReconciler(t, f, ps)
		r.Limits.Force = true
		pl, _ := reconcile(t, r)
		if got := networkNames(t, f, inspect(t, f, ids["shop_db"])); !slices.Equal(got, []string{"shop_default"}) {
			t.Errorf("an audit policy changed db: %v", got)
		}
		audited := false
		for _, a := range pl.Actions {
			if a.Audit && a.Name == "shop_db" {
				audited = true
			}
		}
		if !audited {
			t.Error("the audit policy's change to db is not reported")
		}
	})
}

func TestDeprecatedSpecNetworks(t *testing.T) {
	f, _ := shop(t)
	ctx := context.Background()
	nets, _ := f.NetworkList(ctx, network.ListOptions{})
	var stackNet string
	for _, n := range nets {
		if n.Name == "shop_default" {
			stackNet = n.ID
		}
	}
	spec := swarm.ServiceSpec{}
	spec.Name = "shop_old"
	spec.Labels = map[string]string{"app": "old"}
	spec.Networks = []swarm.NetworkAttachmentConfig{{Target: stackNet}} //nolint:staticcheck // what old clients sent
	old := f.AddService(spec)

	r := newTestReconciler(t, f, []*v1.Policy{netpol("old", v1.NetworkPolicySpec{
		ServiceSelector: sel("app", "old"),
		Ingress:         []v1.IngressRule{{From: []v1.Peer{peer("app", "api")}}},
	})})
	reconcile(t, r)
	got := inspect(t, f, old.ID)
	if len(got.Spec.Networks) != 0 { //nolint:staticcheck
		t.Errorf("Spec.Networks kept: %+v", got.Spec.Networks) //nolint:staticcheck
	}
	// Its policy network is its gateway too: no member is denied outside.
	if names := networkNames(t, f, got); !slices.Equal(names, []string{"swarmsec-old"}) {
		t.Errorf("networks: %v", names)
	}
	// Restoring brings the network back, now where Swarm wants it.
	_ = r.SetPolicies(nil)
	reconcile(t, r)
	if names := networkNames(t, f, inspect(t, f, old.ID)); !slices.Equal(names, []string{"shop_default"}) {
		t.Errorf("restored networks: %v", names)
	}
}

func TestNeverTouchesWhatItDoesNotOwn(t *testing.T) {
	f, ids := shop(t)
	ctx := context.Background()
	// A network squats on the name swarmsec would use, without its label.
	squat, err := f.NetworkCreate(ctx, "swarmsec-db", network.CreateOptions{Driver: "overlay", Scope: "swarm"})
	if err != nil {
		t.Fatal(err)
	}
	// An opted-out service is never changed even when selected.
	if err := f.UpdateService(ids["shop_web"], func(spec *swarm.ServiceSpec) { spec.Labels[v1.LabelIgnore] = "true" }); err != nil {
		t.Fatal(err)
	}
	webBefore := inspect(t, f, ids["shop_web"])

	r := newTestReconciler(t, f, shopPolicies())
	r.Limits.Force = true
	pl, _ := reconcile(t, r)
	if !slices.ContainsFunc(pl.Notes, func(n string) bool { return containsAll(n, "swarmsec-db", "did not create") }) {
		t.Errorf("no note about the squatted name: %q", pl.Notes)
	}
	for _, a := range pl.Actions {
		if a.Name == "swarmsec-db" || a.Name == "shop_web" || a.Name == "ingress" {
			t.Errorf("planned %s on %s", a.Kind, a.Name)
		}
	}
	if n, err := f.NetworkInspect(ctx, squat.ID, network.InspectOptions{}); err != nil || n.Labels[v1.LabelManaged] != "" {
		t.Errorf("squatting network changed: %v %v", n, err)
	}
	if got := inspect(t, f, ids["shop_web"]); got.Version.Index != webBefore.Version.Index {
		t.Error("an opted-out service was updated")
	}
}

func TestBlastRadiusAndHold(t *testing.T) {
	t.Run("precise policies adding up are not held", func(t *testing.T) {
		f, _ := shop(t)
		r := newTestReconciler(t, f, shopPolicies())
		r.Limits = plan.DefaultLimits
		pl, _, err := r.Reconcile(context.Background())
		if err != nil || len(pl.Held) > 0 || len(pl.Holds) > 0 {
			t.Fatalf("isolating 2 of 3 services with two precise policies was held: %v %+v %v", err, pl.Held, pl.Holds)
		}
	})
	t.Run("max updates", func(t *testing.T) {
		f, _ := shop(t)
		r := newTestReconciler(t, f, shopPolicies())
		r.Limits = plan.Limits{MaxServiceUpdates: 1}
		for pass := 1; ; pass++ {
			f.ResetCalls()
			_, res := reconcile(t, r)
			if n := f.Calls()["ServiceUpdate"]; n > 1 {
				t.Fatalf("pass %d made %d service updates", pass, n)
			}
			if !res.Pending() {
				if pass < 3 {
					t.Errorf("three service updates converged in %d passes of one update", pass)
				}
				break
			}
			if pass > 5 {
				t.Fatal("did not converge")
			}
		}
	})
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A policy that selects no service isolates nothing, so it changes
// nothing, whatever peers it names.
func TestPolicySelectingNothingChangesNothing(t *testing.T) {
	f, _ := shop(t)
	r := newTestReconciler(t, f, []*v1.Policy{netpol("nobody", v1.NetworkPolicySpec{
		ServiceSelector: sel("app", "nosuch"),
		Ingress:         []v1.IngressRule{{From: []v1.Peer{peer("app", "web"), peer("app", "api")}}},
	})})
	f.ResetCalls()
	pl, _ := reconcile(t, r)
	if n := f.WriteCalls(); n != 0 || len(pl.Pending()) != 0 {
		t.Errorf("%d writes, plan %+v", n, pl.Pending())
	}
}

// Ports published on a port Swarm picks (`docker service create -p 80 -p
// 443`: published port 0) are the same ports on every pass.
func TestTargetOnlyPortsStayInSync(t *testing.T) {
	f, _ := shop(t)
	spec := swarm.ServiceSpec{}
	spec.Name = "other_proxy"
	spec.Labels = map[string]string{"app": "proxy"}
	spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "proxy"}
	spec.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{
		{Protocol: "tcp", TargetPort: 80}, {Protocol: "tcp", TargetPort: 443},
	}}
	f.AddService(spec)
	r := newTestReconciler(t, f, shopPolicies())
	r.Limits.Force = true
	reconcile(t, r)
	f.ResetCalls()
	pl, _ := reconcile(t, r)
	if n := f.WriteCalls(); n != 0 || len(pl.Pending()) != 0 {
		t.Errorf("second pass: %d writes, plan %+v", n, pl.Pending())
	}
}

// A selector that catches most of the cluster at once looks like a
// mistake (`serviceSelector: {}` merged by accident): that one policy is
// held, visibly, until its manifest carries the approval annotation.
func TestBroadSelectorHeldUntilApproved(t *testing.T) {
	f := fake.New()
	for i := range 30 {
		spec := swarm.ServiceSpec{}
		spec.Name = fmt.Sprintf("s%02d", i)
		spec.Labels = map[string]string{"app": spec.Name}
		spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "app"}
		f.AddService(spec)
	}
	everything := netpol("everything", v1.NetworkPolicySpec{ServiceSelector: v1.LabelSelector{}})
	precise := netpol("s00", v1.NetworkPolicySpec{ServiceSelector: sel("app", "s00")})
	r := newTestReconciler(t, f, []*v1.Policy{everything, precise})
	r.Limits = plan.DefaultLimits
	f.ResetCalls()
	pl, _, err := r.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.Held) != 1 || pl.Held[0].Name != "everything" || pl.Held[0].Isolates != 30 ||
		!strings.Contains(pl.Held[0].Message, v1.AnnotationApproveBroadSelector) {
		t.Fatalf("held %+v", pl.Held)
	}
	// The precise policy goes through; the held one writes nothing.
	if n := f.Calls()["ServiceUpdate"]; n != 1 {
		t.Errorf("%d service updates, want the precise policy's one", n)
	}

	approved := netpol("everything", v1.NetworkPolicySpec{ServiceSelector: v1.LabelSelector{}})
	approved.Network.Metadata.Annotations = map[string]string{v1.AnnotationApproveBroadSelector: "true"}
	if err := r.SetPolicies([]*v1.Policy{approved, precise}); err != nil {
		t.Fatal(err)
	}
	r.Limits.MaxServiceUpdates = 0
	pl, _, err = r.Reconcile(context.Background())
	if err != nil || len(pl.Held) != 0 {
		t.Fatalf("approved policy: %v, held %+v", err, pl.Held)
	}
	if n := len(f.Configs()); n != 30 {
		t.Errorf("%d services isolated, want 30", n)
	}
}
