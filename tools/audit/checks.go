package audit

import (
	"fmt"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
)

// Check ids. They are stable: scripts and dashboards key on them.
const (
	CheckOverlayUnencrypted      = "overlay-unencrypted"
	CheckIngressUnencrypted      = "ingress-unencrypted"
	CheckOverlayAttachable       = "overlay-attachable"
	CheckIngressPublishedPort    = "ingress-published-port"
	CheckPrivilegedPort          = "privileged-port"
	CheckHostNetwork             = "host-network"
	CheckUnallowedPeers          = "unallowed-peers"
	CheckIsolatedOnSharedNetwork = "isolated-on-unmanaged-network"
)

// Info describes a check, for documentation and `swarmsec audit --list`.
type Info struct {
	ID          string   `json:"check"`
	Severity    Severity `json:"severity"`
	Kind        string   `json:"kind"`
	DockerBench string   `json:"dockerBench,omitempty"`
	// NeedsPolicies is set for the checks that compare with manifests.
	NeedsPolicies bool   `json:"needsPolicies,omitempty"`
	Title         string `json:"title"`
}

type check struct {
	Info
	// narrowedByPolicies: with policies, policyChecks runs a narrower form.
	narrowedByPolicies bool
	run                func(check, *inventory) []Finding
}

// checks are the checks over observed state alone.
var checks = []check{
	{Info: Info{ID: CheckOverlayUnencrypted, Severity: SeverityHigh, Kind: KindNetwork, DockerBench: "7.3",
		Title: "overlay network without encryption"}, run: overlayUnencrypted},
	{Info: Info{ID: CheckIngressUnencrypted, Severity: SeverityMedium, Kind: KindNetwork, DockerBench: "7.3",
		Title: "the ingress (routing-mesh) network is not encrypted"}, run: ingressUnencrypted},
	{Info: Info{ID: CheckOverlayAttachable, Severity: SeverityMedium, Kind: KindNetwork,
		Title: "attachable overlay network: any container on a node can join it"}, run: overlayAttachable},
	{Info: Info{ID: CheckIngressPublishedPort, Severity: SeverityMedium, Kind: KindService,
		Title: "port published in ingress mode: the service joins the shared routing-mesh network"}, run: ingressPublished},
	{Info: Info{ID: CheckPrivilegedPort, Severity: SeverityLow, Kind: KindService, DockerBench: "5.7",
		Title: "service publishes a privileged port (below 1024)"}, run: privilegedPorts},
	{Info: Info{ID: CheckHostNetwork, Severity: SeverityHigh, Kind: KindService, DockerBench: "5.9",
		Title: "service on the host network: no network isolation at all"}, run: hostNetwork},
	{Info: Info{ID: CheckIsolatedOnSharedNetwork, Severity: SeverityHigh, Kind: KindService,
		Title: "service isolated by swarmsec is attached to a network swarmsec does not own (drift)"},
		narrowedByPolicies: true, run: isolatedOnUnmanaged},
	{Info: Info{ID: CheckDNSAmbiguousName, Severity: SeverityMedium, Kind: KindNetwork,
		Title: "a name resolves to more than one service on a network: an alias another service can claim"}, run: ambiguousNames},
}

// Checks lists every check, those that need policies last.
func Checks() []Info {
	out := make([]Info, 0, len(checks)+1)
	for _, c := range checks {
		out = append(out, c.Info)
	}
	out = append(out, Info{ID: CheckUnallowedPeers, Severity: SeverityHigh, Kind: KindNetwork, NeedsPolicies: true,
		Title: "services share a network although no policy allows them to talk"})
	out = append(out, reconInfo)
	return append(out, nodeChecks...)
}

func (c check) finding(kind, name, msg, fix string) Finding {
	return Finding{Check: c.ID, Severity: c.Severity, Kind: kind, Name: name, Message: msg, Fix: fix, DockerBench: c.DockerBench}
}

// driftCheck is the drift check, for policyChecks.
func driftCheck() check {
	i := slices.IndexFunc(checks, func(c check) bool { return c.ID == CheckIsolatedOnSharedNetwork })
	return checks[i]
}

func isOverlay(n *state.Network) bool { return n.Driver == "overlay" }

func overlayUnencrypted(c check, in *inventory) []Finding {
	var out []Finding
	for _, n := range in.networks {
		if !isOverlay(n) || n.Ingress || n.Encrypted() {
			continue
		}
		out = append(out, c.finding(KindNetwork, n.Name,
			fmt.Sprintf("overlay network %s is not encrypted: traffic between its tasks on different nodes crosses the underlay as clear VXLAN", n.Name),
			fmt.Sprintf("networks cannot be changed: create an encrypted one (docker network create -d overlay --opt encrypted %s-enc), move its services onto it (docker service update --network-add %s-enc --network-rm %s SERVICE), then remove %s; or select it with an EncryptionPolicy", n.Name, n.Name, n.Name, n.Name)))
	}
	return out
}

func ingressUnencrypted(c check, in *inventory) []Finding {
	var out []Finding
	for _, n := range in.networks {
		if !n.Ingress || n.Encrypted() {
			continue
		}
		out = append(out, c.finding(KindNetwork, n.Name,
			fmt.Sprintf("the ingress network %s carries routing-mesh traffic between nodes unencrypted", n.Name),
			fmt.Sprintf("publish ports in host mode only, or recreate it encrypted while no service publishes in ingress mode: docker network rm %s && docker network create -d overlay --ingress --opt encrypted %s", n.Name, n.Name)))
	}
	return out
}

func overlayAttachable(c check, in *inventory) []Finding {
	var out []Finding
	for _, n := range in.networks {
		if !isOverlay(n) || n.Ingress || !n.Attachable {
			continue
		}
		out = append(out, c.finding(KindNetwork, n.Name,
			fmt.Sprintf("overlay network %s is attachable: any standalone container on any node (docker run --network %s) can join it and reach its services", n.Name, n.Name),
			fmt.Sprintf("recreate %s without --attachable and move its services onto it; give standalone tools their own attachable network", n.Name)))
	}
	return out
}

func ports(s *state.Service, keep func(swarm.PortConfig) bool) []string {
	var out []string
	for _, p := range s.Ports {
		if p.PublishedPort == 0 || !keep(p) {
			continue
		}
		proto := p.Protocol
		if proto == "" {
			proto = swarm.PortConfigProtocolTCP
		}
		out = append(out, fmt.Sprintf("%d/%s", p.PublishedPort, proto))
	}
	return out
}

func ingressPublished(c check, in *inventory) []Finding {
	var out []Finding
	for _, s := range in.services {
		ps := ports(s, func(p swarm.PortConfig) bool {
			return p.PublishMode == "" || p.PublishMode == swarm.PortConfigPublishModeIngress
		})
		if len(ps) == 0 {
			continue
		}
		out = append(out, c.finding(KindService, s.Name,
			fmt.Sprintf("service %s publishes %s through the routing mesh: its tasks join the shared ingress network with every other service published that way, and the port answers on every node", s.Name, strings.Join(ps, ", ")),
			fmt.Sprintf("publish in host mode: docker service update --publish-rm %s --publish-add mode=host,published=PORT,target=TARGET %s; or list the port with mode: host in a NetworkPolicy's publish", firstPort(ps), s.Name)))
	}
	return out
}

func firstPort(ps []string) string { p, _, _ := strings.Cut(ps[0], "/"); return p }

func privilegedPorts(c check, in *inventory) []Finding {
	var out []Finding
	for _, s := range in.services {
		ps := ports(s, func(p swarm.PortConfig) bool { return p.PublishedPort < 1024 })
		if len(ps) == 0 {
			continue
		}
		out = append(out, c.finding(KindService, s.Name,
			fmt.Sprintf("service %s publishes the privileged port %s on the nodes", s.Name, strings.Join(ps, ", ")),
			fmt.Sprintf("publish a port of 1024 or above instead (docker service update --publish-rm %s --publish-add published=PORT,target=TARGET %s) and let a load balancer answer on the low port", firstPort(ps), s.Name)))
	}
	return out
}

func hostNetwork(c check, in *inventory) []Finding {
	var out []Finding
	for _, s := range in.services {
		for _, a := range s.Networks {
			n := in.resolve(a.Target)
			if a.Target != "host" && (n == nil || n.Driver != "host") {
				continue
			}
			out = append(out, c.finding(KindService, s.Name,
				fmt.Sprintf("service %s runs on the host network: its tasks share the node's network stack, outside any overlay or policy", s.Name),
				fmt.Sprintf("attach %s to an overlay network instead: docker service update --network-rm host --network-add NETWORK %s (or recreate it without --network host)", s.Name, s.Name)))
			break
		}
	}
	return out
}

// isolatedOnUnmanaged finds services swarmsec isolated (they carry its
// original label) that are attached to a network it does not own: someone
// reattached them by hand, or a stack deploy put them back.
func isolatedOnUnmanaged(c check, in *inventory) []Finding {
	return isolatedDrift(c, in, func(*state.Service) bool { return true })
}

func isolatedDrift(c check, in *inventory, isolated func(*state.Service) bool) []Finding {
	var out []Finding
	for _, s := range in.services {
		if _, ok := s.Labels[v1.LabelOriginal]; !ok || !isolated(s) {
			continue
		}
		var shared []string
		for _, a := range s.Networks {
			n := in.resolve(a.Target)
			switch {
			case n == nil:
				shared = append(shared, a.Target)
			case !n.Managed():
				shared = append(shared, n.Name)
			}
		}
		if len(shared) == 0 {
			continue
		}
		slices.Sort(shared)
		out = append(out, c.finding(KindService, s.Name,
			fmt.Sprintf("service %s is isolated by swarmsec but attached to %s, which swarmsec does not own: peers there reach it outside any policy", s.Name, strings.Join(shared, ", ")),
			fmt.Sprintf("let swarmsec run revert it, or run swarmsec apply; to detach by hand: docker service update --network-rm %s %s", shared[0], s.Name)))
	}
	return out
}

// policyChecks compare the cluster with the policies in the store: pairs
// of services that share a network although no policy lets them talk, and
// the drift check narrowed to services the policies still isolate.
func policyChecks(tx state.ReadTx, in *inventory) ([]Finding, error) {
	d, err := compile.Compile(tx, nil)
	if err != nil {
		return nil, err
	}
	isolated := func(s *state.Service) bool { ds := d.Services[s.ID]; return ds != nil && ds.Isolated }

	// Two services may share a network when neither is isolated or a
	// compiled network holds both: compiled networks are exactly the groups
	// of services the policies let talk.
	together := map[[2]string]bool{}
	for _, dn := range d.Networks {
		for i, a := range dn.Members {
			for _, b := range dn.Members[i+1:] {
				together[pair(a, b)] = true
			}
		}
	}
	members := map[string][]*state.Service{} // network name -> services on it
	for _, s := range in.services {
		for _, a := range s.Networks {
			name := a.Target
			if n := in.resolve(a.Target); n != nil {
				name = n.Name
			}
			members[name] = append(members[name], s)
		}
	}
	var out []Finding
	names := make([]string, 0, len(members))
	for name := range members {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if n := in.byName[name]; n != nil && n.Ignored() {
			continue
		}
		svcs := members[name]
		var bad []string
		for i, a := range svcs {
			for _, b := range svcs[i+1:] {
				if (!isolated(a) && !isolated(b)) || together[pair(a.Name, b.Name)] {
					continue
				}
				bad = append(bad, a.Name+" and "+b.Name)
			}
		}
		if len(bad) == 0 {
			continue
		}
		msg := fmt.Sprintf("on network %s, %s can talk although no policy allows it", name, strings.Join(bad[:min(3, len(bad))], ", "))
		if len(bad) > 3 {
			msg += fmt.Sprintf(" (and %d more pairs)", len(bad)-3)
		}
		out = append(out, Finding{Check: CheckUnallowedPeers, Severity: SeverityHigh, Kind: KindNetwork, Name: name, Message: msg,
			Fix: "swarmsec apply --manifests DIR (or swarmsec run) moves isolated services onto per-policy encrypted networks; add an ingress rule if they must talk"})
	}
	// With policies, a service no policy selects any more is being
	// restored, not drifting.
	out = append(out, isolatedDrift(driftCheck(), in, isolated)...)
	return out, nil
}

func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}
