// Package policytest builds desired policies and observed services for
// tests of the pure core and the reconciler.
package policytest

import (
	"context"
	"sort"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// Sel is a matchLabels selector from key, value pairs.
func Sel(kv ...string) v1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return v1.LabelSelector{MatchLabels: m}
}

// Peer is a service-selector peer from key, value pairs.
func Peer(kv ...string) v1.Peer {
	s := Sel(kv...)
	return v1.Peer{ServiceSelector: &s}
}

// NetPol is a stored NetworkPolicy.
func NetPol(name string, spec v1.NetworkPolicySpec) *v1.Policy {
	return &v1.Policy{Name: name, Kind: v1.KindNetworkPolicy, Generation: "g", Network: &v1.NetworkPolicy{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindNetworkPolicy},
		Metadata: v1.ObjectMeta{Name: name},
		Spec:     spec,
	}}
}

// EncPol is a stored EncryptionPolicy.
func EncPol(name string, sel v1.LabelSelector, enforcement v1.Enforcement) *v1.Policy {
	return &v1.Policy{Name: name, Kind: v1.KindEncryptionPolicy, Generation: name, Encryption: &v1.EncryptionPolicy{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindEncryptionPolicy},
		Metadata: v1.ObjectMeta{Name: name},
		Spec:     v1.EncryptionPolicySpec{NetworkSelector: sel, Enforcement: enforcement},
	}}
}

// StackService is an observed service of a stack with app=<short name>
// and the extra labels given as key, value pairs.
func StackService(stack, short string, extra ...string) *state.Service {
	labels := map[string]string{v1.LabelStackNamespace: stack, "app": short}
	for i := 0; i+1 < len(extra); i += 2 {
		labels[extra[i]] = extra[i+1]
	}
	s := swarm.Service{ID: "id-" + stack + "_" + short}
	s.Spec.Name = stack + "_" + short
	s.Spec.Labels = labels
	return state.NewService(s)
}

// Shop deploys, on a fake Swarm, the insecure shape people start from: one
// unencrypted stack network, web publishing 8080 through the routing mesh.
func Shop(t testing.TB) (*fake.Swarm, map[string]string) {
	t.Helper()
	f := fake.New()
	ctx := context.Background()
	netResp, err := f.NetworkCreate(ctx, "shop_default", network.CreateOptions{
		Driver: "overlay", Scope: "swarm", Labels: map[string]string{v1.LabelStackNamespace: "shop"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{"shop_default": netResp.ID}
	for _, app := range []string{"web", "api", "db"} {
		spec := swarm.ServiceSpec{}
		spec.Name = "shop_" + app
		spec.Labels = map[string]string{v1.LabelStackNamespace: "shop", "app": app}
		spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "shop/" + app, Env: []string{"APP=" + app}}
		spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: netResp.ID, Aliases: []string{app}}}
		if app == "web" {
			spec.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{
				{Protocol: "tcp", TargetPort: 8080, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeIngress},
				{Protocol: "tcp", TargetPort: 9090, PublishedPort: 9090, PublishMode: swarm.PortConfigPublishModeIngress},
			}}
		}
		ids[spec.Name] = f.AddService(spec).ID
	}
	return f, ids
}

// ShopPolicies isolate db (reachable from api only, no egress) and web
// (publishing 8080 in host mode, reaching api).
func ShopPolicies() []*v1.Policy {
	return []*v1.Policy{
		NetPol("db", v1.NetworkPolicySpec{
			ServiceSelector: Sel("app", "db"),
			PolicyTypes:     []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress},
			Ingress:         []v1.IngressRule{{From: []v1.Peer{Peer("app", "api")}}},
		}),
		NetPol("web", v1.NetworkPolicySpec{
			ServiceSelector: Sel("app", "web"),
			Egress:          []v1.EgressRule{{To: []v1.Peer{Peer("app", "api"), {IPBlock: &v1.IPBlock{CIDR: v1.AnyIPv4}}}}},
			Publish:         []v1.PublishedPort{{Port: 8080}},
		}),
	}
}

// Inspect returns the service with that ID, failing the test when it is
// not there.
func Inspect(t testing.TB, f *fake.Swarm, id string) swarm.Service {
	t.Helper()
	s, _, err := f.ServiceInspectWithRaw(context.Background(), id, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// NetworkNames returns the names of the networks a service is attached to.
func NetworkNames(t testing.TB, f *fake.Swarm, s swarm.Service) []string {
	t.Helper()
	var out []string
	for _, a := range s.Spec.TaskTemplate.Networks {
		n, err := f.NetworkInspect(context.Background(), a.Target, network.InspectOptions{})
		if err != nil {
			t.Fatalf("service %s: network %s: %v", s.Spec.Name, a.Target, err)
		}
		out = append(out, n.Name)
	}
	sort.Strings(out)
	return out
}
