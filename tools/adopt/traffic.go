package adopt

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"sigs.k8s.io/yaml"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/reconciler/traffic"
	"github.com/swarmsec/swarmsec/state"
)

// FromTraffic returns manifests, by file name (one per stack), whose rules
// admit the flows observed and nothing else: one NetworkPolicy per
// service, with ingress from the services seen connecting to it, egress
// to those it was seen connecting to, its way outside only if it was seen
// going there, and only the published ports seen used (from the blocks
// seen, for host-mode ports). Each peer service gets a rule of its own with
// the ports seen to it, and outside destinations are the blocks seen (the
// agent's /24 or /64) grouped by the ports seen to them, so a rule admits
// no peer and port that were not seen together.
// Comments say what was seen, with counts and the last time.
func FromTraffic(tx state.ReadTx, flows []traffic.Flow, stack string, window time.Duration) (map[string][]byte, error) {
	services, err := state.FindServices(tx, state.All())
	if err != nil {
		return nil, err
	}
	slices.SortFunc(services, func(a, b *state.Service) int { return cmp.Compare(a.Name, b.Name) })
	byName := map[string]*state.Service{}
	for _, s := range services {
		if !s.Ignored() && s.Labels[v1.LabelSelf] != "true" {
			byName[s.Name] = s
		}
	}
	in, out := map[string][]traffic.Flow{}, map[string][]traffic.Flow{}
	var gone []string
	for _, f := range flows {
		if f.Verdict == traffic.Blocked {
			continue // attempted and dropped: not a flow to keep
		}
		src, dst := byName[f.Source], byName[f.Destination]
		switch f.Kind {
		case agentv1.FlowService:
			if src == nil || dst == nil {
				gone = append(gone, f.From()+" -> "+f.Target())
				continue
			}
			out[src.Name] = append(out[src.Name], f)
			in[dst.Name] = append(in[dst.Name], f)
		case agentv1.FlowExternal:
			if src == nil {
				gone = append(gone, f.From()+" -> "+f.Target())
				continue
			}
			out[src.Name] = append(out[src.Name], f)
		case agentv1.FlowPublished:
			if dst == nil {
				gone = append(gone, f.From()+" -> "+f.Target())
				continue
			}
			in[dst.Name] = append(in[dst.Name], f)
		}
	}
	docs := map[string][]string{}
	for _, s := range services {
		if byName[s.Name] == nil {
			continue
		}
		st := s.Labels[v1.LabelStackNamespace]
		if stack != "" && st != stack {
			continue
		}
		doc, err := trafficPolicy(s, in[s.Name], out[s.Name])
		if err != nil {
			return nil, err
		}
		docs[fileOf(st)] = append(docs[fileOf(st)], doc)
	}
	files := map[string][]byte{}
	for file, ds := range docs {
		files[file] = []byte(trafficHeader(file, window, gone) + strings.Join(ds, "---\n"))
	}
	return files, nil
}

func trafficHeader(file string, window time.Duration, gone []string) string {
	h := fmt.Sprintf(`# %s, written by swarmsec init --from-traffic from the flows the node
# agents observed in the last %s.
#
# Each service may reach exactly the services it was seen connecting to and
# be reached by those seen connecting to it, reaches outside only if it was
# seen doing so, and keeps only the published ports seen used. A service
# that saw no traffic in the window is cut off entirely: check it before
# applying (swarmsec plan lists the observed flows a change would block).
#
# Each rule names one service and the ports seen to it (a peer seen with
# icmp, which has no port, keeps every port); outside destinations are the
# /24 (IPv4) or /64 (IPv6) blocks seen, those seen on the same ports in one
# rule. Names outside the cluster resolve through the upstream resolver from
# inside the task: a service whose lookups were not seen needs its
# resolver's block on port 53 added.
`, file, window)
	if len(gone) > 0 {
		slices.Sort(gone)
		h += "#\n# Flows between services the Swarm no longer has, left out:\n"
		for _, g := range slices.Compact(gone) {
			h += "#   " + g + "\n"
		}
	}
	return h
}

// seen writes one flow as a comment line.
func seen(f traffic.Flow, peer string) string {
	port := fmt.Sprintf("%d/%s", f.Port, f.Protocol)
	conns := fmt.Sprintf("%d connections", f.Connections)
	if f.Unanswered > 0 {
		conns += fmt.Sprintf(" (%d unanswered: one-way UDP, or dropped on the way)", f.Unanswered)
	}
	return fmt.Sprintf("#   %s %s: %s, last seen %s\n", peer, port, conns, f.LastSeen.UTC().Format(time.RFC3339))
}

// trafficPolicy is the policy that admits a service's observed flows.
func trafficPolicy(s *state.Service, in, out []traffic.Flow) (string, error) {
	spec := v1.NetworkPolicySpec{
		ServiceSelector: v1.LabelSelector{MatchLabels: map[string]string{v1.LabelService: s.Name}},
		PolicyTypes:     []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress},
		Ingress:         []v1.IngressRule{},
	}
	var notes strings.Builder
	fmt.Fprintf(&notes, "# %s: ", s.Name)
	if len(in)+len(out) == 0 {
		notes.WriteString("no flow seen in the window; this cuts it off from every service and from outside.\n")
	} else {
		fmt.Fprintf(&notes, "%d flows in, %d out seen.\n", len(in), len(out))
	}
	// byPeer groups the service flows by the peer service name gives.
	byPeer := func(fs []traffic.Flow, name func(traffic.Flow) string) ([]string, map[string][]traffic.Flow) {
		m := map[string][]traffic.Flow{}
		for _, f := range fs {
			if f.Kind == agentv1.FlowService && name(f) != s.Name {
				m[name(f)] = append(m[name(f)], f)
			}
		}
		return slices.Sorted(maps.Keys(m)), m
	}
	servicePeer := func(n string) v1.Peer {
		return v1.Peer{ServiceSelector: &v1.LabelSelector{MatchLabels: map[string]string{v1.LabelService: n}}}
	}
	names, from := byPeer(in, func(f traffic.Flow) string { return f.Source })
	for _, n := range names {
		spec.Ingress = append(spec.Ingress, v1.IngressRule{From: []v1.Peer{servicePeer(n)}, Ports: rulePorts(from[n], "from "+n, &notes)})
	}
	names, to := byPeer(out, func(f traffic.Flow) string { return f.Destination })
	for _, n := range names {
		spec.Egress = append(spec.Egress, v1.EgressRule{To: []v1.Peer{servicePeer(n)}, Ports: rulePorts(to[n], "to "+n, &notes)})
	}
	spec.Egress = append(spec.Egress, outsideRules(out, &notes)...)
	for _, f := range in {
		if f.Kind == agentv1.FlowService && f.Source != s.Name {
			notes.WriteString(seen(f, "from "+f.Source))
		}
	}
	for _, f := range out {
		switch {
		case f.Kind == agentv1.FlowService && f.Destination != s.Name:
			notes.WriteString(seen(f, "to "+f.Destination))
		case f.Kind == agentv1.FlowExternal:
			notes.WriteString(seen(f, "to outside "+f.DestinationBlock))
		}
	}
	spec.Publish = publishedFromTraffic(s, in, &notes)
	np := v1.NetworkPolicy{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindNetworkPolicy},
		Metadata: v1.ObjectMeta{Name: policyName(s.Name)},
		Spec:     spec,
	}
	b, err := yaml.Marshal(np)
	if err != nil {
		return "", err
	}
	return notes.String() + string(b), nil
}

// rulePorts are the ports of a peer's flows, as a rule's: nil (every port)
// if one of them has no port a rule can name (icmp), which a comment says.
func rulePorts(fs []traffic.Flow, peer string, notes *strings.Builder) []v1.NetworkPolicyPort {
	type key struct {
		proto v1.RuleProtocol
		port  int
	}
	var keys []key
	for _, f := range fs {
		proto := v1.RuleProtocol(strings.ToUpper(f.Protocol))
		if f.Port == 0 || !slices.Contains([]v1.RuleProtocol{v1.RuleTCP, v1.RuleUDP, v1.RuleSCTP}, proto) {
			fmt.Fprintf(notes, "#   %s %s seen, which no port names: every port stays admitted\n", peer, cmp.Or(f.Protocol, "a protocol"))
			return nil
		}
		keys = append(keys, key{proto, int(f.Port)})
	}
	slices.SortFunc(keys, func(a, b key) int { return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port)) })
	var ports []v1.NetworkPolicyPort
	for _, k := range slices.Compact(keys) {
		ports = append(ports, v1.NetworkPolicyPort{Protocol: k.proto, Port: &k.port})
	}
	return ports
}

// outsideRules admit the outside destinations seen: the blocks seen, one
// rule per set of ports, so a block gets only the ports seen to it.
func outsideRules(out []traffic.Flow, notes *strings.Builder) []v1.EgressRule {
	byBlock := map[netip.Prefix][]traffic.Flow{}
	for _, f := range out {
		if f.Kind != agentv1.FlowExternal {
			continue
		}
		b, err := netip.ParsePrefix(f.DestinationBlock)
		if err != nil {
			fmt.Fprintf(notes, "#   to outside %q %d/%s: not a block, left out\n", f.DestinationBlock, f.Port, f.Protocol)
			continue
		}
		byBlock[b.Masked()] = append(byBlock[b.Masked()], f)
	}
	blocks := slices.SortedFunc(maps.Keys(byBlock), comparePrefix)
	var rules []v1.EgressRule
	index := map[string]int{} // the rule of a set of ports, by portList
	for _, b := range blocks {
		ports := rulePorts(byBlock[b], "to outside "+b.String(), notes)
		k := portList(ports)
		peer := v1.Peer{IPBlock: &v1.IPBlock{CIDR: b.String()}}
		if i, ok := index[k]; ok {
			rules[i].To = append(rules[i].To, peer)
			continue
		}
		index[k] = len(rules)
		rules = append(rules, v1.EgressRule{To: []v1.Peer{peer}, Ports: ports})
	}
	return rules
}

// portList writes ports as a key: "all" for every port.
func portList(ports []v1.NetworkPolicyPort) string {
	if ports == nil {
		return "all"
	}
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, "%d/%s ", *p.Port, p.Protocol)
	}
	return b.String()
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

// publishedFromTraffic keeps the published ports seen used: from the
// blocks seen for a host-mode port (the task sees the client's address),
// from any source for an ingress-mode one (the routing mesh hides it).
func publishedFromTraffic(s *state.Service, in []traffic.Flow, notes *strings.Builder) []v1.PublishedPort {
	var out []v1.PublishedPort
	for _, p := range s.Ports {
		proto := v1.Protocol(p.Protocol)
		if proto == "" {
			proto = v1.ProtocolTCP
		}
		var blocks []netip.Prefix
		var used []traffic.Flow
		for _, f := range in {
			if f.Kind == agentv1.FlowPublished && uint32(f.Port) == p.TargetPort && f.Protocol == string(proto) {
				if b, err := netip.ParsePrefix(f.SourceBlock); err == nil {
					used = append(used, f)
					blocks = append(blocks, b.Masked())
				}
			}
		}
		key := fmt.Sprintf("%d/%s", p.PublishedPort, proto)
		if len(used) == 0 || p.PublishedPort == 0 {
			fmt.Fprintf(notes, "#   published port %s: no connection seen, left out (add it back to keep it)\n", key)
			continue
		}
		pp := v1.PublishedPort{Port: int(p.PublishedPort), Protocol: proto, Mode: v1.PublishModeIngress}
		for _, f := range used {
			notes.WriteString(seen(f, "published "+key+" from "+f.SourceBlock+", to"))
		}
		if p.PublishMode == swarm.PortConfigPublishModeHost {
			pp.Mode = v1.PublishModeHost
			slices.SortFunc(blocks, comparePrefix)
			for _, b := range slices.Compact(blocks) {
				pp.From = append(pp.From, v1.PortSource{IPBlock: &v1.SourceBlock{CIDR: b.String()}})
			}
		} else {
			fmt.Fprintf(notes, "#   published port %s is in ingress mode: the routing mesh hides the clients' addresses, so any source stays admitted\n", key)
		}
		out = append(out, pp)
	}
	return out
}
