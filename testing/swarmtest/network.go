package swarmtest

import (
	"context"
	"fmt"
	"maps"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
)

// NetworkOpt adjusts the network CreateNetwork makes.
type NetworkOpt func(*network.CreateOptions)

// Attachable lets standalone containers join the overlay network.
func Attachable() NetworkOpt { return func(o *network.CreateOptions) { o.Attachable = true } }

// Internal cuts the network off from outside: no gateway, no egress.
func Internal() NetworkOpt { return func(o *network.CreateOptions) { o.Internal = true } }

// Encrypted sets the overlay network's "encrypted" option (IPsec between
// nodes; see ENVIRONMENT.md for kernels without ESP).
func Encrypted() NetworkOpt {
	return func(o *network.CreateOptions) {
		if o.Options == nil {
			o.Options = map[string]string{}
		}
		o.Options["encrypted"] = ""
	}
}

// WithNetworkLabels adds labels to the network.
func WithNetworkLabels(l map[string]string) NetworkOpt {
	return func(o *network.CreateOptions) { maps.Copy(o.Labels, l) }
}

// WithDriver replaces the default driver, overlay.
func WithDriver(driver string) NetworkOpt {
	return func(o *network.CreateOptions) { o.Driver = driver }
}

// WithSubnet gives the network one IPv4 subnet.
func WithSubnet(cidr string) NetworkOpt {
	return func(o *network.CreateOptions) {
		o.IPAM = &network.IPAM{Config: []network.IPAMConfig{{Subnet: cidr}}}
	}
}

// CreateNetwork creates a network (overlay unless WithDriver says otherwise)
// labeled for sweeping, returns its ID and removes it when the test ends,
// retrying while tasks of removed services still hold it.
func CreateNetwork(ctx context.Context, tb testing.TB, cli *client.Client, name string, opts ...NetworkOpt) string {
	tb.Helper()
	o := network.CreateOptions{Driver: "overlay", Labels: Labels()}
	for _, opt := range opts {
		opt(&o)
	}
	resp, err := cli.NetworkCreate(ctx, name, o)
	if err != nil {
		tb.Fatalf("create network %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if err := RemoveNetworkE(context.WithoutCancel(ctx), cli, resp.ID); err != nil {
			tb.Errorf("remove network %s: %v", name, err)
		}
	})
	return resp.ID
}

// RemoveNetworkE removes a network, retrying while it has active endpoints
// (tasks of a just-removed service take a moment to go). A network already
// gone counts as removed.
func RemoveNetworkE(ctx context.Context, cli *client.Client, id string) error {
	return PollE(ctx, DefaultTimeout, func() (bool, string) {
		err := cli.NetworkRemove(ctx, id)
		if err == nil || cerrdefs.IsNotFound(err) {
			return true, ""
		}
		return false, fmt.Sprint(err)
	})
}
