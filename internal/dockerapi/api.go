// Package dockerapi is swarmsec's narrow view of the Docker Engine API: just
// the calls the controller makes. *client.Client satisfies API as it is, so
// production code passes the real client and unit tests pass the in-memory
// Swarm of package fake. It imports the API's types, never the client, so
// packages that only name the interface stay free of the client's
// dependencies.
package dockerapi

import (
	"context"
	"io"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
)

// API holds the Docker Engine calls swarmsec makes. Keep it narrow: every
// method added here must be implemented by Fake too.
type API interface {
	Info(ctx context.Context) (system.Info, error)

	ServiceList(ctx context.Context, options swarm.ServiceListOptions) ([]swarm.Service, error)
	ServiceInspectWithRaw(ctx context.Context, serviceID string, options swarm.ServiceInspectOptions) (swarm.Service, []byte, error)
	ServiceUpdate(ctx context.Context, serviceID string, version swarm.Version, spec swarm.ServiceSpec, options swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error)

	NetworkList(ctx context.Context, options network.ListOptions) ([]network.Summary, error)
	NetworkInspect(ctx context.Context, networkID string, options network.InspectOptions) (network.Inspect, error)
	NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error)
	NetworkRemove(ctx context.Context, networkID string) error

	NodeList(ctx context.Context, options swarm.NodeListOptions) ([]swarm.Node, error)
	TaskList(ctx context.Context, options swarm.TaskListOptions) ([]swarm.Task, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)

	// Configs hold the records swarmsec keeps where a service update cannot
	// reach them.
	ConfigList(ctx context.Context, options swarm.ConfigListOptions) ([]swarm.Config, error)
	ConfigCreate(ctx context.Context, config swarm.ConfigSpec) (swarm.ConfigCreateResponse, error)
	ConfigRemove(ctx context.Context, id string) error
	// ConfigUpdate changes a config's labels, carrying the version read:
	// the leader lease's compare-and-swap.
	ConfigUpdate(ctx context.Context, id string, version swarm.Version, config swarm.ConfigSpec) error

	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)

	// ServiceLogs reads a service's logs from every node (a multiplexed
	// stream, as without a TTY): how the node agents report to a manager.
	ServiceLogs(ctx context.Context, serviceID string, options container.LogsOptions) (io.ReadCloser, error)
}
