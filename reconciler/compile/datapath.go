package compile

import (
	"fmt"
	"slices"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// PolicyRules is one policy as the node agent enforces it: the services
// it selects and its rules' peers, resolved to service names, with their
// ports and blocks. The network layer cannot say any of it (ports,
// directions, blocks); the agent narrows that layer to it per task.
type PolicyRules struct {
	Name string
	// Selected are the services the policy isolates, sorted.
	Selected []string
	// Ingress and Egress say which directions it isolates.
	Ingress, Egress bool
	// IngressRules and EgressRules are its rules, in order.
	IngressRules, EgressRules []RuleRules
}

// RuleRules is one rule: peers by name (sorted), blocks and ports.
type RuleRules struct {
	Services []string
	Blocks   []v1.IPBlock
	Ports    []v1.NetworkPolicyPort
	// LogAllowed: the rule says log: all.
	LogAllowed bool
}

// policyRules resolves what the agent needs of every policy in force.
func (c *compiler) policyRules(ps []matched) []PolicyRules {
	out := make([]PolicyRules, 0, len(ps))
	for _, mp := range ps {
		spec := &mp.p.Network.Spec
		pr := PolicyRules{Name: mp.p.Name, Selected: c.names(mp.selected)}
		for _, t := range spec.EffectivePolicyTypes() {
			pr.Ingress = pr.Ingress || t == v1.PolicyTypeIngress
			pr.Egress = pr.Egress || t == v1.PolicyTypeEgress
		}
		for _, r := range spec.Ingress {
			pr.IngressRules = append(pr.IngressRules, c.ruleRules(r.From, r.Ports, r.Log))
		}
		for _, r := range spec.Egress {
			pr.EgressRules = append(pr.EgressRules, c.ruleRules(r.To, r.Ports, r.Log))
		}
		out = append(out, pr)
		if narrows(spec) {
			c.out.Notes = append(c.out.Notes, fmt.Sprintf(DatapathNote, mp.p.Name))
		}
	}
	return out
}

// DatapathNote says who enforces what the network layer cannot.
const DatapathNote = "policy %s: its ports and egress blocks are enforced per task by the node agent (swarmsec agent); where it does not run, the network layer alone holds: the peers a rule names reach every port of each other, both ways, and any ipBlock opens the whole outside"

// narrows reports whether a policy says what only the agent enforces:
// ports, or blocks narrower than the whole world.
func narrows(spec *v1.NetworkPolicySpec) bool {
	for _, r := range spec.Ingress {
		if len(r.Ports) > 0 {
			return true
		}
	}
	for _, r := range spec.Egress {
		if len(r.Ports) > 0 {
			return true
		}
		for _, p := range r.To {
			if p.IPBlock != nil && (len(p.IPBlock.Except) > 0 || (p.IPBlock.CIDR != v1.AnyIPv4 && p.IPBlock.CIDR != v1.AnyIPv6)) {
				return true
			}
		}
	}
	return false
}

func (c *compiler) ruleRules(peers []v1.Peer, ports []v1.NetworkPolicyPort, log v1.PortLog) RuleRules {
	rr := RuleRules{LogAllowed: log == v1.PortLogAll}
	var matched []int
	for _, p := range peers {
		switch {
		case p.ServiceSelector != nil:
			matched = append(matched, c.match(p.ServiceSelector)...)
		case p.IPBlock != nil:
			rr.Blocks = append(rr.Blocks, *p.IPBlock)
		}
	}
	rr.Services = c.names(matched)
	rr.Ports = ports
	return rr
}

// names are the services at the positions, sorted and once each.
func (c *compiler) names(at []int) []string {
	seen := make(map[string]bool, len(at))
	out := make([]string, 0, len(at))
	for _, i := range at {
		if n := c.services[i].Name; !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}
