package status

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/state"
)

// enforcementLocked judges each node's Enforced condition: the rules the
// leader last delivered against what the node's agent last reported
// holding in force. Nodes are Swarm's (hostname by ID) and those that
// reported. Nothing while the rules ask nothing of the agents, or before
// a pass delivered. t.mu is held.
func (t *Tracker) enforcementLocked(swarmNodes map[string]string, reports map[string]agentv1.Report) []NodeEnforcement {
	if t.agent == nil || !t.agent.Needed {
		t.enforced = nil
		return nil
	}
	hosts := maps.Clone(swarmNodes)
	if hosts == nil {
		hosts = map[string]string{}
	}
	for id, r := range reports {
		if _, ok := hosts[id]; !ok {
			hosts[id] = r.Node
		}
	}
	if t.enforced == nil {
		t.enforced = map[string]*v1.Condition{}
	}
	now, want := t.now(), t.agent.Rules
	var out []NodeEnforcement
	for _, id := range slices.Sorted(maps.Keys(hosts)) {
		r, reported := reports[id]
		st, reason, msg := v1.ConditionTrue, v1.ReasonRulesInForce, "the node agent holds the rules delivered ("+want+") in force"
		switch {
		case !t.agent.Agent:
			st, reason, msg = v1.ConditionFalse, v1.ReasonNoAgent, "no node agent service runs: ports, directions, egress blocks, published-port sources and audit logging are not enforced; the network layer alone holds"
		case !reported:
			st, reason, msg = v1.ConditionFalse, v1.ReasonAgentNotReporting, fmt.Sprintf("no node agent on this node reported in the last %s: what it holds is not known; where none runs, the network layer alone holds", agentv1.ReportMaxAge)
		case r.Rules != want:
			held := r.Rules
			if held == "" {
				held = "no rules it can name"
				if c, ok := r.Get(agentv1.CheckRules); ok && c.Result != agentv1.OK {
					held += " (" + c.Message + ")"
				}
			}
			st, reason, msg = v1.ConditionFalse, v1.ReasonRulesNotInForce, fmt.Sprintf("the node agent holds %s, not the rules delivered (%s): the agents roll onto them", held, want)
		}
		c := t.enforced[id]
		if c == nil {
			c = &v1.Condition{}
			t.enforced[id] = c
		}
		setCondition(c, v1.ConditionEnforced, st, reason, msg, want, now)
		host := hosts[id]
		if host == "" {
			host = id
		}
		out = append(out, NodeEnforcement{Node: host, NodeID: id, Conditions: []v1.Condition{*c}})
	}
	for id := range t.enforced {
		if _, ok := hosts[id]; !ok {
			delete(t.enforced, id)
		}
	}
	slices.SortFunc(out, func(a, b NodeEnforcement) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.NodeID, b.NodeID))
	})
	return out
}

// policyEnforcementLocked sets each NetworkPolicy's Enforced condition from
// the nodes' (nodes, as enforcementLocked judged them) and where its
// services' tasks run (placement, node IDs by service ID): False naming
// the tasks on nodes that do not hold the rules in force. Nothing without
// a placement, or while the rules ask nothing of the agents. t.mu is held.
func (t *Tracker) policyEnforcementLocked(nodes []NodeEnforcement, placement map[string][]string) {
	if len(nodes) == 0 || placement == nil || t.store == nil {
		for _, e := range t.policies {
			e.enforced = nil
		}
		return
	}
	byID := map[string]NodeEnforcement{}
	for _, n := range nodes {
		byID[n.NodeID] = n
	}
	ids := map[string]string{}
	t.store.View(func(tx state.ReadTx) {
		services, err := state.FindServices(tx, state.All())
		if err != nil {
			return
		}
		for _, s := range services {
			ids[s.Name] = s.ID
		}
	})
	now, gen := t.now(), t.agent.Rules
	for _, e := range t.policies {
		if e.policy.Kind != v1.KindNetworkPolicy || len(e.policy.Services) == 0 {
			e.enforced = nil
			continue
		}
		var gaps []string
		for _, svc := range slices.Sorted(slices.Values(e.policy.Services)) {
			for _, node := range placement[ids[svc]] {
				n, known := byID[node]
				switch {
				case !known:
					gaps = append(gaps, fmt.Sprintf("%s on node %s (not ready, or drained)", svc, node))
				case n.Conditions[0].Status != v1.ConditionTrue:
					gaps = append(gaps, fmt.Sprintf("%s on %s (%s)", svc, n.Node, n.Conditions[0].Reason))
				}
			}
		}
		if e.enforced == nil {
			e.enforced = &v1.Condition{}
		}
		if len(gaps) == 0 {
			setCondition(e.enforced, v1.ConditionEnforced, v1.ConditionTrue, v1.ReasonRulesInForce,
				"every node its services' tasks run on holds the node agents' rules in force", gen, now)
			continue
		}
		setCondition(e.enforced, v1.ConditionEnforced, v1.ConditionFalse, v1.ReasonNodesNotEnforced,
			"tasks on nodes whose agent does not hold the rules in force: "+strings.Join(gaps, ", ")+
				"; there the network layer alone holds (no ports, no directions, any outside address)", gen, now)
	}
}
