package adopt_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
	"github.com/swarmsec/swarmsec/testing/policytest"
	"github.com/swarmsec/swarmsec/tools/adopt"
)

// pairs are the pairs of services that share a network, by name.
func pairs(t *testing.T, f *fake.Swarm) [][2]string {
	t.Helper()
	ctx := context.Background()
	svcs, _ := f.ServiceList(ctx, swarm.ServiceListOptions{})
	var out [][2]string
	for i, a := range svcs {
		for _, b := range svcs[i+1:] {
			share := slices.ContainsFunc(a.Spec.TaskTemplate.Networks, func(x swarm.NetworkAttachmentConfig) bool {
				return slices.ContainsFunc(b.Spec.TaskTemplate.Networks, func(y swarm.NetworkAttachmentConfig) bool { return x.Target == y.Target })
			})
			if share {
				p := [2]string{a.Spec.Name, b.Spec.Name}
				slices.Sort(p[:])
				out = append(out, p)
			}
		}
	}
	slices.SortFunc(out, func(x, y [2]string) int {
		if x[0] != y[0] {
			return map[bool]int{true: -1, false: 1}[x[0] < y[0]]
		}
		return map[bool]int{true: -1, false: 1}[x[1] < y[1]]
	})
	return out
}

// The manifests written from a cluster are valid, and applying them to it
// keeps who shares a network with whom, while the stack network gets
// encrypted.
func TestFromClusterKeepsConnectivity(t *testing.T) {
	f, _ := policytest.Shop(t)
	spec := swarm.ServiceSpec{}
	spec.Name = "lonely"
	spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "x"}
	f.AddService(spec)
	before := pairs(t, f)
	st := state.New()
	if err := observe.Observe(context.Background(), f, st); err != nil {
		t.Fatal(err)
	}
	var files map[string][]byte
	var err error
	st.View(func(tx state.ReadTx) { files, err = adopt.Files(tx, "") })
	if err != nil {
		t.Fatal(err)
	}
	var objs []v1.Policy
	for name, b := range files {
		o, errs := manifest.DecodeFile(name, b)
		if len(errs) > 0 {
			t.Fatalf("%s does not validate: %v\n%s", name, errs, b)
		}
		objs = append(objs, o...)
	}
	if len(objs) != 5 { // four services, one EncryptionPolicy
		t.Errorf("%d objects: %v", len(objs), files)
	}
	r := &reconcile.Reconciler{Docker: f, Store: state.New(), Mode: reconcile.ModeEnforce, Log: slog.New(slog.DiscardHandler),
		ProgressDelay: time.Millisecond, PendingDelay: time.Millisecond}
	r.Limits.Force = true
	if err := r.SetPolicies(state.Policies(objs)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, _, err := r.Converge(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if after := pairs(t, f); !slices.Equal(after, before) {
		t.Errorf("sharing before %v, after %v", before, after)
	}
	nets, _ := f.NetworkList(context.Background(), network.ListOptions{})
	for _, n := range nets {
		if n.Name == "shop_default" {
			if _, ok := n.Options["encrypted"]; !ok {
				t.Error("shop_default was not encrypted")
			}
		}
	}
}
