package flows

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"

	"github.com/swarmsec/swarmsec/agent/netns"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// engine is the node's engine as the watcher reads it: containers with
// their sandbox and addresses, networks with their services.
type engine struct {
	containers []container.InspectResponse
	networks   map[string]network.Inspect
}

func (e *engine) ContainerList(_ context.Context, _ container.ListOptions) ([]container.Summary, error) {
	var out []container.Summary
	for _, c := range e.containers {
		out = append(out, container.Summary{ID: c.ID, Labels: c.Config.Labels})
	}
	return out, nil
}

func (e *engine) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	for _, c := range e.containers {
		if c.ID == id {
			return c, nil
		}
	}
	return container.InspectResponse{}, errors.New("no such container")
}

func (e *engine) NetworkInspect(_ context.Context, id string, _ network.InspectOptions) (network.Inspect, error) {
	n, ok := e.networks[id]
	if !ok {
		return network.Inspect{}, errors.New("no such network")
	}
	return n, nil
}

func task(id, service, addr string) container.InspectResponse {
	c := container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{ID: id, HostConfig: &container.HostConfig{}},
		Config: &container.Config{Labels: map[string]string{netns.LabelServiceName: service, netns.LabelTaskID: "t-" + id}}}
	c.NetworkSettings = &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"shop_default": {NetworkID: "n1", IPAddress: addr}}}
	c.NetworkSettings.SandboxKey = "/proc/self/ns/net"
	return c
}

func TestWatcherCountsEachConnectionOnceAtItsClient(t *testing.T) {
	e := &engine{
		containers: []container.InspectResponse{task("c1", "shop_web", "10.0.1.3"), task("c2", "shop_api", "10.0.1.5")},
		networks: map[string]network.Inspect{"n1": {Driver: "overlay", IPAM: network.IPAM{Config: []network.IPAMConfig{{Subnet: "10.0.1.0/24"}}}, Services: map[string]network.ServiceInfo{
			"shop_db":  {VIP: "10.0.1.9/24", Tasks: []network.Task{{EndpointIP: "10.0.1.10"}}}, // on another node
			"shop_api": {Tasks: []network.Task{{EndpointIP: "10.0.1.5"}}},
		}}},
	}
	conns := map[string][]Conn{}
	// Dump is called per task in order (sorted by service): api, then web.
	order := []string{"c2", "c1"}
	i := 0
	w := &Watcher{Docker: e, Agg: &Aggregator{}, Node: "n1",
		// Both tasks' gateway address, as their namespaces would say.
		Addrs: func(*netns.Handle) (map[netip.Addr]bool, error) {
			return map[netip.Addr]bool{netip.MustParseAddr("172.18.0.3"): true}, nil
		},
		Dump: func(int) ([]Conn, error) { c := conns[order[i%2]]; i++; return c, nil }}
	c := func(id uint32, src, dst string, port uint16, bytes uint64) Conn {
		return Conn{ID: id, Protocol: "tcp", Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), DstPort: port, Bytes: bytes, Open: true}
	}
	conns["c1"] = []Conn{
		c(1, "10.0.1.3", "10.0.1.5", 8080, 100),      // web -> api (api's namespace sees it too)
		c(2, "10.0.1.3", "10.0.1.5", 8080, 0),        // a second connection
		c(3, "172.18.0.3", "203.0.113.7", 443, 0),    // web -> outside, through its gateway
		c(4, "198.51.100.20", "172.18.0.3", 8080, 0), // a client from outside on a published port
		c(5, "127.0.0.1", "127.0.0.11", 53, 0),       // the embedded DNS
	}
	conns["c2"] = []Conn{
		c(11, "10.0.1.3", "10.0.1.5", 8080, 0),  // web's connections, server side: not counted here
		c(12, "10.0.1.5", "10.0.1.9", 5432, 0),  // api -> db's VIP
		c(13, "10.0.1.5", "10.0.1.10", 5432, 0), // api -> db's task on another node
		c(14, "10.0.1.77", "10.0.1.5", 8080, 0), // a task the inspect did not list yet: its own agent counts it
	}
	t0 := time.Now()
	if err := w.Read(context.Background(), t0); err != nil {
		t.Fatal(err)
	}
	// The same connections read again are not new; bytes count as deltas.
	conns["c1"][0].Bytes = 150
	if err := w.Read(context.Background(), t0.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	lines := w.Flush(t0.Add(time.Minute))
	if len(lines) != 1 {
		t.Fatalf("lines %+v", lines)
	}
	got := map[string]agentv1.Flow{}
	for _, f := range lines[0].Flows {
		got[f.From()+" -> "+f.Target()] = f
	}
	want := map[string]uint64{
		"shop_web -> shop_api:8080/tcp":                2,
		"shop_web -> 203.0.113.0/24:443/tcp":           1,
		"outside 198.51.100.0/24 -> shop_web:8080/tcp": 1,
		"shop_api -> shop_db:5432/tcp":                 2,
	}
	if len(got) != len(want) {
		t.Errorf("flows %v", got)
	}
	for k, n := range want {
		if got[k].Connections != n {
			t.Errorf("%s: %d connections, want %d (all: %v)", k, got[k].Connections, n, got)
		}
	}
	if f := got["shop_web -> shop_api:8080/tcp"]; f.Bytes != 150 || f.Open != 2 {
		t.Errorf("web -> api bytes %d open %d, want 150 and 2", f.Bytes, f.Open)
	}
	// A task gone takes its remembered connections with it.
	e.containers = e.containers[1:]
	order = []string{"c2", "c2"}
	if err := w.Read(context.Background(), t0.Add(20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.seen["c1"]; ok || len(w.seen) != 1 {
		t.Errorf("seen %v", w.seen)
	}
}

// A task holding more connections than the bound is not dumped: its
// connections are counted as dropped, the other tasks are read.
func TestWatcherSkipsATaskOverTheBound(t *testing.T) {
	e := &engine{containers: []container.InspectResponse{task("c1", "shop_web", "10.0.1.3"), task("c2", "shop_api", "10.0.1.5")},
		networks: map[string]network.Inspect{}}
	counts := []int{50000, 3} // api first
	i, dumps := 0, 0
	w := &Watcher{Docker: e, Agg: &Aggregator{}, Node: "n1", MaxConns: 1000,
		Addrs: func(*netns.Handle) (map[netip.Addr]bool, error) { return map[netip.Addr]bool{}, nil },
		Count: func(*netns.Handle) (int, error) { n := counts[i%2]; i++; return n, nil },
		Dump: func(int) ([]Conn, error) {
			dumps++
			return []Conn{{ID: 1, Protocol: "tcp", Src: netip.MustParseAddr("10.0.1.3"), Dst: netip.MustParseAddr("10.0.1.5"), DstPort: 80}}, nil
		}}
	err := w.Read(context.Background(), time.Now())
	if err == nil || !strings.Contains(err.Error(), "50000 connections") {
		t.Errorf("error %v", err)
	}
	lines := w.Flush(time.Now())
	if dumps != 1 || len(lines) != 1 || lines[0].Dropped != 50000 || len(lines[0].Flows) != 1 {
		t.Errorf("%d dumps, lines %+v", dumps, lines)
	}
}

func TestBlock(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7": "203.0.113.0/24", "::ffff:203.0.113.7": "203.0.113.0/24", "2001:db8:1:2:3::9": "2001:db8:1:2::/64",
	} {
		if got := Block(netip.MustParseAddr(in)); got != want {
			t.Errorf("Block(%s) = %s, want %s", in, got, want)
		}
	}
}

// One-way UDP (statsd, syslog, GELF) never gets a reply: to a service
// of the Swarm it is kept, marked unanswered, so init --from-traffic does
// not cut it; unanswered UDP outside the Swarm and an unanswered TCP
// attempt (the destination's rules may have dropped it) count nothing.
func TestWatcherKeepsOneWayUDPToAServiceMarked(t *testing.T) {
	e := &engine{
		containers: []container.InspectResponse{task("c1", "shop_web", "10.0.1.3")},
		networks: map[string]network.Inspect{"n1": {Driver: "overlay", IPAM: network.IPAM{Config: []network.IPAMConfig{{Subnet: "10.0.1.0/24"}}}, Services: map[string]network.ServiceInfo{
			"shop_stats": {VIP: "10.0.1.9/24", Tasks: []network.Task{{EndpointIP: "10.0.1.10"}}},
			"shop_api":   {Tasks: []network.Task{{EndpointIP: "10.0.1.5"}}},
		}}},
	}
	c := func(id uint32, proto, dst string, port uint16, unanswered bool) Conn {
		return Conn{ID: id, Protocol: proto, Src: netip.MustParseAddr("10.0.1.3"), Dst: netip.MustParseAddr(dst), DstPort: port, Open: true, Unanswered: unanswered}
	}
	conns := []Conn{
		c(1, "udp", "10.0.1.9", 8125, true),   // statsd to the VIP
		c(2, "udp", "10.0.1.10", 8125, true),  // and to its task
		c(3, "udp", "10.0.1.5", 53, false),    // answered
		c(4, "udp", "10.0.1.5", 53, true),     // one more, not yet answered
		c(5, "udp", "203.0.113.7", 514, true), // outside: nothing tells a drop
		c(6, "tcp", "10.0.1.5", 8080, true),   // a SYN nobody answered
		c(7, "udp", "10.0.1.77", 8125, true),  // an address no service has
		c(8, "icmp", "10.0.1.5", 0, true),     // an echo unanswered
	}
	w := &Watcher{Docker: e, Agg: &Aggregator{}, Node: "n1",
		Addrs: func(*netns.Handle) (map[netip.Addr]bool, error) { return map[netip.Addr]bool{}, nil },
		Dump:  func(int) ([]Conn, error) { return conns, nil }}
	t0 := time.Now()
	if err := w.Read(context.Background(), t0); err != nil {
		t.Fatal(err)
	}
	lines := w.Flush(t0.Add(time.Minute))
	if len(lines) != 1 {
		t.Fatalf("lines %+v", lines)
	}
	got := map[string][2]uint64{}
	for _, f := range lines[0].Flows {
		got[f.From()+" -> "+f.Target()] = [2]uint64{f.Connections, f.Unanswered}
	}
	want := map[string][2]uint64{
		"shop_web -> shop_stats:8125/udp": {2, 2},
		"shop_web -> shop_api:53/udp":     {2, 1},
	}
	if len(got) != len(want) {
		t.Errorf("flows %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: connections, unanswered %v, want %v", k, got[k], n)
		}
	}
}
