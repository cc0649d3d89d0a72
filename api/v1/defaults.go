package v1

import (
	"slices"
	"strings"
)

// EffectivePolicyTypes applies the Kubernetes default: Ingress always, Egress
// when the spec has egress rules (an empty list has none: write policyTypes
// to deny all egress).
func (s *NetworkPolicySpec) EffectivePolicyTypes() []PolicyType {
	if len(s.PolicyTypes) > 0 {
		return s.PolicyTypes
	}
	if len(s.Egress) > 0 {
		return []PolicyType{PolicyTypeIngress, PolicyTypeEgress}
	}
	return []PolicyType{PolicyTypeIngress}
}

// RestrictsEgress reports whether Egress is among the effective policy types.
func (s *NetworkPolicySpec) RestrictsEgress() bool {
	return slices.Contains(s.EffectivePolicyTypes(), PolicyTypeEgress)
}

// AllowsOutside reports whether the selected services keep access to the
// world outside the cluster under this policy: they do unless it restricts
// egress without an ipBlock peer.
func (s *NetworkPolicySpec) AllowsOutside() bool {
	if !s.RestrictsEgress() {
		return true
	}
	for _, r := range s.Egress {
		for _, p := range r.To {
			if p.IPBlock != nil {
				return true
			}
		}
	}
	return false
}

// EffectiveEnforcement defaults to enforce.
func (s *NetworkPolicySpec) EffectiveEnforcement() Enforcement {
	if s.Enforcement == "" {
		return EnforcementEnforce
	}
	return s.Enforcement
}

// EffectiveEnforcement defaults to enforce.
func (s *EncryptionPolicySpec) EffectiveEnforcement() Enforcement {
	if s.Enforcement == "" {
		return EnforcementEnforce
	}
	return s.Enforcement
}

// EffectiveProtocol defaults to tcp.
func (p PublishedPort) EffectiveProtocol() Protocol {
	if p.Protocol == "" {
		return ProtocolTCP
	}
	return p.Protocol
}

// EffectiveMode defaults to host: the routing mesh is opt-in.
func (p PublishedPort) EffectiveMode() PublishMode {
	if p.Mode == "" {
		return PublishModeHost
	}
	return p.Mode
}

// EffectiveLog defaults to none.
func (p PublishedPort) EffectiveLog() PortLog {
	if p.Log == "" {
		return PortLogNone
	}
	return p.Log
}

// Restricted reports whether the port admits fewer than all sources or
// reports its connections: what only the node agent can do.
func (p PublishedPort) Restricted() bool {
	return len(p.From) > 0 || p.EffectiveLog() != PortLogNone
}

// String writes the block as from lists show it: the CIDR, then "except"
// and its exceptions.
func (b SourceBlock) String() string {
	if len(b.Except) == 0 {
		return b.CIDR
	}
	return b.CIDR + " except " + strings.Join(b.Except, ",")
}

// EffectiveProtocol defaults to TCP.
func (p NetworkPolicyPort) EffectiveProtocol() RuleProtocol {
	if p.Protocol == "" {
		return RuleTCP
	}
	return p.Protocol
}

// Range is the ports the entry allows: 0..0 stands for every port.
func (p NetworkPolicyPort) Range() (from, to uint16) {
	if p.Port == nil {
		return 0, 0
	}
	from = uint16(*p.Port) // validated 1..65535
	to = from
	if p.EndPort != nil {
		to = uint16(*p.EndPort) // validated Port..65535
	}
	return from, to
}

// Lower is the protocol as published ports and the agent write it.
func (p RuleProtocol) Lower() Protocol { return Protocol(strings.ToLower(string(p))) }

// String writes the block as rules show it.
func (b IPBlock) String() string {
	return SourceBlock(b).String()
}
