package reconcile

import (
	"context"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// demoShop deploys the demo's shop stack as `docker stack deploy` does:
// four services on the unencrypted shop_default, web published through the
// routing mesh.
func demoShop(t *testing.T) *fake.Swarm {
	t.Helper()
	f := fake.New()
	resp, err := f.NetworkCreate(context.Background(), "shop_default", network.CreateOptions{
		Driver: "overlay", Scope: "swarm", Labels: map[string]string{v1.LabelStackNamespace: "shop"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"web", "api", "db", "cache"} {
		spec := swarm.ServiceSpec{}
		spec.Name = "shop_" + app
		spec.Labels = map[string]string{v1.LabelStackNamespace: "shop", "app": app}
		spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "swarmsec-test-app"}
		spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: resp.ID, Aliases: []string{app}}}
		if app == "web" {
			spec.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{
				{Protocol: "tcp", TargetPort: 8080, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeIngress},
			}}
		}
		f.AddService(spec)
	}
	f.ResetCalls()
	return f
}

// TestShippedManifestsOnTheDemoShop converges the demo's shop under the
// shipped manifests: every service is isolated off shop_default first (one
// rolling update each), and shop_default, which nothing uses then, is
// replaced by an encrypted network without a single rolling update.
func TestShippedManifestsOnTheDemoShop(t *testing.T) {
	set, err := manifest.Load("../../manifests")
	if err != nil || len(set.Errors) > 0 {
		t.Fatalf("manifests: %v %v", err, set.Errors)
	}
	f := demoShop(t)
	r := migReconciler(t, f, state.Policies(set.Objects)...)
	r.Limits.Force = true
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	updates := f.Calls()[dockerapi.OpServiceUpdate]
	t.Logf("the shop converged with %d service updates (rolling updates)", updates)
	if updates != 4 {
		t.Errorf("%d service updates, want 4: one per service", updates)
	}
	nets, _ := f.NetworkList(context.Background(), network.ListOptions{})
	encrypted := false
	for _, n := range nets {
		if _, ok := n.Options["encrypted"]; ok && n.Name == "shop_default" {
			encrypted = true
		}
	}
	if !encrypted {
		t.Error("shop_default was not replaced by an encrypted network")
	}
	// One network per edge: shop_api is on three, however many policies
	// name each edge.
	svcs, _ := f.ServiceList(context.Background(), swarm.ServiceListOptions{})
	managed := 0
	for _, n := range nets {
		if n.Labels[v1.LabelManaged] == "true" {
			managed++
		}
	}
	for _, s := range svcs {
		t.Logf("%s: %v", s.Spec.Name, networkNames(t, f, s))
		if s.Spec.Name == "shop_api" {
			if got := networkNames(t, f, s); len(got) != 3 {
				t.Errorf("shop_api on %v, want three networks for its three edges", got)
			}
		}
	}
	t.Logf("%d managed networks", managed)
	f.ResetCalls()
	if _, _, err := r.Reconcile(context.Background()); err != nil || f.WriteCalls() != 0 {
		t.Errorf("next pass: %v, %d writes", err, f.WriteCalls())
	}
}
