package plan

import (
	"fmt"
	"maps"
	"reflect"
	"strings"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
)

// What a step sends to Docker: the options of a network to create, the
// steps of an action, and the owned fields of a service spec.

// StepList returns the writes of an action.
func (a *Action) StepList() []Step {
	switch a.Kind {
	case ActionMigrateNetwork:
		return a.Steps
	case ActionCreateNetwork:
		opts := CreateOptions(a.Network)
		return []Step{{Kind: a.Kind, Name: a.Name, What: "create network " + a.Name, Create: &opts}}
	case ActionUpdateService:
		steps := []Step{{Kind: a.Kind, Name: a.Name, ID: a.ID, What: "update service " + a.Name, Service: a.Service}}
		if a.Service.CreateRecord != nil {
			steps = append([]Step{{Kind: ActionCreateRecord, Name: compile.RecordName(a.ID), ID: a.ID, What: "record " + a.Name, Service: a.Service}}, steps...)
		}
		return steps
	case ActionCreateRecord:
		return []Step{{Kind: a.Kind, Name: a.Name, ID: a.ID, What: "record " + a.Name, Service: a.Service}}
	}
	return []Step{{Kind: a.Kind, Name: a.Name, ID: a.ID, What: "remove network " + a.Name}}
}

// ManagedNetworkLabels are the labels every network swarmsec creates for a
// policy carries.
func ManagedNetworkLabels(dn *compile.DesiredNetwork) map[string]string {
	labels := map[string]string{v1.LabelManaged: "true", v1.LabelPurpose: dn.Purpose}
	if dn.Owner != "" {
		labels[v1.LabelOwner] = dn.Owner
	}
	return labels
}

// CreateOptions are the options of a managed network: always an encrypted
// overlay, never attachable, so no container outside a service may join.
func CreateOptions(dn *compile.DesiredNetwork) network.CreateOptions {
	return network.CreateOptions{
		Driver: "overlay", Scope: "swarm", Internal: dn.Internal, Attachable: false,
		Options: map[string]string{"encrypted": "true"}, Labels: ManagedNetworkLabels(dn),
	}
}

// Owned is the part of a service spec that swarmsec writes: networks,
// published ports and the label naming its record. It shares the spec's
// slices: treat it as read-only.
type Owned struct {
	Networks []swarm.NetworkAttachmentConfig
	Ports    []swarm.PortConfig
	Original string
}

// OwnedOf returns the fields of a spec swarmsec owns.
func OwnedOf(spec swarm.ServiceSpec) Owned {
	o := Owned{Networks: spec.TaskTemplate.Networks, Original: spec.Labels[v1.LabelOriginal]}
	if len(o.Networks) == 0 {
		o.Networks = spec.Networks //nolint:staticcheck // older services keep their networks there
	}
	if spec.EndpointSpec != nil {
		o.Ports = spec.EndpointSpec.Ports
	}
	return o
}

// Equal reports whether two specs differ only in fields swarmsec never
// writes.
func (o Owned) Equal(other Owned) bool {
	norm := func(x Owned) Owned {
		if len(x.Networks) == 0 {
			x.Networks = nil
		}
		if len(x.Ports) == 0 {
			x.Ports = nil
		}
		return x
	}
	return reflect.DeepEqual(norm(o), norm(other))
}

// ApplyTarget returns spec with the fields swarmsec owns set to t: networks
// (resolved to IDs by id; a name it cannot resolve is an error), published
// ports and the original label. Every other field stays as it was. spec
// must be a copy the caller owns.
func ApplyTarget(spec swarm.ServiceSpec, t Target, id func(name string) string) (swarm.ServiceSpec, error) {
	nets := make([]swarm.NetworkAttachmentConfig, 0, len(t.Networks))
	var missing []string
	for _, a := range t.Networks {
		ref := a.ID
		if ref == "" {
			ref = id(a.Network)
		}
		if ref == "" {
			missing = append(missing, a.Network)
			continue
		}
		nets = append(nets, swarm.NetworkAttachmentConfig{Target: ref, Aliases: a.Aliases, DriverOpts: a.DriverOpts})
	}
	if len(missing) > 0 {
		return spec, fmt.Errorf("networks %s do not exist (their creation failed)", strings.Join(missing, ", "))
	}
	spec.TaskTemplate.Networks = nets
	spec.Networks = nil //nolint:staticcheck // moved to TaskTemplate.Networks, where Swarm wants it
	if len(t.Ports) > 0 || (spec.EndpointSpec != nil && len(spec.EndpointSpec.Ports) > 0) {
		ep := swarm.EndpointSpec{}
		if spec.EndpointSpec != nil {
			ep = *spec.EndpointSpec
		}
		ep.Ports = t.Ports
		spec.EndpointSpec = &ep
	}
	labels := maps.Clone(spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	if t.Original == "" {
		delete(labels, v1.LabelOriginal)
	} else {
		labels[v1.LabelOriginal] = t.Original
	}
	spec.Labels = labels
	return spec, nil
}
