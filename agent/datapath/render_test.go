package datapath

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/swarmsec/swarmsec/agent/tasks"
	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

var (
	svcNames = []string{"a", "b", "c"}
	outside  = []string{"203.0.113.1", "203.0.113.9", "198.51.100.1", "2001:db8::1", "2001:db8:1::1"}
	blocks   = []v1.SourceBlock{{CIDR: "203.0.113.0/24", Except: []string{"203.0.113.9/32"}}, {CIDR: "2001:db8::/32", Except: []string{"2001:db8:1::/48"}}, {CIDR: "0.0.0.0/0"}}
)

func genRule(t *rapid.T, l string, egress bool) agentv1.Rule {
	r := agentv1.Rule{Policy: "p/" + l, LogAllowed: rapid.Bool().Draw(t, l+"log")}
	for _, s := range svcNames {
		if rapid.Bool().Draw(t, l+s) {
			r.Services = append(r.Services, s)
		}
	}
	if egress && rapid.Bool().Draw(t, l+"blocks") {
		r.Blocks = append(r.Blocks, rapid.SampledFrom(blocks).Draw(t, l+"block"))
	}
	for i := range rapid.IntRange(0, 2).Draw(t, l+"ports") {
		p := agentv1.PortRange{Protocol: rapid.SampledFrom(agentv1.Protocols).Draw(t, fmt.Sprintf("%sproto%d", l, i))}
		if rapid.IntRange(0, 3).Draw(t, fmt.Sprintf("%sall%d", l, i)) > 0 {
			p.Port = uint16(rapid.IntRange(1, 8).Draw(t, fmt.Sprintf("%sport%d", l, i)))
			if rapid.Bool().Draw(t, fmt.Sprintf("%srange%d", l, i)) {
				p.EndPort = uint16(rapid.IntRange(int(p.Port), 10).Draw(t, fmt.Sprintf("%send%d", l, i)))
			}
		}
		r.Ports = append(r.Ports, p)
	}
	return r
}

// genServices draws the per-service rules of some of svcNames.
func genServices(t *rapid.T, l string) []agentv1.ServiceRules {
	var out []agentv1.ServiceRules
	for _, s := range svcNames {
		if !rapid.Bool().Draw(t, l+"selected "+s) {
			continue
		}
		sr := agentv1.ServiceRules{Service: s, IngressIsolated: rapid.Bool().Draw(t, l+"in "+s), EgressIsolated: rapid.Bool().Draw(t, l+"eg "+s)}
		for i := range rapid.IntRange(0, 2).Draw(t, l+"ingress "+s) {
			sr.Ingress = append(sr.Ingress, genRule(t, fmt.Sprintf("%s%sin%d", l, s, i), false))
		}
		for i := range rapid.IntRange(0, 2).Draw(t, l+"egress "+s) {
			sr.Egress = append(sr.Egress, genRule(t, fmt.Sprintf("%s%seg%d", l, s, i), true))
		}
		out = append(out, sr)
	}
	return out
}

// genView is one network: each service a VIP and two tasks.
func genView() (v *tasks.View, owner map[netip.Addr]string, tasksOf map[string][]netip.Addr) {
	n := &tasks.Network{ID: "n", Services: map[string]*tasks.Endpoints{}}
	owner, tasksOf = map[netip.Addr]string{}, map[string][]netip.Addr{}
	for i, s := range svcNames {
		vip := netip.AddrFrom4([4]byte{10, 0, 1, byte(10 * (i + 1))})
		ep := &tasks.Endpoints{VIPs: []netip.Addr{vip}, Tasks: map[netip.Addr]string{}}
		owner[vip] = s
		for j := 1; j <= 2; j++ {
			a := netip.AddrFrom4([4]byte{10, 0, 1, byte(10*(i+1) + j)})
			ep.Tasks[a] = fmt.Sprintf("%s.%d", s, j)
			owner[a] = s
			tasksOf[s] = append(tasksOf[s], a)
		}
		n.Services[s] = ep
	}
	return &tasks.View{Networks: map[string]*tasks.Network{"n": n}}, owner, tasksOf
}

// TestRenderAdmitsWhatTheRulesAllow checks the addresses and ports a task's
// rule set admits, first match wins as in the kernel, against the rules'
// own semantics (Between, Outside, which the leader's test checks against
// Kubernetes'): both directions, VIPs and tasks, blocks.
func TestRenderAdmitsWhatTheRulesAllow(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rules := &agentv1.Rules{Services: genServices(t, "")}
		v, owner, tasksOf := genView()
		me := rapid.SampledFrom(svcNames).Draw(t, "me")
		task := &tasks.Task{Name: me + ".1", Service: me, Addrs: map[string]netip.Addr{"n": tasksOf[me][0]}}
		rs := Render(rules, v, task)
		for a, s := range owner {
			if a == tasksOf[me][0] {
				continue
			}
			for _, proto := range agentv1.Protocols {
				for port := uint16(1); port <= 11; port++ {
					if got, want := rs.Admits(true, a, proto, port), rules.Between(me, s).Has(proto, port); got != want {
						t.Fatalf("%s -> %s (%s) %d/%s: table %v, rules %v\n%s", me, a, s, port, proto, got, want, rs.String())
					}
					if !slices.Contains(tasksOf[s], a) {
						continue // a VIP is never a source
					}
					if got, want := rs.Admits(false, a, proto, port), rules.Between(s, me).Has(proto, port); got != want {
						t.Fatalf("%s (%s) -> %s %d/%s: table %v, rules %v\n%s", a, s, me, port, proto, got, want, rs.String())
					}
				}
			}
		}
		for _, o := range outside {
			a := netip.MustParseAddr(o)
			for _, proto := range agentv1.Protocols {
				for port := uint16(1); port <= 11; port++ {
					if got, want := rs.Admits(true, a, proto, port), rules.Outside(me, a, proto, port); got != want {
						t.Fatalf("%s -> %s %d/%s: table %v, rules %v\n%s", me, a, port, proto, got, want, rs.String())
					}
				}
			}
		}
	})
}

func TestDecidedNamesTheSideThatRefused(t *testing.T) {
	rules := &agentv1.Rules{Services: []agentv1.ServiceRules{
		{Service: "shop_api", IngressIsolated: true, EgressIsolated: true, Egress: []agentv1.Rule{{Policy: "shop-api/egress[0]", Services: []string{"shop_db"}}}},
		{Service: "shop_db", IngressIsolated: true, Ingress: []agentv1.Rule{{Policy: "shop-db/ingress[0]", Services: []string{"shop_api"}, Ports: []agentv1.PortRange{{Protocol: v1.ProtocolTCP, Port: 8080}}}}},
	}}
	for _, tc := range []struct {
		from, to string
		port     uint16
		want     string
	}{
		{"shop_api", "shop_db", 9090, "default deny: ingress of shop_db (policy shop-db)"},
		{"shop_db", "shop_api", 8080, "default deny: ingress of shop_api (no rule allows any peer of shop_api)"},
		{"shop_api", "", 443, "default deny: egress of shop_api (policy shop-api)"},
	} {
		if got := Decided(rules, tc.from, tc.to, v1.ProtocolTCP, tc.port); got != tc.want {
			t.Errorf("%s -> %s:%d: %q, want %q", tc.from, tc.to, tc.port, got, tc.want)
		}
	}
}

// TestRenderReportsAuditAndLoggedVerdicts checks the verdict each new
// connection gets from a task's rule set, with audit-mode rules and rules
// with log: all, against the rules' semantics: blocked where the rules in
// force refuse it; would-block where they admit it and the rules with the
// audit-mode ones enforced too would not; allowed (going out) where a rule
// with log: all admits it; nothing reported otherwise.
func TestRenderReportsAuditAndLoggedVerdicts(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rules := &agentv1.Rules{Services: genServices(t, ""), Audit: genServices(t, "audit ")}
		all := rules.WithAudit()
		if all == nil {
			all = rules
		}
		v, owner, tasksOf := genView()
		me := rapid.SampledFrom(svcNames).Draw(t, "me")
		task := &tasks.Task{Name: me + ".1", Service: me, Addrs: map[string]netip.Addr{"n": tasksOf[me][0]}}
		rs := Render(rules, v, task)
		want := func(allowed, audited, logged bool) string {
			switch {
			case !allowed:
				return agentv1.VerdictBlocked
			case !audited:
				return agentv1.VerdictWouldBlock
			case logged:
				return agentv1.VerdictAllowed
			}
			return ""
		}
		for a, s := range owner {
			if a == tasksOf[me][0] {
				continue
			}
			for _, proto := range agentv1.Protocols {
				for port := uint16(1); port <= 11; port++ {
					w := want(rules.Between(me, s).Has(proto, port), all.Between(me, s).Has(proto, port), rules.Logged(me, s).Has(proto, port))
					if got := rs.Judge(true, a, proto, port); got != w {
						t.Fatalf("%s -> %s (%s) %d/%s: table %q, rules %q\n%s", me, a, s, port, proto, got, w, rs.String())
					}
					if !slices.Contains(tasksOf[s], a) {
						continue
					}
					w = want(rules.Between(s, me).Has(proto, port), all.Between(s, me).Has(proto, port), false)
					if got := rs.Judge(false, a, proto, port); got != w {
						t.Fatalf("%s (%s) -> %s %d/%s: table %q, rules %q\n%s", a, s, me, port, proto, got, w, rs.String())
					}
				}
			}
		}
		for _, o := range outside {
			a := netip.MustParseAddr(o)
			for _, proto := range agentv1.Protocols {
				for port := uint16(1); port <= 11; port++ {
					logged := rules.Outside(me, a, proto, port) && Admitted(rules, me, "", a, proto, port) != ""
					w := want(rules.Outside(me, a, proto, port), all.Outside(me, a, proto, port), logged)
					if got := rs.Judge(true, a, proto, port); got != w {
						t.Fatalf("%s -> %s %d/%s: table %q, rules %q\n%s", me, a, port, proto, got, w, rs.String())
					}
				}
			}
		}
	})
}
