package plan

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// owned is the part of a service spec that swarmsec writes.
type owned struct {
	Networks []swarm.NetworkAttachmentConfig `json:"networks"`
	Ports    []swarm.PortConfig              `json:"ports"`
	Original string                          `json:"original"`
}

// OwnedOf fingerprints the fields of a spec swarmsec owns: networks,
// published ports and the original record. Two specs with the same
// fingerprint differ only in fields swarmsec never writes.
func OwnedOf(spec swarm.ServiceSpec) string {
	o := owned{Networks: spec.TaskTemplate.Networks, Original: spec.Labels[v1.LabelOriginal]}
	if len(o.Networks) == 0 {
		o.Networks = spec.Networks //nolint:staticcheck // older services keep their networks there
	}
	if spec.EndpointSpec != nil {
		o.Ports = spec.EndpointSpec.Ports
	}
	b, _ := json.Marshal(o) // plain data: cannot fail
	return string(b)
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
