package policytest

import (
	"context"
	"fmt"
	"testing"

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
