package traffic

import (
	"slices"

	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
)

// Cut is an observed flow a change would block: the Swarm lets it pass
// now, the new policies would not.
type Cut struct {
	Flow
	// Policies are the policies selecting either end under the change.
	Policies []string `json:"policies"`
	// Approved is set when one of them carries the annotation
	// AnnotationApproveTrafficCut: "true".
	Approved bool `json:"approved"`
}

// Impact lists the flows that pass now and that desired would block,
// sorted as the flows are. What passes now is judged from the Swarm as the
// store holds it: two services sharing a network, a service on a network
// with a gateway, a port published now.
func Impact(tx state.ReadTx, desired *compile.Desired, flows []Flow) ([]Cut, error) {
	services, err := state.FindServices(tx, state.All())
	if err != nil {
		return nil, err
	}
	nets, err := plan.LoadNetworks(tx)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]*state.Service, len(services))
	for _, s := range services {
		byName[s.Name] = s
	}
	onNow := func(s *state.Service) []*state.Network {
		var out []*state.Network
		for _, a := range s.Networks {
			if n := nets.Resolve(a.Target); n != nil && !n.Ingress {
				out = append(out, n)
			}
		}
		return out
	}
	var cuts []Cut
	for _, f := range flows {
		if f.Verdict == Blocked {
			continue
		}
		verdict, why := Verdict(desired, byName, &f.Flow)
		if verdict != WouldBlock {
			continue
		}
		var ends []*state.Service
		passes := false
		switch f.Kind {
		case agentv1.FlowService:
			a, b := byName[f.Source], byName[f.Destination]
			ends = []*state.Service{a, b}
			bn := onNow(b)
			passes = slices.ContainsFunc(onNow(a), func(n *state.Network) bool {
				return slices.ContainsFunc(bn, func(m *state.Network) bool { return m.ID == n.ID })
			})
		case agentv1.FlowExternal:
			a := byName[f.Source]
			ends = []*state.Service{a}
			on := onNow(a)
			passes = len(on) == 0 || slices.ContainsFunc(on, func(n *state.Network) bool { return !n.Internal })
		case agentv1.FlowPublished:
			b := byName[f.Destination]
			ends = []*state.Service{b}
			passes = slices.ContainsFunc(b.Ports, func(p swarm.PortConfig) bool { return p.TargetPort == uint32(f.Port) && p.PublishedPort != 0 })
		}
		if !passes {
			continue
		}
		c := Cut{Flow: f}
		c.Verdict, c.Why = verdict, why
		for _, s := range ends {
			if ds := desired.Services[s.ID]; ds != nil {
				for _, p := range ds.Policies {
					if !slices.Contains(c.Policies, p) {
						c.Policies = append(c.Policies, p)
					}
				}
			}
		}
		slices.Sort(c.Policies)
		for _, name := range c.Policies {
			if p := state.GetPolicy(tx, name); p != nil && p.Network != nil && p.Network.Metadata.Annotations[v1.AnnotationApproveTrafficCut] == "true" {
				c.Approved = true
			}
		}
		cuts = append(cuts, c)
	}
	return cuts, nil
}
