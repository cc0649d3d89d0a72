package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus/testutil"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/apply"
	"github.com/swarmsec/swarmsec/reconciler/controller"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/status"
	"github.com/swarmsec/swarmsec/reconciler/watch"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	return string(b)
}

func TestFamiliesAndValues(t *testing.T) {
	m := New()
	m.ObserveDockerCall("ServiceList", 3*time.Millisecond, nil)
	m.ObserveDockerCall("NetworkRemove", time.Millisecond, cerrdefs.ErrNotFound)
	m.ObserveDockerCall("ServiceUpdate", time.Millisecond, errors.New("boom"))

	create := plan.Action{Kind: plan.ActionCreateNetwork, Name: "swarmsec.web"}
	update := plan.Action{Kind: plan.ActionUpdateService, Name: "web"}
	m.ObserveResult(apply.ActionResult{Action: create, Outcome: apply.OutcomeCreated, Duration: 20 * time.Millisecond})
	m.ObserveResult(apply.ActionResult{Action: update, Outcome: apply.OutcomeConfigured, Duration: 30 * time.Millisecond})

	audit := update
	audit.Audit = true
	end := time.Unix(1_700_000_000, 0)
	m.ObservePass(controller.Pass{Start: end.Add(-2 * time.Second), Duration: 2 * time.Second,
		Plan: &plan.Plan{Actions: []plan.Action{create, audit}}, Result: &apply.Result{}, Observed: &observe.Observation{Services: 1}},
		[]apply.ActionResult{{Action: update, Outcome: apply.OutcomeConfigured}})
	m.ObservePass(controller.Pass{Duration: time.Second, Err: errors.New("list services: refused")}, nil)
	m.ObservePass(controller.Pass{Duration: time.Second, Plan: &plan.Plan{}, Err: plan.ErrHeld, Observed: &observe.Observation{Full: true}}, nil)

	m.ObserveSnapshot(watch.Snapshot{Errors: []manifest.Error{{File: "a.yaml", Message: "x"}, {File: "b.yaml", Message: "y"}}, Stale: []string{"a.yaml"}})
	m.ObserveStatus(&status.Report{Policies: []v1.PolicyStatus{
		{Name: "web", Kind: v1.KindNetworkPolicy, Conditions: []v1.Condition{{Type: v1.ConditionReady, Status: v1.ConditionTrue, Reason: v1.ReasonConverged}}},
		{Name: "db", Kind: v1.KindNetworkPolicy, Conditions: []v1.Condition{{Type: v1.ConditionReady, Status: v1.ConditionFalse, Reason: v1.ReasonApplyFailed}}},
	}})

	for _, tc := range []struct {
		name string
		got  float64
		want float64
	}{
		{"docker ServiceList success", testutil.ToFloat64(m.docker.WithLabelValues("ServiceList", ResultSuccess)), 1},
		{"docker NetworkRemove not_found", testutil.ToFloat64(m.docker.WithLabelValues("NetworkRemove", ResultNotFound)), 1},
		{"docker ServiceUpdate error", testutil.ToFloat64(m.docker.WithLabelValues("ServiceUpdate", ResultError)), 1},
		{"actions create-network created", testutil.ToFloat64(m.actions.WithLabelValues("create-network", "created")), 1},
		{"actions update-service configured", testutil.ToFloat64(m.actions.WithLabelValues("update-service", "configured")), 1},
		{"passes success", testutil.ToFloat64(m.passes.WithLabelValues(ResultSuccess)), 1},
		{"passes error", testutil.ToFloat64(m.passes.WithLabelValues(ResultError)), 1},
		{"passes held", testutil.ToFloat64(m.passes.WithLabelValues(ResultHeld)), 1},
		{"observations list", testutil.ToFloat64(m.observations.WithLabelValues(ObserveList)), 1},
		{"observations events", testutil.ToFloat64(m.observations.WithLabelValues(ObserveEvents)), 1},
		{"last success", testutil.ToFloat64(m.lastSuccess), float64(end.Unix())},
		{"drift update-service", testutil.ToFloat64(m.drift.WithLabelValues("update-service")), 1},
		{"audit update-service", testutil.ToFloat64(m.auditActions.WithLabelValues("update-service")), 0},
		{"manifest errors", testutil.ToFloat64(m.manifestErrors), 2},
		{"stale files", testutil.ToFloat64(m.staleFiles), 1},
		{"policies True", testutil.ToFloat64(m.policies.WithLabelValues("True")), 1},
		{"policies False", testutil.ToFloat64(m.policies.WithLabelValues("False")), 1},
		{"policies Unknown", testutil.ToFloat64(m.policies.WithLabelValues("Unknown")), 0},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	// The held pass planned nothing audit-only: the gauge follows the last pass.
	if n := testutil.CollectAndCount(m.passDuration); n != 1 {
		t.Errorf("duration histogram: %d series", n)
	}

	text := scrape(t, m)
	for _, family := range []string{
		"go_goroutines", "process_cpu_seconds_total",
		"swarmsec_reconcile_passes_total", "swarmsec_reconcile_duration_seconds_bucket", "swarmsec_observations_total",
		"swarmsec_actions_total", "swarmsec_docker_requests_total", "swarmsec_drift_corrections_total",
		"swarmsec_manifest_errors", "swarmsec_policies", "swarmsec_last_successful_reconcile_timestamp_seconds",
		"swarmsec_audit_actions", `swarmsec_policy_ready{kind="NetworkPolicy",policy="web",reason="Converged",status="True"} 1`,
	} {
		if !strings.Contains(text, family) {
			t.Errorf("/metrics lacks %s", family)
		}
	}

	// A removed policy leaves no series behind.
	m.ObserveStatus(&status.Report{})
	if strings.Contains(scrape(t, m), `policy="web"`) {
		t.Error("series of a removed policy remain")
	}
}

func TestAuditActionsGauge(t *testing.T) {
	m := New()
	a := plan.Action{Kind: plan.ActionUpdateService, Name: "web", Audit: true}
	b := plan.Action{Kind: plan.ActionCreateNetwork, Name: "swarmsec.web", Audit: true}
	m.ObservePass(controller.Pass{Plan: &plan.Plan{Actions: []plan.Action{a, b}}}, nil)
	if got := testutil.ToFloat64(m.auditActions.WithLabelValues("update-service")); got != 1 {
		t.Fatalf("audit update-service = %v", got)
	}
	m.ObservePass(controller.Pass{Plan: &plan.Plan{}}, nil)
	if got := testutil.ToFloat64(m.auditActions.WithLabelValues("create-network")); got != 0 {
		t.Fatalf("audit create-network after a quiet pass = %v", got)
	}
}
