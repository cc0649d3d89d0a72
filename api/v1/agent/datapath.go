package agent

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// RulesRevision is the newest revision of the rules document this version
// writes and reads. Revision 1 (the field absent) holds published ports
// only; revision 2 adds Services, the per-task rules; revision 3 adds
// Audit and the rules' LogAllowed. A leader writes the lowest revision
// that holds the document (RevisionOf), so documents of an older revision
// keep their bytes. An agent refuses a revision newer than its own and
// keeps the rules it has: a field it does not know could be a restriction
// it would drop.
const RulesRevision = 3

// RevisionOf is the lowest revision that holds d: 0 (absent, 1) with
// ports only, 2 with services, 3 with audit rules or logged rules.
func RevisionOf(d *Rules) int {
	for _, s := range slices.Concat(d.Services, d.Audit) {
		if slices.ContainsFunc(slices.Concat(s.Ingress, s.Egress), func(r Rule) bool { return r.LogAllowed }) {
			return 3
		}
	}
	switch {
	case len(d.Audit) > 0:
		return 3
	case len(d.Services) > 0:
		return 2
	}
	return 0
}

// ServiceRules is what the policies allow one selected service, in terms
// of services, ports and blocks: the agent maps them to addresses from its
// own engine, so task churn needs no new delivery.
type ServiceRules struct {
	// Service is the Swarm service's name.
	Service string `json:"service"`
	// IngressIsolated: a policy of type Ingress selects it, so only its
	// Ingress rules admit new connections to it.
	IngressIsolated bool `json:"ingressIsolated,omitempty"`
	// EgressIsolated: a policy of type Egress selects it, so only its
	// Egress rules let it open connections.
	EgressIsolated bool `json:"egressIsolated,omitempty"`
	// Ingress are who may open connections to it, and on which ports.
	Ingress []Rule `json:"ingress,omitempty"`
	// Egress are what it may open connections to.
	Egress []Rule `json:"egress,omitempty"`
}

// Rule is one rule of a policy, its peers resolved to service names.
type Rule struct {
	// Policy names the rule: "policy/ingress[0]", what a verdict quotes.
	Policy string `json:"policy"`
	// Services are the peer services, sorted.
	Services []string `json:"services,omitempty"`
	// Blocks are the destinations outside the cluster (egress only).
	Blocks []v1.SourceBlock `json:"blocks,omitempty"`
	// Ports the rule allows; empty allows every port.
	Ports []PortRange `json:"ports,omitempty"`
	// LogAllowed: the policy's rule says log: all, so the agent reports
	// each new connection the rule admits (verdict allowed).
	LogAllowed bool `json:"logAllowed,omitempty"`
}

// PortRange is a protocol's destination ports Port..EndPort; Port 0 is
// every port of the protocol.
type PortRange struct {
	Protocol v1.Protocol `json:"protocol"`
	Port     uint16      `json:"port,omitempty"`
	EndPort  uint16      `json:"endPort,omitempty"`
}

// Contains reports whether the range holds port of proto.
func (r PortRange) Contains(proto v1.Protocol, port uint16) bool {
	if r.Protocol != proto {
		return false
	}
	if r.Port == 0 {
		return true
	}
	end := max(r.EndPort, r.Port)
	return port >= r.Port && port <= end
}

// Bounds is the range as first..last port (1..65535 for every port).
func (r PortRange) Bounds() (uint16, uint16) {
	if r.Port == 0 {
		return 1, 65535
	}
	return r.Port, max(r.EndPort, r.Port)
}

// Protocols are the protocols a rule's port may name, in the agent's
// spelling.
var Protocols = []v1.Protocol{v1.ProtocolTCP, v1.ProtocolUDP, v1.ProtocolSCTP}

// PortSet is a set of (protocol, port): nil is the empty set, All every
// port of every protocol.
type PortSet map[v1.Protocol][][2]uint16

// All is every port of every protocol.
func All() PortSet {
	s := PortSet{}
	for _, p := range Protocols {
		s[p] = [][2]uint16{{1, 65535}}
	}
	return s
}

// Of is the ports a rule allows.
func Of(ports []PortRange) PortSet {
	if len(ports) == 0 {
		return All()
	}
	s := PortSet{}
	for _, r := range ports {
		lo, hi := r.Bounds()
		s[r.Protocol] = append(s[r.Protocol], [2]uint16{lo, hi})
	}
	return s.normal()
}

// normal sorts and merges each protocol's ranges.
func (s PortSet) normal() PortSet {
	for p, rs := range s {
		slices.SortFunc(rs, func(a, b [2]uint16) int { return cmp.Compare(a[0], b[0]) })
		out := rs[:0]
		for _, r := range rs {
			if n := len(out); n > 0 && uint32(r[0]) <= uint32(out[n-1][1])+1 {
				out[n-1][1] = max(out[n-1][1], r[1])
				continue
			}
			out = append(out, r)
		}
		if len(out) == 0 {
			delete(s, p)
			continue
		}
		s[p] = out
	}
	return s
}

// Union is s ∪ o.
func (s PortSet) Union(o PortSet) PortSet {
	out := PortSet{}
	for _, x := range []PortSet{s, o} {
		for p, rs := range x {
			out[p] = append(out[p], rs...)
		}
	}
	return out.normal()
}

// Intersect is s ∩ o.
func (s PortSet) Intersect(o PortSet) PortSet {
	out := PortSet{}
	for p, as := range s {
		for _, a := range as {
			for _, b := range o[p] {
				lo, hi := max(a[0], b[0]), min(a[1], b[1])
				if lo <= hi {
					out[p] = append(out[p], [2]uint16{lo, hi})
				}
			}
		}
	}
	return out.normal()
}

// Has reports whether the set holds port of proto.
func (s PortSet) Has(proto v1.Protocol, port uint16) bool {
	for _, r := range s[proto] {
		if port >= r[0] && port <= r[1] {
			return true
		}
	}
	return false
}

// Empty reports whether the set holds nothing.
func (s PortSet) Empty() bool { return len(s) == 0 }

// Rules of one service, by name (nil when no policy selects it).
func (d *Rules) service(name string) *ServiceRules {
	i, ok := slices.BinarySearchFunc(d.Services, name, func(s ServiceRules, n string) int { return cmp.Compare(s.Service, n) })
	if !ok {
		return nil
	}
	return &d.Services[i]
}

// Between is the ports on which from may open connections to to, both
// services, and the rules that allow them: from's egress (all ports unless
// it is egress-isolated) intersected with to's ingress (all unless it is
// ingress-isolated). The agent of either side enforces it.
func (d *Rules) Between(from, to string) PortSet {
	out := All()
	if s := d.service(from); s != nil && s.EgressIsolated {
		eg := PortSet{}
		for _, r := range s.Egress {
			if slices.Contains(r.Services, to) {
				eg = eg.Union(Of(r.Ports))
			}
		}
		out = out.Intersect(eg)
	}
	if s := d.service(to); s != nil && s.IngressIsolated {
		in := PortSet{}
		for _, r := range s.Ingress {
			if slices.Contains(r.Services, from) {
				in = in.Union(Of(r.Ports))
			}
		}
		out = out.Intersect(in)
	}
	return out
}

// Outside reports whether from may open a connection to addr, an address
// that is no task or VIP of the cluster, on port of proto.
func (d *Rules) Outside(from string, addr netip.Addr, proto v1.Protocol, port uint16) bool {
	s := d.service(from)
	if s == nil || !s.EgressIsolated {
		return true
	}
	for _, r := range s.Egress {
		if Of(r.Ports).Has(proto, port) && slices.ContainsFunc(r.Blocks, func(b v1.SourceBlock) bool { return BlockContains(b, addr) }) {
			return true
		}
	}
	return false
}

// BlockContains reports whether addr is in the block and in none of its
// exceptions. A block that does not parse contains nothing.
func BlockContains(b v1.SourceBlock, addr netip.Addr) bool {
	p, err := netip.ParsePrefix(b.CIDR)
	if err != nil || !p.Contains(addr.Unmap()) {
		return false
	}
	for _, e := range b.Except {
		if x, err := netip.ParsePrefix(e); err != nil || x.Contains(addr.Unmap()) {
			return false
		}
	}
	return true
}

// Logged is the part of Between(from, to) that a rule with LogAllowed
// admits: from's egress rules naming to, or to's ingress rules naming
// from. Those connections are reported as allowed.
func (d *Rules) Logged(from, to string) PortSet {
	logged := PortSet{}
	if s := d.service(from); s != nil && s.EgressIsolated {
		for _, r := range s.Egress {
			if r.LogAllowed && slices.Contains(r.Services, to) {
				logged = logged.Union(Of(r.Ports))
			}
		}
	}
	if s := d.service(to); s != nil && s.IngressIsolated {
		for _, r := range s.Ingress {
			if r.LogAllowed && slices.Contains(r.Services, from) {
				logged = logged.Union(Of(r.Ports))
			}
		}
	}
	return d.Between(from, to).Intersect(logged)
}

// WithAudit is the rules as they would be were the audit-mode policies
// enforced too: each service's rules and isolation, joined with the
// audit ones. Nil when there are no audit rules.
func (d *Rules) WithAudit() *Rules {
	if len(d.Audit) == 0 {
		return nil
	}
	by := map[string]*ServiceRules{}
	for _, s := range slices.Concat(d.Services, d.Audit) {
		m := by[s.Service]
		if m == nil {
			m = &ServiceRules{Service: s.Service}
			by[s.Service] = m
		}
		m.IngressIsolated = m.IngressIsolated || s.IngressIsolated
		m.EgressIsolated = m.EgressIsolated || s.EgressIsolated
		m.Ingress = append(m.Ingress, s.Ingress...)
		m.Egress = append(m.Egress, s.Egress...)
	}
	out := *d
	out.Audit, out.Services = nil, make([]ServiceRules, 0, len(by))
	for _, name := range slices.Sorted(maps.Keys(by)) {
		out.Services = append(out.Services, *by[name])
	}
	return &out
}

// Selected reports whether a policy selects the service.
func (d *Rules) Selected(name string) bool { return d.service(name) != nil }
