// Package observe reads what Swarm has into the store: the first stage of a
// pass. It only reads.
package observe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"golang.org/x/sync/errgroup"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/state"
)

// Deadlines of the reads: an engine that accepts connections and never
// answers must not stop a pass, or a command, forever.
const (
	// CallTimeout bounds each list call of a pass.
	CallTimeout = 20 * time.Second
	// InfoTimeout bounds the first call a command makes.
	InfoTimeout = 10 * time.Second
)

// ErrNotManager is returned when the engine cannot manage the Swarm: swarmsec
// must run against a manager node.
var ErrNotManager = errors.New("the Docker engine is not a Swarm manager: run swarmsec on a manager node, or point DOCKER_HOST at one")

// CheckManager fails with ErrNotManager unless the engine is an active
// Swarm manager.
func CheckManager(ctx context.Context, api dockerapi.API) error {
	cctx, cancel := context.WithTimeout(ctx, InfoTimeout)
	defer cancel()
	info, err := api.Info(cctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("docker info: the Docker engine did not answer within %s: %w", InfoTimeout, err)
		}
		return fmt.Errorf("docker info: %w", err)
	}
	if info.Swarm.LocalNodeState != swarm.LocalNodeStateActive || !info.Swarm.ControlAvailable {
		return fmt.Errorf("%w (swarm state %q)", ErrNotManager, info.Swarm.LocalNodeState)
	}
	return nil
}

// Observe reads networks, services (with their task counts), nodes and the
// records of what to restore (configs) from Swarm into the store: a
// constant four list calls, however many services there are. While an
// encryption migration is in progress, or when withTasks is set (a node
// cannot carry encrypted traffic, so where tasks run matters), it also
// lists the tasks Swarm wants running.
func Observe(ctx context.Context, api dockerapi.API, st *state.Store, withTasks ...bool) error {
	// The lists go out together: the engine answers them side by side,
	// and one after the other they cost their sum (a resync at 1,000
	// services waited for each in turn). None is a snapshot of the others
	// either way; a change between them is the next pass's.
	var (
		nets    []network.Summary
		svcs    []swarm.Service
		nodes   []swarm.Node
		records []swarm.Config
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		nets, err = awaitAllocation(gctx, func(ctx context.Context) ([]network.Summary, error) {
			return call(ctx, func(ctx context.Context) ([]network.Summary, error) {
				return api.NetworkList(ctx, network.ListOptions{})
			})
		}, func(ns []network.Summary) []network.Summary { return ns })
		if err != nil {
			return fmt.Errorf("list networks: %w", err)
		}
		return nil
	})
	g.Go(func() (err error) {
		svcs, err = call(gctx, func(ctx context.Context) ([]swarm.Service, error) {
			return api.ServiceList(ctx, swarm.ServiceListOptions{Status: true})
		})
		if err != nil {
			return fmt.Errorf("list services: %w", err)
		}
		return nil
	})
	g.Go(func() (err error) {
		nodes, err = call(gctx, func(ctx context.Context) ([]swarm.Node, error) {
			return api.NodeList(ctx, swarm.NodeListOptions{})
		})
		if err != nil {
			return fmt.Errorf("list nodes: %w", err)
		}
		return nil
	})
	g.Go(func() (err error) {
		records, err = call(gctx, func(ctx context.Context) ([]swarm.Config, error) { return listRecords(ctx, api) })
		if err != nil {
			return fmt.Errorf("list configs: %w", err)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	var tasks []swarm.Task
	if migrating(nets) || slices.Contains(withTasks, true) {
		var err error
		tasks, err = call(ctx, func(ctx context.Context) ([]swarm.Task, error) {
			return api.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("desired-state", "running"))})
		})
		if err != nil {
			return fmt.Errorf("list tasks: %w", err)
		}
	}
	return st.Update(func(tx state.Tx) error {
		if err := state.ReplaceServices(tx, mapAll(svcs, state.NewService)); err != nil {
			return err
		}
		if err := state.ReplaceNetworks(tx, mapAll(nets, state.NewNetwork)); err != nil {
			return err
		}
		if err := state.ReplaceTasks(tx, mapAll(tasks, state.NewTask)); err != nil {
			return err
		}
		if err := state.ReplaceRecords(tx, mapAll(records, state.NewRecord)); err != nil {
			return err
		}
		return state.ReplaceNodes(tx, mapAll(nodes, state.NewNode))
	})
}

// listRecords lists the configs that may be records of what to restore.
func listRecords(ctx context.Context, api dockerapi.API) ([]swarm.Config, error) {
	return api.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("label", v1.LabelPurpose+"="+v1.PurposeOriginal))})
}

// migrating reports whether a temporary migration network exists.
func migrating(nets []network.Summary) bool {
	for _, n := range nets {
		if n.Labels[v1.LabelManaged] == "true" && n.Labels[v1.LabelPurpose] == v1.PurposeMigration {
			return true
		}
	}
	return false
}

func call[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	v, err := f(cctx)
	if err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		err = fmt.Errorf("the Docker engine did not answer within %s: %w", CallTimeout, err)
	}
	return v, err
}

func mapAll[T, U any](xs []T, f func(T) U) []U {
	out := make([]U, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}
