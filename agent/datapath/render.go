package datapath

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"go4.org/netipx"

	"github.com/swarmsec/swarmsec/agent/tasks"
	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// Verdict of a rule.
type Verdict uint8

// The verdicts a rule may give.
const (
	Accept Verdict = iota
	Drop
)

// Match is a protocol's destination ports lo..hi.
type Match struct {
	Protocol v1.Protocol
	Lo, Hi   uint16
}

// Rule admits or drops new connections whose peer address (the
// destination going out, the source coming in) is in Addrs (or Ranges),
// on one of Ports (nil: any protocol, any port).
type Rule struct {
	// Addrs are single addresses (a peer's VIPs and tasks).
	Addrs []netip.Addr
	// Ranges are address ranges (a block less its exceptions); Any, when
	// set, matches every address.
	Ranges []netipx.IPRange
	Any    bool
	Ports  []Match
	// Verdict is Accept or Drop; a Drop is logged (rate-limited).
	Verdict Verdict
	// Log, on an Accept, logs it too (a rule with log: all).
	Log bool
	// Why names what the rule stands for, for people reading the table.
	Why string
}

// Ruleset is one task's rules: new connections it opens (Out) and that
// reach it (In), each list ending in what is left: accepted.
type Ruleset struct {
	Out, In []Rule
	// AuditOut and AuditIn are the rules of the audit-mode policies joined
	// with those in force (agentv1.Rules.WithAudit), judged after Out and
	// In for what those accepted: a Drop there is only logged (would-block)
	// and the connection passes. Empty when the audit-mode policies would
	// drop nothing more for this task.
	AuditOut, AuditIn []Rule
}

// Empty reports whether the rule set drops and logs nothing, so the task
// needs no table.
func (r *Ruleset) Empty() bool {
	return !slices.ContainsFunc(slices.Concat(r.Out, r.In, r.AuditOut, r.AuditIn), func(x Rule) bool { return x.Verdict == Drop || x.Log })
}

// Render computes the rule set of task t from the rules and what the
// node's engine says of t's networks: the rules in force, with the
// accepts that a rule with log: all admits logged, and, when audit-mode
// policies would drop more, their log-only rules.
func Render(rules *agentv1.Rules, v *tasks.View, t *tasks.Task) Ruleset {
	rs := render(rules, v, t, true)
	if all := rules.WithAudit(); all != nil {
		audit, plain := render(all, v, t, false), render(rules, v, t, false)
		if audit.String() != plain.String() {
			rs.AuditOut, rs.AuditIn = audit.Out, audit.In
		}
	}
	return rs
}

// render is the rule set of the rules (log: whether accepts of rules
// with log: all are logged).
func render(rules *agentv1.Rules, v *tasks.View, t *tasks.Task, log bool) Ruleset {
	var rs Ruleset
	if len(rules.Services) == 0 {
		return rs
	}
	peers := v.Peers(t)
	names := slices.Sorted(maps.Keys(peers))
	own := slices.Collect(maps.Values(t.Addrs))

	// Going out: to a service, both its ingress and our egress must say
	// yes, by its VIPs and its tasks' addresses. The connections a rule
	// with log: all admits are logged here, where they are opened.
	var known []netip.Addr
	for _, d := range names {
		addrs := slices.Concat(peers[d].VIPs, slices.Collect(maps.Keys(peers[d].Tasks)))
		addrs = slices.DeleteFunc(addrs, func(a netip.Addr) bool { return slices.Contains(own, a) })
		sortAddrs(addrs)
		known = append(known, addrs...)
		if log {
			for _, r := range admit(addrs, rules.Logged(t.Service, d), "to "+d+", logged") {
				r.Log = true
				rs.Out = append(rs.Out, r)
			}
		}
		rs.Out = append(rs.Out, admit(addrs, rules.Between(t.Service, d), "to "+d)...)
	}
	if len(known) > 0 {
		sortAddrs(known)
		rs.Out = append(rs.Out, Rule{Addrs: known, Verdict: Drop, Why: "to services the policies do not allow"})
	}
	if s := selected(rules, t.Service); s != nil && s.EgressIsolated {
		// Rules with log: all first: the first rule that matches decides.
		egress := slices.Clone(s.Egress)
		slices.SortStableFunc(egress, func(a, b agentv1.Rule) int {
			return cmp.Compare(b2i(!log || !a.LogAllowed), b2i(!log || !b.LogAllowed))
		})
		for _, r := range egress {
			ranges := blockRanges(r.Blocks)
			if len(ranges) == 0 {
				continue
			}
			for _, m := range matches(agentv1.Of(r.Ports)) {
				rs.Out = append(rs.Out, Rule{Ranges: ranges, Ports: m, Verdict: Accept, Log: log && r.LogAllowed, Why: r.Policy})
			}
		}
		rs.Out = append(rs.Out, Rule{Any: true, Verdict: Drop, Why: "egress isolated"})
	}

	// Coming in: from a task address, judged by the sender's service.
	// Other sources (published ports through the gateway, a load
	// balancer's address) were judged where the connection was opened.
	var senders []netip.Addr
	for _, p := range names {
		addrs := slices.Collect(maps.Keys(peers[p].Tasks))
		addrs = slices.DeleteFunc(addrs, func(a netip.Addr) bool { return slices.Contains(own, a) })
		sortAddrs(addrs)
		senders = append(senders, addrs...)
		rs.In = append(rs.In, admit(addrs, rules.Between(p, t.Service), "from "+p)...)
	}
	if len(senders) > 0 {
		sortAddrs(senders)
		rs.In = append(rs.In, Rule{Addrs: senders, Verdict: Drop, Why: "from services the policies do not allow"})
	}
	return rs
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// admit is the rules accepting addrs on ports.
func admit(addrs []netip.Addr, ports agentv1.PortSet, why string) []Rule {
	if len(addrs) == 0 || ports.Empty() {
		return nil
	}
	var out []Rule
	for _, m := range matches(ports) {
		out = append(out, Rule{Addrs: addrs, Ports: m, Verdict: Accept, Why: why})
	}
	return out
}

// matches splits a port set into rules' port lists: nil (one rule, any
// protocol) when it holds every port of every protocol.
func matches(ports agentv1.PortSet) [][]Match {
	all := agentv1.All()
	if !slices.ContainsFunc(agentv1.Protocols, func(p v1.Protocol) bool { return !slices.Equal(ports[p], all[p]) }) {
		return [][]Match{nil}
	}
	var ms []Match
	for _, p := range agentv1.Protocols {
		for _, r := range ports[p] {
			ms = append(ms, Match{Protocol: p, Lo: r[0], Hi: r[1]})
		}
	}
	if len(ms) == 0 {
		return nil
	}
	return [][]Match{ms}
}

// blockRanges is the union of the blocks, each less its exceptions.
func blockRanges(blocks []v1.SourceBlock) []netipx.IPRange {
	var b netipx.IPSetBuilder
	for _, blk := range blocks {
		var one netipx.IPSetBuilder
		p, err := netip.ParsePrefix(blk.CIDR)
		if err != nil {
			continue
		}
		one.AddPrefix(p)
		for _, e := range blk.Except {
			if x, err := netip.ParsePrefix(e); err == nil {
				one.RemovePrefix(x)
			}
		}
		s, err := one.IPSet()
		if err == nil {
			b.AddSet(s)
		}
	}
	s, err := b.IPSet()
	if err != nil {
		return nil
	}
	return s.Ranges()
}

func selected(rules *agentv1.Rules, name string) *agentv1.ServiceRules {
	i, ok := slices.BinarySearchFunc(rules.Services, name, func(s agentv1.ServiceRules, n string) int { return cmp.Compare(s.Service, n) })
	if !ok {
		return nil
	}
	return &rules.Services[i]
}

func sortAddrs(a []netip.Addr) {
	slices.SortFunc(a, func(x, y netip.Addr) int { return x.Compare(y) })
}

// Admits evaluates the rule set as the kernel does for a new connection
// to (out) or from (in) addr on port of proto: the first rule that matches
// decides; none, it is accepted.
func (r *Ruleset) Admits(out bool, addr netip.Addr, proto v1.Protocol, port uint16) bool {
	list := r.In
	if out {
		list = r.Out
	}
	for _, x := range list {
		if x.matches(addr, proto, port) {
			return x.Verdict == Accept
		}
	}
	return true
}

// Judge is the verdict a new connection to (out) or from (in) addr on
// port of proto gets, as the flow records name them: blocked, would-block
// (the audit rules drop what the rules in force accept; if a rule with
// log: all accepted it, the kernel reports both), allowed (a rule with
// log: all accepted it), or "" (accepted, not reported).
func (r *Ruleset) Judge(out bool, addr netip.Addr, proto v1.Protocol, port uint16) string {
	list, audit := r.In, r.AuditIn
	if out {
		list, audit = r.Out, r.AuditOut
	}
	first := func(l []Rule) *Rule {
		for i := range l {
			if l[i].matches(addr, proto, port) {
				return &l[i]
			}
		}
		return nil
	}
	x := first(list)
	if x != nil && x.Verdict == Drop {
		return agentv1.VerdictBlocked
	}
	if a := first(audit); a != nil && a.Verdict == Drop {
		return agentv1.VerdictWouldBlock
	}
	if x != nil && x.Log {
		return agentv1.VerdictAllowed
	}
	return ""
}

func (x *Rule) matches(addr netip.Addr, proto v1.Protocol, port uint16) bool {
	in := x.Any || slices.Contains(x.Addrs, addr) || slices.ContainsFunc(x.Ranges, func(r netipx.IPRange) bool { return r.Contains(addr) })
	if !in {
		return false
	}
	if x.Ports == nil {
		return true
	}
	return slices.ContainsFunc(x.Ports, func(m Match) bool { return m.Protocol == proto && port >= m.Lo && port <= m.Hi })
}

// String writes the rule set as a reader wants it.
func (r *Ruleset) String() string {
	var b strings.Builder
	for _, dir := range []struct {
		name  string
		rules []Rule
	}{{"out", r.Out}, {"in", r.In}, {"audit-out", r.AuditOut}, {"audit-in", r.AuditIn}} {
		for _, x := range dir.rules {
			v := "accept"
			switch {
			case x.Verdict == Drop:
				v = "drop"
			case x.Log:
				v = "log+accept"
			}
			fmt.Fprintf(&b, "%s %s addrs=%v ranges=%v any=%v ports=%v (%s)\n", dir.name, v, x.Addrs, x.Ranges, x.Any, x.Ports, x.Why)
		}
	}
	return b.String()
}
