package dns

import (
	"net/netip"
	"testing"

	"github.com/swarmsec/swarmsec/agent/tasks"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
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

// Two overlays whose subnets overlap give one address to two services: the
// book credits it to neither (service ""), whatever the order it reads the
// networks and services in; the class is VIP when any network says so.
func TestBookOverlappingNetworksAreAmbiguous(t *testing.T) {
	net := func(services map[string][2][]string) *tasks.Network {
		return bookView(services).Networks["n1"]
	}
	v := &tasks.View{Networks: map[string]*tasks.Network{
		"n1": net(map[string][2][]string{"a_web": {{"10.0.0.2"}, {"10.0.0.5"}}, "a_db": {{"10.0.0.8"}, {"10.0.0.9"}}}),
		"n2": net(map[string][2][]string{"b_web": {{"10.0.0.2"}, {"10.0.0.3"}}, "b_db": {nil, {"10.0.0.8"}}, "a_db": {{"10.1.0.8"}, {"10.0.0.9"}}}),
		"n3": net(map[string][2][]string{"c_web": {{"10.0.0.2"}, nil}}),
	}}
	for _, c := range []struct {
		addr           string
		class, service string
	}{
		{"10.0.0.2", agentv1.DNSVIP, ""},       // three services' VIP
		{"10.0.0.8", agentv1.DNSVIP, ""},       // a_db's VIP, b_db's task
		{"10.0.0.9", agentv1.DNSTasks, "a_db"}, // one service's task on two networks
		{"10.0.0.3", agentv1.DNSTasks, "b_web"},
	} {
		for range 50 { // map order varies from one book to the next
			a := Answer{Name: "x", Type: "A", Addrs: []netip.Addr{netip.MustParseAddr(c.addr)}}
			if class, svc := NewBook(v).Classify(&a); class != c.class || svc != c.service {
				t.Fatalf("%s: %s %q, want %s %q", c.addr, class, svc, c.class, c.service)
			}
		}
	}
}
