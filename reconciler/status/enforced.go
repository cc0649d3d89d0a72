package status

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
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
