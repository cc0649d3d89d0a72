package tasks

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/swarmsec/swarmsec/agent/netns"
)

// Swarm's labels on a task's container.
const (
	LabelService  = netns.LabelServiceName
	LabelTaskName = netns.LabelTaskName
	LabelTaskID   = netns.LabelTaskID
)

// Engine is what discovery asks of the node's engine: Docker's client
// satisfies it; tests give a fake.
type Engine interface {
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	NetworkInspect(ctx context.Context, networkID string, options network.InspectOptions) (network.Inspect, error)
	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)
}

// Task is a Swarm task running on this node.
type Task struct {
	// Container is the container's ID.
	Container string
	// Name is the task's name (shop_api.1.xyz), Service its service's.
	Name, Service string
	// SandboxKey is the path of its network namespace.
	SandboxKey string
	// Pid is its main process on the node (in the node's PID namespace):
	// /proc/<pid>/ns/net is its network namespace too.
	Pid int
	// Addrs are its addresses on the overlay networks, by network ID.
	Addrs map[string]netip.Addr
}

// Endpoints are one service's addresses on a network.
type Endpoints struct {
	// VIPs are its virtual IPs (none in DNS round robin mode).
	VIPs []netip.Addr
	// Tasks are its tasks' addresses, by address, with the task's name.
	Tasks map[netip.Addr]string
}

// Network is an overlay network a local task is on.
type Network struct {
	ID, Name string
	Subnets  []netip.Prefix
	// Services on it, by name, with their addresses on it.
	Services map[string]*Endpoints
}

// View is what discovery found.
type View struct {
	// Tasks are the local tasks, by container ID order.
	Tasks []Task
	// Networks are the overlays they are on, by ID.
	Networks map[string]*Network
}

// Discover reads the local tasks and their networks. A network that
// cannot be read is an error: rules built without its peers would deny
// what the policies allow, or miss what they deny.
func Discover(ctx context.Context, e Engine) (*View, error) {
	local, err := netns.LocalTasks(ctx, e)
	if err != nil {
		return nil, err
	}
	v := &View{Networks: map[string]*Network{}}
	for _, lt := range local {
		t := Task{Container: lt.ContainerID, Name: lt.Name, Service: lt.Service, SandboxKey: lt.SandboxKey, Pid: lt.Pid, Addrs: map[string]netip.Addr{}}
		for _, a := range lt.Networks {
			if a.NetworkID == "" || t.SandboxKey == "" {
				continue // on the host's network: no overlay of its own
			}
			if _, seen := v.Networks[a.NetworkID]; !seen {
				n, err := inspect(ctx, e, a.NetworkID)
				if err != nil {
					return nil, err
				}
				v.Networks[a.NetworkID] = n
			}
			if v.Networks[a.NetworkID] == nil || len(a.Addrs) == 0 {
				continue // not an overlay of Swarm's
			}
			t.Addrs[a.NetworkID] = a.Addrs[0] // IPv4 first
		}
		v.Tasks = append(v.Tasks, t)
	}
	slices.SortFunc(v.Tasks, func(a, b Task) int { return strings.Compare(a.Container, b.Container) })
	maps.DeleteFunc(v.Networks, func(_ string, n *Network) bool { return n == nil })
	return v, nil
}

// inspect reads a network verbosely; it returns nil for a network that is
// no Swarm overlay (bridge, host) or is the routing mesh's ingress, whose
// traffic the published-port rules govern.
func inspect(ctx context.Context, e Engine, id string) (*Network, error) {
	ni, err := e.NetworkInspect(ctx, id, network.InspectOptions{Verbose: true, Scope: "swarm"})
	if err != nil {
		ni, err = e.NetworkInspect(ctx, id, network.InspectOptions{})
		if err == nil && ni.Scope != "swarm" {
			return nil, nil
		}
		return nil, fmt.Errorf("network %s: %w", id, err)
	}
	if ni.Driver != "overlay" || ni.Ingress {
		return nil, nil
	}
	n := &Network{ID: ni.ID, Name: ni.Name, Services: map[string]*Endpoints{}}
	for _, c := range ni.IPAM.Config {
		if p, err := netip.ParsePrefix(c.Subnet); err == nil {
			n.Subnets = append(n.Subnets, p)
		}
	}
	for name, si := range ni.Services {
		if name == "" {
			continue // the network's own load balancer endpoints
		}
		ep := &Endpoints{Tasks: map[netip.Addr]string{}}
		if a, ok := parseAddr(si.VIP); ok {
			ep.VIPs = append(ep.VIPs, a)
		}
		for _, t := range si.Tasks {
			if a, ok := parseAddr(t.EndpointIP); ok {
				ep.Tasks[a] = t.Name
			}
		}
		n.Services[name] = ep
	}
	return n, nil
}

// parseAddr reads an address written bare or with its prefix length.
func parseAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, true
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr(), true
	}
	return netip.Addr{}, false
}

// Peers are the services on the networks of t, with their addresses
// merged across those networks.
func (v *View) Peers(t *Task) map[string]*Endpoints {
	out := map[string]*Endpoints{}
	for _, id := range slices.Sorted(maps.Keys(t.Addrs)) {
		n := v.Networks[id]
		if n == nil {
			continue
		}
		for name, ep := range n.Services {
			m := out[name]
			if m == nil {
				m = &Endpoints{Tasks: map[netip.Addr]string{}}
				out[name] = m
			}
			m.VIPs = append(m.VIPs, ep.VIPs...)
			maps.Copy(m.Tasks, ep.Tasks)
		}
	}
	return out
}

// Owner finds the service and task an address belongs to on t's
// networks; task is empty for a VIP.
func (v *View) Owner(t *Task, a netip.Addr) (service, task string, ok bool) {
	for name, ep := range v.Peers(t) {
		if tn, ok := ep.Tasks[a]; ok {
			return name, tn, true
		}
		if slices.Contains(ep.VIPs, a) {
			return name, "", true
		}
	}
	return "", "", false
}

// Watch calls changed whenever a task may have started, stopped or moved
// networks, until ctx ends; the caller rediscovers. A lost event stream is
// opened again: events only say "look again", and the periodic resync
// covers the gap.
func Watch(ctx context.Context, e Engine, changed func()) {
	f := filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)), filters.Arg("event", "start"), filters.Arg("event", "die"),
		filters.Arg("type", string(events.NetworkEventType)), filters.Arg("event", "connect"), filters.Arg("event", "disconnect"),
	)
	for ctx.Err() == nil {
		msgs, errs := e.Events(ctx, events.ListOptions{Filters: f})
		func() {
			for {
				select {
				case <-ctx.Done():
					return
				case err := <-errs:
					_ = err // the stream ended: open it again; the pass after covers the gap
					return
				case m := <-msgs:
					if m.Type == events.NetworkEventType || m.Actor.Attributes[LabelService] != "" {
						changed()
					}
				}
			}
		}()
		changed() // what happened while the stream was down
		select {
		case <-ctx.Done():
		case <-timeAfter():
		}
	}
}

// timeAfter paces reconnects of the event stream.
var timeAfter = func() <-chan time.Time { return time.After(time.Second) }
