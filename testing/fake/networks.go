package fake

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
)

type fakeNetwork struct {
	inspect    network.Inspect // Containers is filled on the way out
	version    swarm.Version
	updatedAt  time.Time
	predefined bool         // bridge, host, none: never removable
	prefix     netip.Prefix // invalid for host and none
	last       netip.Addr   // last address handed out
	// allocated is false for a Swarm network whose subnet overlaps one
	// Swarm already allocated: the engine creates it, but its allocator
	// leaves it without driver state, IPAM or options until it can.
	allocated bool
	seq       uint64 // creation order: the allocator retries in it
}

// AddNetwork creates a network as `docker network create` would, without
// counting a NetworkCreate call. It panics where the engine would refuse.
func (f *Swarm) AddNetwork(name string, options network.CreateOptions) network.Inspect {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.createNetworkLocked(name, clone(options), true)
	if err != nil {
		panic("fake.Swarm.AddNetwork: " + err.Error())
	}
	return f.inspectNetworkLocked(n)
}

// NetworkList implements dockerapi.API with Engine 20.10's filters. A manager merges
// two lists: Swarm's, where name must be exact and id a prefix, and the
// local one, matched as regular expressions (so substrings), which holds
// local networks and the Swarm networks instantiated on this node (a local
// task or container uses them, and ingress). So a name substring finds a
// Swarm network only while something on this node uses it. driver, scope
// and type match exactly, label as key or key=value, dangling as a boolean.
func (f *Swarm) NetworkList(ctx context.Context, options network.ListOptions) ([]network.Summary, error) {
	unlock, err := f.localCall(ctx, dockerapi.OpNetworkList)
	if err != nil {
		return nil, err
	}
	defer unlock()
	args := options.Filters
	if err := validateFilters(args, "dangling", "driver", "id", "label", "name", "scope", "type"); err != nil {
		return nil, err
	}
	dangling, err := args.GetBoolOrDefault("dangling", false)
	if err != nil {
		return nil, dockerapi.NewDaemonError(http.StatusBadRequest, err.Error())
	}
	out := []network.Summary{}
	for _, n := range f.visibleNetworksLocked() {
		in := n.view()
		local := in.Scope == "local" || f.instantiatedLocked(n)
		if args.Contains("name") && !args.Match("name", in.Name) ||
			args.Contains("name") && !local && !args.ExactMatch("name", in.Name) ||
			args.Contains("id") && !args.Match("id", in.ID) ||
			args.Contains("id") && !local && !matchPrefix(args, "id", in.ID) ||
			!args.ExactMatch("driver", in.Driver) || !args.ExactMatch("scope", in.Scope) ||
			!args.MatchKVList("label", in.Labels) || !args.ExactMatch("type", networkType(n)) {
			continue
		}
		if args.Contains("dangling") && dangling != (!n.predefined && !f.networkUsedLocked(n)) {
			continue
		}
		in.Containers = map[string]network.EndpointResource{}
		out = append(out, in)
	}
	return out, nil
}

// NetworkInspect implements API: by ID, name or unique ID prefix.
func (f *Swarm) NetworkInspect(ctx context.Context, networkID string, options network.InspectOptions) (network.Inspect, error) {
	unlock, err := f.localCall(ctx, dockerapi.OpNetworkInspect, requireID(networkID, "network"))
	if err != nil {
		return network.Inspect{}, err
	}
	defer unlock()
	n, err := f.findNetworkLocked(strings.TrimSpace(networkID), options.Scope)
	if err != nil {
		return network.Inspect{}, err
	}
	return f.inspectNetworkLocked(n), nil
}

// NetworkCreate implements dockerapi.API. Overlay networks are Swarm-scoped and need
// a manager; names must be unique among Swarm networks (local networks may
// share a name with a Swarm one, as on the engine).
func (f *Swarm) NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error) {
	unlock, err := f.localCall(ctx, dockerapi.OpNetworkCreate)
	if err != nil {
		return network.CreateResponse{}, err
	}
	defer unlock()
	n, err := f.createNetworkLocked(name, clone(options), true)
	if err != nil {
		return network.CreateResponse{}, err
	}
	return network.CreateResponse{ID: n.inspect.ID}, nil
}

// NetworkRemove implements dockerapi.API. It refuses, with the engine's messages,
// predefined networks, networks used by a service spec or a task, the
// ingress network while a service publishes a port through it, and local
// networks with container endpoints.
func (f *Swarm) NetworkRemove(ctx context.Context, networkID string) error {
	unlock, err := f.localCall(ctx, dockerapi.OpNetworkRemove, requireID(networkID, "network"))
	if err != nil {
		return err
	}
	defer unlock()
	n, err := f.findNetworkLocked(strings.TrimSpace(networkID), "")
	if err != nil {
		var amb ambiguousError
		if errors.As(err, &amb) {
			return dockerapi.NewDaemonError(http.StatusBadRequest, fmt.Sprintf("network %s is ambiguous (%d matches found based on %s)", amb.ref, amb.n, amb.by))
		}
		return err
	}
	if n.predefined {
		return dockerapi.NewDaemonError(http.StatusForbidden, n.inspect.Name+" is a pre-defined network and cannot be removed")
	}
	if n.inspect.Scope == "swarm" {
		if err := f.requireManagerLocked(); err != nil {
			return err
		}
		if err := f.swarmNetworkInUseLocked(n); err != nil {
			return err
		}
		delete(f.networks, n.inspect.ID)
		f.index++
		f.publishLocked(events.NetworkEventType, events.ActionRemove, n.inspect.ID, "swarm", map[string]string{"name": n.inspect.Name})
		f.settleLocked() // its subnet is free now
		return nil
	}
	if len(f.localEndpointsLocked(n)) > 0 {
		return dockerapi.NewDaemonError(http.StatusForbidden, fmt.Sprintf("error while removing network: network %s id %s has active endpoints", n.inspect.Name, n.inspect.ID))
	}
	delete(f.networks, n.inspect.ID)
	f.publishLocked(events.NetworkEventType, events.ActionDestroy, n.inspect.ID, "local", map[string]string{"name": n.inspect.Name, "type": n.inspect.Driver})
	return nil
}

func (f *Swarm) createNetworkLocked(name string, opts network.CreateOptions, publish bool) (*fakeNetwork, error) {
	if opts.Driver == "" {
		opts.Driver = "bridge"
	}
	switch opts.Driver {
	case "bridge", "overlay", "macvlan", "ipvlan":
	default:
		return nil, dockerapi.NewDaemonError(http.StatusNotFound, fmt.Sprintf("plugin %q not found", opts.Driver))
	}
	scope := opts.Scope
	if scope == "" {
		scope = "local"
		if opts.Driver == "overlay" {
			scope = "swarm"
		}
	}
	if scope == "swarm" {
		switch name {
		case "bridge", "host", "none", "default":
			return nil, dockerapi.NewDaemonError(http.StatusForbidden, name+" is a pre-defined network and cannot be created")
		}
		if err := f.requireManagerLocked(); err != nil {
			return nil, err
		}
	}
	if name == "" {
		return nil, dockerapi.NewDaemonError(http.StatusInternalServerError, "invalid name: ")
	}
	for _, n := range f.networks {
		// A Swarm network's name is unique among Swarm networks, a local
		// one's among all networks.
		if n.inspect.Name == name && (scope == "local" || n.inspect.Scope == "swarm") {
			return nil, dockerapi.NewDaemonError(http.StatusConflict, fmt.Sprintf("network with name %s already exists", name))
		}
	}
	now := time.Now().UTC()
	n := &fakeNetwork{inspect: network.Inspect{
		Name: name, Created: now, Scope: scope, Driver: opts.Driver,
		Internal: opts.Internal, Attachable: opts.Attachable, Ingress: opts.Ingress,
		IPAM:    network.IPAM{Driver: "default", Config: []network.IPAMConfig{}},
		Options: opts.Options, Labels: opts.Labels,
	}}
	if opts.EnableIPv6 != nil {
		n.inspect.EnableIPv6 = *opts.EnableIPv6
	}
	if opts.IPAM != nil {
		if opts.IPAM.Driver != "" {
			n.inspect.IPAM.Driver = opts.IPAM.Driver
		}
		n.inspect.IPAM.Options = opts.IPAM.Options
	}
	var subnet, gateway string
	if opts.IPAM != nil && len(opts.IPAM.Config) > 0 {
		subnet, gateway = opts.IPAM.Config[0].Subnet, opts.IPAM.Config[0].Gateway
	}
	var prefix netip.Prefix
	n.allocated = true
	if subnet == "" {
		prefix = f.freeSubnetLocked(scope)
	} else {
		p, err := netip.ParsePrefix(subnet)
		if err != nil {
			return nil, dockerapi.NewDaemonError(http.StatusBadRequest, fmt.Sprintf("invalid subnet %s: %v", subnet, err))
		}
		prefix = p.Masked()
		if f.overlapsLocked(prefix, scope) {
			// A local pool is reserved at once; a Swarm one when the
			// allocator gets to the network, after it was created.
			if scope == "local" {
				return nil, dockerapi.NewDaemonError(http.StatusForbidden, "Pool overlaps with other one on this address space")
			}
			n.allocated = false
		}
	}
	n.setPrefix(prefix, gateway)
	if scope == "swarm" {
		n.inspect.ID = newSwarmID()
		f.index++
		n.version, n.updatedAt, n.seq = swarm.Version{Index: f.index}, now, f.index
		if n.allocated {
			f.allocateNetworkLocked(n, false)
		}
	} else {
		n.inspect.ID = newHexID()
		if n.inspect.Options == nil {
			n.inspect.Options = map[string]string{}
		}
		if n.inspect.Labels == nil {
			n.inspect.Labels = map[string]string{}
		}
	}
	f.networks[n.inspect.ID] = n
	if publish {
		if scope == "swarm" {
			// Swarm's allocator writes the network right after it is
			// created, if it can allocate it.
			f.publishLocked(events.NetworkEventType, events.ActionCreate, n.inspect.ID, "swarm", map[string]string{"name": name})
			if n.allocated {
				f.publishLocked(events.NetworkEventType, events.ActionUpdate, n.inspect.ID, "swarm", map[string]string{"name": name})
			}
		} else {
			f.publishLocked(events.NetworkEventType, events.ActionCreate, n.inspect.ID, "local", map[string]string{"name": name, "type": opts.Driver})
		}
	}
	return n, nil
}

// allocateNetworkLocked does what Swarm's allocator does for a new Swarm
// network: a VXLAN ID for an overlay. later is for a network it could not
// allocate when it was created: the allocator writes it then, and says so.
func (f *Swarm) allocateNetworkLocked(n *fakeNetwork, later bool) {
	n.allocated = true
	if n.inspect.Driver == "overlay" {
		if n.inspect.Options == nil {
			n.inspect.Options = map[string]string{}
		}
		vxlan := 4096
		if !n.inspect.Ingress {
			vxlan = f.nextVXLAN
			f.nextVXLAN++
		}
		n.inspect.Options["com.docker.network.driver.overlay.vxlanid_list"] = strconv.Itoa(vxlan)
	}
	if later {
		f.index++
		n.version, n.updatedAt = swarm.Version{Index: f.index}, time.Now().UTC()
		f.publishLocked(events.NetworkEventType, events.ActionUpdate, n.inspect.ID, "swarm", map[string]string{"name": n.inspect.Name})
	}
}

// overlapsLocked reports whether a subnet overlaps one already reserved in
// its address space: for Swarm networks, the subnets Swarm allocated; for
// local ones, the other local networks' and those of the Swarm networks
// instantiated on this node (seen on 20.10: a local network may overlap a
// Swarm network no task or container here uses).
func (f *Swarm) overlapsLocked(p netip.Prefix, scope string) bool {
	for _, n := range f.networks {
		if !n.allocated || !n.prefix.IsValid() || !n.prefix.Overlaps(p) {
			continue
		}
		if scope == "swarm" && n.inspect.Scope == "swarm" ||
			scope != "swarm" && (n.inspect.Scope != "swarm" || f.instantiatedLocked(n)) {
			return true
		}
	}
	return false
}

// freeSubnetLocked picks the next default subnet that overlaps nothing in
// the scope's address space: a /24 of Swarm's default pool 10.0.0.0/8
// (10.0.N.0/24, then 10.1.0.0/24 and on), 172.N.0.0/16 locally.
func (f *Swarm) freeSubnetLocked(scope string) netip.Prefix {
	candidates := 256
	if scope == "swarm" {
		candidates = 1 << 16
	}
	for range candidates {
		var p netip.Prefix
		if scope == "swarm" {
			i := f.nextSubnet % (1 << 16)
			p = netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256))
			f.nextSubnet++
		} else {
			p = netip.MustParsePrefix(fmt.Sprintf("172.%d.0.0/16", f.nextBridge%256))
			f.nextBridge++
		}
		if !f.overlapsLocked(p, scope) {
			return p
		}
	}
	panic("fake.Swarm: no default " + scope + " subnet left")
}

// view is the network as the engine shows it. A Swarm network the
// allocator has not allocated has no driver, IPAM or options (not even
// "encrypted"): they are read from Swarm's allocation, not from the spec.
func (n *fakeNetwork) view() network.Inspect {
	in := clone(n.inspect)
	if !n.allocated {
		in.Driver, in.IPAM, in.Options = "", network.IPAM{}, nil
	}
	return in
}

// visibleNetworksLocked returns the networks this engine knows, by name:
// a manager all Swarm networks, a worker those instantiated on it, an
// engine outside a Swarm none.
func (f *Swarm) visibleNetworksLocked() []*fakeNetwork {
	var out []*fakeNetwork
	for _, n := range f.networks {
		if n.inspect.Scope == "swarm" && (f.role == roleInactive || f.role == roleWorker && !f.instantiatedLocked(n)) {
			continue
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].inspect.Name != out[j].inspect.Name {
			return out[i].inspect.Name < out[j].inspect.Name
		}
		return out[i].inspect.ID < out[j].inspect.ID
	})
	return out
}

type ambiguousError struct {
	ref, by string
	n       int
}

func (e ambiguousError) Error() string {
	return fmt.Sprintf("Error response from daemon: %d matches found based on %s: network %s is ambiguous", e.n, e.by, e.ref)
}

func (e ambiguousError) Is(target error) bool {
	return errors.Is(dockerapi.NewDaemonError(http.StatusBadRequest, ""), target)
}

// findNetworkLocked resolves a reference as the engine does: full ID, then
// exact name, then ID prefix; scope, when set, limits the search.
func (f *Swarm) findNetworkLocked(ref, scope string) (*fakeNetwork, error) {
	var byName, byPrefix []*fakeNetwork
	for _, n := range f.visibleNetworksLocked() {
		if scope != "" && n.inspect.Scope != scope {
			continue
		}
		switch {
		case n.inspect.ID == ref:
			return n, nil
		case n.inspect.Name == ref:
			byName = append(byName, n)
		case strings.HasPrefix(n.inspect.ID, ref):
			byPrefix = append(byPrefix, n)
		}
	}
	switch {
	case len(byName) == 1:
		return byName[0], nil
	case len(byName) > 1:
		return nil, ambiguousError{ref: ref, by: "name", n: len(byName)}
	case len(byPrefix) == 1:
		return byPrefix[0], nil
	case len(byPrefix) > 1:
		return nil, ambiguousError{ref: ref, by: "ID prefix", n: len(byPrefix)}
	}
	return nil, dockerapi.NewDaemonError(http.StatusNotFound, fmt.Sprintf("network %s not found", ref))
}

// ingressLocked returns the ingress network, or nil once it was removed.
func (f *Swarm) ingressLocked() *fakeNetwork {
	for _, n := range f.networks {
		if n.inspect.Ingress {
			return n
		}
	}
	return nil
}

// checkIngressLocked refuses a spec publishing a port through the routing
// mesh when there is no ingress network (it can be removed while unused).
func (f *Swarm) checkIngressLocked(s swarm.ServiceSpec) error {
	if s.EndpointSpec == nil || f.ingressLocked() != nil {
		return nil
	}
	for _, p := range s.EndpointSpec.Ports {
		if p.PublishMode == swarm.PortConfigPublishModeIngress {
			return dockerapi.NewDaemonError(http.StatusBadRequest, "rpc error: code = FailedPrecondition desc = service needs ingress network, but no ingress network is present")
		}
	}
	return nil
}

func (f *Swarm) swarmNetworkInUseLocked(n *fakeNetwork) error {
	id := n.inspect.ID
	for _, sid := range sortedKeys(f.services) {
		svc := f.services[sid]
		if n.inspect.Ingress {
			for _, p := range svc.Endpoint.Ports {
				if p.PublishMode == swarm.PortConfigPublishModeIngress {
					return dockerapi.NewDaemonError(http.StatusBadRequest, fmt.Sprintf("rpc error: code = FailedPrecondition desc = ingress network cannot be removed because service %s depends on it", svc.ID))
				}
			}
			continue
		}
		if slices.Contains(attachedNetworks(svc.Spec), id) {
			return dockerapi.NewDaemonError(http.StatusBadRequest, fmt.Sprintf("rpc error: code = FailedPrecondition desc = network %s is in use by service %s", id, svc.ID))
		}
	}
	for _, tid := range sortedKeys(f.tasks) {
		t := f.tasks[tid]
		if t.DesiredState != swarm.TaskStateRunning {
			continue
		}
		for _, a := range t.NetworksAttachments {
			if a.Network.ID == id {
				return dockerapi.NewDaemonError(http.StatusBadRequest, fmt.Sprintf("rpc error: code = FailedPrecondition desc = network %s is in use by task %s", id, t.ID))
			}
		}
	}
	for _, cid := range sortedKeys(f.containers) {
		c := f.containers[cid]
		if _, ok := c.summary.NetworkSettings.Networks[n.inspect.Name]; ok {
			return dockerapi.NewDaemonError(http.StatusBadRequest, fmt.Sprintf("rpc error: code = FailedPrecondition desc = network %s is in use by task %s", id, c.taskID))
		}
	}
	return nil
}

// localEndpointsLocked returns the endpoints this node has on a network,
// keyed by container ID.
func (f *Swarm) localEndpointsLocked(n *fakeNetwork) map[string]network.EndpointResource {
	out := map[string]network.EndpointResource{}
	for _, c := range f.taskContainersLocked() {
		if ep, ok := c.NetworkSettings.Networks[n.inspect.Name]; ok {
			out[c.ID] = endpointResource(c, ep)
		}
	}
	for _, c := range f.containers {
		if ep, ok := c.summary.NetworkSettings.Networks[n.inspect.Name]; ok {
			out[c.summary.ID] = endpointResource(c.summary, ep)
		}
	}
	if n.inspect.Name == "docker_gwbridge" && n.inspect.Scope == "local" {
		// Every container on an overlay network also gets a leg here.
		for _, c := range f.taskContainersLocked() {
			if len(c.NetworkSettings.Networks) > 0 {
				out["gateway_"+c.ID[:12]] = network.EndpointResource{Name: "gateway_" + c.ID[:12]}
			}
		}
	}
	return out
}

// instantiatedLocked reports whether a Swarm network exists on this node's
// engine too: ingress always, others while a local task or container uses
// them.
func (f *Swarm) instantiatedLocked(n *fakeNetwork) bool {
	if n.inspect.Ingress {
		return true
	}
	for _, t := range f.tasks {
		if t.NodeID == f.localNode && t.DesiredState == swarm.TaskStateRunning && t.Status.State == swarm.TaskStateRunning &&
			slices.ContainsFunc(t.NetworksAttachments, func(a swarm.NetworkAttachment) bool { return a.Network.ID == n.inspect.ID }) {
			return true
		}
	}
	for _, c := range f.containers {
		if _, ok := c.summary.NetworkSettings.Networks[n.inspect.Name]; ok {
			return true
		}
	}
	return false
}

func (f *Swarm) networkUsedLocked(n *fakeNetwork) bool {
	if n.inspect.Scope == "swarm" {
		return f.swarmNetworkInUseLocked(n) != nil
	}
	return len(f.localEndpointsLocked(n)) > 0
}

func (f *Swarm) inspectNetworkLocked(n *fakeNetwork) network.Inspect {
	in := n.view()
	if eps := f.localEndpointsLocked(n); len(eps) > 0 {
		in.Containers = eps
	}
	return in
}

func (n *fakeNetwork) setPrefix(p netip.Prefix, gateway string) {
	n.prefix = p
	n.last = p.Addr().Next() // the gateway
	if gateway == "" {
		gateway = n.last.String()
	}
	n.inspect.IPAM.Config = []network.IPAMConfig{{Subnet: p.String(), Gateway: gateway}}
}

// allocate hands out the next free address, in CIDR form as Swarm shows it.
func (n *fakeNetwork) allocate() string {
	if !n.prefix.IsValid() {
		return ""
	}
	n.last = n.last.Next()
	return netip.PrefixFrom(n.last, n.prefix.Bits()).String()
}

// swarmNetwork is the network as a task's NetworksAttachments shows it.
func (n *fakeNetwork) swarmNetwork() swarm.Network {
	in := n.inspect
	user := map[string]string{}
	for k, v := range in.Options {
		if !strings.HasPrefix(k, "com.docker.network.driver.overlay.") {
			user[k] = v
		}
	}
	sn := swarm.Network{
		ID:   in.ID,
		Meta: swarm.Meta{Version: n.version, CreatedAt: in.Created, UpdatedAt: n.updatedAt},
		Spec: swarm.NetworkSpec{
			Annotations:         swarm.Annotations{Name: in.Name, Labels: clone(in.Labels)},
			DriverConfiguration: &swarm.Driver{Name: in.Driver, Options: user},
			Internal:            in.Internal, Attachable: in.Attachable, Ingress: in.Ingress,
			Scope: in.Scope,
		},
		DriverState: swarm.Driver{Name: in.Driver, Options: clone(in.Options)},
		IPAMOptions: &swarm.IPAMOptions{Driver: swarm.Driver{Name: "default"}},
	}
	for _, c := range in.IPAM.Config {
		sn.IPAMOptions.Configs = append(sn.IPAMOptions.Configs, swarm.IPAMConfig{Subnet: c.Subnet, Gateway: c.Gateway})
	}
	return sn
}

func networkType(n *fakeNetwork) string {
	if n.predefined {
		return "builtin"
	}
	return "custom"
}

func endpointSettings(containerID string, n *fakeNetwork, cidr string) *network.EndpointSettings {
	ep := &network.EndpointSettings{NetworkID: n.inspect.ID, EndpointID: hashHex(containerID + n.inspect.ID)}
	if p, err := netip.ParsePrefix(cidr); err == nil {
		a := p.Addr().As4()
		ep.IPAddress, ep.IPPrefixLen = p.Addr().String(), p.Bits()
		ep.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: ep.IPAddress}
		ep.MacAddress = fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3])
		if n.inspect.Scope == "local" && len(n.inspect.IPAM.Config) > 0 {
			ep.Gateway = n.inspect.IPAM.Config[0].Gateway
		}
	}
	return ep
}

func endpointResource(c container.Summary, ep *network.EndpointSettings) network.EndpointResource {
	r := network.EndpointResource{
		Name: strings.TrimPrefix(c.Names[0], "/"), EndpointID: ep.EndpointID, MacAddress: ep.MacAddress,
	}
	if ep.IPAddress != "" {
		r.IPv4Address = fmt.Sprintf("%s/%d", ep.IPAddress, ep.IPPrefixLen)
	}
	return r
}
