package fake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

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

var _ dockerapi.API = (*Swarm)(nil)

// An API call opens as the engine takes a request: the call is counted,
// then fails as FailNext queued or as ctx says, then the client's own
// checks run (the real client rejects those before sending anything),
// then the engine takes the request (the lock) and, for Swarm's objects,
// requires a manager. Unless it failed, the caller holds the lock until
// it calls unlock. Every method of dockerapi.API opens with swarmCall or
// localCall (Events with begin: it holds no lock while it streams).

// swarmCall opens a call on Swarm's objects: services, tasks, nodes,
// configs, service logs.
func (f *Swarm) swarmCall(ctx context.Context, op string, checks ...func() error) (unlock func(), err error) {
	return f.open(ctx, op, true, checks)
}

// localCall opens a call the engine answers without Swarm: its info, its
// networks (Swarm's among them when it is a manager), its containers.
func (f *Swarm) localCall(ctx context.Context, op string, checks ...func() error) (unlock func(), err error) {
	return f.open(ctx, op, false, checks)
}

func (f *Swarm) open(ctx context.Context, op string, manager bool, checks []func() error) (unlock func(), err error) {
	if err := f.begin(ctx, op); err != nil {
		return nil, err
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	if manager {
		if err := f.requireManagerLocked(); err != nil {
			f.mu.Unlock()
			return nil, err
		}
	}
	return f.mu.Unlock, nil
}

// requireID is the client's check of an ID or name argument.
func requireID(ref, kind string) func() error {
	return func() error {
		if strings.TrimSpace(ref) == "" {
			return emptyIDError(kind)
		}
		return nil
	}
}

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
	unlock, err := f.localCall(ctx, dockerapi.OpInfo)
	if err != nil {
		return system.Info{}, err
	}
	defer unlock()
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
