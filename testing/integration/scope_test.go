//go:build integration

package integration

import (
	"context"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/compile"
)

// scopedAPI shows swarmsec only the services and networks of the given
// stacks: other engineers test on the same engine at the same time, and a
// pass that saw their objects would change them (restore their isolated
// services, remove their managed networks). Every write swarmsec makes
// targets an object it listed, so hiding is enough.
type scopedAPI struct {
	dockerapi.API
	stacks []string
}

func (a scopedAPI) mine(name string) bool {
	return slices.ContainsFunc(a.stacks, func(s string) bool {
		return strings.Contains(name, s+"_") || strings.Contains(name, s+"-")
	})
}

func (a scopedAPI) ServiceList(ctx context.Context, o swarm.ServiceListOptions) ([]swarm.Service, error) {
	all, err := a.API.ServiceList(ctx, o)
	return slices.DeleteFunc(all, func(s swarm.Service) bool { return !a.mine(s.Spec.Name) }), err
}

func (a scopedAPI) NetworkList(ctx context.Context, o network.ListOptions) ([]network.Summary, error) {
	all, err := a.API.NetworkList(ctx, o)
	return slices.DeleteFunc(all, func(n network.Summary) bool { return !a.mine(n.Name) }), err
}

// ConfigList shows the records of the scope's services only.
func (a scopedAPI) ConfigList(ctx context.Context, o swarm.ConfigListOptions) ([]swarm.Config, error) {
	all, err := a.API.ConfigList(ctx, o)
	if err != nil {
		return nil, err
	}
	svcs, err := a.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		return nil, err
	}
	mine := map[string]bool{}
	for _, s := range svcs {
		mine[compile.RecordName(s.ID)] = true
	}
	return slices.DeleteFunc(all, func(c swarm.Config) bool { return !mine[c.Spec.Name] }), nil
}
