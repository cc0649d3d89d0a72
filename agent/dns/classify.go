package dns

import (
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/swarmsec/swarmsec/agent/tasks"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// owner is who an address of the Swarm belongs to.
type owner struct {
	service string
	vip     bool
}

// Book names the addresses of the node's overlay networks: every
// service's VIPs and task addresses, as the verbose network inspect lists
// them (every node's tasks).
type Book struct {
	byAddr map[netip.Addr]owner
}

// NewBook reads the addresses of a discovery's networks.
func NewBook(v *tasks.View) *Book {
	b := &Book{byAddr: map[netip.Addr]owner{}}
	if v == nil {
		return b
	}
	for _, n := range v.Networks {
		for name, ep := range n.Services {
			for _, a := range ep.VIPs {
				b.byAddr[a.Unmap()] = owner{service: name, vip: true}
			}
			for a := range ep.Tasks {
				if _, ok := b.byAddr[a.Unmap()]; !ok {
					b.byAddr[a.Unmap()] = owner{service: name}
				}
			}
		}
	}
	return b
}

// Classify names an answer's class and, for the Swarm's own addresses,
// the service they belong to (empty when they are several services').
func (b *Book) Classify(a *Answer) (class, service string) {
	switch a.RCode {
	case dnsmessage.RCodeSuccess:
	case dnsmessage.RCodeNameError:
		return agentv1.DNSNXDomain, ""
	default:
		return agentv1.DNSError, ""
	}
	if len(a.Addrs) == 0 {
		return agentv1.DNSEmpty, ""
	}
	class = agentv1.DNSTasks
	for i, addr := range a.Addrs {
		o, ok := b.byAddr[addr.Unmap()]
		if !ok {
			return agentv1.DNSExternal, ""
		}
		if o.vip {
			class = agentv1.DNSVIP
		}
		switch {
		case i == 0:
			service = o.service
		case service != o.service:
			service = ""
		}
	}
	return class, service
}
