package status

import (
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/reconciler/agentrules"
	"github.com/swarmsec/swarmsec/reconciler/controller"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/reconciler/watch"
)

// Each node that can run tasks gets an Enforced condition while the rules
// ask anything of the agents: True where its agent reported holding the
// rules delivered, False with a reason where it holds others, did not
// report, or no agent service runs; the transition time moves only when
// the status does.
func TestEnforcedPerNode(t *testing.T) {
	f := newFixture(t, reconcile.ModeEnforce)
	reports := map[string]agentv1.Report{
		"id1": {Node: "w1", Rules: "swarmsec-agent-rules-new"},
		"id2": {Node: "w2", Rules: "swarmsec-agent-rules-old"},
		"id4": {Node: "w4", Checks: []agentv1.Check{{ID: agentv1.CheckRules, Result: agentv1.Warning, Message: "rules file broken"}}},
	}
	f.tr.SetNodes(func() (map[string]agentv1.Report, error) { return reports, nil })
	placement := map[string][]string{"s1": {"id1", "id3"}, "s2": {"id2"}}
	f.tr.SetSwarmNodes(func() (map[string]string, map[string][]string) {
		return map[string]string{"id1": "w1", "id2": "w2", "id3": "w3", "id4": "w4"}, placement
	})
	f.load(watch.Snapshot{Objects: []v1.Policy{netPolicy("web", "web", "g1", "")}})
	deliver := func(out agentrules.Outcome) {
		start := f.clock.step(time.Second)
		f.tr.ObservePass(controller.Pass{Start: start, Duration: time.Second, Plan: &plan.Plan{}, Agent: &out, Trigger: "test"})
	}
	judged := func() string {
		var b strings.Builder
		for _, n := range f.tr.Report().Enforcement {
			c := n.Conditions[0]
			if c.Type != v1.ConditionEnforced || c.Message == "" || c.ObservedGeneration == "" || c.LastTransitionTime.IsZero() {
				t.Fatalf("%s: incomplete condition %+v", n.Node, c)
			}
			fmt.Fprintf(&b, "%s=%s/%s ", n.Node, c.Status, c.Reason)
		}
		return b.String()
	}

	deliver(agentrules.Outcome{Agent: true, Config: "swarmsec-agent-rules-new", Rules: "swarmsec-agent-rules-new"})
	if got := judged(); got != "" {
		t.Fatalf("rules that ask nothing: %s", got)
	}
	deliver(agentrules.Outcome{Agent: true, Config: "swarmsec-agent-rules-new", Rules: "swarmsec-agent-rules-new", Needed: true})
	want := "w1=True/RulesInForce w2=False/RulesNotInForce w3=False/AgentNotReporting w4=False/RulesNotInForce "
	if got := judged(); got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	w4 := f.tr.Report().Enforcement[3].Conditions[0]
	if !strings.Contains(w4.Message, "rules file broken") {
		t.Errorf("w4 does not say why: %s", w4.Message)
	}
	since := f.tr.Report().Enforcement[1].Conditions[0].LastTransitionTime

	// w2 rolls onto the rules: True from now; w3 still False since then.
	f.clock.step(time.Minute)
	reports["id2"] = agentv1.Report{Node: "w2", Rules: "swarmsec-agent-rules-new"}
	r := f.tr.Report()
	if c := r.Enforcement[1].Conditions[0]; c.Status != v1.ConditionTrue || !c.LastTransitionTime.After(since) {
		t.Errorf("w2 after its roll: %+v", c)
	}
	if c := r.Enforcement[2].Conditions[0]; !c.LastTransitionTime.Equal(since) {
		t.Errorf("w3's transition moved: %+v", c)
	}

	// The policy selects web, whose tasks run on w1 and w3.
	policy := func() *v1.Condition {
		for _, c := range f.tr.Report().Policies[0].Conditions {
			if c.Type == v1.ConditionEnforced {
				return &c
			}
		}
		return nil
	}
	if c := policy(); c == nil || c.Status != v1.ConditionFalse || c.Reason != v1.ReasonNodesNotEnforced || !strings.Contains(c.Message, "web on w3 (AgentNotReporting)") || strings.Contains(c.Message, "w1") {
		t.Errorf("the policy's Enforced: %+v", c)
	}
	placement["s1"] = []string{"id1"}
	if c := policy(); c == nil || c.Status != v1.ConditionTrue || c.Reason != v1.ReasonRulesInForce {
		t.Errorf("the policy's Enforced once web runs on w1 only: %+v", c)
	}

	deliver(agentrules.Outcome{Rules: "swarmsec-agent-rules-new", Needed: true})
	if got := judged(); got != "w1=False/NoAgent w2=False/NoAgent w3=False/NoAgent w4=False/NoAgent " {
		t.Fatalf("no agent service: %s", got)
	}
	if c := policy(); c == nil || c.Status != v1.ConditionFalse || !strings.Contains(c.Message, "web on w1 (NoAgent)") {
		t.Errorf("the policy's Enforced without agents: %+v", c)
	}
	deliver(agentrules.Outcome{Agent: true, Rules: "swarmsec-agent-rules-empty"})
	if c := policy(); c != nil {
		t.Errorf("the policy's Enforced while the rules ask nothing: %+v", c)
	}
}
