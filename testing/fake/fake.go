package fake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
)

// Swarm is the in-memory Swarm; New makes one. See the package
// documentation for what it models and what it does not. Tasks start
// running at once unless their networks have no subnet yet or their
// host-mode ports are taken; rolling updates complete at once unless
// HoldUpdates is set. It is safe for concurrent use.
type Swarm struct {
	// BeforeServiceUpdate, when set, runs at the start of every ServiceUpdate
	// call, before any check, with the service ID or name the caller passed.
	// A test uses it to change the service concurrently (UpdateService,
	// TouchService), as Swarm does during rolling updates. Set it before the
	// Fake is in use; it runs without the Fake's lock held.
	BeforeServiceUpdate func(id string)

	mu          sync.Mutex
	index       uint64 // Raft-like: every write takes the next index as its version
	role        fakeRole
	engineID    string
	clusterID   string
	clusterAt   time.Time
	localNode   string
	nodes       []*swarm.Node // in creation order, which spreads replicas
	services    map[string]*swarm.Service
	tasks       map[string]*swarm.Task
	networks    map[string]*fakeNetwork
	containers  map[string]*fakeContainer
	configs     map[string]*swarm.Config
	logs        map[string][]logLine // by service ID (AddServiceLog)
	nextSubnet  int                  // overlay subnets: the Nth /24 of 10.0.0.0/8
	nextBridge  int                  // local bridge subnets 172.N.0.0/16
	nextVXLAN   int
	nextPort    uint32 // ingress ports assigned when none is published
	holdUpdates bool
	// waiting holds the services whose networks Swarm's allocator has not
	// given a subnet yet: they have no endpoint, their tasks stay "new".
	waiting map[string]bool
	// rolling holds the services whose held update (HoldUpdates) has not
	// replaced their tasks yet.
	rolling  map[string]bool
	calls    map[string]int
	failNext map[string][]error
	subs     map[*subscriber]struct{}
}

type fakeRole int

const (
	roleManager fakeRole = iota
	roleWorker
	roleInactive
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

type fakeContainer struct {
	summary container.Summary
	taskID  string // the attachment task Swarm creates for attachable networks
}

// New returns a Swarm that is the only node, and the leader, of a fresh
// Swarm: predefined networks (bridge, host, none, docker_gwbridge, ingress),
// no services, no containers.
func New() *Swarm {
	now := time.Now().UTC()
	f := &Swarm{
		engineID:   strings.ToUpper(newHexID()[:12]),
		clusterID:  newSwarmID(),
		clusterAt:  now,
		services:   map[string]*swarm.Service{},
		tasks:      map[string]*swarm.Task{},
		networks:   map[string]*fakeNetwork{},
		containers: map[string]*fakeContainer{},
		configs:    map[string]*swarm.Config{},
		nextSubnet: 1,
		nextBridge: 19,
		nextVXLAN:  4097,
		nextPort:   30000,
		waiting:    map[string]bool{},
		rolling:    map[string]bool{},
		calls:      map[string]int{},
		failNext:   map[string][]error{},
		subs:       map[*subscriber]struct{}{},
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addNodeLocked(swarm.Node{
		Spec:        swarm.NodeSpec{Role: swarm.NodeRoleManager},
		Description: swarm.NodeDescription{Hostname: "fake-manager"},
	})
	f.localNode = f.nodes[0].ID

	local := func(name, driver, subnet string, opts map[string]string) {
		n := &fakeNetwork{
			predefined: name != "docker_gwbridge", allocated: true,
			inspect: network.Inspect{
				Name: name, ID: newHexID(), Created: now, Scope: "local", Driver: driver,
				IPAM:    network.IPAM{Driver: "default", Config: []network.IPAMConfig{}},
				Options: opts, Labels: map[string]string{},
			},
		}
		if subnet != "" {
			n.setPrefix(netip.MustParsePrefix(subnet), "")
		}
		f.networks[n.inspect.ID] = n
	}
	local("bridge", "bridge", "172.17.0.0/16", map[string]string{
		"com.docker.network.bridge.default_bridge":       "true",
		"com.docker.network.bridge.enable_icc":           "true",
		"com.docker.network.bridge.enable_ip_masquerade": "true",
		"com.docker.network.bridge.name":                 "docker0",
	})
	local("host", "host", "", map[string]string{})
	local("none", "null", "", map[string]string{})
	local("docker_gwbridge", "bridge", "172.18.0.0/16", map[string]string{
		"com.docker.network.bridge.enable_icc":           "false",
		"com.docker.network.bridge.enable_ip_masquerade": "true",
		"com.docker.network.bridge.name":                 "docker_gwbridge",
	})
	if _, err := f.createNetworkLocked("ingress", network.CreateOptions{
		Driver: "overlay", Ingress: true,
		IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: "10.0.0.0/24", Gateway: "10.0.0.1"}}},
	}, false); err != nil {
		panic(err)
	}
	return f
}

// --- Knobs for tests -------------------------------------------------------

// SetManager makes the engine a Swarm manager again (the default).
func (f *Swarm) SetManager() { f.setRole(roleManager) }

// SetWorker makes the engine a Swarm worker: Info says so, and Swarm calls
// fail as on a real worker (503, "This node is not a swarm manager...").
func (f *Swarm) SetWorker() { f.setRole(roleWorker) }

// SetInactive takes the engine out of Swarm: Info reports an inactive node,
// Swarm calls fail with 503, and only local networks are listed.
func (f *Swarm) SetInactive() { f.setRole(roleInactive) }

func (f *Swarm) setRole(r fakeRole) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.role = r
}

// HoldUpdates decides whether rolling updates stay in state "updating",
// with the old tasks running, until CompleteUpdates (true), or complete as
// soon as ServiceUpdate returns (false, the default).
func (f *Swarm) HoldUpdates(hold bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holdUpdates = hold
}

// CompleteUpdates finishes every rolling update held so far: tasks are
// replaced and, once the new ones run, UpdateStatus becomes "completed" and,
// as Swarm writes the service to say so, its version moves on. An update
// whose new tasks cannot run (a network without a subnet) stays "updating".
func (f *Swarm) CompleteUpdates() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range sortedKeys(f.rolling) {
		delete(f.rolling, id)
		if svc := f.services[id]; svc != nil {
			f.reconcileTasksLocked(svc, true)
		}
	}
	f.settleLocked()
}

// FailNext makes the next call of op (one of dockerapi.Ops) fail with err, without
// any other effect. Calls queue up: FailNext twice fails the next two calls.
func (f *Swarm) FailNext(op string, err error) {
	if !slices.Contains(dockerapi.Ops, op) {
		panic(fmt.Sprintf("fake.Swarm.FailNext: unknown operation %q", op))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext[op] = append(f.failNext[op], err)
}

// Calls returns how many times each operation was called, failures included.
func (f *Swarm) Calls() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.calls))
	for op, n := range f.calls {
		out[op] = n
	}
	return out
}

// WriteCalls returns how many calls could have changed the Swarm (the
// dockerapi.Writes), failed ones included.
func (f *Swarm) WriteCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, op := range dockerapi.Writes {
		n += f.calls[op]
	}
	return n
}

// ResetCalls forgets the calls counted so far.
func (f *Swarm) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.calls)
}

// BreakEvents ends every open event stream with err on its error channel,
// as when the connection to the engine drops. A nil err stands for
// io.ErrUnexpectedEOF, which the client reports for a cut stream.
func (f *Swarm) BreakEvents(err error) {
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for sub := range f.subs {
		delete(f.subs, sub)
		sub.broken <- err // buffered, and each subscriber is broken once
	}
}

// --- Seeding and drift (not counted as calls) -----------------------------

// AddService creates a service as `docker service create` would, and
// returns it as inspected. It panics if the engine would refuse the spec
// (unknown network, port conflict, duplicate name): seeds are test bugs.
func (f *Swarm) AddService(spec swarm.ServiceSpec) swarm.Service {
	if err := validateClientSpec(spec); err != nil {
		panic("fake.Swarm.AddService: " + err.Error())
	}
	spec = clone(spec)
	tagImage(&spec)
	f.mu.Lock()
	defer f.mu.Unlock()
	svc, err := f.createServiceLocked(spec)
	if err != nil {
		panic("fake.Swarm.AddService: " + err.Error())
	}
	return clone(*svc)
}

// UpdateService changes a service the way someone running `docker service
// update` would, to simulate drift: mutate edits a copy of the current
// spec, which is then written through the same path as ServiceUpdate, at
// the current version. mutate runs under the Fake's lock and must not call
// the Fake.
func (f *Swarm) UpdateService(id string, mutate func(*swarm.ServiceSpec)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	svc, err := f.findServiceLocked(id)
	if err != nil {
		return err
	}
	spec := clone(svc.Spec)
	mutate(&spec)
	if err := validateClientSpec(spec); err != nil {
		return err
	}
	spec = clone(spec)
	tagImage(&spec)
	return f.updateServiceLocked(svc.ID, svc.Version, spec, false)
}

// TouchService writes a service without changing its spec, moving its
// version on, as Swarm does on its own while it runs an update.
func (f *Swarm) TouchService(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	svc, err := f.findServiceLocked(id)
	if err != nil {
		return err
	}
	f.writeServiceLocked(svc, map[string]string{"name": svc.Spec.Name})
	return nil
}

// RemoveService removes a service and its tasks, as `docker service rm`.
func (f *Swarm) RemoveService(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	svc, err := f.findServiceLocked(id)
	if err != nil {
		return err
	}
	for tid, t := range f.tasks {
		if t.ServiceID == svc.ID {
			delete(f.tasks, tid)
		}
	}
	delete(f.services, svc.ID)
	delete(f.waiting, svc.ID)
	delete(f.rolling, svc.ID)
	f.index++
	f.publishLocked(events.ServiceEventType, events.ActionRemove, svc.ID, "swarm", map[string]string{"name": svc.Spec.Name})
	f.settleLocked() // its host-mode ports are free now
	return nil
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

// AddNode joins a node to the Swarm. Missing fields get defaults: an ID, a
// hostname, role worker, availability active, state ready. Global services
// get a task on it; replicas already placed stay where they are.
func (f *Swarm) AddNode(node swarm.Node) swarm.Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.addNodeLocked(clone(node))
	for _, id := range sortedKeys(f.services) {
		f.reconcileTasksLocked(f.services[id], false)
	}
	f.settleLocked()
	return clone(*n)
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

// --- dockerapi.API -------------------------------------------------------------------

// ConfigList implements dockerapi.API: configs with their data, as the
// engine lists them, filtered by id, name (prefixes) and label.
func (f *Swarm) ConfigList(ctx context.Context, options swarm.ConfigListOptions) ([]swarm.Config, error) {
	if err := f.begin(ctx, dockerapi.OpConfigList); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.requireManagerLocked(); err != nil {
		return nil, err
	}
	args := options.Filters
	if err := validateFilters(args, "id", "label", "name", "names"); err != nil {
		return nil, err
	}
	out := []swarm.Config{}
	for _, id := range sortedKeys(f.configs) {
		c := f.configs[id]
		if !matchPrefix(args, "id", c.ID) || !matchPrefix(args, "name", c.Spec.Name) || !args.MatchKVList("label", c.Spec.Labels) {
			continue
		}
		out = append(out, clone(*c))
	}
	return out, nil
}

// ConfigCreate implements dockerapi.API: names are unique.
func (f *Swarm) ConfigCreate(ctx context.Context, spec swarm.ConfigSpec) (swarm.ConfigCreateResponse, error) {
	if err := f.begin(ctx, dockerapi.OpConfigCreate); err != nil {
		return swarm.ConfigCreateResponse{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.requireManagerLocked(); err != nil {
		return swarm.ConfigCreateResponse{}, err
	}
	for _, c := range f.configs {
		if c.Spec.Name == spec.Name {
			return swarm.ConfigCreateResponse{}, dockerapi.NewDaemonError(http.StatusConflict,
				fmt.Sprintf("rpc error: code = AlreadyExists desc = config %s already exists", spec.Name))
		}
	}
	f.index++
	now := time.Now().UTC()
	c := &swarm.Config{ID: newSwarmID(), Meta: swarm.Meta{Version: swarm.Version{Index: f.index}, CreatedAt: now, UpdatedAt: now}, Spec: clone(spec)}
	if c.Spec.Labels == nil {
		c.Spec.Labels = map[string]string{}
	}
	f.configs[c.ID] = c
	f.publishLocked(events.ConfigEventType, events.ActionCreate, c.ID, "swarm", map[string]string{"name": c.Spec.Name})
	return swarm.ConfigCreateResponse{ID: c.ID}, nil
}

// ConfigRemove implements dockerapi.API, by ID or name.
func (f *Swarm) ConfigRemove(ctx context.Context, id string) error {
	if err := f.begin(ctx, dockerapi.OpConfigRemove); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.requireManagerLocked(); err != nil {
		return err
	}
	for key, c := range f.configs {
		if c.ID == id || c.Spec.Name == id {
			delete(f.configs, key)
			f.index++
			f.publishLocked(events.ConfigEventType, events.ActionRemove, c.ID, "swarm", map[string]string{"name": c.Spec.Name})
			return nil
		}
	}
	return dockerapi.NewDaemonError(http.StatusNotFound, fmt.Sprintf("config %s not found", id))
}

// ConfigUpdate implements dockerapi.API: only the labels may change, and
// the update must carry the version read.
func (f *Swarm) ConfigUpdate(ctx context.Context, id string, version swarm.Version, spec swarm.ConfigSpec) error {
	if err := f.begin(ctx, dockerapi.OpConfigUpdate); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.requireManagerLocked(); err != nil {
		return err
	}
	var c *swarm.Config
	for _, x := range f.configs {
		if x.ID == id || x.Spec.Name == id {
			c = x
		}
	}
	switch {
	case c == nil:
		return dockerapi.NewDaemonError(http.StatusNotFound, fmt.Sprintf("config %s not found", id))
	case version.Index != c.Version.Index:
		return dockerapi.NewDaemonError(http.StatusInternalServerError, "rpc error: code = Unknown desc = update out of sequence")
	case spec.Data != nil && string(spec.Data) != string(c.Spec.Data) || spec.Name != "" && spec.Name != c.Spec.Name:
		return dockerapi.NewDaemonError(http.StatusBadRequest, "rpc error: code = InvalidArgument desc = only updates to Labels are allowed")
	}
	f.index++
	c.Version.Index = f.index
	c.UpdatedAt = time.Now().UTC()
	c.Spec.Labels = clone(spec.Labels)
	if c.Spec.Labels == nil {
		c.Spec.Labels = map[string]string{}
	}
	f.publishLocked(events.ConfigEventType, events.ActionUpdate, c.ID, "swarm", map[string]string{"name": c.Spec.Name})
	return nil
}

// Configs lists the configs, for tests.
func (f *Swarm) Configs() []swarm.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []swarm.Config{}
	for _, id := range sortedKeys(f.configs) {
		out = append(out, clone(*f.configs[id]))
	}
	return out
}

var _ dockerapi.API = (*Swarm)(nil)

// begin counts a call and returns the error it must fail with, if any.
func (f *Swarm) begin(ctx context.Context, op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if q := f.failNext[op]; len(q) > 0 {
		f.failNext[op] = q[1:]
		return q[0]
	}
	return ctx.Err()
}

// Info implements dockerapi.API.
func (f *Swarm) Info(ctx context.Context) (system.Info, error) {
	if err := f.begin(ctx, dockerapi.OpInfo); err != nil {
		return system.Info{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	info := system.Info{
		ID: f.engineID, Name: "fake-manager", ServerVersion: "20.10.24-fake",
		OperatingSystem: "fake", OSType: "linux", Architecture: "x86_64", NCPU: 2,
		Swarm: swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive},
	}
	if f.role == roleInactive {
		return clone(info), nil
	}
	info.Swarm = swarm.Info{
		NodeID: f.localNode, NodeAddr: "127.0.0.1",
		LocalNodeState: swarm.LocalNodeStateActive,
		RemoteManagers: []swarm.Peer{{NodeID: f.nodes[0].ID, Addr: "127.0.0.1:2377"}},
	}
	if f.role == roleManager {
		info.Swarm.ControlAvailable = true
		info.Swarm.Nodes = len(f.nodes)
		for _, n := range f.nodes {
			if n.Spec.Role == swarm.NodeRoleManager {
				info.Swarm.Managers++
			}
		}
		info.Swarm.Cluster = &swarm.ClusterInfo{
			ID:   f.clusterID,
			Meta: swarm.Meta{Version: swarm.Version{Index: 10}, CreatedAt: f.clusterAt, UpdatedAt: f.clusterAt},
			Spec: swarm.Spec{Annotations: swarm.Annotations{Name: "default", Labels: map[string]string{}}},
		}
	}
	return clone(info), nil
}

func (f *Swarm) requireManagerLocked() error {
	switch f.role {
	case roleInactive:
		return dockerapi.NewDaemonError(http.StatusServiceUnavailable, `This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.`)
	case roleWorker:
		return dockerapi.NewDaemonError(http.StatusServiceUnavailable, "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.")
	}
	return nil
}

// ServiceList implements dockerapi.API. Filters as the engine: name and id are
// prefixes, label is key or key=value (all must match), mode is
// replicated or global.
func (f *Swarm) ServiceList(ctx context.Context, options swarm.ServiceListOptions) ([]swarm.Service, error) {
	if err := f.begin(ctx, dockerapi.OpServiceList); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.requireManagerLocked(); err != nil {
		return nil, err
	}
	args := options.Filters
	if err := validateFilters(args, "id", "label", "mode", "name", "runtime"); err != nil {
		return nil, err
	}
	if args.Contains("runtime") {
		return nil, errFakeFilter("runtime")
	}
	out := []swarm.Service{}
	for _, id := range sortedKeys(f.services) {
		svc := f.services[id]
		if !matchPrefix(args, "id", svc.ID) || !matchPrefix(args, "name", svc.Spec.Name) ||
			!args.MatchKVList("label", svc.Spec.Labels) || !args.ExactMatch("mode", serviceMode(svc.Spec.Mode)) {
			continue
		}
		s := clone(*svc)
		if options.Status {
			s.ServiceStatus = f.serviceStatusLocked(svc)
		}
		out = append(out, s)
	}
	return out, nil
}

// ServiceInspectWithRaw implements API: by ID, name or unique ID prefix.
func (f *Swarm) ServiceInspectWithRaw(ctx context.Context, serviceID string, _ swarm.ServiceInspectOptions) (swarm.Service, []byte, error) {
	if err := f.begin(ctx, dockerapi.OpServiceInspectWithRaw); err != nil {
		return swarm.Service{}, nil, err
	}
	if strings.TrimSpace(serviceID) == "" {
		return swarm.Service{}, nil, emptyIDError("service")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.requireManagerLocked(); err != nil {
		return swarm.Service{}, nil, err
	}
	svc, err := f.findServiceLocked(strings.TrimSpace(serviceID))
	if err != nil {
		return swarm.Service{}, nil, err
	}
	raw, err := json.Marshal(svc)
	if err != nil {
		return swarm.Service{}, nil, err
	}
	var out swarm.Service
	err = json.Unmarshal(raw, &out)
	return out, raw, err
}

// ServiceUpdate implements dockerapi.API with the engine's checks, in its order:
// client-side spec checks, networks, the service itself, Swarm's own
// validation, then the version, which must be the current one.
func (f *Swarm) ServiceUpdate(ctx context.Context, serviceID string, version swarm.Version, spec swarm.ServiceSpec, options swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	if err := f.begin(ctx, dockerapi.OpServiceUpdate); err != nil {
		return swarm.ServiceUpdateResponse{}, err
	}
	f.mu.Lock()
	hook := f.BeforeServiceUpdate
	f.mu.Unlock()
	if hook != nil {
		hook(serviceID)
	}
	serviceID = strings.TrimSpace(serviceID)
	if serviceID == "" {
		return swarm.ServiceUpdateResponse{}, emptyIDError("service")
	}
	if err := validateClientSpec(spec); err != nil {
		return swarm.ServiceUpdateResponse{}, err
	}
	spec = clone(spec)
	tagImage(&spec)

	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.requireManagerLocked(); err != nil {
		return swarm.ServiceUpdateResponse{}, err
	}
	if err := f.updateServiceLocked(serviceID, version, spec, options.Rollback == "previous"); err != nil {
		return swarm.ServiceUpdateResponse{}, err
	}
	return swarm.ServiceUpdateResponse{}, nil
}

// NetworkList implements dockerapi.API with Engine 20.10's filters. A manager merges
// two lists: Swarm's, where name must be exact and id a prefix, and the
// local one, matched as regular expressions (so substrings), which holds
// local networks and the Swarm networks instantiated on this node (a local
// task or container uses them, and ingress). So a name substring finds a
// Swarm network only while something on this node uses it. driver, scope
// and type match exactly, label as key or key=value, dangling as a boolean.
func (f *Swarm) NetworkList(ctx context.Context, options network.ListOptions) ([]network.Summary, error) {
	if err := f.begin(ctx, dockerapi.OpNetworkList); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
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
	if err := f.begin(ctx, dockerapi.OpNetworkInspect); err != nil {
		return network.Inspect{}, err
	}
	if strings.TrimSpace(networkID) == "" {
		return network.Inspect{}, emptyIDError("network")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
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
	if err := f.begin(ctx, dockerapi.OpNetworkCreate); err != nil {
		return network.CreateResponse{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
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
	if err := f.begin(ctx, dockerapi.OpNetworkRemove); err != nil {
		return err
	}
	if strings.TrimSpace(networkID) == "" {
		return emptyIDError("network")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
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

// NodeList implements dockerapi.API. Filters: id and name (prefixes), role,
// membership, label (engine labels) and node.label.
func (f *Swarm) NodeList(ctx context.Context, options swarm.NodeListOptions) ([]swarm.Node, error) {
	if err := f.begin(ctx, dockerapi.OpNodeList); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.requireManagerLocked(); err != nil {
		return nil, err
	}
	args := options.Filters
	if err := validateFilters(args, "id", "label", "membership", "name", "node.label", "role"); err != nil {
		return nil, err
	}
	out := []swarm.Node{}
	for _, n := range f.sortedNodesLocked() {
		if !matchPrefix(args, "id", n.ID) || !matchPrefix(args, "name", nodeName(n)) ||
			!args.ExactMatch("role", string(n.Spec.Role)) || !args.ExactMatch("membership", "accepted") ||
			!args.MatchKVList("label", n.Description.Engine.Labels) || !args.MatchKVList("node.label", n.Spec.Labels) {
			continue
		}
		out = append(out, clone(*n))
	}
	return out, nil
}

// TaskList implements dockerapi.API. Filters: service and node (ID, name or ID
// prefix, resolved as the engine does), desired-state, id and name
// (prefixes), label.
func (f *Swarm) TaskList(ctx context.Context, options swarm.TaskListOptions) ([]swarm.Task, error) {
	if err := f.begin(ctx, dockerapi.OpTaskList); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.requireManagerLocked(); err != nil {
		return nil, err
	}
	args := options.Filters
	if err := validateFilters(args, "_up-to-date", "desired-state", "id", "label", "name", "node", "runtime", "service"); err != nil {
		return nil, err
	}
	for _, k := range []string{"_up-to-date", "runtime"} {
		if args.Contains(k) {
			return nil, errFakeFilter(k)
		}
	}
	for _, s := range args.Get("desired-state") {
		switch swarm.TaskState(strings.ToLower(s)) {
		case swarm.TaskStateNew, swarm.TaskStateAllocated, swarm.TaskStatePending, swarm.TaskStateAssigned,
			swarm.TaskStateAccepted, swarm.TaskStatePreparing, swarm.TaskStateReady, swarm.TaskStateStarting,
			swarm.TaskStateRunning, swarm.TaskStateComplete, swarm.TaskStateShutdown, swarm.TaskStateFailed,
			swarm.TaskStateRejected, swarm.TaskStateRemove, swarm.TaskStateOrphaned:
		default:
			if s != "" {
				return nil, dockerapi.NewDaemonError(http.StatusInternalServerError, fmt.Sprintf("Invalid desired-state filter: '%s'", s))
			}
		}
	}
	var serviceIDs, nodeIDs []string
	for _, ref := range args.Get("service") {
		svc, err := f.findServiceLocked(ref)
		if err != nil {
			return nil, err
		}
		serviceIDs = append(serviceIDs, svc.ID)
	}
	for _, ref := range args.Get("node") {
		n, err := f.findNodeLocked(ref)
		if err != nil {
			return nil, err
		}
		nodeIDs = append(nodeIDs, n.ID)
	}
	out := []swarm.Task{}
	for _, id := range sortedKeys(f.tasks) {
		t := f.tasks[id]
		if serviceIDs != nil && !slices.Contains(serviceIDs, t.ServiceID) ||
			nodeIDs != nil && !slices.Contains(nodeIDs, t.NodeID) ||
			args.Contains("desired-state") && !slices.ContainsFunc(args.Get("desired-state"), func(s string) bool {
				return swarm.TaskState(strings.ToLower(s)) == t.DesiredState
			}) ||
			!matchPrefix(args, "id", t.ID) || !matchPrefix(args, "name", f.taskNameLocked(t)) ||
			!args.MatchKVList("label", t.Labels) {
			continue
		}
		out = append(out, clone(*t))
	}
	return out, nil
}

// ContainerList implements API: the containers added with AddContainer
// and, as on a real manager, the containers of the tasks running on this
// node, labelled com.docker.swarm.*. Filters: network (name, or ID or ID
// prefix), label, name and id (as regular expressions), status.
func (f *Swarm) ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error) {
	if err := f.begin(ctx, dockerapi.OpContainerList); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
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

// Events implements dockerapi.API. Like the real client, it returns once subscribed
// (no event published after it returns is missed), never closes the
// message channel, and ends the stream by sending one error, ctx.Err() or
// the one given to BreakEvents, then closing the error channel. Filters:
// type, event, scope, service, network and config (ID or name, prefix). Since and
// Until are ignored: there is no history.
func (f *Swarm) Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error) {
	msgs := make(chan events.Message)
	errs := make(chan error, 1)
	if err := f.begin(ctx, dockerapi.OpEvents); err != nil {
		errs <- err
		close(errs)
		return msgs, errs
	}
	sub := &subscriber{filter: options.Filters.Clone(), wake: make(chan struct{}, 1), broken: make(chan error, 1)}
	f.mu.Lock()
	f.subs[sub] = struct{}{}
	f.mu.Unlock()
	go func() {
		defer close(errs)
		end := func(err error) {
			f.mu.Lock()
			delete(f.subs, sub)
			f.mu.Unlock()
			errs <- err
		}
		for {
			msg, ok := sub.pop()
			if !ok {
				select {
				case <-ctx.Done():
					end(ctx.Err())
					return
				case err := <-sub.broken:
					end(err)
					return
				case <-sub.wake:
					continue
				}
			}
			select {
			case msgs <- msg:
			case <-ctx.Done():
				end(ctx.Err())
				return
			case err := <-sub.broken:
				end(err)
				return
			}
		}
	}()
	return msgs, errs
}

// --- Services --------------------------------------------------------------

func (f *Swarm) createServiceLocked(spec swarm.ServiceSpec) (*swarm.Service, error) {
	if err := f.resolveNetworksLocked(&spec); err != nil {
		return nil, err
	}
	normalizeSpec(&spec)
	if err := validateSwarmSpec(spec); err != nil {
		return nil, err
	}
	if err := f.checkIngressLocked(spec); err != nil {
		return nil, err
	}
	for _, svc := range f.services {
		if svc.Spec.Name == spec.Name {
			return nil, dockerapi.NewDaemonError(http.StatusConflict, fmt.Sprintf("rpc error: code = AlreadyExists desc = name conflicts with an existing object: service %s already exists", spec.Name))
		}
	}
	if err := f.checkPortConflictsLocked(spec, ""); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	f.index++
	svc := &swarm.Service{
		ID:   newSwarmID(),
		Meta: swarm.Meta{Version: swarm.Version{Index: f.index}, CreatedAt: now, UpdatedAt: now},
		Spec: spec,
	}
	if f.allocatableLocked(spec) {
		svc.Endpoint = f.endpointLocked(spec, swarm.Endpoint{})
	} else {
		f.waiting[svc.ID] = true
	}
	f.services[svc.ID] = svc
	f.publishLocked(events.ServiceEventType, events.ActionCreate, svc.ID, "swarm", map[string]string{"name": spec.Name})
	f.reconcileTasksLocked(svc, false)
	f.settleLocked()
	return svc, nil
}

func (f *Swarm) updateServiceLocked(ref string, version swarm.Version, spec swarm.ServiceSpec, rollback bool) error {
	if err := f.resolveNetworksLocked(&spec); err != nil {
		return err
	}
	svc, err := f.findServiceLocked(ref)
	if err != nil {
		return err
	}
	normalizeSpec(&spec)
	if err := validateSwarmSpec(spec); err != nil {
		return err
	}
	if err := f.checkIngressLocked(spec); err != nil {
		return err
	}
	if !jsonEqual(spec.EndpointSpec, svc.Spec.EndpointSpec) {
		if err := f.checkPortConflictsLocked(spec, svc.ID); err != nil {
			return err
		}
	}
	// ServiceSpec.Networks is deprecated, but older clients still send it
	// and the engine still honours it: the fake does as the engine does.
	if (len(spec.Networks) != 0 || len(svc.Spec.Networks) != 0) && !jsonEqual(spec.Networks, svc.Spec.Networks) && //nolint:staticcheck // SA1019: modelled for old clients
		jsonEqual(spec.TaskTemplate.Networks, svc.Spec.TaskTemplate.Networks) {
		return dockerapi.NewDaemonError(http.StatusNotImplemented, "rpc error: code = Unimplemented desc = networks must be migrated to TaskSpec before being changed")
	}
	if serviceMode(spec.Mode) != serviceMode(svc.Spec.Mode) {
		return dockerapi.NewDaemonError(http.StatusNotImplemented, "rpc error: code = Unimplemented desc = service mode change is not allowed")
	}
	if spec.Name != svc.Spec.Name {
		return dockerapi.NewDaemonError(http.StatusNotImplemented, "rpc error: code = Unimplemented desc = renaming services is not supported")
	}
	if version.Index != svc.Version.Index {
		return dockerapi.NewDaemonError(http.StatusInternalServerError, "rpc error: code = Unknown desc = update out of sequence")
	}

	old := svc.Spec
	if rollback {
		if svc.PreviousSpec == nil {
			return dockerapi.NewDaemonError(http.StatusPreconditionFailed, fmt.Sprintf("rpc error: code = FailedPrecondition desc = service %s does not have a previous spec", svc.ID))
		}
		spec = *svc.PreviousSpec
	}
	svc.PreviousSpec = &old
	svc.Spec = spec
	svc.UpdateStatus = nil
	delete(f.rolling, svc.ID)
	// Until its networks have subnets, the service keeps the endpoint it had.
	if f.allocatableLocked(spec) {
		svc.Endpoint = f.endpointLocked(spec, svc.Endpoint)
		delete(f.waiting, svc.ID)
	} else {
		f.waiting[svc.ID] = true
	}
	attrs := map[string]string{"name": spec.Name}
	if oi, ni := serviceImage(old), serviceImage(spec); oi != ni {
		attrs["image.old"], attrs["image.new"] = oi, ni
	}
	if or, nr := replicas(old), replicas(spec); or != nr {
		attrs["replicas.old"], attrs["replicas.new"] = or, nr
	}
	f.writeServiceLocked(svc, attrs)

	// Swarm rolls tasks when their spec or the endpoint changes, writing the
	// service again each time its update status moves. An update with no
	// task to replace (no replicas) leaves no update status; a rollback
	// always has one.
	dirty := !jsonEqual(old.TaskTemplate, spec.TaskTemplate) || !jsonEqual(old.EndpointSpec, spec.EndpointSpec)
	kept := f.keptTasksLocked(svc)
	if rollback || dirty && kept > 0 {
		now := time.Now().UTC()
		st := &swarm.UpdateStatus{State: swarm.UpdateStateUpdating, StartedAt: &now, Message: "update in progress"}
		if rollback {
			st.State, st.Message = swarm.UpdateStateRollbackStarted, "manually requested rollback"
		}
		svc.UpdateStatus = st
		f.writeServiceLocked(svc, map[string]string{"name": spec.Name, "updatestate.new": string(st.State)})
		switch {
		case kept > 0 && f.holdUpdates:
			f.rolling[svc.ID] = true
		default:
			f.reconcileTasksLocked(svc, kept > 0)
		}
		f.settleLocked()
		return nil
	}
	f.reconcileTasksLocked(svc, false)
	f.settleLocked()
	return nil
}

// keptTasksLocked counts the tasks Swarm wants running that the service's
// spec keeps (its replica slots, or its nodes): the tasks an update rolls.
func (f *Swarm) keptTasksLocked(svc *swarm.Service) int {
	n := 0
	for _, t := range f.tasks {
		if t.ServiceID != svc.ID || t.DesiredState != swarm.TaskStateRunning {
			continue
		}
		switch m := svc.Spec.Mode; {
		case m.Replicated != nil && uint64(t.Slot) <= *m.Replicated.Replicas:
			n++
		case m.Global != nil && slices.ContainsFunc(f.activeNodesLocked(), func(nd *swarm.Node) bool { return nd.ID == t.NodeID }):
			n++
		}
	}
	return n
}

// finishUpdateLocked marks an update done, as Swarm's updater does once the
// new tasks run.
func (f *Swarm) finishUpdateLocked(svc *swarm.Service) {
	now := time.Now().UTC()
	st := clone(*svc.UpdateStatus)
	old := st.State
	st.CompletedAt = &now
	if old == swarm.UpdateStateRollbackStarted {
		st.State, st.Message = swarm.UpdateStateRollbackCompleted, "rollback completed"
	} else {
		st.State, st.Message = swarm.UpdateStateCompleted, "update completed"
	}
	svc.UpdateStatus = &st
	f.writeServiceLocked(svc, map[string]string{"name": svc.Spec.Name, "updatestate.old": string(old), "updatestate.new": string(st.State)})
}

// settleLocked does what Swarm does on its own after a change, in its
// order: the allocator retries the networks it could not give a subnet
// (in creation order) and the services waiting for them, the scheduler
// the tasks it could not place, and the updater completes the updates
// whose tasks all run.
func (f *Swarm) settleLocked() {
	var nets []*fakeNetwork
	for _, n := range f.networks {
		if !n.allocated {
			nets = append(nets, n)
		}
	}
	sort.Slice(nets, func(i, j int) bool { return nets[i].seq < nets[j].seq })
	for _, n := range nets {
		if !f.overlapsLocked(n.prefix, "swarm") {
			f.allocateNetworkLocked(n, true)
		}
	}
	for _, id := range sortedKeys(f.waiting) {
		svc := f.services[id]
		if svc == nil {
			delete(f.waiting, id)
			continue
		}
		if f.allocatableLocked(svc.Spec) {
			delete(f.waiting, id)
			svc.Endpoint = f.endpointLocked(svc.Spec, svc.Endpoint)
			f.writeServiceLocked(svc, map[string]string{"name": svc.Spec.Name})
		}
	}
	var unplaced []*swarm.Task
	for _, t := range f.tasks {
		if t.DesiredState == swarm.TaskStateRunning && (t.Status.State == swarm.TaskStateNew || t.Status.State == swarm.TaskStatePending) &&
			f.services[t.ServiceID] != nil && !f.waiting[t.ServiceID] {
			unplaced = append(unplaced, t)
		}
	}
	sort.Slice(unplaced, func(i, j int) bool {
		if !unplaced[i].CreatedAt.Equal(unplaced[j].CreatedAt) {
			return unplaced[i].CreatedAt.Before(unplaced[j].CreatedAt)
		}
		return unplaced[i].ID < unplaced[j].ID
	})
	for _, t := range unplaced {
		f.placeTaskLocked(f.services[t.ServiceID], t)
	}
	for _, id := range sortedKeys(f.services) {
		svc := f.services[id]
		st := svc.UpdateStatus
		if st == nil || st.State != swarm.UpdateStateUpdating && st.State != swarm.UpdateStateRollbackStarted || f.rolling[id] {
			continue
		}
		done := true
		for _, t := range f.tasks {
			if t.ServiceID == id && t.DesiredState == swarm.TaskStateRunning && t.Status.State != swarm.TaskStateRunning {
				done = false
			}
		}
		if done {
			f.finishUpdateLocked(svc)
		}
	}
}

// allocatableLocked reports whether Swarm's allocator can give a spec its
// endpoint and its tasks their addresses: every network it attaches to has
// a subnet.
func (f *Swarm) allocatableLocked(spec swarm.ServiceSpec) bool {
	for _, id := range attachedNetworks(spec) {
		if n := f.networks[id]; n == nil || !n.allocated {
			return false
		}
	}
	return true
}

func (f *Swarm) writeServiceLocked(svc *swarm.Service, attrs map[string]string) {
	f.index++
	svc.Version.Index = f.index
	svc.UpdatedAt = time.Now().UTC()
	f.publishLocked(events.ServiceEventType, events.ActionUpdate, svc.ID, "swarm", attrs)
}

// findServiceLocked resolves a reference as the engine does: full ID, then
// exact name, then ID prefix.
func (f *Swarm) findServiceLocked(ref string) (*swarm.Service, error) {
	if svc, ok := f.services[ref]; ok {
		return svc, nil
	}
	for _, svc := range f.services {
		if svc.Spec.Name == ref {
			return svc, nil
		}
	}
	var found []*swarm.Service
	for _, id := range sortedKeys(f.services) {
		if strings.HasPrefix(id, ref) {
			found = append(found, f.services[id])
		}
	}
	switch len(found) {
	case 0:
		return nil, dockerapi.NewDaemonError(http.StatusNotFound, fmt.Sprintf("service %s not found", ref))
	case 1:
		return found[0], nil
	}
	return nil, dockerapi.NewDaemonError(http.StatusBadRequest, fmt.Sprintf("service %s is ambiguous (%d matches found)", ref, len(found)))
}

// resolveNetworksLocked replaces network references in a spec by network
// IDs, as the engine stores them.
func (f *Swarm) resolveNetworksLocked(spec *swarm.ServiceSpec) error {
	for _, list := range [][]swarm.NetworkAttachmentConfig{spec.TaskTemplate.Networks, spec.Networks} { //nolint:staticcheck // SA1019: old clients still send it
		for i := range list {
			n, err := f.findNetworkLocked(list[i].Target, "")
			if err != nil {
				if dockerapi.IsNotFound(err) {
					return dockerapi.NewDaemonError(http.StatusInternalServerError, fmt.Sprintf("network %s not found", list[i].Target))
				}
				return err
			}
			if n.inspect.Scope != "swarm" {
				return dockerapi.NewDaemonError(http.StatusForbidden, fmt.Sprintf("The network %s cannot be used with services. Only networks scoped to the swarm can be used, such as those created with the overlay driver.", list[i].Target))
			}
			if n.inspect.Ingress {
				return dockerapi.NewDaemonError(http.StatusBadRequest, fmt.Sprintf("rpc error: code = InvalidArgument desc = Service cannot be explicitly attached to the ingress network %q", n.inspect.Name))
			}
			list[i].Target = n.inspect.ID
		}
	}
	return nil
}

// checkPortConflictsLocked is Swarm's check of the ports a spec publishes
// against the other services' (their specs and their allocated
// endpoints): an ingress port belongs to the whole Swarm, so no other
// service may publish it in any mode; a host-mode port may be published by
// several services, whose tasks the scheduler then keeps on different
// nodes. Ports differing in protocol do not conflict.
func (f *Swarm) checkPortConflictsLocked(spec swarm.ServiceSpec, self string) error {
	if spec.EndpointSpec == nil {
		return nil
	}
	type portKey struct {
		protocol swarm.PortConfigProtocol
		port     uint32
	}
	ingress, host := map[portKey]bool{}, map[portKey]bool{}
	for _, p := range spec.EndpointSpec.Ports {
		if p.PublishedPort == 0 {
			continue
		}
		switch p.PublishMode {
		case swarm.PortConfigPublishModeIngress:
			ingress[portKey{p.Protocol, p.PublishedPort}] = true
		case swarm.PortConfigPublishModeHost:
			host[portKey{p.Protocol, p.PublishedPort}] = true
		}
	}
	if len(ingress) == 0 && len(host) == 0 {
		return nil
	}
	for _, id := range sortedKeys(f.services) {
		other := f.services[id]
		if id == self {
			continue
		}
		var theirs []swarm.PortConfig
		if other.Spec.EndpointSpec != nil {
			theirs = append(theirs, other.Spec.EndpointSpec.Ports...)
		}
		for _, q := range append(theirs, other.Endpoint.Ports...) {
			k := portKey{q.Protocol, q.PublishedPort}
			if q.PublishedPort == 0 {
				continue
			}
			var as string
			switch {
			case q.PublishMode == swarm.PortConfigPublishModeHost && ingress[k]:
				as = "a host-published port"
			case q.PublishMode == swarm.PortConfigPublishModeIngress && (ingress[k] || host[k]):
				as = "an ingress port"
			default:
				continue
			}
			return dockerapi.NewDaemonError(http.StatusBadRequest, fmt.Sprintf("rpc error: code = InvalidArgument desc = port '%d' is already in use by service '%s' (%s) as %s", q.PublishedPort, other.Spec.Name, other.ID, as))
		}
	}
	return nil
}

// endpointLocked derives what Swarm's allocator writes: ports with a
// published port assigned where none was asked for, and a VIP on every
// network (the ingress one first when a port goes through it).
func (f *Swarm) endpointLocked(spec swarm.ServiceSpec, prev swarm.Endpoint) swarm.Endpoint {
	var ep swarm.Endpoint
	if spec.EndpointSpec != nil {
		ep.Spec = clone(*spec.EndpointSpec)
	}
	ingress := false
	for _, p := range ep.Spec.Ports {
		if p.PublishMode == swarm.PortConfigPublishModeIngress {
			ingress = true
			if p.PublishedPort == 0 {
				p.PublishedPort = f.nextPort
				for _, q := range prev.Ports {
					if q.PublishMode == p.PublishMode && q.TargetPort == p.TargetPort && q.Protocol == p.Protocol {
						p.PublishedPort = q.PublishedPort
					}
				}
				if p.PublishedPort == f.nextPort {
					f.nextPort++
				}
			}
		}
		ep.Ports = append(ep.Ports, p)
	}
	if ep.Spec.Mode == swarm.ResolutionModeDNSRR {
		return ep
	}
	var ids []string
	if ingress {
		ids = append(ids, f.ingressLocked().inspect.ID)
	}
	ids = append(ids, attachedNetworks(spec)...)
	for _, id := range ids {
		vip := swarm.EndpointVirtualIP{NetworkID: id}
		for _, old := range prev.VirtualIPs {
			if old.NetworkID == id {
				vip.Addr = old.Addr
			}
		}
		if vip.Addr == "" {
			vip.Addr = f.networks[id].allocate()
		}
		ep.VirtualIPs = append(ep.VirtualIPs, vip)
	}
	return ep
}

func (f *Swarm) serviceStatusLocked(svc *swarm.Service) *swarm.ServiceStatus {
	st := &swarm.ServiceStatus{}
	switch {
	case svc.Spec.Mode.Replicated != nil:
		st.DesiredTasks = *svc.Spec.Mode.Replicated.Replicas
	case svc.Spec.Mode.Global != nil:
		st.DesiredTasks = uint64(len(f.activeNodesLocked()))
	}
	for _, t := range f.tasks {
		if t.ServiceID == svc.ID && t.DesiredState == swarm.TaskStateRunning && t.Status.State == swarm.TaskStateRunning {
			st.RunningTasks++
		}
	}
	return st
}

// --- Tasks -----------------------------------------------------------------

// reconcileTasksLocked makes a service's running tasks match its spec: one
// per replica slot (spread over active nodes) or one per active node for
// global services. replace shuts down the running tasks and starts new
// ones from the current spec, as a completed rolling update does. Jobs get
// no tasks.
func (f *Swarm) reconcileTasksLocked(svc *swarm.Service, replace bool) {
	type slot struct {
		slot int
		node string
	}
	nodes := f.activeNodesLocked()
	want := map[slot]bool{}
	switch {
	case svc.Spec.Mode.Replicated != nil && len(nodes) > 0:
		for i := 1; i <= int(*svc.Spec.Mode.Replicated.Replicas); i++ {
			want[slot{slot: i}] = true
		}
	case svc.Spec.Mode.Global != nil:
		for _, n := range nodes {
			want[slot{node: n.ID}] = true
		}
	}
	keyOf := func(t *swarm.Task) slot {
		if svc.Spec.Mode.Global != nil {
			return slot{node: t.NodeID}
		}
		return slot{slot: t.Slot}
	}
	have := map[slot]bool{}
	for _, id := range sortedKeys(f.tasks) {
		t := f.tasks[id]
		if t.ServiceID != svc.ID || t.DesiredState != swarm.TaskStateRunning {
			continue
		}
		k := keyOf(t)
		switch {
		case !want[k]:
			delete(f.tasks, id) // scaled down or node gone: Swarm removes these
		case replace:
			f.index++
			t.Version.Index = f.index
			t.UpdatedAt = time.Now().UTC()
			t.DesiredState = swarm.TaskStateShutdown
			t.Status.State, t.Status.Message, t.Status.Timestamp = swarm.TaskStateShutdown, "shutdown", t.UpdatedAt
		default:
			have[k] = true
		}
	}
	keys := make([]slot, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].slot != keys[j].slot {
			return keys[i].slot < keys[j].slot
		}
		return keys[i].node < keys[j].node
	})
	for _, k := range keys {
		if have[k] {
			continue
		}
		node := k.node
		if node == "" {
			node = nodes[(k.slot-1)%len(nodes)].ID
		}
		f.startTaskLocked(svc, k.slot, node)
	}
	f.pruneTasksLocked(svc.ID)
}

// startTaskLocked creates a task for a slot (a replica number, or a node
// for global services) and runs it on node, or where the scheduler can.
// While the service's networks have no subnet, it stays "new": created,
// without addresses, on no node.
func (f *Swarm) startTaskLocked(svc *swarm.Service, slotNum int, node string) {
	now := time.Now().UTC()
	f.index++
	t := &swarm.Task{
		ID:           newSwarmID(),
		Meta:         swarm.Meta{Version: swarm.Version{Index: f.index}, CreatedAt: now, UpdatedAt: now},
		Annotations:  swarm.Annotations{Labels: map[string]string{}},
		Spec:         clone(svc.Spec.TaskTemplate),
		ServiceID:    svc.ID,
		Slot:         slotNum,
		Status:       swarm.TaskStatus{Timestamp: now, State: swarm.TaskStateNew, Message: "created", PortStatus: swarm.PortStatus{}},
		DesiredState: swarm.TaskStateRunning,
	}
	if svc.Spec.Mode.Global != nil {
		t.NodeID = node // Swarm creates a global task for its node
	}
	f.tasks[t.ID] = t
	if !f.waiting[svc.ID] {
		f.placeTaskLocked(svc, t, node)
	}
}

// placeTaskLocked gives a "new" task its network addresses, as Swarm's
// allocator does, then, as its scheduler, a node: the preferred one (or,
// for a global task, its own) or else the first other one that fits. A
// node fits unless a task running there already publishes one of the
// task's host-mode ports. A task no node fits stays "pending", with the
// scheduler's explanation, until one does.
func (f *Swarm) placeTaskLocked(svc *swarm.Service, t *swarm.Task, prefer ...string) {
	if t.Status.State == swarm.TaskStateNew {
		var ids []string
		for _, vip := range svc.Endpoint.VirtualIPs {
			if n := f.networks[vip.NetworkID]; n != nil && n.inspect.Ingress {
				ids = append(ids, vip.NetworkID)
			}
		}
		if svc.Spec.EndpointSpec != nil && svc.Spec.EndpointSpec.Mode == swarm.ResolutionModeDNSRR {
			ids = nil
		}
		for _, id := range append(ids, attachedNetworks(svc.Spec)...) {
			n := f.networks[id]
			t.NetworksAttachments = append(t.NetworksAttachments, swarm.NetworkAttachment{
				Network: n.swarmNetwork(), Addresses: []string{n.allocate()},
			})
		}
	}
	var hostPorts []swarm.PortConfig
	for _, p := range svc.Endpoint.Ports {
		if p.PublishMode == swarm.PortConfigPublishModeHost {
			hostPorts = append(hostPorts, p)
		}
	}
	var candidates []*swarm.Node
	for _, n := range f.activeNodesLocked() {
		if svc.Spec.Mode.Global == nil || n.ID == t.NodeID {
			candidates = append(candidates, n)
		}
	}
	if len(prefer) > 0 {
		if i := slices.IndexFunc(candidates, func(n *swarm.Node) bool { return n.ID == prefer[0] }); i > 0 {
			candidates[0], candidates[i] = candidates[i], candidates[0]
		}
	}
	var node *swarm.Node
	refused := 0
	for _, n := range candidates {
		if f.hostPortsFreeLocked(t, n.ID, hostPorts) {
			node = n
			break
		}
		refused++
	}
	now := time.Now().UTC()
	f.index++
	t.Version.Index, t.UpdatedAt = f.index, now
	if node == nil {
		why := "no suitable node"
		switch {
		case refused == 1:
			why += " (host-mode port already in use on 1 node)"
		case refused > 1:
			why += fmt.Sprintf(" (host-mode port already in use on %d nodes)", refused)
		}
		if svc.Spec.Mode.Global == nil {
			t.NodeID = ""
		}
		t.Status = swarm.TaskStatus{Timestamp: now, State: swarm.TaskStatePending, Message: "pending task scheduling", Err: why, PortStatus: swarm.PortStatus{}}
		return
	}
	t.NodeID = node.ID
	t.Status = swarm.TaskStatus{
		Timestamp: now, State: swarm.TaskStateRunning, Message: "started",
		ContainerStatus: &swarm.ContainerStatus{ContainerID: newHexID(), PID: 1000 + rand.IntN(30000)},
		PortStatus:      swarm.PortStatus{Ports: hostPorts},
	}
}

// hostPortsFreeLocked reports whether none of these host-mode ports is
// published by a task running on the node (other than t).
func (f *Swarm) hostPortsFreeLocked(t *swarm.Task, node string, ports []swarm.PortConfig) bool {
	for _, o := range f.tasks {
		if o.ID == t.ID || o.NodeID != node || o.Status.State != swarm.TaskStateRunning {
			continue
		}
		for _, q := range o.Status.PortStatus.Ports {
			for _, p := range ports {
				if p.PublishedPort != 0 && p.PublishedPort == q.PublishedPort && p.Protocol == q.Protocol {
					return false
				}
			}
		}
	}
	return true
}

// pruneTasksLocked keeps, per slot, the five newest tasks (Swarm's default
// task history retention).
func (f *Swarm) pruneTasksLocked(serviceID string) {
	bySlot := map[string][]*swarm.Task{}
	for _, t := range f.tasks {
		if t.ServiceID == serviceID {
			k := strconv.Itoa(t.Slot) + "/" + t.NodeID
			if t.Slot != 0 {
				k = strconv.Itoa(t.Slot)
			}
			bySlot[k] = append(bySlot[k], t)
		}
	}
	for _, ts := range bySlot {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Version.Index > ts[j].Version.Index })
		for _, t := range ts[min(len(ts), 5):] {
			delete(f.tasks, t.ID)
		}
	}
}

func (f *Swarm) taskNameLocked(t *swarm.Task) string {
	svc := f.services[t.ServiceID]
	if svc == nil {
		return t.ID
	}
	if t.Slot != 0 {
		return fmt.Sprintf("%s.%d.%s", svc.Spec.Name, t.Slot, t.ID)
	}
	return fmt.Sprintf("%s.%s.%s", svc.Spec.Name, t.NodeID, t.ID)
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

// --- Networks --------------------------------------------------------------

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

// --- Nodes -----------------------------------------------------------------

func (f *Swarm) addNodeLocked(n swarm.Node) *swarm.Node {
	now := time.Now().UTC()
	f.index++
	if n.ID == "" {
		n.ID = newSwarmID()
	}
	n.Version = swarm.Version{Index: f.index}
	n.CreatedAt, n.UpdatedAt = now, now
	if n.Spec.Labels == nil {
		n.Spec.Labels = map[string]string{}
	}
	if n.Spec.Role == "" {
		n.Spec.Role = swarm.NodeRoleWorker
	}
	if n.Spec.Availability == "" {
		n.Spec.Availability = swarm.NodeAvailabilityActive
	}
	if n.Description.Hostname == "" {
		n.Description.Hostname = fmt.Sprintf("fake-node-%d", len(f.nodes)+1)
	}
	if n.Description.Platform == (swarm.Platform{}) {
		n.Description.Platform = swarm.Platform{Architecture: "x86_64", OS: "linux"}
	}
	if n.Description.Engine.EngineVersion == "" {
		n.Description.Engine.EngineVersion = "20.10.24-fake"
	}
	if n.Status.State == "" {
		n.Status.State = swarm.NodeStateReady
	}
	if n.Status.Addr == "" {
		n.Status.Addr = fmt.Sprintf("127.0.0.%d", len(f.nodes)+1)
	}
	if n.Spec.Role == swarm.NodeRoleManager && n.ManagerStatus == nil {
		n.ManagerStatus = &swarm.ManagerStatus{Leader: len(f.nodes) == 0, Reachability: swarm.ReachabilityReachable, Addr: n.Status.Addr + ":2377"}
	}
	f.nodes = append(f.nodes, &n)
	return &n
}

func (f *Swarm) activeNodesLocked() []*swarm.Node {
	var out []*swarm.Node
	for _, n := range f.nodes {
		if n.Spec.Availability == swarm.NodeAvailabilityActive && n.Status.State == swarm.NodeStateReady {
			out = append(out, n)
		}
	}
	return out
}

func (f *Swarm) sortedNodesLocked() []*swarm.Node {
	out := slices.Clone(f.nodes)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (f *Swarm) findNodeLocked(ref string) (*swarm.Node, error) {
	var prefixed []*swarm.Node
	for _, n := range f.sortedNodesLocked() {
		if n.ID == ref || nodeName(n) == ref {
			return n, nil
		}
		if strings.HasPrefix(n.ID, ref) {
			prefixed = append(prefixed, n)
		}
	}
	if len(prefixed) == 1 {
		return prefixed[0], nil
	}
	if len(prefixed) > 1 {
		return nil, dockerapi.NewDaemonError(http.StatusBadRequest, fmt.Sprintf("node %s is ambiguous (%d matches found)", ref, len(prefixed)))
	}
	return nil, dockerapi.NewDaemonError(http.StatusNotFound, fmt.Sprintf("node %s not found", ref))
}

func nodeName(n *swarm.Node) string {
	if n.Spec.Name != "" {
		return n.Spec.Name
	}
	return n.Description.Hostname
}

// --- Events ----------------------------------------------------------------

type subscriber struct {
	filter filters.Args
	mu     sync.Mutex
	queue  []events.Message // unbounded, so publishing never blocks a write
	wake   chan struct{}
	broken chan error
}

func (s *subscriber) push(m events.Message) {
	s.mu.Lock()
	s.queue = append(s.queue, m)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) pop() (events.Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return events.Message{}, false
	}
	m := s.queue[0]
	s.queue = s.queue[1:]
	return m, true
}

// publishLocked sends an event to the matching subscribers. It runs after
// the state changed, under the lock, so subscribers see events in order.
func (f *Swarm) publishLocked(typ events.Type, action events.Action, id, scope string, attrs map[string]string) {
	now := time.Now()
	m := events.Message{
		Type: typ, Action: action, Scope: scope, Time: now.Unix(), TimeNano: now.UnixNano(),
		Actor: events.Actor{ID: id, Attributes: attrs},
	}
	for sub := range f.subs {
		a := sub.filter
		if a.ExactMatch("type", string(typ)) && a.ExactMatch("event", string(action)) && a.ExactMatch("scope", scope) &&
			(a.FuzzyMatch("service", id) || a.FuzzyMatch("service", attrs["name"])) &&
			(a.FuzzyMatch("network", id) || a.FuzzyMatch("network", attrs["name"])) &&
			(a.FuzzyMatch("config", id) || a.FuzzyMatch("config", attrs["name"])) {
			sub.push(clone(m))
		}
	}
}

// --- Spec normalisation and validation -------------------------------------

// validateClientSpec is the check the real client makes before sending.
func validateClientSpec(s swarm.ServiceSpec) error {
	tt := s.TaskTemplate
	switch {
	case tt.ContainerSpec != nil && tt.PluginSpec != nil:
		return errors.New("must not specify both a container spec and a plugin spec in the task template")
	case tt.PluginSpec != nil && tt.Runtime != swarm.RuntimePlugin:
		return errors.New("mismatched runtime with plugin spec")
	case tt.ContainerSpec != nil && tt.Runtime != "" && tt.Runtime != swarm.RuntimeContainer:
		return errors.New("mismatched runtime with container spec")
	}
	return nil
}

// tagImage adds ":latest" to an untagged image, as the real client does
// before sending a spec.
func tagImage(s *swarm.ServiceSpec) {
	if cs := s.TaskTemplate.ContainerSpec; cs != nil {
		if named, err := reference.ParseNormalizedNamed(cs.Image); err == nil {
			cs.Image = reference.FamiliarString(reference.TagNameOnly(named))
		}
	}
}

// normalizeSpec fills in the defaults the engine stores (seen on 20.10).
func normalizeSpec(s *swarm.ServiceSpec) {
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	if cs := s.TaskTemplate.ContainerSpec; cs != nil {
		if s.TaskTemplate.Runtime == "" {
			s.TaskTemplate.Runtime = swarm.RuntimeContainer
		}
		if cs.Isolation == "" {
			cs.Isolation = container.IsolationDefault
		}
	}
	m := &s.Mode
	if m.Replicated == nil && m.Global == nil && m.ReplicatedJob == nil && m.GlobalJob == nil {
		m.Replicated = &swarm.ReplicatedService{}
	}
	if m.Replicated != nil && m.Replicated.Replicas == nil {
		one := uint64(1)
		m.Replicated.Replicas = &one
	}
	if rp := s.TaskTemplate.RestartPolicy; rp != nil && rp.MaxAttempts == nil {
		rp.MaxAttempts = new(uint64)
	}
	// The engine's conversion fills in what an update (or rollback) config
	// leaves empty (its zero values); InsertDefaults would show more.
	for _, c := range []*swarm.UpdateConfig{s.UpdateConfig, s.RollbackConfig} {
		if c != nil && c.FailureAction == "" {
			c.FailureAction = swarm.UpdateFailureActionPause
		}
		if c != nil && c.Order == "" {
			c.Order = swarm.UpdateOrderStopFirst
		}
	}
	if e := s.EndpointSpec; e != nil {
		if e.Mode == "" {
			e.Mode = swarm.ResolutionModeVIP
		}
		for i := range e.Ports {
			if e.Ports[i].Protocol == "" {
				e.Ports[i].Protocol = swarm.PortConfigProtocolTCP
			}
			if e.Ports[i].PublishMode == "" {
				e.Ports[i].PublishMode = swarm.PortConfigPublishModeIngress
			}
		}
	}
}

// validateSwarmSpec is the part of Swarm's validation a reconciler can trip.
func validateSwarmSpec(s swarm.ServiceSpec) error {
	if e := s.EndpointSpec; e != nil && e.Mode == swarm.ResolutionModeDNSRR {
		for _, p := range e.Ports {
			if p.PublishMode == swarm.PortConfigPublishModeIngress {
				return dockerapi.NewDaemonError(http.StatusBadRequest, "rpc error: code = InvalidArgument desc = EndpointSpec: port published with ingress mode can't be used with dnsrr mode")
			}
		}
	}
	return nil
}

// attachedNetworks returns the IDs of the networks a stored spec attaches
// its tasks to, without duplicates.
func attachedNetworks(s swarm.ServiceSpec) []string {
	var ids []string
	for _, a := range slices.Concat(s.TaskTemplate.Networks, s.Networks) { //nolint:staticcheck // SA1019: old clients still send it
		if !slices.Contains(ids, a.Target) {
			ids = append(ids, a.Target)
		}
	}
	return ids
}

func serviceMode(m swarm.ServiceMode) string {
	switch {
	case m.Global != nil:
		return "global"
	case m.ReplicatedJob != nil:
		return "replicated-job"
	case m.GlobalJob != nil:
		return "global-job"
	}
	return "replicated"
}

func serviceImage(s swarm.ServiceSpec) string {
	if s.TaskTemplate.ContainerSpec == nil {
		return ""
	}
	return s.TaskTemplate.ContainerSpec.Image
}

func replicas(s swarm.ServiceSpec) string {
	if s.Mode.Replicated == nil || s.Mode.Replicated.Replicas == nil {
		return ""
	}
	return strconv.FormatUint(*s.Mode.Replicated.Replicas, 10)
}

// --- Helpers ---------------------------------------------------------------

func validateFilters(args filters.Args, accepted ...string) error {
	for _, k := range args.Keys() {
		if !slices.Contains(accepted, k) {
			return dockerapi.NewDaemonError(http.StatusBadRequest, fmt.Sprintf("Invalid filter '%s'", k))
		}
	}
	return nil
}

// errFakeFilter reports a filter the engine accepts but Fake does not
// implement, so a test cannot silently get unfiltered results.
func errFakeFilter(key string) error {
	return fmt.Errorf("fake.Swarm: filter %q is not implemented", key)
}

func matchPrefix(args filters.Args, key, s string) bool {
	vals := args.Get(key)
	return len(vals) == 0 || slices.ContainsFunc(vals, func(p string) bool { return strings.HasPrefix(s, p) })
}

// emptyIDError is the client's own error for an empty reference.
type emptyIDError string

func (e emptyIDError) InvalidParameter() {}

func (e emptyIDError) Error() string { return "invalid " + string(e) + " name or ID: value is empty" }

// clone deep-copies v the way the wire does, so nothing the Fake stores is
// shared with its callers and what they get back is what a client decodes.
func clone[T any](v T) T {
	b, err := json.Marshal(v)
	if err != nil {
		panic("fake.Swarm: " + err.Error())
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		panic("fake.Swarm: " + err.Error())
	}
	return out
}

func jsonEqual(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// newSwarmID returns an ID shaped like Swarm's: 25 base-36 characters.
func newSwarmID() string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 25)
	for i := range b {
		b[i] = digits[rand.IntN(len(digits))]
	}
	return string(b)
}

// newHexID returns an ID shaped like a local network's or a container's.
func newHexID() string {
	return fmt.Sprintf("%016x%016x%016x%016x", rand.Uint64(), rand.Uint64(), rand.Uint64(), rand.Uint64())
}

func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
