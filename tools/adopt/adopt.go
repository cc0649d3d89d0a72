// Package adopt writes, from a running cluster, the manifests that keep its
// declared connectivity exactly: every service is isolated, with the
// services it shares a network with today as its peers, its published ports
// as they are, and its outside access as it is; the stack networks that are
// not encrypted get an EncryptionPolicy. Applied to the cluster it came
// from, it changes no reachability, only encryption and network placement:
// the safe first step that users then tighten.
package adopt

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
)

// Files returns the manifests by file name, one per stack ("unstacked.yaml"
// for services outside any). With stack set, only that stack's.
func Files(tx state.ReadTx, stack string) (map[string][]byte, error) {
	nets, err := plan.LoadNetworks(tx)
	if err != nil {
		return nil, err
	}
	services, err := state.FindServices(tx, state.All())
	if err != nil {
		return nil, err
	}
	slices.SortFunc(services, func(a, b *state.Service) int { return cmp.Compare(a.Name, b.Name) })
	records, err := compile.LoadRecords(tx)
	if err != nil {
		return nil, err
	}
	// What each service is on now (its recorded original if swarmsec
	// already isolates it), by network name.
	on := map[string][]string{}
	open := map[string]bool{}
	var users []*state.Service
	for _, s := range services {
		if s.Ignored() || s.Labels[v1.LabelSelf] == "true" {
			continue
		}
		users = append(users, s)
		names := []string{}
		if o, _, _ := records.Of(s, nets.Resolve); o != nil {
			for _, a := range o.Networks {
				names = append(names, a.Name)
			}
		} else {
			for _, a := range s.Networks {
				if n := nets.Resolve(a.Target); n != nil && !compile.Trusted(n) {
					names = append(names, n.Name)
				}
			}
		}
		for _, name := range names {
			if n := nets.ByName[name]; n != nil && !n.Internal {
				open[s.ID] = true
			}
		}
		if len(names) == 0 {
			open[s.ID] = true // no overlay: the default bridge gives it a way out
		}
		on[s.ID] = names
	}
	docs := map[string][]string{}
	for _, s := range users {
		st := s.Labels[v1.LabelStackNamespace]
		if stack != "" && st != stack {
			continue
		}
		doc, err := servicePolicy(s, users, on, open[s.ID])
		if err != nil {
			return nil, err
		}
		docs[fileOf(st)] = append(docs[fileOf(st)], doc)
	}
	enc, err := encryptionPolicies(nets, stack)
	if err != nil {
		return nil, err
	}
	for file, ds := range enc {
		docs[file] = append(docs[file], ds...)
	}
	out := map[string][]byte{}
	for file, ds := range docs {
		out[file] = []byte(header(file) + strings.Join(ds, "---\n"))
	}
	return out, nil
}

func fileOf(stack string) string {
	if stack == "" {
		return "unstacked.yaml"
	}
	return stack + ".yaml"
}

func header(file string) string {
	return fmt.Sprintf(`# %s, written by swarmsec init --from-cluster.
#
# These policies keep today's connectivity exactly: every service may reach
# the services it shares a network with now, keeps its published ports as
# they are, and keeps (or lacks) outside access as now. Applying them changes
# no reachability, only where traffic goes (swarmsec's encrypted networks)
# and, with the EncryptionPolicies, encryption.
#
# Then tighten them, one at a time (swarmsec plan shows each change first):
#   - remove a peer a service does not need from its ingress list;
#   - add "policyTypes: [Ingress, Egress]" where a service needs no outside access;
#   - drop publish entries no one should reach from outside.
`, file)
}

// servicePolicy is the policy that keeps one service as it is.
func servicePolicy(s *state.Service, all []*state.Service, on map[string][]string, outside bool) (string, error) {
	var peers []v1.Peer
	for _, o := range all {
		if o.ID != s.ID && shares(on[s.ID], on[o.ID]) {
			peers = append(peers, v1.Peer{ServiceSelector: &v1.LabelSelector{MatchLabels: map[string]string{v1.LabelService: o.Name}}})
		}
	}
	spec := v1.NetworkPolicySpec{
		ServiceSelector: v1.LabelSelector{MatchLabels: map[string]string{v1.LabelService: s.Name}},
		Ingress:         []v1.IngressRule{},
	}
	if len(peers) > 0 {
		spec.Ingress = []v1.IngressRule{{From: peers}}
	}
	if !outside {
		spec.PolicyTypes = []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress}
	}
	var notes []string
	for _, p := range s.Ports {
		if p.PublishedPort == 0 {
			notes = append(notes, fmt.Sprintf("# port %d/%s is published on a port Swarm picks: no policy can keep it; it goes once the service is isolated\n", p.TargetPort, p.Protocol))
			continue
		}
		mode := v1.PublishModeIngress
		if p.PublishMode == "host" {
			mode = v1.PublishModeHost
		}
		proto := v1.Protocol(p.Protocol)
		if proto == "" {
			proto = v1.ProtocolTCP
		}
		spec.Publish = append(spec.Publish, v1.PublishedPort{Port: int(p.PublishedPort), Protocol: proto, Mode: mode})
	}
	np := v1.NetworkPolicy{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindNetworkPolicy},
		Metadata: v1.ObjectMeta{Name: policyName(s.Name)},
		Spec:     spec,
	}
	b, err := yaml.Marshal(np)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("# %s: today it shares a network with %d services%s.\n%s%s", s.Name, len(peers), map[bool]string{true: " and reaches outside", false: ""}[outside], strings.Join(notes, ""), b), nil
}

func shares(a, b []string) bool {
	return slices.ContainsFunc(a, func(n string) bool { return slices.Contains(b, n) })
}

// encryptionPolicies encrypt the overlay networks that are not: one per
// stack, selected by its namespace label, and one per network outside
// stacks.
func encryptionPolicies(nets *plan.Networks, stack string) (map[string][]string, error) {
	byStack := map[string][]string{}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range nets.ByName {
			if !yield(n) {
				return
			}
		}
	}) {
		n := nets.ByName[name]
		if n.Encrypted() || n.Driver != "overlay" || n.Scope != "swarm" || n.Ingress || n.Predefined() || n.Managed() || n.Ignored() {
			continue
		}
		st := n.Labels[v1.LabelStackNamespace]
		if stack != "" && st != stack {
			continue
		}
		key := st
		if st == "" {
			key = "\x00" + name
		}
		byStack[key] = append(byStack[key], name)
	}
	out := map[string][]string{}
	for _, key := range slices.Sorted(func(yield func(string) bool) {
		for k := range byStack {
			if !yield(k) {
				return
			}
		}
	}) {
		sel := v1.LabelSelector{MatchLabels: map[string]string{v1.LabelStackNamespace: key}}
		name, file := "encrypt-"+key, fileOf(key)
		if strings.HasPrefix(key, "\x00") {
			net := key[1:]
			sel = v1.LabelSelector{MatchLabels: map[string]string{v1.LabelNetwork: net}}
			name, file = "encrypt-"+net, fileOf("")
		}
		ep := v1.EncryptionPolicy{
			TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindEncryptionPolicy},
			Metadata: v1.ObjectMeta{Name: policyName(name)},
			Spec:     v1.EncryptionPolicySpec{NetworkSelector: sel},
		}
		b, err := yaml.Marshal(ep)
		if err != nil {
			return nil, err
		}
		out[file] = append(out[file], fmt.Sprintf("# Encrypts %s in place (no service loses its peers on the way; see the README).\n%s", strings.Join(byStack[key], ", "), b))
	}
	return out, nil
}

// policyName is a DNS-1123 label made from a service or network name.
func policyName(s string) string {
	s = strings.ToLower(s)
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, s)
	s = strings.Trim(s, "-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	if s == "" {
		s = "service"
	}
	return s
}
