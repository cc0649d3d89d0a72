package agentrules

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/swarmsec/swarmsec/agent"
	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

// The oracle below is written from Kubernetes' NetworkPolicy semantics
// (the words), over the policies and the services' labels, with
// none of the compiler's or the agent's code: a connection from A to B on
// port P is allowed when A's egress allows B:P (or no policy of type
// Egress selects A) and B's ingress allows A:P (or no policy of type
// Ingress selects B). A destination outside the cluster is allowed when A
// is not egress-isolated or an egress rule's ipBlock holds it (less its
// exceptions) on P.

type oracleWorld struct {
	labels   map[string]map[string]string
	policies []v1.NetworkPolicySpec
}

func oracleSelects(sel *v1.LabelSelector, labels map[string]string) bool {
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func oracleTypes(s *v1.NetworkPolicySpec) (ingress, egress bool) {
	if len(s.PolicyTypes) == 0 {
		return true, len(s.Egress) > 0
	}
	for _, t := range s.PolicyTypes {
		ingress = ingress || t == v1.PolicyTypeIngress
		egress = egress || t == v1.PolicyTypeEgress
	}
	return ingress, egress
}

func oraclePort(ports []v1.NetworkPolicyPort, proto string, port int) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		pr := "TCP"
		if p.Protocol != "" {
			pr = string(p.Protocol)
		}
		if !strings.EqualFold(pr, proto) {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.EndPort == nil && *p.Port == port:
			return true
		case p.EndPort != nil && *p.Port <= port && port <= *p.EndPort:
			return true
		}
	}
	return false
}

func (w *oracleWorld) connect(from, to, proto string, port int) bool {
	egressIsolated, egressOK := false, false
	ingressIsolated, ingressOK := false, false
	for i := range w.policies {
		p := &w.policies[i]
		in, eg := oracleTypes(p)
		if eg && oracleSelects(&p.ServiceSelector, w.labels[from]) {
			egressIsolated = true
			for _, r := range p.Egress {
				for _, peer := range r.To {
					if peer.ServiceSelector != nil && oracleSelects(peer.ServiceSelector, w.labels[to]) && oraclePort(r.Ports, proto, port) {
						egressOK = true
					}
				}
			}
		}
		if in && oracleSelects(&p.ServiceSelector, w.labels[to]) {
			ingressIsolated = true
			for _, r := range p.Ingress {
				for _, peer := range r.From {
					if peer.ServiceSelector != nil && oracleSelects(peer.ServiceSelector, w.labels[from]) && oraclePort(r.Ports, proto, port) {
						ingressOK = true
					}
				}
			}
		}
	}
	return (!egressIsolated || egressOK) && (!ingressIsolated || ingressOK)
}

func (w *oracleWorld) outside(from string, addr netip.Addr, proto string, port int) bool {
	isolated, ok := false, false
	for i := range w.policies {
		p := &w.policies[i]
		if _, eg := oracleTypes(p); !eg || !oracleSelects(&p.ServiceSelector, w.labels[from]) {
			continue
		}
		isolated = true
		for _, r := range p.Egress {
			for _, peer := range r.To {
				if peer.IPBlock == nil || !oraclePort(r.Ports, proto, port) {
					continue
				}
				in := netip.MustParsePrefix(peer.IPBlock.CIDR).Contains(addr)
				for _, e := range peer.IPBlock.Except {
					if netip.MustParsePrefix(e).Contains(addr) {
						in = false
					}
				}
				ok = ok || in
			}
		}
	}
	return !isolated || ok
}

var (
	apps   = []string{"a", "b", "c"}
	tiers  = []string{"x", "y"}
	blocks = []v1.IPBlock{
		{CIDR: "203.0.113.0/24", Except: []string{"203.0.113.9/32"}},
		{CIDR: "198.51.100.0/24"},
		{CIDR: "0.0.0.0/0", Except: []string{"203.0.113.0/24"}},
		{CIDR: "2001:db8::/32", Except: []string{"2001:db8:1::/48"}},
	}
	addrs = []string{"203.0.113.1", "203.0.113.9", "198.51.100.7", "192.0.2.1", "2001:db8::1", "2001:db8:1::1", "2001:db9::1"}
)

func genSelector(t *rapid.T, label string) *v1.LabelSelector {
	m := map[string]string{}
	switch rapid.IntRange(0, 3).Draw(t, label) {
	case 0:
	case 1, 2:
		m["app"] = rapid.SampledFrom(apps).Draw(t, label+"app")
	case 3:
		m["tier"] = rapid.SampledFrom(tiers).Draw(t, label+"tier")
	}
	return &v1.LabelSelector{MatchLabels: m}
}

func genPorts(t *rapid.T, label string) []v1.NetworkPolicyPort {
	n := rapid.IntRange(0, 2).Draw(t, label)
	var out []v1.NetworkPolicyPort
	for i := range n {
		l := fmt.Sprintf("%s%d", label, i)
		p := v1.NetworkPolicyPort{Protocol: rapid.SampledFrom([]v1.RuleProtocol{"", v1.RuleTCP, v1.RuleUDP, v1.RuleSCTP}).Draw(t, l+"proto")}
		if rapid.IntRange(0, 4).Draw(t, l+"all") > 0 {
			port := rapid.IntRange(1, 10).Draw(t, l+"port")
			p.Port = &port
			if rapid.Bool().Draw(t, l+"range") {
				end := rapid.IntRange(port, 12).Draw(t, l+"end")
				p.EndPort = &end
			}
		}
		out = append(out, p)
	}
	return out
}

func genWorld(t *rapid.T) *oracleWorld {
	w := &oracleWorld{labels: map[string]map[string]string{}}
	for i := range rapid.IntRange(1, 5).Draw(t, "services") {
		w.labels[fmt.Sprintf("s_%d", i)] = map[string]string{
			"app": rapid.SampledFrom(apps).Draw(t, "app"), "tier": rapid.SampledFrom(tiers).Draw(t, "tier"),
		}
	}
	for i := range rapid.IntRange(0, 3).Draw(t, "policies") {
		l := fmt.Sprintf("p%d", i)
		spec := v1.NetworkPolicySpec{ServiceSelector: *genSelector(t, l+"sel")}
		types := rapid.SampledFrom([][]v1.PolicyType{nil, {v1.PolicyTypeIngress}, {v1.PolicyTypeEgress}, {v1.PolicyTypeIngress, v1.PolicyTypeEgress}}).Draw(t, l+"types")
		spec.PolicyTypes = types
		in, eg := types == nil, types == nil
		for _, ty := range types {
			in = in || ty == v1.PolicyTypeIngress
			eg = eg || ty == v1.PolicyTypeEgress
		}
		if in {
			for j := range rapid.IntRange(0, 2).Draw(t, l+"in") {
				r := v1.IngressRule{Ports: genPorts(t, fmt.Sprintf("%sin%dports", l, j))}
				for k := range rapid.IntRange(1, 2).Draw(t, l+"from") {
					r.From = append(r.From, v1.Peer{ServiceSelector: genSelector(t, fmt.Sprintf("%sin%dfrom%d", l, j, k))})
				}
				spec.Ingress = append(spec.Ingress, r)
			}
		}
		if eg {
			for j := range rapid.IntRange(0, 2).Draw(t, l+"eg") {
				r := v1.EgressRule{Ports: genPorts(t, fmt.Sprintf("%seg%dports", l, j))}
				for k := range rapid.IntRange(1, 2).Draw(t, l+"to") {
					if rapid.Bool().Draw(t, fmt.Sprintf("%seg%dblock%d", l, j, k)) {
						b := rapid.SampledFrom(blocks).Draw(t, fmt.Sprintf("%seg%dwhich%d", l, j, k))
						r.To = append(r.To, v1.Peer{IPBlock: &b})
						continue
					}
					r.To = append(r.To, v1.Peer{ServiceSelector: genSelector(t, fmt.Sprintf("%seg%dto%d", l, j, k))})
				}
				spec.Egress = append(spec.Egress, r)
			}
		}
		w.policies = append(w.policies, spec)
	}
	return w
}

// compiled runs the real pipeline: the store, the compiler, the leader's
// rendering, the encoding, and the agent's decoding of the file.
func (w *oracleWorld) compiled(t *rapid.T) *agentv1.Rules {
	var services []*state.Service
	for name, labels := range w.labels {
		s := policytest.StackService("s", strings.TrimPrefix(name, "s_"))
		for k, v := range labels {
			s.Labels[k] = v
			s.SelectorLabels[k] = v
		}
		services = append(services, s)
	}
	var policies []*v1.Policy
	for i, spec := range w.policies {
		policies = append(policies, policytest.NetPol(fmt.Sprintf("p%d", i), spec))
	}
	st := state.New()
	if err := st.Update(func(tx state.Tx) error {
		if err := state.ReplaceServices(tx, services); err != nil {
			return err
		}
		return state.ReplacePolicies(tx, policies)
	}); err != nil {
		t.Fatal(err)
	}
	var d *compile.Desired
	var err error
	st.View(func(tx state.ReadTx) { d, err = compile.Compile(tx, nil) })
	if err != nil {
		t.Fatal(err)
	}
	doc, err := FromPlan(&plan.Plan{Desired: d})
	if err != nil {
		t.Fatal(err)
	}
	back, err := agent.DecodeRules(Encode(doc))
	if err != nil {
		t.Fatalf("the agent refuses the rules: %v\n%s", err, Encode(doc))
	}
	return back
}

func TestServiceRulesMatchKubernetesSemantics(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := genWorld(t)
		rules := w.compiled(t)
		for from := range w.labels {
			for to := range w.labels {
				between := rules.Between(from, to)
				for _, proto := range []string{"tcp", "udp", "sctp"} {
					for port := 1; port <= 13; port++ {
						want := w.connect(from, to, proto, port)
						if got := between.Has(v1.Protocol(proto), uint16(port)); got != want {
							t.Fatalf("%s -> %s %d/%s: rules say %v, Kubernetes %v\n%s", from, to, port, proto, got, want, Encode(rules))
						}
					}
				}
			}
			for _, a := range addrs {
				addr := netip.MustParseAddr(a)
				for _, proto := range []string{"tcp", "udp"} {
					for port := 1; port <= 13; port++ {
						want := w.outside(from, addr, proto, port)
						if got := rules.Outside(from, addr, v1.Protocol(proto), uint16(port)); got != want {
							t.Fatalf("%s -> %s %d/%s: rules say %v, Kubernetes %v\n%s", from, a, port, proto, got, want, Encode(rules))
						}
					}
				}
			}
		}
	})
}

// TestAuditRulesMatchKubernetesSemantics: with some policies in audit
// mode, the delivered rules enforce the others exactly (Services), and
// with the audit ones joined (WithAudit, what the agents' log-only rules
// report as would-block) they are exactly all the policies enforced.
func TestAuditRulesMatchKubernetesSemantics(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := genWorld(t)
		enforced := &oracleWorld{labels: w.labels}
		var policies []*v1.Policy
		for i, spec := range w.policies {
			if rapid.Bool().Draw(t, fmt.Sprintf("audit%d", i)) {
				spec.Enforcement = v1.EnforcementAudit
			} else {
				enforced.policies = append(enforced.policies, spec)
			}
			policies = append(policies, policytest.NetPol(fmt.Sprintf("p%d", i), spec))
		}
		var services []*state.Service
		for name, labels := range w.labels {
			s := policytest.StackService("s", strings.TrimPrefix(name, "s_"))
			for k, v := range labels {
				s.Labels[k], s.SelectorLabels[k] = v, v
			}
			services = append(services, s)
		}
		st := state.New()
		if err := st.Update(func(tx state.Tx) error {
			if err := state.ReplaceServices(tx, services); err != nil {
				return err
			}
			return state.ReplacePolicies(tx, policies)
		}); err != nil {
			t.Fatal(err)
		}
		var p *plan.Plan
		var err error
		st.View(func(tx state.ReadTx) { p, err = plan.Policies(tx, false, plan.Limits{}) })
		if err != nil {
			t.Fatal(err)
		}
		doc, err := FromPlan(p)
		if err != nil {
			t.Fatal(err)
		}
		rules, err := agent.DecodeRules(Encode(doc))
		if err != nil {
			t.Fatalf("the agent refuses the rules: %v\n%s", err, Encode(doc))
		}
		all := rules.WithAudit()
		if all == nil {
			all = rules
		}
		for from := range w.labels {
			for to := range w.labels {
				for _, proto := range []string{"tcp", "udp"} {
					for port := 1; port <= 13; port++ {
						if got, want := rules.Between(from, to).Has(v1.Protocol(proto), uint16(port)), enforced.connect(from, to, proto, port); got != want {
							t.Fatalf("enforced: %s -> %s %d/%s: rules say %v, Kubernetes %v\n%s", from, to, port, proto, got, want, Encode(doc))
						}
						if got, want := all.Between(from, to).Has(v1.Protocol(proto), uint16(port)), w.connect(from, to, proto, port); got != want {
							t.Fatalf("with audit: %s -> %s %d/%s: rules say %v, Kubernetes %v\n%s", from, to, port, proto, got, want, Encode(doc))
						}
					}
				}
			}
			for _, a := range addrs {
				addr := netip.MustParseAddr(a)
				for port := 1; port <= 13; port++ {
					if got, want := all.Outside(from, addr, v1.ProtocolTCP, uint16(port)), w.outside(from, addr, "tcp", port); got != want {
						t.Fatalf("with audit: %s -> %s %d/tcp: rules say %v, Kubernetes %v\n%s", from, a, port, got, want, Encode(doc))
					}
				}
			}
		}
	})
}
