package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/reconciler/agentrules"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/status"
)

func TestStatusTable(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := &status.Report{
		Mode: "enforce", Ready: false,
		Checks: []status.Check{{Name: "docker", Message: "connection refused"}},
		Policies: []v1.PolicyStatus{{
			Name: "web", Kind: v1.KindNetworkPolicy, Services: []string{"shop_web"},
			Conditions: []v1.Condition{{Type: v1.ConditionReady, Status: v1.ConditionTrue, Reason: v1.ReasonConverged,
				Message: "in force on 1 service", LastTransitionTime: now.Add(-3 * time.Minute)},
				{Type: v1.ConditionEnforced, Status: v1.ConditionFalse, Reason: v1.ReasonNodesNotEnforced, Message: "tasks on nodes whose agent does not hold the rules in force: shop_web on w2 (AgentNotReporting)"}},
		}},
		ManifestErrors: []manifest.Error{{File: "db.yaml", Line: 3, Message: "unknown field"}},
		Agent:          &agentrules.Outcome{Agent: true, Config: "swarmsec-agent-rules-abc"},
		Nodes: []agentv1.Report{{Node: "w1", Checks: []agentv1.Check{
			{ID: agentv1.CheckESP, Result: agentv1.Failed, Message: "no ESP", Fix: "modprobe esp4"},
			{ID: agentv1.CheckU32, Result: agentv1.OK},
		}}},
		Encryption: []plan.EncryptionHold{{Held: true, Message: "web would join encrypted network x"}},
		Enforcement: []status.NodeEnforcement{
			{Node: "w1", Conditions: []v1.Condition{{Type: v1.ConditionEnforced, Status: v1.ConditionTrue, Reason: v1.ReasonRulesInForce, Message: "in force"}}},
			{Node: "w2", Conditions: []v1.Condition{{Type: v1.ConditionEnforced, Status: v1.ConditionFalse, Reason: v1.ReasonAgentNotReporting, Message: "no node agent on this node reported"}}},
		},
	}
	var b bytes.Buffer
	if err := printStatusTable(&b, r, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"not ready (docker: connection refused)", "web", "True", "Converged", "3m", "db.yaml:3: unknown field",
		"rules swarmsec-agent-rules-abc delivered", "w1: esp failed: no ESP", "fix: modprobe esp4", "w1: 1 more checks ok", "web would join encrypted network x",
		"w1    True      RulesInForce", "w2    False     AgentNotReporting  no node agent on this node reported",
		"Not enforced on every node (Enforced=False):\n  - web: tasks on nodes whose agent does not hold the rules in force: shop_web on w2 (AgentNotReporting)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestFetchStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(status.Report{Mode: "audit"})
	}))
	defer srv.Close()
	raw, err := fetchStatus(context.Background(), strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	var r status.Report
	if err := json.Unmarshal(raw, &r); err != nil || r.Mode != "audit" {
		t.Fatalf("%v %+v", err, r)
	}
	if _, err := fetchStatus(context.Background(), srv.URL+"/nope"); err == nil {
		t.Fatal("a 404 is not an error")
	}
}
