package fake

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
)

type fakeContainer struct {
	summary container.Summary
	taskID  string // the attachment task Swarm creates for attachable networks
}

// AddContainer starts a container that no service owns (`docker run
// --network ...`), attached to the given networks (ID or name). Swarm
// networks must be attachable. It panics where the engine would refuse.
func (f *Swarm) AddContainer(name string, labels map[string]string, networks ...string) container.Summary {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := newHexID()
	c := &fakeContainer{summary: container.Summary{
		ID: id, Names: []string{"/" + name}, Image: "fake", ImageID: "sha256:" + newHexID(),
		Command: "/app", Created: time.Now().Unix(), Ports: []container.Port{},
		Labels: clone(labels), State: container.StateRunning, Status: "Up Less than a second",
		NetworkSettings: &container.NetworkSettingsSummary{Networks: map[string]*network.EndpointSettings{}},
		Mounts:          []container.MountPoint{},
	}}
	if c.summary.Labels == nil {
		c.summary.Labels = map[string]string{}
	}
	c.summary.HostConfig.NetworkMode = "default"
	for i, ref := range networks {
		n, err := f.findNetworkLocked(ref, "")
		if err != nil {
			panic("fake.Swarm.AddContainer: " + err.Error())
		}
		if n.inspect.Scope == "swarm" {
			if !n.inspect.Attachable {
				panic(fmt.Sprintf("fake.Swarm.AddContainer: Could not attach to network %s: rpc error: code = PermissionDenied desc = network %s not manually attachable", ref, n.inspect.ID))
			}
			if c.taskID == "" {
				c.taskID = newSwarmID()
			}
		}
		if i == 0 {
			c.summary.HostConfig.NetworkMode = n.inspect.Name
		}
		c.summary.NetworkSettings.Networks[n.inspect.Name] = endpointSettings(id, n, n.allocate())
	}
	f.containers[id] = c
	return clone(c.summary)
}

// RemoveContainer removes a container added by AddContainer.
func (f *Swarm) RemoveContainer(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.containers, id)
}

// ContainerList implements API: the containers added with AddContainer
// and, as on a real manager, the containers of the tasks running on this
// node, labelled com.docker.swarm.*. Filters: network (name, or ID or ID
// prefix), label, name and id (as regular expressions), status.
func (f *Swarm) ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error) {
	unlock, err := f.localCall(ctx, dockerapi.OpContainerList)
	if err != nil {
		return nil, err
	}
	defer unlock()
	args := options.Filters
	if err := validateFilters(args, "ancestor", "before", "expose", "exited", "health", "id", "isolation",
		"is-task", "label", "name", "network", "publish", "since", "status", "volume"); err != nil {
		return nil, err
	}
	for _, k := range []string{"ancestor", "before", "expose", "exited", "health", "isolation", "is-task", "publish", "since", "volume"} {
		if args.Contains(k) {
			return nil, errFakeFilter(k)
		}
	}
	all := f.taskContainersLocked()
	for _, c := range f.containers {
		all = append(all, clone(c.summary))
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	out := []container.Summary{}
	for _, c := range all {
		if args.Contains("id") && !args.Match("id", c.ID) ||
			args.Contains("name") && !slices.ContainsFunc(c.Names, func(n string) bool { return args.Match("name", strings.TrimPrefix(n, "/")) }) ||
			!args.MatchKVList("label", c.Labels) || !args.ExactMatch("status", c.State) {
			continue
		}
		if args.Contains("network") && !slices.ContainsFunc(args.Get("network"), func(ref string) bool {
			for name, ep := range c.NetworkSettings.Networks {
				if ref == name || strings.HasPrefix(ep.NetworkID, ref) {
					return true
				}
			}
			return false
		}) {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// taskContainersLocked returns the containers of the running tasks on this
// node, as ContainerList shows them on a manager.
func (f *Swarm) taskContainersLocked() []container.Summary {
	var out []container.Summary
	for _, id := range sortedKeys(f.tasks) {
		t := f.tasks[id]
		if t.NodeID != f.localNode || t.DesiredState != swarm.TaskStateRunning || t.Status.State != swarm.TaskStateRunning || t.Spec.ContainerSpec == nil {
			continue
		}
		svc := f.services[t.ServiceID]
		name := f.taskNameLocked(t)
		labels := map[string]string{}
		for k, v := range t.Spec.ContainerSpec.Labels {
			labels[k] = v
		}
		labels["com.docker.swarm.node.id"] = t.NodeID
		labels["com.docker.swarm.service.id"] = svc.ID
		labels["com.docker.swarm.service.name"] = svc.Spec.Name
		labels["com.docker.swarm.task"] = ""
		labels["com.docker.swarm.task.id"] = t.ID
		labels["com.docker.swarm.task.name"] = name
		c := container.Summary{
			ID: t.Status.ContainerStatus.ContainerID, Names: []string{"/" + name},
			Image: t.Spec.ContainerSpec.Image, ImageID: "sha256:" + hashHex(t.Spec.ContainerSpec.Image),
			Command: "/app", Created: t.CreatedAt.Unix(), Ports: []container.Port{}, Labels: labels,
			State: container.StateRunning, Status: "Up Less than a second",
			NetworkSettings: &container.NetworkSettingsSummary{Networks: map[string]*network.EndpointSettings{}},
			Mounts:          []container.MountPoint{},
		}
		c.HostConfig.NetworkMode = "default"
		for _, a := range t.NetworksAttachments {
			if a.Network.Spec.Ingress {
				continue // the ingress sandbox, not the container, holds this one
			}
			n := f.networks[a.Network.ID]
			c.NetworkSettings.Networks[n.inspect.Name] = endpointSettings(c.ID, n, a.Addresses[0])
		}
		out = append(out, c)
	}
	return out
}
