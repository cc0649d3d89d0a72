package dockerapi

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
)

// Operation names: the API method names, as Instrumented reports them and
// Fake counts them.
const (
	OpInfo                  = "Info"
	OpServiceList           = "ServiceList"
	OpServiceInspectWithRaw = "ServiceInspectWithRaw"
	OpServiceUpdate         = "ServiceUpdate"
	OpNetworkList           = "NetworkList"
	OpNetworkInspect        = "NetworkInspect"
	OpNetworkCreate         = "NetworkCreate"
	OpNetworkRemove         = "NetworkRemove"
	OpNodeList              = "NodeList"
	OpTaskList              = "TaskList"
	OpContainerList         = "ContainerList"
	OpConfigList            = "ConfigList"
	OpConfigCreate          = "ConfigCreate"
	OpConfigRemove          = "ConfigRemove"
	OpConfigUpdate          = "ConfigUpdate"
	OpEvents                = "Events"
	OpServiceLogs           = "ServiceLogs"
)

// Writes lists the operations that can change the Swarm.
var Writes = []string{OpServiceUpdate, OpNetworkCreate, OpNetworkRemove, OpConfigCreate, OpConfigRemove}

// LeaseWrites are the writes of the leader lease, which followers make too.
var LeaseWrites = []string{OpConfigUpdate}

// Ops lists every operation of API.
var Ops = []string{
	OpInfo, OpServiceList, OpServiceInspectWithRaw, OpServiceUpdate,
	OpNetworkList, OpNetworkInspect, OpNetworkCreate, OpNetworkRemove,
	OpNodeList, OpTaskList, OpContainerList, OpConfigList, OpConfigCreate, OpConfigRemove, OpConfigUpdate, OpEvents, OpServiceLogs,
}

// Observer receives one report per Docker API call.
type Observer interface {
	ObserveDockerCall(op string, d time.Duration, err error)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(op string, d time.Duration, err error)

// ObserveDockerCall calls f.
func (f ObserverFunc) ObserveDockerCall(op string, d time.Duration, err error) { f(op, d, err) }

// Instrumented is an API that reports every call of the API it wraps to an
// Observer, leaving arguments, results and errors untouched.
type Instrumented struct {
	api API
	obs Observer
}

var _ API = (*Instrumented)(nil)

// NewInstrumented wraps api so that obs sees every call.
func NewInstrumented(api API, obs Observer) *Instrumented {
	return &Instrumented{api: api, obs: obs}
}

func (i *Instrumented) observe(op string, start time.Time, err error) {
	i.obs.ObserveDockerCall(op, time.Since(start), err)
}

// Info implements API.
func (i *Instrumented) Info(ctx context.Context) (system.Info, error) {
	start := time.Now()
	info, err := i.api.Info(ctx)
	i.observe(OpInfo, start, err)
	return info, err
}

// ServiceList implements API.
func (i *Instrumented) ServiceList(ctx context.Context, options swarm.ServiceListOptions) ([]swarm.Service, error) {
	start := time.Now()
	services, err := i.api.ServiceList(ctx, options)
	i.observe(OpServiceList, start, err)
	return services, err
}

// ServiceInspectWithRaw implements API.
func (i *Instrumented) ServiceInspectWithRaw(ctx context.Context, serviceID string, options swarm.ServiceInspectOptions) (swarm.Service, []byte, error) {
	start := time.Now()
	service, raw, err := i.api.ServiceInspectWithRaw(ctx, serviceID, options)
	i.observe(OpServiceInspectWithRaw, start, err)
	return service, raw, err
}

// ServiceUpdate implements API.
func (i *Instrumented) ServiceUpdate(ctx context.Context, serviceID string, version swarm.Version, spec swarm.ServiceSpec, options swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	start := time.Now()
	resp, err := i.api.ServiceUpdate(ctx, serviceID, version, spec, options)
	i.observe(OpServiceUpdate, start, err)
	return resp, err
}

// NetworkList implements API.
func (i *Instrumented) NetworkList(ctx context.Context, options network.ListOptions) ([]network.Summary, error) {
	start := time.Now()
	networks, err := i.api.NetworkList(ctx, options)
	i.observe(OpNetworkList, start, err)
	return networks, err
}

// NetworkInspect implements API.
func (i *Instrumented) NetworkInspect(ctx context.Context, networkID string, options network.InspectOptions) (network.Inspect, error) {
	start := time.Now()
	nw, err := i.api.NetworkInspect(ctx, networkID, options)
	i.observe(OpNetworkInspect, start, err)
	return nw, err
}

// NetworkCreate implements API.
func (i *Instrumented) NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error) {
	start := time.Now()
	resp, err := i.api.NetworkCreate(ctx, name, options)
	i.observe(OpNetworkCreate, start, err)
	return resp, err
}

// NetworkRemove implements API.
func (i *Instrumented) NetworkRemove(ctx context.Context, networkID string) error {
	start := time.Now()
	err := i.api.NetworkRemove(ctx, networkID)
	i.observe(OpNetworkRemove, start, err)
	return err
}

// NodeList implements API.
func (i *Instrumented) NodeList(ctx context.Context, options swarm.NodeListOptions) ([]swarm.Node, error) {
	start := time.Now()
	nodes, err := i.api.NodeList(ctx, options)
	i.observe(OpNodeList, start, err)
	return nodes, err
}

// TaskList implements API.
func (i *Instrumented) TaskList(ctx context.Context, options swarm.TaskListOptions) ([]swarm.Task, error) {
	start := time.Now()
	tasks, err := i.api.TaskList(ctx, options)
	i.observe(OpTaskList, start, err)
	return tasks, err
}

// ContainerList implements API.
func (i *Instrumented) ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error) {
	start := time.Now()
	containers, err := i.api.ContainerList(ctx, options)
	i.observe(OpContainerList, start, err)
	return containers, err
}

// Events implements API. A stream has no single completion time, and the
// client reports even a failure to connect on the error channel, so Events
// is reported once, when its stream ends: d is how long it lasted and err
// the error that ended it, or nil when the caller's context ended it.
func (i *Instrumented) Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error) {
	start := time.Now()
	msgs, errs := i.api.Events(ctx, options)
	out := make(chan error, 1)
	go func() {
		defer close(out)
		err, ok := <-errs
		reported := err
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			reported = nil
		}
		i.observe(OpEvents, start, reported)
		if ok {
			out <- err
		}
	}()
	return msgs, out
}

// ConfigList implements API.
func (i *Instrumented) ConfigList(ctx context.Context, options swarm.ConfigListOptions) ([]swarm.Config, error) {
	start := time.Now()
	out, err := i.api.ConfigList(ctx, options)
	i.observe(OpConfigList, start, err)
	return out, err
}

// ConfigCreate implements API.
func (i *Instrumented) ConfigCreate(ctx context.Context, spec swarm.ConfigSpec) (swarm.ConfigCreateResponse, error) {
	start := time.Now()
	out, err := i.api.ConfigCreate(ctx, spec)
	i.observe(OpConfigCreate, start, err)
	return out, err
}

// ConfigRemove implements API.
func (i *Instrumented) ConfigRemove(ctx context.Context, id string) error {
	start := time.Now()
	err := i.api.ConfigRemove(ctx, id)
	i.observe(OpConfigRemove, start, err)
	return err
}

// ConfigUpdate implements API.
func (i *Instrumented) ConfigUpdate(ctx context.Context, id string, version swarm.Version, spec swarm.ConfigSpec) error {
	start := time.Now()
	err := i.api.ConfigUpdate(ctx, id, version, spec)
	i.observe(OpConfigUpdate, start, err)
	return err
}

// ServiceLogs implements API.
func (i *Instrumented) ServiceLogs(ctx context.Context, serviceID string, options container.LogsOptions) (io.ReadCloser, error) {
	start := time.Now()
	out, err := i.api.ServiceLogs(ctx, serviceID, options)
	i.observe(OpServiceLogs, start, err)
	return out, err
}
