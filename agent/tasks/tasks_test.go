package tasks

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
)

// engine is the node's engine as discovery sees it: two local tasks on one
// overlay, a peer on another node, a bridge and the ingress network.
type engine struct{}

func (engine) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return []container.Summary{{ID: "c2"}, {ID: "c1"}, {ID: "gone"}}, nil
}

func (engine) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	if id == "gone" {
		return container.InspectResponse{}, errors.New("no such container")
	}
	c := map[string]struct{ name, svc, ip string }{"c1": {"shop_api.1.a", "shop_api", "10.0.1.3"}, "c2": {"shop_db.1.b", "shop_db", "10.0.1.5"}}[id]
	name, svc, ip := c.name, c.svc, c.ip
	r := container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{ID: id, State: &container.State{Running: true}},
		Config:            &container.Config{Labels: map[string]string{LabelService: svc, LabelTaskName: name}},
		NetworkSettings: &container.NetworkSettings{
			Networks: map[string]*network.EndpointSettings{
				"shop_net": {NetworkID: "n1", IPAddress: ip},
				"ingress":  {NetworkID: "ing", IPAddress: "10.0.0.9"},
				"bridge":   {NetworkID: "br", IPAddress: "172.17.0.2"},
			},
		},
	}
	r.NetworkSettings.SandboxKey = "/var/run/docker/netns/" + id
	return r, nil
}

func (engine) NetworkInspect(_ context.Context, id string, o network.InspectOptions) (network.Inspect, error) {
	switch id {
	case "n1":
		return network.Inspect{ID: "n1", Name: "shop_net", Driver: "overlay", Scope: "swarm",
			IPAM: network.IPAM{Config: []network.IPAMConfig{{Subnet: "10.0.1.0/24"}}},
			Services: map[string]network.ServiceInfo{
				"shop_api": {VIP: "10.0.1.2", Tasks: []network.Task{{Name: "shop_api.1.a", EndpointIP: "10.0.1.3"}, {Name: "shop_api.2.c", EndpointIP: "10.0.1.4"}}},
				"shop_db":  {Tasks: []network.Task{{Name: "shop_db.1.b", EndpointIP: "10.0.1.5"}}},
				"":         {Tasks: []network.Task{{Name: "shop_net-endpoint", EndpointIP: "10.0.1.250"}}},
			}}, nil
	case "ing":
		return network.Inspect{ID: "ing", Name: "ingress", Driver: "overlay", Scope: "swarm", Ingress: true}, nil
	}
	if o.Verbose {
		return network.Inspect{}, errors.New("not a swarm network")
	}
	return network.Inspect{ID: id, Name: "bridge", Driver: "bridge", Scope: "local"}, nil
}

func (engine) Events(context.Context, events.ListOptions) (<-chan events.Message, <-chan error) {
	return nil, nil
}

func TestDiscoverMapsServicesToAddresses(t *testing.T) {
	v, err := Discover(context.Background(), engine{})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Tasks) != 2 || v.Tasks[0].Container != "c1" || v.Tasks[0].Service != "shop_api" || v.Tasks[0].SandboxKey != "/var/run/docker/netns/c1" {
		t.Fatalf("tasks %+v", v.Tasks)
	}
	if len(v.Networks) != 1 || v.Networks["n1"] == nil {
		t.Fatalf("networks %+v: want the overlay only (not ingress, not the bridge)", v.Networks)
	}
	api := &v.Tasks[0]
	if len(api.Addrs) != 1 || api.Addrs["n1"] != netip.MustParseAddr("10.0.1.3") {
		t.Errorf("api's addresses %v", api.Addrs)
	}
	peers := v.Peers(api)
	if len(peers) != 2 || len(peers["shop_api"].Tasks) != 2 || len(peers["shop_db"].VIPs) != 0 || peers["shop_api"].VIPs[0] != netip.MustParseAddr("10.0.1.2") {
		t.Errorf("peers %+v", peers)
	}
	if svc, task, ok := v.Owner(api, netip.MustParseAddr("10.0.1.5")); !ok || svc != "shop_db" || task != "shop_db.1.b" {
		t.Errorf("owner of 10.0.1.5: %s %s %v", svc, task, ok)
	}
	if svc, task, ok := v.Owner(api, netip.MustParseAddr("10.0.1.2")); !ok || svc != "shop_api" || task != "" {
		t.Errorf("owner of the VIP: %s %s %v", svc, task, ok)
	}
	if _, _, ok := v.Owner(api, netip.MustParseAddr("10.0.1.250")); ok {
		t.Error("the network's load balancer endpoint is no service's")
	}
}

// hostEngine adds a task on the host's network, whose sandbox is the
// node's own namespace, and a container that stopped since the list.
type hostEngine struct{ engine }

func (hostEngine) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return []container.Summary{{ID: "c1"}, {ID: "h1"}, {ID: "s1"}}, nil
}

func (e hostEngine) ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error) {
	switch id {
	case "h1", "s1":
		r := container.InspectResponse{
			ContainerJSONBase: &container.ContainerJSONBase{ID: id, State: &container.State{Running: id == "h1", Pid: 42},
				HostConfig: &container.HostConfig{NetworkMode: "host"}},
			Config:          &container.Config{Labels: map[string]string{LabelService: "mon", LabelTaskName: "mon.x." + id}},
			NetworkSettings: &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"host": {NetworkID: "host"}}},
		}
		r.NetworkSettings.SandboxKey = "/var/run/docker/netns/default"
		return r, nil
	}
	return e.engine.ContainerInspect(ctx, id)
}

// A task on the host's network is listed without a namespace of its own
// (the agent never installs rules in the node's namespace on its account);
// a container that stopped since the list is left out.
func TestDiscoverLeavesTheHostNamespaceAlone(t *testing.T) {
	v, err := Discover(context.Background(), hostEngine{})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Tasks) != 2 || v.Tasks[1].Container != "h1" {
		t.Fatalf("tasks %+v", v.Tasks)
	}
	if h := v.Tasks[1]; h.SandboxKey != "" || h.Pid != 0 || len(h.Addrs) != 0 || h.Name != "mon.x.h1" {
		t.Errorf("the host-network task %+v", h)
	}
}
