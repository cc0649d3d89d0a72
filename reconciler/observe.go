package reconciler

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/state"
)

// ErrNotManager is returned when the engine cannot manage the Swarm: swarmsec
// must run against a manager node.
var ErrNotManager = errors.New("the Docker engine is not a Swarm manager: run swarmsec on a manager node, or point DOCKER_HOST at one")

// CheckManager fails with ErrNotManager unless the engine is an active
// Swarm manager.
func CheckManager(ctx context.Context, api dockerapi.API) error {
	info, err := api.Info(ctx)
	if err != nil {
		return fmt.Errorf("docker info: %w", err)
	}
	if info.Swarm.LocalNodeState != swarm.LocalNodeStateActive || !info.Swarm.ControlAvailable {
		return fmt.Errorf("%w (swarm state %q)", ErrNotManager, info.Swarm.LocalNodeState)
	}
	return nil
}

// Observe reads services, networks and nodes from Swarm into the store: a
// constant three list calls, however many services there are.
func Observe(ctx context.Context, api dockerapi.API, st *state.Store) error {
	svcs, err := api.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	nets, err := api.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return fmt.Errorf("list networks: %w", err)
	}
	nodes, err := api.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	observed := struct {
		services []*state.Service
		networks []*state.Network
		nodes    []*state.Node
	}{}
	for _, s := range svcs {
		observed.services = append(observed.services, state.NewService(s))
	}
	for _, n := range nets {
		observed.networks = append(observed.networks, state.NewNetwork(n))
	}
	for _, n := range nodes {
		observed.nodes = append(observed.nodes, state.NewNode(n))
	}
	return st.Update(func(tx state.Tx) error {
		if err := state.ReplaceServices(tx, observed.services); err != nil {
			return err
		}
		if err := state.ReplaceNetworks(tx, observed.networks); err != nil {
			return err
		}
		return state.ReplaceNodes(tx, observed.nodes)
	})
}
