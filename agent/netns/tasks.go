package netns

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// Swarm's labels on a task's container.
const (
	LabelServiceName = "com.docker.swarm.service.name"
	LabelServiceID   = "com.docker.swarm.service.id"
	LabelTaskID      = "com.docker.swarm.task.id"
	LabelTaskName    = "com.docker.swarm.task.name"
)

// Docker is what finding the local tasks asks of the node's engine.
type Docker interface {
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
}

// Task is one running Swarm task on this node.
type Task struct {
	ContainerID string
	TaskID      string
	// Name is the task's name (shop_api.1.xyz).
	Name      string
	ServiceID string
	Service   string
	// SandboxKey is the task's network namespace file, as the engine
	// names it (Rebase maps it to where the agent sees it).
	SandboxKey string
	// Pid is the task's main process, in the node's PID namespace: its
	// /proc/PID/ns/net is the same namespace.
	Pid int
	// Networks are its attachments, by network name.
	Networks []Attachment
}

// Attachment is a task's address on one network.
type Attachment struct {
	NetworkID string
	Network   string
	Addrs     []netip.Addr
}

// Addrs are the task's addresses on every network.
func (t *Task) Addrs() []netip.Addr {
	var out []netip.Addr
	for _, a := range t.Networks {
		out = append(out, a.Addrs...)
	}
	return out
}

// NetNSPath is where the agent opens the task's namespace: through its
// process under procRoot (the node's /proc, mounted where the agent sees
// it) when set, else its sandbox key rebased under netnsRoot. A bind mount
// of the node's /proc shows every process to come; one of the sandbox
// folder shows only the namespaces mounted before it, unless the node's
// mounts propagate (a shared /run), which they do not everywhere.
func (t *Task) NetNSPath(procRoot, netnsRoot string) (string, error) {
	if procRoot != "" && t.Pid > 0 {
		return filepath.Join(procRoot, strconv.Itoa(t.Pid), "ns", "net"), nil
	}
	if t.SandboxKey == "" {
		return "", fmt.Errorf("task %s has no network namespace of its own", t.TaskID)
	}
	return Rebase(t.SandboxKey, netnsRoot)
}

// LocalTasks lists the running Swarm tasks of this node's engine, sorted
// by service and task: the one discovery of local tasks the agent has
// (agent/tasks.Discover adds their networks' peers to it). A container
// that stops between the list and its inspect is left out; one on the
// host's network has an empty SandboxKey and no Pid, so nothing acts in
// the node's own namespace on its account.
func LocalTasks(ctx context.Context, d Docker) ([]Task, error) {
	list, err := d.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", LabelServiceName), filters.Arg("status", "running"))})
	if err != nil {
		return nil, fmt.Errorf("list local tasks: %w", err)
	}
	out := make([]Task, 0, len(list))
	for _, c := range list {
		in, err := d.ContainerInspect(ctx, c.ID)
		if err != nil || in.ContainerJSONBase == nil || (in.State != nil && !in.State.Running) {
			continue // gone, or stopped, since the list
		}
		labels := c.Labels
		if in.Config != nil && in.Config.Labels != nil {
			labels = in.Config.Labels
		}
		t := Task{ContainerID: c.ID, TaskID: labels[LabelTaskID], Name: labels[LabelTaskName], ServiceID: labels[LabelServiceID], Service: labels[LabelServiceName]}
		if in.NetworkSettings != nil {
			t.SandboxKey = in.NetworkSettings.SandboxKey
			for name, ep := range in.NetworkSettings.Networks {
				if ep == nil {
					continue
				}
				a := Attachment{NetworkID: ep.NetworkID, Network: name}
				for _, s := range []string{ep.IPAddress, ep.GlobalIPv6Address} {
					if ip, err := netip.ParseAddr(s); err == nil {
						a.Addrs = append(a.Addrs, ip.Unmap())
					}
				}
				t.Networks = append(t.Networks, a)
			}
			slices.SortFunc(t.Networks, func(x, y Attachment) int { return cmp.Compare(x.Network, y.Network) })
		}
		if in.State != nil {
			t.Pid = in.State.Pid
		}
		if in.HostConfig != nil && in.HostConfig.NetworkMode.IsHost() {
			t.SandboxKey, t.Pid = "", 0
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(x, y Task) int { return cmp.Or(cmp.Compare(x.Service, y.Service), cmp.Compare(x.TaskID, y.TaskID)) })
	return out, nil
}
