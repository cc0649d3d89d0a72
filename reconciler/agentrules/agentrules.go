// Package agentrules carries the node agent's desired state from the
// leader to every node. Workers have no manager API, so the leader writes
// the rules into a Swarm config (immutable, named after its content) and
// points the agent service at it; Swarm delivers the file to every agent
// task, on every node, and rolls them onto it. An agent that stops keeps
// its rules in the kernel, so the roll opens nothing.
//
// It is the leader's half: it builds the rules (api/v1/agent) from a plan.
// The agent reads them without it (agent), so the agent's binary
// path carries nothing of the planner.
package agentrules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/plan"
)

const (
	// PurposeAgentRules labels the rules configs.
	PurposeAgentRules = "agent-rules"
	// LabelAgent marks the agent service (the stack file sets it); the
	// leader writes only to the service of that label and the name it was
	// told.
	LabelAgent = "swarmsec.io/agent"
	// DefaultService is the agent service of the shipped stack file.
	DefaultService = "swarmsec_agent"
	// Timeout bounds each call.
	Timeout = 20 * time.Second
)

// FromPlan renders the plan's restricted ports and the per-service rules
// of the policies it compiled (those in force, and apart the audit-mode
// ones, which the agents only report on), sorted (the same policies give the same
// bytes, so the same config).
func FromPlan(p *plan.Plan) (*agentv1.Rules, error) {
	doc := &agentv1.Rules{APIVersion: agentv1.APIVersion, Kind: agentv1.KindRules, Ports: []agentv1.Port{}}
	for _, r := range p.Ports {
		num, proto, ok := strings.Cut(r.Port, "/")
		n, err := strconv.ParseUint(num, 10, 16)
		if !ok || err != nil {
			return nil, fmt.Errorf("service %s: port %q: not port/protocol", r.Service, r.Port)
		}
		doc.Ports = append(doc.Ports, agentv1.Port{
			Service: r.Service, Port: uint16(n), Protocol: v1.Protocol(proto),
			Any: r.Any, From: slices.Clone(r.From), Log: r.Log,
		})
	}
	slices.SortFunc(doc.Ports, func(a, b agentv1.Port) int { return strings.Compare(a.Key(), b.Key()) })
	if p.Desired != nil {
		doc.Services = Services(p.Desired.Policies)
	}
	if len(p.Audit) > 0 {
		doc.Audit = Services(p.Audit)
	}
	doc.Revision = agentv1.RevisionOf(doc)
	return doc, nil
}

// Services turns the policies in force into per-service rules: for each
// service a policy selects, the directions it is isolated in and, rule by
// rule, the peers, ports and blocks that admit its connections. Sorted, so
// the same policies give the same bytes.
func Services(policies []compile.PolicyRules) []agentv1.ServiceRules {
	by := map[string]*agentv1.ServiceRules{}
	for _, p := range policies {
		for _, name := range p.Selected {
			sr := by[name]
			if sr == nil {
				sr = &agentv1.ServiceRules{Service: name}
				by[name] = sr
			}
			if p.Ingress {
				sr.IngressIsolated = true
				for i, r := range p.IngressRules {
					sr.Ingress = append(sr.Ingress, rule(fmt.Sprintf("%s/ingress[%d]", p.Name, i), r))
				}
			}
			if p.Egress {
				sr.EgressIsolated = true
				for i, r := range p.EgressRules {
					sr.Egress = append(sr.Egress, rule(fmt.Sprintf("%s/egress[%d]", p.Name, i), r))
				}
			}
		}
	}
	out := make([]agentv1.ServiceRules, 0, len(by))
	for _, name := range slices.Sorted(maps.Keys(by)) {
		out = append(out, *by[name])
	}
	return out
}

func rule(name string, r compile.RuleRules) agentv1.Rule {
	out := agentv1.Rule{Policy: name, Services: slices.Clone(r.Services), LogAllowed: r.LogAllowed}
	for _, b := range r.Blocks {
		sb := v1.SourceBlock{CIDR: b.CIDR, Except: slices.Clone(b.Except)}
		slices.Sort(sb.Except)
		out.Blocks = append(out.Blocks, sb)
	}
	for _, pp := range r.Ports {
		lo, hi := pp.Range()
		pr := agentv1.PortRange{Protocol: pp.EffectiveProtocol().Lower(), Port: lo}
		if hi != lo {
			pr.EndPort = hi
		}
		out.Ports = append(out.Ports, pr)
	}
	return out
}

// Encode is the config's data. Its bytes name the config, so they are the
// same for the same rules in every version (TestEncodeKeepsTheBytes).
func Encode(doc *agentv1.Rules) []byte {
	b, _ := json.MarshalIndent(doc, "", "  ") // plain data: cannot fail
	return append(b, '\n')
}

func labels() map[string]string {
	return map[string]string{v1.LabelManaged: "true", v1.LabelPurpose: PurposeAgentRules}
}

// Delivery puts the rules where the agents read them.
type Delivery struct {
	Docker dockerapi.API
	// Service is the agent service's name (DefaultService when empty).
	Service string

	mu sync.Mutex
	// verified is the config, by name and ID, last found mounted with the
	// rules as delivered: a config's data never changes and one in use
	// cannot be removed, so while the agent service mounts that ID the
	// configs need not be listed again.
	verified swarm.ConfigReference
}

// Outcome is what a delivery of the node agent's rules found or did.
type Outcome struct {
	// Agent is false when no agent service runs: nothing enforces the
	// published-port rules.
	Agent bool `json:"agent"`
	// Config is the rules config the agent service mounts now.
	Config string `json:"config,omitempty"`
	// Rules names the rules by their content (agentv1.ConfigName of the
	// data), as an agent reports the rules it holds in force (the config
	// may carry another name where that one was taken).
	Rules string `json:"rules,omitempty"`
	// Needed: the rules ask something of the agents (published ports,
	// per-task or audit rules), so a node without them in force is not
	// enforced.
	Needed bool `json:"needed,omitempty"`
	// Wrote is set when the delivery created a config or updated the
	// agent service.
	Wrote bool `json:"wrote,omitempty"`
}

// Deliver makes the agent service mount doc. It writes nothing when it
// already does, and removes the rules configs nothing mounts any longer.
func (d *Delivery) Deliver(ctx context.Context, doc *agentv1.Rules) (Outcome, error) {
	out := Outcome{Rules: agentv1.ConfigName(Encode(doc)), Needed: len(doc.Ports) > 0 || len(doc.Services) > 0 || len(doc.Audit) > 0}
	svc, err := d.agentService(ctx)
	if err != nil || svc == nil {
		return out, err
	}
	out.Agent = true
	data := Encode(doc)
	d.mu.Lock()
	verified := d.verified
	d.mu.Unlock()
	if ref := mounted(svc); ref != nil && verified.ConfigName == agentv1.ConfigName(data) &&
		ref.ConfigName == verified.ConfigName && ref.ConfigID == verified.ConfigID {
		out.Config = ref.ConfigName
		return out, nil
	}
	cfgs, err := d.configs(ctx)
	if err != nil {
		return out, err
	}
	// The name is the content's; a config of that name with other data or
	// without swarmsec's labels is not swarmsec's: never deliver it.
	name, id := agentv1.ConfigName(data), ""
	for k := 1; ; k++ {
		c, taken := cfgs[name]
		if !taken {
			break
		}
		if bytes.Equal(c.Spec.Data, data) && c.Spec.Labels[v1.LabelPurpose] == PurposeAgentRules {
			id = c.ID
			break
		}
		name = agentv1.ConfigName(append(data, []byte(strconv.Itoa(k))...))
	}
	out.Config = name
	ref := mounted(svc)
	if ref != nil && ref.ConfigName == name && id != "" && ref.ConfigID == id {
		keep := []string{name}
		// A rollback of the agent service goes back to the spec before.
		if svc.PreviousSpec != nil && svc.PreviousSpec.TaskTemplate.ContainerSpec != nil {
			for _, r := range svc.PreviousSpec.TaskTemplate.ContainerSpec.Configs {
				keep = append(keep, r.ConfigName)
			}
		}
		left, err := d.collect(ctx, cfgs, keep)
		if err != nil {
			return out, err
		}
		// Not while an old config waits for its tasks to go, nor under
		// another name than the rules' own (squatted): later passes list.
		if !left && name == agentv1.ConfigName(data) {
			d.mu.Lock()
			d.verified = swarm.ConfigReference{ConfigName: name, ConfigID: id}
			d.mu.Unlock()
		}
		return out, nil
	}
	if id == "" {
		cctx, cancel := context.WithTimeout(ctx, Timeout)
		resp, err := d.Docker.ConfigCreate(cctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: name, Labels: labels()}, Data: data})
		cancel()
		if err != nil {
			return out, fmt.Errorf("config %s: %w", name, err)
		}
		id, out.Wrote = resp.ID, true
	}
	spec := svc.Spec
	cs := *spec.TaskTemplate.ContainerSpec
	cs.Configs = slices.DeleteFunc(slices.Clone(cs.Configs), func(r *swarm.ConfigReference) bool { return r.File != nil && r.File.Name == agentv1.RulesPath })
	cs.Configs = append(cs.Configs, &swarm.ConfigReference{
		File:     &swarm.ConfigReferenceFileTarget{Name: agentv1.RulesPath, UID: "0", GID: "0", Mode: 0o444},
		ConfigID: id, ConfigName: name,
	})
	spec.TaskTemplate.ContainerSpec = &cs
	cctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	if _, err := d.Docker.ServiceUpdate(cctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		return out, fmt.Errorf("service %s: mount rules %s: %w", svc.Spec.Name, name, err)
	}
	out.Wrote = true
	return out, nil
}

// agentService finds the agent service: the name it was told and the
// label, both, since anyone with the socket can label a service. It reads
// that one service, not a list: a pass that re-reads only what changed
// must not list on the agent's account.
func (d *Delivery) agentService(ctx context.Context) (*swarm.Service, error) {
	name := d.Service
	if name == "" {
		name = DefaultService
	}
	cctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	s, _, err := d.Docker.ServiceInspectWithRaw(cctx, name, swarm.ServiceInspectOptions{})
	switch {
	case dockerapi.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("agent service %s: %w", name, err)
	}
	// The engine also takes an ID or an ID's prefix: only the name counts.
	if s.Spec.Name != name || s.Spec.Labels[LabelAgent] != "true" || s.Spec.TaskTemplate.ContainerSpec == nil {
		return nil, nil
	}
	return &s, nil
}

func (d *Delivery) configs(ctx context.Context) (map[string]swarm.Config, error) {
	cctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	list, err := d.Docker.ConfigList(cctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("name", agentv1.RulesConfigPrefix))})
	if err != nil {
		return nil, fmt.Errorf("agent rules configs: %w", err)
	}
	out := make(map[string]swarm.Config, len(list))
	for _, c := range list {
		out[c.Spec.Name] = c
	}
	return out, nil
}

// collect removes swarmsec's rules configs other than keep. One still in
// use by a task that has not gone yet is left for a later pass: left says
// so.
func (d *Delivery) collect(ctx context.Context, cfgs map[string]swarm.Config, keep []string) (left bool, err error) {
	var errs []error
	for name, c := range cfgs {
		if slices.Contains(keep, name) || c.Spec.Labels[v1.LabelManaged] != "true" || c.Spec.Labels[v1.LabelPurpose] != PurposeAgentRules {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, Timeout)
		rerr := d.Docker.ConfigRemove(cctx, c.ID)
		cancel()
		switch {
		case rerr == nil:
		case strings.Contains(rerr.Error(), "in use"):
			left = true
		default:
			errs = append(errs, fmt.Errorf("config %s: %w", name, rerr))
		}
	}
	return left, errors.Join(errs...)
}

func mounted(s *swarm.Service) *swarm.ConfigReference {
	for _, r := range s.Spec.TaskTemplate.ContainerSpec.Configs {
		if r.File != nil && r.File.Name == agentv1.RulesPath {
			return r
		}
	}
	return nil
}
