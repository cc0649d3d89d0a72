// Package firewall renders what the node agent enforces on a node: for each
// published port whose policies restrict sources or ask for logs, the
// iptables rules of swarmsec's own chain, jumped from DOCKER-USER.
//
// It only renders; nothing here touches a firewall. Published traffic
// reaches DOCKER-USER after Docker's DNAT (the routing mesh's and a host-mode
// port's alike), so the rules match the connection's original destination
// port in conntrack, and only connections that were DNATed: a container's own
// outgoing connection to port 443 elsewhere is never a published port's.
package firewall

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"go4.org/netipx"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// Chain is the agent's own chain in the filter table; DOCKER-USER jumps to
// it and the agent touches no other rule.
const Chain = "SWARMSEC-PORTS"

// Family is the address family of a rule set: iptables or ip6tables.
type Family int

// The families a node filters.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string { return "IPv" + strconv.Itoa(int(f)) }

// admitted is the set of source addresses of one family the port admits,
// or nil when it admits any. Blocks are validated before they get here; a
// block that does not parse admits nothing and an exception that does not
// parse is an error, so both fail closed.
func admitted(p agentv1.Port, f Family) (*netipx.IPSet, error) {
	if p.Any {
		return nil, nil
	}
	var all netipx.IPSetBuilder
	for _, b := range p.From {
		pfx, err := netip.ParsePrefix(b.CIDR)
		if err != nil || familyOf(pfx) != f {
			continue
		}
		var one netipx.IPSetBuilder
		one.AddPrefix(pfx.Masked())
		for _, e := range b.Except {
			ep, err := netip.ParsePrefix(e)
			if err != nil {
				// Skipping it would admit what the policy excepts.
				return nil, fmt.Errorf("port %s of %s: block %s: except %q: %w", p.Key(), p.Service, b, e, err)
			}
			one.RemovePrefix(ep.Masked())
		}
		s, err := one.IPSet()
		if err != nil {
			return nil, fmt.Errorf("port %s of %s: block %s: %w", p.Key(), p.Service, b, err)
		}
		all.AddSet(s)
	}
	return all.IPSet()
}

func familyOf(p netip.Prefix) Family {
	if p.Addr().Is4() {
		return IPv4
	}
	return IPv6
}

// Rules renders the body of Chain for one family, in order, each rule as
// the arguments iptables takes after "-A Chain". Ports are sorted so the
// same policies always give the same rules (the agent compares before it
// writes). An admitted source returns to DOCKER-USER; any other source's
// packets towards the port are dropped, its new connections first logged to
// NFLOG group when the port asks.
//
// Services that publish the same port (host mode, on different nodes)
// cannot be told apart by the original port: the port admits only the
// sources all of them admit, and logs the most any asks for. Failing
// closed can refuse a source one of them admits; never the other way.
func Rules(f Family, ports []agentv1.Port, nflogGroup uint16) ([][]string, error) {
	ports = slices.Clone(ports)
	slices.SortFunc(ports, func(a, b agentv1.Port) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Service, b.Service))
	})
	var out [][]string
	for len(ports) > 0 {
		n := 1
		for n < len(ports) && ports[n].Key() == ports[0].Key() {
			n++
		}
		same := ports[:n]
		ports = ports[n:]
		p, set, err := merge(f, same)
		if err != nil {
			return nil, err
		}
		// Any bridge: the routing mesh DNATs onto docker_gwbridge (its
		// sandbox), a host-mode port onto the bridge of the task's
		// gateway, docker_gwbridge or, for a task on no network, docker0.
		// A node holds a published port once, so the original port names
		// the service's traffic.
		match := []string{"-p", string(p.Protocol),
			"-m", "conntrack", "--ctstate", "DNAT", "--ctdir", "ORIGINAL", "--ctorigdstport", strconv.Itoa(int(p.Port))}
		logNew := func(verdict string, src ...string) []string {
			// Bounded: a flood of spoofed SYNs must not become a flood
			// of netlink messages; the agent aggregates per minute anyway.
			return append(append(slices.Clone(match), src...), "-m", "conntrack", "--ctstate", "NEW",
				"-m", "limit", "--limit", "50/second", "--limit-burst", "100",
				"-j", "NFLOG", "--nflog-group", strconv.Itoa(int(nflogGroup)),
				"--nflog-prefix", fmt.Sprintf("swarmsec %s %s %s", verdict, p.Key(), truncate(p.Service, 32)))
		}
		if set == nil {
			if p.Log == v1.PortLogAll {
				out = append(out, logNew("admitted"))
			}
			continue
		}
		for _, pfx := range set.Prefixes() {
			if p.Log == v1.PortLogAll {
				out = append(out, logNew("admitted", "-s", pfx.String()))
			}
			out = append(out, append(slices.Clone(match), "-s", pfx.String(), "-j", "RETURN"))
		}
		if p.Log != v1.PortLogNone {
			out = append(out, logNew("blocked"))
		}
		out = append(out, append(slices.Clone(match), "-j", "DROP"))
	}
	return out, nil
}

// merge is what the ports of one key admit together: the intersection of
// their sets (nil: any), the most logging, their services' names.
func merge(f Family, same []agentv1.Port) (agentv1.Port, *netipx.IPSet, error) {
	p := same[0]
	var set *netipx.IPSet
	names := make([]string, 0, len(same))
	for i, q := range same {
		s, err := admitted(q, f)
		if err != nil {
			return p, nil, err
		}
		switch {
		case i == 0 || set == nil:
			set = s
		case s != nil:
			var b netipx.IPSetBuilder
			b.AddSet(set)
			b.Intersect(s)
			if set, err = b.IPSet(); err != nil {
				return p, nil, err
			}
		}
		if logRank(q.Log) > logRank(p.Log) {
			p.Log = q.Log
		}
		names = append(names, q.Service)
	}
	if p.Log == "" {
		p.Log = v1.PortLogNone
	}
	p.Service = strings.Join(names, "+")
	return p, set, nil
}

func logRank(l v1.PortLog) int {
	switch l {
	case v1.PortLogAll:
		return 2
	case v1.PortLogBlocked:
		return 1
	}
	return 0
}

// truncate keeps the NFLOG prefix within its 64 bytes.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
