//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/controller"
	"github.com/swarmsec/swarmsec/reconciler/status"
	"github.com/swarmsec/swarmsec/reconciler/watch"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// TestHostileStateOnRealSwarm: a network squatting on a managed name and a
// look-alike carrying swarmsec's label are neither used nor changed; the
// records of what to restore survive a corrupted and a removed label, and
// restore still brings the original networks and ports back.
func TestHostileStateOnRealSwarm(t *testing.T) {
	ctx := context.Background()
	cli := engine(ctx, t)
	a := deployApp(ctx, t, cli, 28094, "web", "api", "db")
	web, api, db := a.svc("web"), a.svc("api"), a.svc("db")
	webBefore, webNetsBefore := serviceNetworks(ctx, t, cli, web)
	_, dbNetsBefore := serviceNetworks(ctx, t, cli, db)

	squat := swarmtest.CreateNetwork(ctx, t, cli, "swarmsec-"+a.stack+"-db", swarmtest.Attachable())
	forged := swarmtest.CreateNetwork(ctx, t, cli, "swarmsec-"+a.stack+"-web", swarmtest.Internal(),
		swarmtest.WithNetworkLabels(map[string]string{v1.LabelManaged: "true", v1.LabelPurpose: v1.PurposePolicy, v1.LabelOwner: a.stack + "-web"}))
	removeRecords(ctx, t, cli, a)

	policies := []*v1.Policy{
		policy(a.stack+"-db", v1.NetworkPolicySpec{
			ServiceSelector: *labels(v1.LabelService, db),
			PolicyTypes:     []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress},
			Ingress:         []v1.IngressRule{{From: []v1.Peer{{ServiceSelector: labels(v1.LabelService, api)}}}},
		}),
		policy(a.stack+"-web", v1.NetworkPolicySpec{
			ServiceSelector: *labels(v1.LabelService, web),
			Egress:          []v1.EgressRule{{To: []v1.Peer{{ServiceSelector: labels(v1.LabelService, api)}, {IPBlock: &v1.IPBlock{CIDR: v1.AnyIPv4}}}}},
			Publish:         []v1.PublishedPort{{Port: int(a.webPort)}},
		}),
	}
	r := newReconciler(cli, t, a, policies...)
	converge(ctx, t, cli, r, a)
	for _, s := range []string{web, db} {
		svc, nets := serviceNetworks(ctx, t, cli, s)
		if len(nets) == 0 {
			t.Fatalf("%s was left on no network", s)
		}
		for _, att := range svc.Spec.TaskTemplate.Networks {
			if att.Target == squat || att.Target == forged {
				t.Fatalf("%s was attached to a network swarmsec did not make: %v", s, nets)
			}
		}
		if got := svc.Spec.Labels[v1.LabelOriginal]; got != compile.RecordName(svc.ID) {
			t.Errorf("%s label %q, want it to name its record", s, got)
		}
	}

	// Tamper with the labels: web's corrupted, db's removed.
	if err := updateService(ctx, cli, web, func(spec *swarm.ServiceSpec) { spec.Labels[v1.LabelOriginal] = `{"networks":[]}` }); err != nil {
		t.Fatal(err)
	}
	if err := updateService(ctx, cli, db, func(spec *swarm.ServiceSpec) { delete(spec.Labels, v1.LabelOriginal) }); err != nil {
		t.Fatal(err)
	}
	converge(ctx, t, cli, r, a)

	// Isolation ends: everything comes back as it was.
	if err := r.SetPolicies(nil); err != nil {
		t.Fatal(err)
	}
	converge(ctx, t, cli, r, a)
	webAfter, webNets := serviceNetworks(ctx, t, cli, web)
	if !slices.Equal(webNets, webNetsBefore) {
		t.Errorf("web networks %v, want %v back", webNets, webNetsBefore)
	}
	if b, a := jsonString(t, webBefore.Spec.EndpointSpec.Ports), jsonString(t, webAfter.Spec.EndpointSpec.Ports); a != b {
		t.Errorf("web ports %s, want %s back", a, b)
	}
	if _, dbNets := serviceNetworks(ctx, t, cli, db); !slices.Equal(dbNets, dbNetsBefore) {
		t.Errorf("db networks %v, want %v back", dbNets, dbNetsBefore)
	}
	for id, want := range map[string]map[string]string{squat: swarmtest.Labels(), forged: nil} {
		n, err := cli.NetworkInspect(ctx, id, network.InspectOptions{})
		if err != nil {
			t.Errorf("network %s: %v", id, err)
			continue
		}
		if want != nil && n.Labels[v1.LabelManaged] != "" {
			t.Errorf("squatting network %s was labelled: %v", n.Name, n.Labels)
		}
	}
	cfgs, err := cli.ConfigList(ctx, swarm.ConfigListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfgs {
		if strings.HasPrefix(c.Spec.Name, "swarmsec-original-") && slices.ContainsFunc(a.services, func(s string) bool {
			svc, _, _ := cli.ServiceInspectWithRaw(ctx, s, swarm.ServiceInspectOptions{})
			return c.Spec.Name == compile.RecordName(svc.ID)
		}) {
			t.Errorf("record %s left after the restore", c.Spec.Name)
		}
	}
}

// removeRecords registers the removal of the records of the app's services
// that a failed test may leave.
func removeRecords(ctx context.Context, t *testing.T, cli interface {
	ServiceInspectWithRaw(context.Context, string, swarm.ServiceInspectOptions) (swarm.Service, []byte, error)
	ConfigRemove(context.Context, string) error
}, a *app) {
	var names []string
	for _, s := range a.services {
		svc, _, err := cli.ServiceInspectWithRaw(ctx, s, swarm.ServiceInspectOptions{})
		if err == nil {
			names = append(names, compile.RecordName(svc.ID))
		}
	}
	t.Cleanup(func() {
		for _, n := range names {
			_ = cli.ConfigRemove(context.WithoutCancel(ctx), n)
		}
	})
}

func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBroadSelectorHeldOnRealSwarm: `serviceSelector: {}` merged by
// mistake in a cluster of 30 services is held (reason Held, with the
// numbers and the annotation to add), while a precise policy goes through;
// with the approval annotation it isolates them all.
func TestBroadSelectorHeldOnRealSwarm(t *testing.T) {
	ctx := context.Background()
	cli := engine(ctx, t)
	a := &app{stack: "br" + swarmtest.RunID()[:6]}
	a.net = a.stack + "_default"
	removeManagedNetworks(ctx, t, cli, a.stack)
	swarmtest.CreateNetwork(ctx, t, cli, a.net, swarmtest.WithNetworkLabels(map[string]string{v1.LabelStackNamespace: a.stack}))
	for i := range 30 {
		short := fmt.Sprintf("s%02d", i)
		swarmtest.CreateService(ctx, t, cli, swarmtest.WithName(a.svc(short)), swarmtest.WithReplicas(0),
			swarmtest.WithServiceLabels(map[string]string{v1.LabelStackNamespace: a.stack, "app": short}),
			swarmtest.WithNetwork(a.net, short))
		a.services = append(a.services, a.svc(short))
	}
	removeRecords(ctx, t, cli, a)
	everything := policy(a.stack+"-all", v1.NetworkPolicySpec{ServiceSelector: v1.LabelSelector{}})
	precise := policy(a.stack+"-one", v1.NetworkPolicySpec{ServiceSelector: *labels(v1.LabelService, a.svc("s00"))})
	r := newReconciler(cli, t, a, everything, precise)
	tracker := status.NewTracker(r.Mode, r.Store)
	tracker.ObserveSnapshot(watch.Snapshot{Objects: []v1.Policy{*everything, *precise}})
	p, res, err := r.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tracker.ObservePass(controller.Pass{Start: time.Now(), Plan: p, Result: &res.Result})
	if len(p.Held) != 1 || p.Held[0].Name != everything.Name || p.Held[0].Isolates != 30 {
		t.Fatalf("held %+v", p.Held)
	}
	var held *v1.PolicyStatus
	for _, ps := range tracker.Report().Policies {
		if ps.Name == everything.Name {
			held = &ps
		}
	}
	if c := held.Ready(); c == nil || c.Reason != v1.ReasonHeld || !strings.Contains(c.Message, v1.AnnotationApproveBroadSelector) || !strings.Contains(c.Message, "30 of 30") {
		t.Errorf("held policy's condition %+v", c)
	}
	if _, nets := serviceNetworks(ctx, t, cli, a.svc("s05")); !slices.Equal(nets, []string{a.net}) {
		t.Errorf("s05 is on %v while its only policy is held", nets)
	}

	approved := *everything
	np := *approved.Network
	np.Metadata.Annotations = map[string]string{v1.AnnotationApproveBroadSelector: "true"}
	approved.Network = &np
	if err := r.SetPolicies([]*v1.Policy{&approved, precise}); err != nil {
		t.Fatal(err)
	}
	r.Limits.MaxServiceUpdates = 0
	p, _, err = r.Converge(ctx, nil)
	if err != nil || len(p.Held) != 0 {
		t.Fatalf("approved: %v, held %+v", err, p.Held)
	}
	for _, s := range a.services {
		if _, nets := serviceNetworks(ctx, t, cli, s); slices.Contains(nets, a.net) {
			t.Errorf("%s still on %s once the policy was approved", s, a.net)
		}
	}
	_ = r.SetPolicies(nil)
	if _, _, err := r.Converge(ctx, nil); err != nil {
		t.Errorf("restore: %v", err)
	}
}
