package fake

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
)

// TaskList implements dockerapi.API. Filters: service and node (ID, name or ID
// prefix, resolved as the engine does), desired-state, id and name
// (prefixes), label.
func (f *Swarm) TaskList(ctx context.Context, options swarm.TaskListOptions) ([]swarm.Task, error) {
	unlock, err := f.swarmCall(ctx, dockerapi.OpTaskList)
	if err != nil {
		return nil, err
	}
	defer unlock()
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
