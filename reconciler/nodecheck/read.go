package nodecheck

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/pkg/stdcopy"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/plan"
)

// Logs is what reading the reports needs of a manager.
type Logs interface {
	ServiceLogs(ctx context.Context, serviceID string, options container.LogsOptions) (io.ReadCloser, error)
}

// SwarmLister lists Swarm's nodes and tasks.
type SwarmLister interface {
	NodeList(ctx context.Context, options swarm.NodeListOptions) ([]swarm.Node, error)
	TaskList(ctx context.Context, options swarm.TaskListOptions) ([]swarm.Task, error)
}

// Reader reads the agents' latest reports through a manager, at most
// every Every (a minute when 0), and keeps them between reads.
type Reader struct {
	Docker  Logs
	Service string
	// Swarm, when set, is read for the nodes and where the tasks run at
	// each read too (SwarmNodes): a node whose agent never reported is then
	// known, and which services' tasks it runs.
	Swarm SwarmLister
	Every time.Duration
	// Timeout bounds a read (20s when 0).
	Timeout time.Duration

	mu      sync.Mutex
	read    time.Time
	reports map[string]agentv1.Report
	err     error
	nodes   map[string]string
	tasks   map[string][]string
}

// SwarmNodes returns the nodes that can run tasks (ready, not drained),
// hostname by node ID, and the nodes each service's tasks run on (node IDs
// by service ID), as the last read found them (nil when Swarm is not set
// or was never read).
func (r *Reader) SwarmNodes() (nodes map[string]string, tasks map[string][]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nodes, r.tasks
}

func (r *Reader) listNodes(ctx context.Context) {
	if r.Swarm == nil {
		return
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nodes, err := r.Swarm.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return // the last list stays
	}
	out := make(map[string]string, len(nodes))
	for _, n := range nodes {
		if n.Status.State == swarm.NodeStateReady && n.Spec.Availability != swarm.NodeAvailabilityDrain {
			out[n.ID] = n.Description.Hostname
		}
	}
	r.nodes = out
	list, err := r.Swarm.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("desired-state", "running"))})
	if err != nil {
		return // the last placement stays
	}
	tasks := map[string][]string{}
	for _, t := range list {
		if t.NodeID != "" && !slices.Contains(tasks[t.ServiceID], t.NodeID) {
			tasks[t.ServiceID] = append(tasks[t.ServiceID], t.NodeID)
		}
	}
	for _, ids := range tasks {
		slices.Sort(ids)
	}
	r.tasks = tasks
}

// Reports returns the latest report of each node, by node ID, and the
// error of the last read (the reports of the read before it stay). A
// missing agent service gives no reports and no error.
func (r *Reader) Reports(ctx context.Context) (map[string]agentv1.Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	every := r.Every
	if every <= 0 {
		every = time.Minute
	}
	if len(r.reports) == 0 {
		// No agent has reported yet (just deployed): look sooner.
		every = min(every, 10*time.Second)
	}
	if !r.read.IsZero() && time.Since(r.read) < every {
		return r.reports, r.err
	}
	r.read = time.Now()
	r.listNodes(ctx)
	reports, err := r.readLocked(ctx)
	switch {
	case err == nil:
		r.reports, r.err = reports, nil
	case dockerapi.IsNotFound(err):
		r.reports, r.err = nil, nil
	default:
		// The last reports stay while they are fresh enough.
		for k, rep := range r.reports {
			if time.Since(rep.Time) > agentv1.ReportMaxAge {
				delete(r.reports, k)
			}
		}
		r.err = fmt.Errorf("node checks from service %s: %w", r.Service, err)
	}
	return r.reports, r.err
}

// Cached returns what the last read found, without reading.
func (r *Reader) Cached() (map[string]agentv1.Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reports, r.err
}

func (r *Reader) readLocked(ctx context.Context) (map[string]agentv1.Report, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rc, err := r.Docker.ServiceLogs(ctx, r.Service, container.LogsOptions{
		ShowStdout: true, ShowStderr: true, Since: time.Now().Add(-agentv1.ReportMaxAge).UTC().Format(time.RFC3339),
		Timestamps: true, Details: true,
	})
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	pr, pw := io.Pipe()
	go func() { _, err := stdcopy.StdCopy(pw, pw, rc); pw.CloseWithError(err) }()
	defer pr.Close()
	out, err := Latest(pr)
	// Reports older than ReportMaxAge are of agents gone (the engine may not
	// honour Since for every log driver).
	for k, rep := range out {
		if time.Since(rep.Time) > agentv1.ReportMaxAge {
			delete(out, k)
		}
	}
	return out, err
}

// NodeEncryption reads the reports (see Reports) and says what they say of
// each node's encryption (see Encryption): the reconciler's Nodes.
func (r *Reader) NodeEncryption(ctx context.Context) (map[string]plan.NodeEncryption, error) {
	reports, err := r.Reports(ctx)
	return Encryption(reports), err
}
