package state

import (
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// Policies are the desired policies of a loaded manifest set, in its
// order: the one place where decoded policies become stored ones. The
// store keeps v1.Policy as it is: desired state is the API's own type.
func Policies(objs []v1.Policy) []*v1.Policy {
	out := make([]*v1.Policy, len(objs))
	for i := range objs {
		out[i] = &objs[i]
	}
	return out
}

// Service is an observed Swarm service. The store owns the objects it holds:
// callers must not modify them; Clone before changing.
type Service struct {
	ID      string
	Name    string
	Version uint64
	// Labels are the service's own labels (spec annotations).
	Labels map[string]string
	// SelectorLabels are what selectors see: Labels plus the implicit
	// swarmsec.io/service=<name>.
	SelectorLabels map[string]string
	// Networks are the attachments in effect: TaskTemplate.Networks, or the
	// deprecated Spec.Networks for services created that way.
	Networks []swarm.NetworkAttachmentConfig
	// DeprecatedNetworks is set when Networks came from Spec.Networks.
	DeprecatedNetworks bool
	// Ports are the published ports of the endpoint spec.
	Ports []swarm.PortConfig
	// UpdateState is the state of the last rolling update ("" if none),
	// UpdateMessage what Swarm says of it.
	UpdateState   swarm.UpdateState
	UpdateMessage string
	// DesiredTasks is how many tasks Swarm wants running; known only when
	// the service list was asked for status (StatusKnown).
	DesiredTasks uint64
	StatusKnown  bool
	// ignored is the opt-out label, read once: every pass asks each
	// service several times, and at 10,000 services the label lookups
	// showed in the profile.
	ignored bool
	// Spec is the whole spec as read, so writes change only what swarmsec
	// owns and keep every other field.
	Spec swarm.ServiceSpec
}

// NewService builds the observed form of a Swarm service.
func NewService(s swarm.Service) *Service {
	svc := &Service{
		ID:      s.ID,
		Name:    s.Spec.Name,
		Version: s.Version.Index,
		Labels:  s.Spec.Labels,
		Spec:    s.Spec,
		ignored: s.Spec.Labels[v1.LabelIgnore] == "true",
	}
	svc.SelectorLabels = make(map[string]string, len(s.Spec.Labels)+1)
	maps.Copy(svc.SelectorLabels, s.Spec.Labels)
	svc.SelectorLabels[v1.LabelService] = s.Spec.Name
	svc.Networks = s.Spec.TaskTemplate.Networks
	//nolint:staticcheck // Spec.Networks is deprecated but still found on old services.
	if len(svc.Networks) == 0 && len(s.Spec.Networks) > 0 {
		svc.Networks = s.Spec.Networks //nolint:staticcheck
		svc.DeprecatedNetworks = true
	}
	if s.Spec.EndpointSpec != nil {
		svc.Ports = s.Spec.EndpointSpec.Ports
	}
	if s.UpdateStatus != nil {
		svc.UpdateState, svc.UpdateMessage = s.UpdateStatus.State, s.UpdateStatus.Message
	}
	if s.ServiceStatus != nil {
		svc.DesiredTasks, svc.StatusKnown = s.ServiceStatus.DesiredTasks, true
	}
	return svc
}

// Ignored reports whether the service opted out of swarmsec.
func (s *Service) Ignored() bool { return s.ignored }

// CloneSpec returns a deep copy of the service spec, safe to modify.
func (s *Service) CloneSpec() swarm.ServiceSpec {
	var out swarm.ServiceSpec
	b, err := json.Marshal(s.Spec)
	if err == nil {
		err = json.Unmarshal(b, &out)
	}
	if err != nil {
		// A spec that came from the Docker API always round-trips.
		panic("state: service spec does not round-trip through JSON: " + err.Error())
	}
	return out
}

// Network is an observed Docker network.
type Network struct {
	ID     string
	Name   string
	Driver string
	Scope  string
	Labels map[string]string
	// SelectorLabels are Labels plus swarmsec.io/network=<name>.
	SelectorLabels map[string]string
	Options        map[string]string
	Internal       bool
	Attachable     bool
	Ingress        bool
	EnableIPv6     bool
	// IPAM and ConfigFrom are what a replacement of the network needs.
	IPAM       network.IPAM
	ConfigFrom string
	Created    time.Time
}

// Encrypted reports whether the network was created encrypted: the engine
// records the option's presence, whatever its value.
func (n *Network) Encrypted() bool {
	_, ok := n.Options["encrypted"]
	return ok
}

// Managed reports whether swarmsec created the network and may remove it.
func (n *Network) Managed() bool { return n.Labels[v1.LabelManaged] == "true" }

// Owner is the policy a managed network belongs to.
func (n *Network) Owner() string { return n.Labels[v1.LabelOwner] }

// Ignored reports whether the network opted out of swarmsec.
func (n *Network) Ignored() bool { return n.Labels[v1.LabelIgnore] == "true" }

// Predefined reports whether Docker created the network itself.
func (n *Network) Predefined() bool {
	if n.Ingress {
		return true
	}
	switch n.Name {
	case "ingress", "bridge", "host", "none", "docker_gwbridge":
		return true
	}
	return false
}

// Node is an observed Swarm node.
type Node struct {
	ID           string
	Hostname     string
	Role         swarm.NodeRole
	State        swarm.NodeState
	Availability swarm.NodeAvailability
	Addr         string
}

// NewNetwork builds the observed form of a Docker network.
func NewNetwork(n network.Summary) *Network {
	sel := make(map[string]string, len(n.Labels)+1)
	maps.Copy(sel, n.Labels)
	sel[v1.LabelNetwork] = n.Name
	return &Network{
		ID:             n.ID,
		Name:           n.Name,
		Driver:         n.Driver,
		Scope:          n.Scope,
		Labels:         n.Labels,
		SelectorLabels: sel,
		Options:        n.Options,
		Internal:       n.Internal,
		Attachable:     n.Attachable,
		Ingress:        n.Ingress,
		EnableIPv6:     n.EnableIPv6,
		IPAM:           n.IPAM,
		ConfigFrom:     n.ConfigFrom.Network,
		Created:        n.Created,
	}
}

// NewNode builds the observed form of a Swarm node.
func NewNode(n swarm.Node) *Node {
	return &Node{
		ID:           n.ID,
		Hostname:     n.Description.Hostname,
		Role:         n.Spec.Role,
		State:        n.Status.State,
		Availability: n.Spec.Availability,
		Addr:         n.Status.Addr,
	}
}

// Task is an observed Swarm task that Swarm wants running.
type Task struct {
	ID        string
	ServiceID string
	NodeID    string
	State     swarm.TaskState
	// Networks are the IDs of the networks its spec attaches, sorted.
	Networks []string
}

// NewTask builds the observed form of a Swarm task.
func NewTask(t swarm.Task) *Task {
	nets := make([]string, 0, len(t.Spec.Networks))
	for _, a := range t.Spec.Networks {
		nets = append(nets, a.Target)
	}
	slices.Sort(nets)
	return &Task{ID: t.ID, ServiceID: t.ServiceID, NodeID: t.NodeID, State: t.Status.State, Networks: nets}
}

// Record is an observed Swarm config that may hold what swarmsec must
// restore for a service: configs keep their data where no service update
// reaches, and only managers write them.
type Record struct {
	ID     string
	Name   string
	Labels map[string]string
	Data   []byte
}

// NewRecord builds the observed form of a Swarm config.
func NewRecord(c swarm.Config) *Record {
	return &Record{ID: c.ID, Name: c.Spec.Name, Labels: c.Spec.Labels, Data: c.Spec.Data}
}
