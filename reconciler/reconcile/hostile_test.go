package reconcile

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// A network squatting on the name swarmsec would use: the isolated
// service gets a network of another name, never none, and never the
// squatter, also when its update meets a newer version and is written
// again.
func TestSquattedNameIsAvoided(t *testing.T) {
	f, ids := shop(t)
	ctx := context.Background()
	squat, err := f.NetworkCreate(ctx, "swarmsec-db", network.CreateOptions{Driver: "overlay", Scope: "swarm", Attachable: true})
	if err != nil {
		t.Fatal(err)
	}
	bumped := false
	f.BeforeServiceUpdate = func(id string) {
		if id == ids["shop_db"] && !bumped {
			bumped = true
			if err := f.UpdateService(id, func(spec *swarm.ServiceSpec) { spec.Labels["touched"] = "yes" }); err != nil {
				t.Error(err)
			}
		}
	}
	r := newTestReconciler(t, f, shopPolicies())
	r.Limits.Force = true
	reconcile(t, r)
	db := inspect(t, f, ids["shop_db"])
	nets := networkNames(t, f, db)
	if len(nets) != 1 || !strings.HasPrefix(nets[0], "swarmsec-db-") {
		t.Fatalf("db networks %v, want one network named after swarmsec-db", nets)
	}
	for _, a := range db.Spec.TaskTemplate.Networks {
		if a.Target == squat.ID {
			t.Fatal("db was attached to the squatting network")
		}
	}
	f.ResetCalls()
	if pl, _ := reconcile(t, r); f.WriteCalls() != 0 || len(pl.Pending()) != 0 {
		t.Errorf("next pass: %d writes, %+v", f.WriteCalls(), pl.Pending())
	}
}

// Networks carrying swarmsec's label that swarmsec would not have made are
// neither used nor removed. One that is all swarmsec makes but for being
// internal where the policy needs it so is not used; unneeded, it is as
// swarmsec's as anything can tell, and removed.
func TestForgedManagedNetworks(t *testing.T) {
	managed := map[string]string{v1.LabelManaged: "true", v1.LabelPurpose: v1.PurposePolicy, v1.LabelOwner: "db"}
	for name, opts := range map[string]network.CreateOptions{
		"unencrypted":  {Driver: "overlay", Scope: "swarm", Internal: true, Labels: managed},
		"attachable":   {Driver: "overlay", Scope: "swarm", Internal: true, Attachable: true, Labels: managed, Options: map[string]string{"encrypted": "true"}},
		"not internal": {Driver: "overlay", Scope: "swarm", Labels: managed, Options: map[string]string{"encrypted": "true"}},
	} {
		t.Run(name, func(t *testing.T) {
			f, ids := shop(t)
			ctx := context.Background()
			forged, err := f.NetworkCreate(ctx, "swarmsec-db", opts)
			if err != nil {
				t.Fatal(err)
			}
			// And one nobody needs, which swarmsec must not remove.
			stray, err := f.NetworkCreate(ctx, "swarmsec-gone", opts)
			if err != nil {
				t.Fatal(err)
			}
			r := newTestReconciler(t, f, shopPolicies())
			r.Limits.Force = true
			pl, _ := reconcile(t, r)
			for _, a := range inspect(t, f, ids["shop_db"]).Spec.TaskTemplate.Networks {
				if a.Target == forged.ID {
					t.Fatal("db was attached to the forged network")
				}
			}
			if len(networkNames(t, f, inspect(t, f, ids["shop_db"]))) == 0 {
				t.Fatal("db was left on no network")
			}
			if name == "not internal" {
				return
			}
			for _, id := range []string{forged.ID, stray.ID} {
				if _, err := f.NetworkInspect(ctx, id, network.InspectOptions{}); err != nil {
					t.Errorf("network %s removed: %v", id, err)
				}
			}
			if !slices.ContainsFunc(pl.Notes, func(n string) bool {
				return strings.Contains(n, "swarmsec-gone") && strings.Contains(n, "neither uses nor removes")
			}) {
				t.Errorf("no note about the look-alike: %q", pl.Notes)
			}
		})
	}
}

// Stacks reuse short names: on a network two stacks' services share, a
// short alias that would name two services is left off; one that names
// one service stays.
func TestSharedShortAliasesAreDropped(t *testing.T) {
	f := fake.New()
	ctx := context.Background()
	for _, stack := range []string{"s1", "s2"} {
		resp, err := f.NetworkCreate(ctx, stack+"_default", network.CreateOptions{Driver: "overlay", Scope: "swarm", Labels: map[string]string{v1.LabelStackNamespace: stack}})
		if err != nil {
			t.Fatal(err)
		}
		for _, app := range []string{"api", "web"} {
			spec := swarm.ServiceSpec{}
			spec.Name = stack + "_" + app
			spec.Labels = map[string]string{v1.LabelStackNamespace: stack, "app": app}
			spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "app"}
			spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: resp.ID, Aliases: []string{app}}}
			f.AddService(spec)
		}
	}
	r := newTestReconciler(t, f, []*v1.Policy{netpol("api", v1.NetworkPolicySpec{
		ServiceSelector: sel("app", "api"),
		Ingress:         []v1.IngressRule{{From: []v1.Peer{peer("app", "web")}}},
	})})
	r.Limits.Force = true
	reconcile(t, r)
	nets, _ := f.NetworkList(ctx, network.ListOptions{})
	svcs, _ := f.ServiceList(ctx, swarm.ServiceListOptions{})
	for _, n := range nets {
		if n.Labels[v1.LabelManaged] != "true" {
			continue
		}
		byAlias := map[string][]string{}
		for _, s := range svcs {
			for _, a := range s.Spec.TaskTemplate.Networks {
				if a.Target == n.ID {
					for _, al := range a.Aliases {
						byAlias[al] = append(byAlias[al], s.Spec.Name)
					}
				}
			}
		}
		for al, who := range byAlias {
			if len(who) > 1 {
				t.Errorf("network %s: alias %s names %v", n.Name, al, who)
			}
		}
		if len(byAlias["api"]) != 1 {
			t.Errorf("network %s: alias api names %v, want its one api", n.Name, byAlias["api"])
		}
	}
}

// The record of what an isolated service had lives in a Swarm config, out
// of reach of service updates: a corrupted or removed label is set again,
// and restore still brings the original networks and ports back. A forged
// record never restores onto swarmsec's or Docker's own networks.
func TestOriginalRecordOutOfReach(t *testing.T) {
	for _, tamper := range []string{"corrupt", "remove"} {
		t.Run(tamper, func(t *testing.T) {
			f, ids := shop(t)
			webBefore := inspect(t, f, ids["shop_web"])
			r := newTestReconciler(t, f, shopPolicies())
			r.Limits.Force = true
			reconcile(t, r)
			rec := "swarmsec-original-" + ids["shop_web"]
			if !slices.ContainsFunc(f.Configs(), func(c swarm.Config) bool { return c.Spec.Name == rec }) {
				t.Fatalf("no record %s: %v", rec, f.Configs())
			}
			if err := f.UpdateService(ids["shop_web"], func(spec *swarm.ServiceSpec) {
				if tamper == "corrupt" {
					spec.Labels[v1.LabelOriginal] = `{"networks":[{"name":"swarmsec-db"}]`
				} else {
					delete(spec.Labels, v1.LabelOriginal)
				}
			}); err != nil {
				t.Fatal(err)
			}
			reconcile(t, r)
			if got := inspect(t, f, ids["shop_web"]).Spec.Labels[v1.LabelOriginal]; got != rec {
				t.Errorf("label %q after tampering, want %q set again", got, rec)
			}
			// Isolation ends: the original networks and ports come back.
			if err := r.SetPolicies(nil); err != nil {
				t.Fatal(err)
			}
			if _, _, err := converge(t, r); err != nil {
				t.Fatal(err)
			}
			web := inspect(t, f, ids["shop_web"])
			if got := networkNames(t, f, web); !slices.Equal(got, []string{"shop_default"}) {
				t.Errorf("web networks %v, want shop_default back", got)
			}
			if jsonOf(t, web.Spec.EndpointSpec.Ports) != jsonOf(t, webBefore.Spec.EndpointSpec.Ports) {
				t.Errorf("web ports %+v, want %+v back", web.Spec.EndpointSpec.Ports, webBefore.Spec.EndpointSpec.Ports)
			}
			if _, ok := web.Spec.Labels[v1.LabelOriginal]; ok {
				t.Error("the label stayed after the restore")
			}
			if len(f.Configs()) != 0 {
				t.Errorf("records left: %v", f.Configs())
			}
		})
	}
	t.Run("forged", func(t *testing.T) {
		f, ids := shop(t)
		r := newTestReconciler(t, f, shopPolicies())
		r.Limits.Force = true
		reconcile(t, r)
		// A record for api, which no policy isolates, naming a managed
		// network and ingress.
		data := `{"service":"` + ids["shop_api"] + `","networks":[{"name":"swarmsec-db"},{"name":"ingress"},{"name":"shop_default"}]}`
		if _, err := f.ConfigCreate(context.Background(), swarm.ConfigSpec{
			Annotations: swarm.Annotations{Name: "swarmsec-original-" + ids["shop_api"], Labels: map[string]string{v1.LabelManaged: "true", v1.LabelPurpose: v1.PurposeOriginal}},
			Data:        []byte(data),
		}); err != nil {
			t.Fatal(err)
		}
		if err := f.UpdateService(ids["shop_api"], func(spec *swarm.ServiceSpec) {
			spec.TaskTemplate.Networks = nil // as if isolated
			spec.Labels[v1.LabelOriginal] = "swarmsec-original-" + ids["shop_api"]
		}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := converge(t, r); err != nil {
			t.Fatal(err)
		}
		got := networkNames(t, f, inspect(t, f, ids["shop_api"]))
		if !slices.Equal(got, []string{"shop_default", "swarmsec-db", "swarmsec-web"}) {
			t.Errorf("api networks %v: a forged record chose them", got)
		}
	})
}
