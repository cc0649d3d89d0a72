package fake

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
)

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

// NodeList implements dockerapi.API. Filters: id and name (prefixes), role,
// membership, label (engine labels) and node.label.
func (f *Swarm) NodeList(ctx context.Context, options swarm.NodeListOptions) ([]swarm.Node, error) {
	unlock, err := f.swarmCall(ctx, dockerapi.OpNodeList)
	if err != nil {
		return nil, err
	}
	defer unlock()
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
