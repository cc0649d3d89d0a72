package swarmtest

import (
	"context"
	"errors"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
)

// Sweep removes from the engine cli talks to every service, container,
// network and volume that carries all of labels ("key" or "key=value";
// LabelTest when none is given), in that order so that nothing is still in
// use when its turn comes. Images are left: they are a cache. It goes on
// after an error and returns them all. Without a LabelRun=<id> filter it
// also removes what other test runs on the same engine are using.
func Sweep(ctx context.Context, cli *client.Client, labels ...string) error {
	if len(labels) == 0 {
		labels = []string{LabelTest}
	}
	f := filters.NewArgs()
	for _, l := range labels {
		f.Add("label", l)
	}
	var errs []error

	info, err := cli.Info(ctx)
	if err != nil {
		return err
	}
	if info.Swarm.ControlAvailable {
		svcs, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: f})
		errs = append(errs, err)
		for _, s := range svcs {
			errs = append(errs, RemoveServiceE(ctx, cli, s.ID))
		}
	}

	ctrs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	errs = append(errs, err)
	for _, c := range ctrs {
		err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %.12s: %w", c.ID, err))
		}
	}

	nets, err := cli.NetworkList(ctx, network.ListOptions{Filters: f})
	errs = append(errs, err)
	for _, n := range nets {
		if err := RemoveNetworkE(ctx, cli, n.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
		}
	}

	vols, err := cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	errs = append(errs, err)
	for _, v := range vols.Volumes {
		if err := cli.VolumeRemove(ctx, v.Name, true); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
		}
	}
	return errors.Join(errs...)
}
