package dns

import (
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/swarmsec/swarmsec/agent/tasks"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// owner is who an address of the Swarm belongs to.
type owner struct {
	// service is empty when the address is several services' (overlays
	// whose subnets overlap).
	service string
	// vip: the address is a VIP on at least one network.
	vip bool
}

// Book names the addresses of the node's overlay networks: every
// service's VIPs and task addresses, as the verbose network inspect lists
// them (every node's tasks).
type Book struct {
	byAddr map[netip.Addr]owner
}

// NewBook reads the addresses of a discovery's networks. An address two
// networks give to two services (overlays whose subnets overlap) is
// credited to neither: the answer does not say which network it came
// from, and the book must not depend on the order it reads them in.
func NewBook(v *tasks.View) *Book {
	b := &Book{byAddr: map[netip.Addr]owner{}}
	if v == nil {
		return b
	}
	for _, n := range v.Networks {
		for name, ep := range n.Services {
			for _, a := range ep.VIPs {
				b.add(a, name, true)
			}
			for a := range ep.Tasks {
				b.add(a, name, false)
			}
		}
	}
	return b
}

// add records that a is service's (its VIP or a task's), whatever the
// order of the calls: a VIP on any network stays one, an address of two
// services is no one's.
func (b *Book) add(a netip.Addr, service string, vip bool) {
	a = a.Unmap()
	o, ok := b.byAddr[a]
	if !ok {
		b.byAddr[a] = owner{service: service, vip: vip}
		return
	}
	if o.service != service {
		o.service = ""
	}
	o.vip = o.vip || vip
	b.byAddr[a] = o
}

// Classify names an answer's class and, for the Swarm's own addresses,
// the service they belong to (empty when they are several services', or
// one of them is several services' on overlapping overlays).
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
