package audit

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
)

// Check ids of the DNS checks.
const (
	// CheckDNSReconnaissance: a service keeps resolving the names of
	// services it may not reach (from the node agents' DNS records).
	CheckDNSReconnaissance = "dns-reconnaissance"
	// CheckDNSAmbiguousName: on one network, a name resolves to more than
	// one service (from Swarm's state).
	CheckDNSAmbiguousName = "dns-ambiguous-name"
)

// ReconMinLookups is how many lookups in the window of names a service
// may not reach make a finding: a single stale lookup does not.
const ReconMinLookups = 3

var reconInfo = Info{ID: CheckDNSReconnaissance, Severity: SeverityMedium, Kind: KindService,
	Title: "service keeps resolving the names of services it may not reach (node agents' DNS records)"}

// RunWithDNS is Run, and checks the lookups the node agents saw in a
// window (summed over nodes) for reconnaissance.
func RunWithDNS(ctx context.Context, api dockerapi.API, policies []*v1.Policy, lookups []agentv1.DNSLookup) (*Report, error) {
	st, err := load0(ctx, api, policies)
	if err != nil {
		return nil, err
	}
	var r *Report
	st.View(func(tx state.ReadTx) {
		if r, err = Check(tx, policies != nil); err != nil {
			return
		}
		var found []Finding
		if found, err = Reconnaissance(tx, policies != nil, lookups); err == nil {
			r.Findings = append(r.Findings, found...)
			sortFindings(r.Findings)
		}
	})
	return r, err
}

// names are the names the embedded resolver answers on each network,
// with the services claiming them: each service attached answers to its
// name and to each alias of its attachment, and tasks.<each> answers with
// its task addresses.
type claim struct {
	service, network, how string
}

func (in *inventory) names() map[string][]claim {
	out := map[string][]claim{}
	for _, s := range in.services {
		for _, a := range s.Networks {
			n := in.resolve(a.Target)
			if n == nil || n.Ingress || n.Driver == "host" || n.Driver == "null" || n.Ignored() {
				continue
			}
			add := func(name, how string) {
				name = strings.ToLower(strings.TrimSuffix(name, "."))
				c := claim{service: s.Name, network: n.Name, how: how}
				if name != "" && !slices.Contains(out[name], c) {
					out[name] = append(out[name], c)
				}
			}
			add(s.Name, "its service name")
			add("tasks."+s.Name, "its tasks' name")
			for _, alias := range a.Aliases {
				add(alias, "its alias "+alias)
				add("tasks."+alias, "its alias's tasks' name")
			}
		}
	}
	return out
}

// ambiguousNames finds the names that, on one network, more than one
// service answers to: whichever the resolver gives, another service can
// take a name its clients trust (a stack's short name on a shared
// network, an alias copied by another stack).
func ambiguousNames(c check, in *inventory) []Finding {
	perNet := map[string]map[string][]claim{} // network -> name -> claims
	for name, claims := range in.names() {
		byNet := map[string][]claim{}
		for _, cl := range claims {
			byNet[cl.network] = append(byNet[cl.network], cl)
		}
		for net, cls := range byNet {
			services := map[string]bool{}
			for _, cl := range cls {
				services[cl.service] = true
			}
			if len(services) < 2 {
				continue
			}
			if perNet[net] == nil {
				perNet[net] = map[string][]claim{}
			}
			perNet[net][name] = cls
		}
	}
	var out []Finding
	for _, net := range slices.Sorted(maps.Keys(perNet)) {
		names := slices.Sorted(maps.Keys(perNet[net]))
		var parts []string
		var services []string
		for _, name := range names {
			cls := slices.SortedFunc(slices.Values(perNet[net][name]), func(a, b claim) int {
				return cmp.Or(cmp.Compare(a.service, b.service), cmp.Compare(a.how, b.how))
			})
			var who []string
			for _, cl := range cls {
				who = append(who, fmt.Sprintf("%s (%s)", cl.service, cl.how))
				if !slices.Contains(services, cl.service) {
					services = append(services, cl.service)
				}
			}
			parts = append(parts, fmt.Sprintf("%q resolves to %s", name, strings.Join(who, " and ")))
		}
		slices.Sort(services)
		msg := fmt.Sprintf("on network %s, %s: a client asking for the name cannot tell which service answers, and a service given the alias takes over another's name",
			net, strings.Join(parts, "; "))
		out = append(out, c.finding(KindNetwork, net, msg,
			fmt.Sprintf("give each service on %s names of its own: drop or rename the alias (docker service update --network-rm %s --network-add name=%s,alias=NEW SERVICE), or keep stacks that reuse short names (db, api) off shared networks and let swarmsec put the services that must talk on networks of their own; services involved: %s",
				net, net, net, strings.Join(services, ", "))))
	}
	return out
}

// reach says whether one service may reach another: with policies, as
// the compile puts them (on one managed network, or both not isolated
// and sharing a network now); without, whether they share a network now.
type reach func(from, to *state.Service) bool

func reachability(tx state.ReadTx, in *inventory, withPolicies bool) (reach, error) {
	nets := map[string]map[string]bool{} // service ID -> network names
	for _, s := range in.services {
		nets[s.ID] = map[string]bool{}
		for _, a := range s.Networks {
			name := a.Target
			if n := in.resolve(a.Target); n != nil {
				if n.Ingress || n.Driver == "null" {
					continue
				}
				name = n.Name
			}
			nets[s.ID][name] = true
		}
	}
	share := func(a, b *state.Service) bool {
		for n := range nets[a.ID] {
			if nets[b.ID][n] && n != "host" {
				return true
			}
		}
		return false
	}
	if !withPolicies {
		return share, nil
	}
	d, err := compile.Compile(tx, nil)
	if err != nil {
		return nil, err
	}
	together := map[[2]string]bool{}
	for _, dn := range d.Networks {
		for i, a := range dn.Members {
			for _, b := range dn.Members[i+1:] {
				together[pair(a, b)] = true
			}
		}
	}
	isolated := func(s *state.Service) bool { ds := d.Services[s.ID]; return ds != nil && ds.Isolated }
	return func(a, b *state.Service) bool {
		return together[pair(a.Name, b.Name)] || (!isolated(a) && !isolated(b) && share(a, b))
	}, nil
}

// Reconnaissance finds the services that resolved, at least
// ReconMinLookups times in the window, names of the Swarm's services
// (their names, aliases, tasks.<name>) none of which they may reach: a
// task mapping what it could attack, or a client of a dependency the
// policies left out. The lookups are the agents' (summed over nodes).
func Reconnaissance(tx state.ReadTx, withPolicies bool, lookups []agentv1.DNSLookup) ([]Finding, error) {
	if len(lookups) == 0 {
		return nil, nil
	}
	in, err := load(tx)
	if err != nil {
		return nil, err
	}
	can, err := reachability(tx, in, withPolicies)
	if err != nil {
		return nil, err
	}
	byName := map[string]*state.Service{}
	for _, s := range in.services {
		byName[s.Name] = s
	}
	names := in.names()
	type seen struct {
		count   uint64
		classes []string
	}
	asked := map[string]map[string]*seen{} // source -> name -> lookups
	for _, l := range lookups {
		if byName[l.Source] == nil {
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(l.Name, "."))
		if asked[l.Source] == nil {
			asked[l.Source] = map[string]*seen{}
		}
		s := asked[l.Source][name]
		if s == nil {
			s = &seen{}
			asked[l.Source][name] = s
		}
		s.count += l.Count
		if !slices.Contains(s.classes, l.Class) {
			s.classes = append(s.classes, l.Class)
		}
	}
	var out []Finding
	for _, source := range slices.Sorted(maps.Keys(asked)) {
		src := byName[source]
		var parts, targets []string
		var total uint64
		for _, name := range slices.Sorted(maps.Keys(asked[source])) {
			s := asked[source][name]
			var unreachable []string
			ok := false
			for _, cl := range names[name] {
				t := byName[cl.service]
				if t == nil || t == src {
					ok = ok || t == src
					continue
				}
				if can(src, t) {
					ok = true
					break
				}
				if w := cl.service + " on " + cl.network; !slices.Contains(unreachable, w) {
					unreachable = append(unreachable, w)
				}
				if !slices.Contains(targets, cl.service) {
					targets = append(targets, cl.service)
				}
			}
			if ok || len(unreachable) == 0 {
				continue
			}
			slices.Sort(s.classes)
			total += s.count
			parts = append(parts, fmt.Sprintf("%q (%s; %d lookups, answered %s)", name, strings.Join(unreachable, ", "), s.count, strings.Join(s.classes, ", ")))
		}
		if total < ReconMinLookups {
			continue
		}
		slices.Sort(targets)
		why := "it shares no network with them"
		if withPolicies {
			why = "no policy lets it reach them"
		}
		msg := fmt.Sprintf("service %s resolved the names of services it may not reach, %d times in the window: %s; %s. A task mapping what it could attack, or a client of a dependency the policies left out",
			source, total, strings.Join(parts, "; "), why)
		out = append(out, reconInfo.finding(KindService, source, msg,
			fmt.Sprintf("find what in %s asks (swarmsec flows --dns --service %s); if it needs %s, add an egress rule to it in %s's policy and an ingress rule in theirs; otherwise treat %s as compromised until shown otherwise",
				source, source, strings.Join(targets, ", "), source, source)))
	}
	return out, nil
}

func (i Info) finding(kind, name, msg, fix string) Finding {
	return Finding{Check: i.ID, Severity: i.Severity, Kind: kind, Name: name, Message: msg, Fix: fix, DockerBench: i.DockerBench}
}

func sortFindings(fs []Finding) {
	slices.SortFunc(fs, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(b.Severity.rank(), a.Severity.rank()), cmp.Compare(a.Check, b.Check),
			cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
}
