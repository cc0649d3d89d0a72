package dns

import (
	"net/netip"

	"github.com/swarmsec/swarmsec/agent/tasks"
)

// bookView is a discovery whose one network holds the services with
// their VIPs and task addresses.
func bookView(services map[string][2][]string) *tasks.View {
	n := &tasks.Network{ID: "n1", Name: "shop_default", Services: map[string]*tasks.Endpoints{}}
	for name, addrs := range services {
		ep := &tasks.Endpoints{Tasks: map[netip.Addr]string{}}
		for _, a := range addrs[0] {
			ep.VIPs = append(ep.VIPs, netip.MustParseAddr(a))
		}
		for _, a := range addrs[1] {
			ep.Tasks[netip.MustParseAddr(a)] = name + ".1"
		}
		n.Services[name] = ep
	}
	return &tasks.View{Networks: map[string]*tasks.Network{"n1": n}}
}
