package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// DecodeRules reads a delivered rules file, refusing anything else: a
// field this agent does not know could be a restriction it would drop, so
// such a file changes nothing (fail closed).
func DecodeRules(data []byte) (*agentv1.Rules, error) {
	var d agentv1.Rules
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, err // the caller names the file
	}
	if d.APIVersion != agentv1.APIVersion || d.Kind != agentv1.KindRules {
		return nil, fmt.Errorf("not swarmsec agent rules (apiVersion %q, kind %q)", d.APIVersion, d.Kind)
	}
	if d.Revision > agentv1.RulesRevision {
		return nil, fmt.Errorf("rules revision %d is newer than this agent's (%d): upgrade the agent; the rules in place stay", d.Revision, agentv1.RulesRevision)
	}
	for _, p := range d.Ports {
		if p.Port == 0 || (p.Protocol != v1.ProtocolTCP && p.Protocol != v1.ProtocolUDP && p.Protocol != v1.ProtocolSCTP) {
			return nil, fmt.Errorf("port %s of %s: not a published port", p.Key(), p.Service)
		}
	}
	for _, list := range []struct {
		name     string
		services []agentv1.ServiceRules
	}{{"services", d.Services}, {"audit", d.Audit}} {
		for i, s := range list.services {
			if s.Service == "" || (i > 0 && list.services[i-1].Service >= s.Service) {
				return nil, fmt.Errorf("%s[%d] %q: services must be named, sorted and once each", list.name, i, s.Service)
			}
			for _, r := range slices.Concat(s.Ingress, s.Egress) {
				if err := checkRule(r); err != nil {
					return nil, fmt.Errorf("%s: service %s: rule %s: %w", list.name, s.Service, r.Policy, err)
				}
			}
		}
	}
	return &d, nil
}

// checkRule refuses what the agent could only misread: an unknown
// protocol, a reversed range, a block that does not parse.
func checkRule(r agentv1.Rule) error {
	for _, p := range r.Ports {
		if !slices.Contains(agentv1.Protocols, p.Protocol) || (p.EndPort != 0 && p.EndPort < p.Port) || (p.Port == 0 && p.EndPort != 0) {
			return fmt.Errorf("port %d-%d/%s: not a port range", p.Port, p.EndPort, p.Protocol)
		}
	}
	for _, b := range r.Blocks {
		for _, c := range append([]string{b.CIDR}, b.Except...) {
			if _, err := netip.ParsePrefix(c); err != nil {
				return fmt.Errorf("block %s: %w", b, err)
			}
		}
	}
	return nil
}
