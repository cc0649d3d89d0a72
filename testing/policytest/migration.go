package policytest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// StackNetwork is the network UnencryptedStack deploys on.
const StackNetwork = "shop_default"

// UnencryptedStack deploys, on a fake Swarm, n services shop_s0..shop_s<n-1>
// of stack shop on one unencrypted, attachable overlay network
// (StackNetwork) with labels and a driver option, each with its short name
// as alias: what an encryption migration starts from. The calls made to
// build it are forgotten.
func UnencryptedStack(t testing.TB, n int) (*fake.Swarm, []string) {
	t.Helper()
	f := fake.New()
	resp, err := f.NetworkCreate(context.Background(), StackNetwork, network.CreateOptions{
		Driver: "overlay", Scope: "swarm", Attachable: true,
		Labels:  map[string]string{v1.LabelStackNamespace: "shop", "team": "payments"},
		Options: map[string]string{"com.docker.network.driver.mtu": "1400"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range n {
		short := fmt.Sprintf("s%d", i)
		spec := swarm.ServiceSpec{}
		spec.Name = "shop_" + short
		spec.Labels = map[string]string{v1.LabelStackNamespace: "shop", "app": short}
		spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "shop/" + short}
		spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: resp.ID, Aliases: []string{short}}}
		f.AddService(spec)
		names = append(names, spec.Name)
	}
	f.ResetCalls()
	return f, names
}

// ShopEncryption is an enforce-mode EncryptionPolicy selecting the
// networks of stack shop.
func ShopEncryption() *v1.Policy {
	return EncPol("encrypt-shop", Sel(v1.LabelStackNamespace, "shop"), "")
}

// Sharing checks that every pair of the named services shares a network,
// in their specs and in the tasks Swarm wants running. One list call each
// gives a consistent snapshot.
func Sharing(f *fake.Swarm, names []string) error {
	ctx := context.Background()
	svcs, err := f.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		return err
	}
	tasks, err := f.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("desired-state", "running"))})
	if err != nil {
		return err
	}
	specNets, taskNets := map[string][]string{}, map[string][][]string{}
	byID := map[string]string{}
	for _, s := range svcs {
		if slices.Contains(names, s.Spec.Name) {
			specNets[s.Spec.Name] = targets(s.Spec.TaskTemplate.Networks)
			byID[s.ID] = s.Spec.Name
		}
	}
	for _, task := range tasks {
		if name, ok := byID[task.ServiceID]; ok {
			taskNets[name] = append(taskNets[name], targets(task.Spec.Networks))
		}
	}
	share := func(a, b []string) bool {
		return slices.ContainsFunc(a, func(x string) bool { return slices.Contains(b, x) })
	}
	for i, a := range names {
		if len(specNets[a]) == 0 {
			return fmt.Errorf("%s is on no network", a)
		}
		for _, b := range names[i+1:] {
			if !share(specNets[a], specNets[b]) {
				return fmt.Errorf("specs of %s %v and %s %v share no network", a, specNets[a], b, specNets[b])
			}
			for _, ta := range taskNets[a] {
				for _, tb := range taskNets[b] {
					if !share(ta, tb) {
						return fmt.Errorf("tasks of %s %v and %s %v share no network", a, ta, b, tb)
					}
				}
			}
		}
	}
	return nil
}

func targets(as []swarm.NetworkAttachmentConfig) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.Target)
	}
	slices.Sort(out)
	return out
}
