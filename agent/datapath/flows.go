package datapath

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// cleanPrefix is a log prefix without the NUL the kernel may leave.
func cleanPrefix(p string) string { return strings.TrimRight(p, "\x00") }

// packet is what a logged packet says of its connection.
type packet struct {
	src, dst         netip.Addr
	proto            v1.Protocol
	srcPort, dstPort uint16
	other            string // a protocol without ports (icmp…)
}

// parse reads the addresses and ports of an IPv4 or IPv6 packet (no IPv6
// extension headers: the ports then read as 0).
func parse(p []byte) (packet, bool) {
	var k packet
	var l4 byte
	var rest []byte
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		ihl := int(p[0]&0x0f) * 4
		if ihl < 20 || len(p) < ihl {
			return k, false
		}
		k.src, k.dst = netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
		l4, rest = p[9], p[ihl:]
	case len(p) >= 40 && p[0]>>4 == 6:
		k.src, k.dst = netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40]))
		l4, rest = p[6], p[40:]
	default:
		return k, false
	}
	for proto, n := range protoNumbers {
		if n == l4 {
			k.proto = proto
		}
	}
	if k.proto == "" {
		k.other = fmt.Sprintf("proto-%d", l4)
		return k, true
	}
	if len(rest) >= 4 {
		k.srcPort, k.dstPort = binary.BigEndian.Uint16(rest[0:2]), binary.BigEndian.Uint16(rest[2:4])
	}
	return k, true
}

// Decided names what refused a connection from one service to another
// (to is empty for a destination outside the cluster): the side whose
// isolation left it out, with the policies isolating it.
func Decided(rules *agentv1.Rules, from, to string, proto v1.Protocol, port uint16) string {
	var why []string
	if s := selected(rules, from); s != nil && s.EgressIsolated {
		if to == "" || egressRefuses(rules, from, to, proto, port) {
			why = append(why, fmt.Sprintf("egress of %s (%s)", from, policiesOf(s.Egress, s.Service)))
		}
	}
	if to != "" {
		if s := selected(rules, to); s != nil && s.IngressIsolated {
			in := agentv1.PortSet{}
			for _, r := range s.Ingress {
				if slices.Contains(r.Services, from) {
					in = in.Union(agentv1.Of(r.Ports))
				}
			}
			if !in.Has(proto, port) {
				why = append(why, fmt.Sprintf("ingress of %s (%s)", to, policiesOf(s.Ingress, s.Service)))
			}
		}
	}
	if len(why) == 0 {
		return "default deny"
	}
	return "default deny: " + strings.Join(why, ", ")
}

// Admitted names the rules with log: all that admitted a connection from
// one service to another (to is empty for dst outside the cluster),
// sorted: what an allowed record quotes.
func Admitted(rules *agentv1.Rules, from, to string, dst netip.Addr, proto v1.Protocol, port uint16) string {
	var names []string
	if s := selected(rules, from); s != nil && s.EgressIsolated {
		for _, r := range s.Egress {
			if !r.LogAllowed || !agentv1.Of(r.Ports).Has(proto, port) {
				continue
			}
			if (to != "" && slices.Contains(r.Services, to)) ||
				(to == "" && slices.ContainsFunc(r.Blocks, func(b v1.SourceBlock) bool { return agentv1.BlockContains(b, dst) })) {
				names = append(names, r.Policy)
			}
		}
	}
	if to != "" {
		if s := selected(rules, to); s != nil && s.IngressIsolated {
			for _, r := range s.Ingress {
				if r.LogAllowed && slices.Contains(r.Services, from) && agentv1.Of(r.Ports).Has(proto, port) {
					names = append(names, r.Policy)
				}
			}
		}
	}
	slices.Sort(names)
	return strings.Join(slices.Compact(names), ", ")
}

// egressRefuses reports whether from's own egress rules leave to:port out.
func egressRefuses(rules *agentv1.Rules, from, to string, proto v1.Protocol, port uint16) bool {
	s := selected(rules, from)
	out := agentv1.PortSet{}
	for _, r := range s.Egress {
		if slices.Contains(r.Services, to) {
			out = out.Union(agentv1.Of(r.Ports))
		}
	}
	return !out.Has(proto, port)
}

// policiesOf names the policies of the rules (the part before "/"); a
// service isolated with no rule in that direction names itself.
func policiesOf(rules []agentv1.Rule, service string) string {
	var names []string
	for _, r := range rules {
		name, _, _ := strings.Cut(r.Policy, "/")
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "no rule allows any peer of " + service
	}
	return "policy " + strings.Join(names, ", ")
}
