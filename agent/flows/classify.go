package flows

import (
	"net/netip"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// Book names the Swarm's addresses as the node sees them: every task
// address and service VIP of the networks its tasks are on.
type Book struct {
	byAddr map[netip.Addr]string
	// subnets of the overlay networks (ingress aside): an address there
	// that no entry names is a task all the same (one the inspect did not
	// list yet), never a client from outside.
	subnets []netip.Prefix
}

// AddSubnet records an overlay network's subnet.
func (b *Book) AddSubnet(p netip.Prefix) {
	if p.IsValid() {
		b.subnets = append(b.subnets, p.Masked())
	}
}

// InSwarm reports whether an address is a task's or a VIP, named or not.
func (b *Book) InSwarm(a netip.Addr) bool {
	if _, ok := b.Service(a); ok {
		return true
	}
	a = a.Unmap()
	for _, p := range b.subnets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Add names an address; an address two services claim (a network
// reused its address meanwhile) keeps its first name.
func (b *Book) Add(a netip.Addr, service string) {
	if !a.IsValid() || service == "" {
		return
	}
	if b.byAddr == nil {
		b.byAddr = map[netip.Addr]string{}
	}
	a = a.Unmap()
	if _, ok := b.byAddr[a]; !ok {
		b.byAddr[a] = service
	}
}

// Service is the service an address belongs to.
func (b *Book) Service(a netip.Addr) (string, bool) {
	s, ok := b.byAddr[a.Unmap()]
	return s, ok
}

// Block is the /24 (IPv4) or /64 (IPv6) an outside address is counted
// in: enough to tell a partner from the internet, too coarse to keep one
// aggregate per client.
func Block(a netip.Addr) string {
	a = a.Unmap()
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return a.String()
	}
	return p.String()
}

// classify names a connection seen in the namespace of a task of service,
// whose own addresses are own. It is counted (ok) only where the cluster
// counts it once: at the client when the client is this task, at the
// server when the client is no task of the Swarm. An unanswered
// connection counts only as UDP from this task to a service.
func classify(service string, own map[netip.Addr]bool, b *Book, c Conn) (Key, bool) {
	if c.Src.IsLoopback() || c.Dst.IsLoopback() || c.Dst.IsMulticast() || !c.Dst.IsValid() {
		return Key{}, false // the embedded DNS resolver, the task itself
	}
	k := Key{Port: c.DstPort, Protocol: c.Protocol}
	switch {
	case own[c.Src] && own[c.Dst]:
		return Key{}, false
	case own[c.Src]:
		k.Source = service
		if dst, ok := b.Service(c.Dst); ok {
			k.Kind, k.Destination = agentv1.FlowService, dst
		} else {
			k.Kind, k.Destination, k.DestinationBlock = agentv1.FlowExternal, agentv1.Outside, Block(c.Dst)
		}
	case own[c.Dst]:
		if b.InSwarm(c.Src) {
			return Key{}, false // the client's agent counts it
		}
		k.Kind, k.Source, k.SourceBlock, k.Destination = agentv1.FlowPublished, agentv1.Outside, Block(c.Src), service
	default:
		return Key{}, false // routed through, not this task's
	}
	if c.Unanswered && (c.Protocol != "udp" || k.Kind != agentv1.FlowService) {
		// Only one-way UDP to a task or VIP the Swarm names is taken
		// for a flow without a reply: elsewhere nothing tells it from a
		// packet dropped on the way.
		return Key{}, false
	}
	return k, true
}
