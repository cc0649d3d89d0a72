package status

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/apply"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/controller"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/reconciler/watch"
	"github.com/swarmsec/swarmsec/state"
)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time                 { return c.t }
func (c *clock) step(d time.Duration) time.Time { c.t = c.t.Add(d); return c.t }

// fixture is a tracker over a real store holding two services.
type fixture struct {
	t     *testing.T
	clock *clock
	store *state.Store
	tr    *Tracker
}

func newFixture(t *testing.T, mode reconcile.Mode) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, store: state.New()}
	f.tr = NewTracker(mode, f.store)
	f.tr.now = f.clock.now
	err := f.store.Update(func(tx state.Tx) error {
		return state.ReplaceServices(tx, []*state.Service{
			service("s1", "web", map[string]string{"app": "web"}),
			service("s2", "api", map[string]string{"app": "api"}),
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func service(id, name string, labels map[string]string) *state.Service {
	s := swarm.Service{ID: id}
	s.Spec.Name = name
	s.Spec.Labels = labels
	return state.NewService(s)
}

func netPolicy(name, app, gen string, enforcement v1.Enforcement) v1.Policy {
	np := &v1.NetworkPolicy{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindNetworkPolicy},
		Metadata: v1.ObjectMeta{Name: name},
		Spec: v1.NetworkPolicySpec{
			ServiceSelector: v1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			Enforcement:     enforcement,
		},
	}
	return v1.Policy{Kind: v1.KindNetworkPolicy, Name: name, File: name + ".yaml", Line: 1, Generation: gen, Network: np}
}

// load stores the snapshot's policies, then tells the tracker, as run does.
func (f *fixture) load(snap watch.Snapshot) {
	f.t.Helper()
	ps := state.Policies(snap.Objects)
	if err := f.store.Update(func(tx state.Tx) error { return state.ReplacePolicies(tx, ps) }); err != nil {
		f.t.Fatal(err)
	}
	f.tr.ObserveSnapshot(snap)
}

// pass reports a pass that starts now and lasts a second.
func (f *fixture) pass(pl *plan.Plan, res *apply.Result, err error) []apply.ActionResult {
	start := f.clock.step(time.Second)
	f.clock.step(time.Second)
	return f.tr.ObservePass(controller.Pass{Start: start, Duration: time.Second, Plan: pl, Result: res, Err: err, Trigger: "test"})
}

func (f *fixture) ready(name string) v1.Condition {
	f.t.Helper()
	for _, p := range f.tr.Report().Policies {
		if p.Name == name {
			c := p.Ready()
			if c == nil {
				f.t.Fatalf("policy %s has no Ready condition", name)
			}
			return *c
		}
	}
	f.t.Fatalf("policy %s not in the report", name)
	return v1.Condition{}
}

func (f *fixture) expect(name string, st v1.ConditionStatus, reason string) v1.Condition {
	f.t.Helper()
	c := f.ready(name)
	if c.Status != st || c.Reason != reason {
		f.t.Fatalf("%s: Ready=%s/%s (%s), want %s/%s", name, c.Status, c.Reason, c.Message, st, reason)
	}
	if c.Reason == "" || c.Message == "" || c.ObservedGeneration == "" || c.LastTransitionTime.IsZero() {
		f.t.Fatalf("%s: incomplete condition %+v", name, c)
	}
	return c
}

func update(policy, svc string, reasons ...string) plan.Action {
	return plan.Action{Kind: plan.ActionUpdateService, Name: svc, ID: svc, Policies: []string{policy}, Reasons: reasons}
}

func applied(a plan.Action, o apply.Outcome, err error) apply.ActionResult {
	return apply.ActionResult{Action: a, Outcome: o, Err: err}
}

func TestConditionTransitions(t *testing.T) {
	f := newFixture(t, reconcile.ModeEnforce)
	f.load(watch.Snapshot{Objects: []v1.Policy{netPolicy("web", "web", "g1", "")}})

	c0 := f.expect("web", v1.ConditionUnknown, v1.ReasonProgressing)
	if ok, _ := f.tr.Ready(); ok {
		t.Fatal("ready before the first pass")
	}

	// The first pass isolates web.
	isolate := update("web", "web", "isolate: selected by web")
	drift := f.pass(&plan.Plan{Actions: []plan.Action{isolate}},
		&apply.Result{Results: []apply.ActionResult{applied(isolate, apply.OutcomeConfigured, nil)}}, nil)
	if len(drift) != 0 {
		t.Fatalf("first pass counted as drift: %v", drift)
	}
	c1 := f.expect("web", v1.ConditionTrue, v1.ReasonConverged)
	if !c1.LastTransitionTime.After(c0.LastTransitionTime) {
		t.Fatalf("lastTransitionTime did not move on Unknown -> True: %v then %v", c0.LastTransitionTime, c1.LastTransitionTime)
	}
	if ok, checks := f.tr.Ready(); !ok {
		t.Fatalf("not ready after a pass: %+v", checks)
	}
	if got := f.tr.Report().Policies[0].Services; len(got) != 1 || got[0] != "web" {
		t.Fatalf("services selected: %v", got)
	}

	// A quiet pass: same status, same transition time.
	f.pass(&plan.Plan{}, &apply.Result{}, nil)
	if c := f.expect("web", v1.ConditionTrue, v1.ReasonConverged); !c.LastTransitionTime.Equal(c1.LastTransitionTime) {
		t.Fatalf("lastTransitionTime moved without a status change: %v -> %v", c1.LastTransitionTime, c.LastTransitionTime)
	}

	// Someone reattached web by hand; the next pass reverts it: drift.
	revert := update("web", "web", "detach shop_default: isolated services use managed networks only")
	drift = f.pass(&plan.Plan{Actions: []plan.Action{revert}},
		&apply.Result{Results: []apply.ActionResult{applied(revert, apply.OutcomeConfigured, nil)}}, nil)
	if len(drift) != 1 || drift[0].Action.Name != "web" {
		t.Fatalf("drift corrections = %v, want the update of web", drift)
	}
	f.expect("web", v1.ConditionTrue, v1.ReasonConverged)

	// A new generation: Progressing until a pass that saw it ends.
	f.clock.step(time.Second)
	f.load(watch.Snapshot{Objects: []v1.Policy{netPolicy("web", "web", "g2", "")}})
	c2 := f.expect("web", v1.ConditionUnknown, v1.ReasonProgressing)
	if c2.ObservedGeneration != "g2" || !c2.LastTransitionTime.After(c1.LastTransitionTime) {
		t.Fatalf("after a spec change: %+v", c2)
	}
	// A pass that started before the change does not count.
	stale := controller.Pass{Start: f.clock.t.Add(-10 * time.Second), Duration: time.Second, Plan: &plan.Plan{}, Result: &apply.Result{}}
	f.tr.ObservePass(stale)
	f.expect("web", v1.ConditionUnknown, v1.ReasonProgressing)

	// The change's pass fails to write: ApplyFailed, and it is no drift.
	move := update("web", "web", "attach swarmsec.web")
	drift = f.pass(&plan.Plan{Actions: []plan.Action{move}},
		&apply.Result{Results: []apply.ActionResult{applied(move, apply.OutcomeFailed, errors.New("update service web: boom"))}},
		errors.New("update service web: boom"))
	if len(drift) != 0 {
		t.Fatalf("a failed write counted as drift: %v", drift)
	}
	c3 := f.expect("web", v1.ConditionFalse, v1.ReasonApplyFailed)
	if !strings.Contains(c3.Message, "boom") {
		t.Fatalf("message does not carry the error: %q", c3.Message)
	}
	if pa := f.tr.Report().Policies[0].PendingActions; len(pa) != 1 || pa[0].State != v1.PendingFailed {
		t.Fatalf("pending actions: %+v", pa)
	}

	// The retry works.
	drift = f.pass(&plan.Plan{Actions: []plan.Action{move}},
		&apply.Result{Results: []apply.ActionResult{applied(move, apply.OutcomeConfigured, nil)}}, nil)
	if len(drift) != 0 {
		t.Fatalf("the change's own pass counted as drift: %v", drift)
	}
	c4 := f.expect("web", v1.ConditionTrue, v1.ReasonConverged)
	if c4.ObservedGeneration != "g2" {
		t.Fatalf("observedGeneration %q, want g2", c4.ObservedGeneration)
	}

	// Docker goes away: Unknown, and not ready.
	f.pass(nil, nil, errors.New("list services: connection refused"))
	f.expect("web", v1.ConditionUnknown, v1.ReasonReconcileFailed)
	if ok, _ := f.tr.Ready(); ok {
		t.Fatal("ready while Docker does not answer")
	}
}

func TestPendingHeldAndNoSelection(t *testing.T) {
	f := newFixture(t, reconcile.ModeEnforce)
	f.load(watch.Snapshot{Objects: []v1.Policy{
		netPolicy("api", "api", "a1", ""),
		netPolicy("ghost", "nothing-has-this", "g1", ""),
	}})
	capped := update("api", "api", "isolate: selected by api")
	f.pass(&plan.Plan{Actions: []plan.Action{capped}},
		&apply.Result{Results: []apply.ActionResult{applied(capped, apply.OutcomePending, nil)}}, nil)
	f.expect("api", v1.ConditionUnknown, v1.ReasonProgressing)
	f.expect("ghost", v1.ConditionTrue, v1.ReasonNoServicesSelected)

	f.pass(&plan.Plan{Actions: []plan.Action{capped}, Holds: []string{"the pass isolates 1 of 2 services at once"}},
		&apply.Result{}, fmt.Errorf("%w: too many", plan.ErrHeld))
	c := f.expect("api", v1.ConditionUnknown, v1.ReasonHeld)
	if !strings.Contains(c.Message, "isolates 1 of 2") {
		t.Fatalf("held message: %q", c.Message)
	}
	f.expect("ghost", v1.ConditionTrue, v1.ReasonNoServicesSelected)
}

func TestManifestErrorsAndHeld(t *testing.T) {
	f := newFixture(t, reconcile.ModeEnforce)
	web := netPolicy("web", "web", "g1", "")
	f.load(watch.Snapshot{Objects: []v1.Policy{web}})
	f.pass(&plan.Plan{}, &apply.Result{}, nil)
	f.expect("web", v1.ConditionTrue, v1.ReasonConverged)

	// web.yaml breaks: its last good policy stays in force, but the spec
	// the operator wrote is invalid.
	bad := manifest.Error{File: "web.yaml", Line: 7, Column: 3, Field: "spec.ingress", Message: "unknown field"}
	f.load(watch.Snapshot{Objects: []v1.Policy{web}, Errors: []manifest.Error{bad}, Stale: []string{"web.yaml"}})
	c := f.expect("web", v1.ConditionFalse, v1.ReasonInvalidSpec)
	if !strings.Contains(c.Message, "web.yaml:7:3") || c.ObservedGeneration != "g1" {
		t.Fatalf("invalid spec condition: %+v", c)
	}
	r := f.tr.Report()
	if len(r.ManifestErrors) != 1 || len(r.StaleFiles) != 1 {
		t.Fatalf("report: errors %v, stale %v", r.ManifestErrors, r.StaleFiles)
	}

	// The directory empties: the watcher holds the last good set.
	f.load(watch.Snapshot{Objects: []v1.Policy{web}, Held: "manifests holds no policies: keeping the 1 policies last loaded"})
	f.expect("web", v1.ConditionUnknown, v1.ReasonHeld)

	// Fixed again.
	f.load(watch.Snapshot{Objects: []v1.Policy{web}})
	f.pass(&plan.Plan{}, &apply.Result{}, nil)
	f.expect("web", v1.ConditionTrue, v1.ReasonConverged)
	if r := f.tr.Report(); len(r.ManifestErrors) != 0 || r.Held != "" {
		t.Fatalf("errors left after a fix: %+v", r)
	}
}

func TestAuditOnly(t *testing.T) {
	for _, tc := range []struct {
		name        string
		mode        reconcile.Mode
		enforcement v1.Enforcement
	}{
		{"policy enforcement audit", reconcile.ModeEnforce, v1.EnforcementAudit},
		{"controller audit mode", reconcile.ModeAudit, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.mode)
			f.load(watch.Snapshot{Objects: []v1.Policy{netPolicy("web", "web", "g1", tc.enforcement)}})
			would := update("web", "web", "isolate: selected by web")
			would.Audit = true
			f.pass(&plan.Plan{Actions: []plan.Action{would}}, &apply.Result{}, nil)
			c := f.expect("web", v1.ConditionFalse, v1.ReasonAuditOnly)
			if !strings.Contains(c.Message, "1 change") {
				t.Fatalf("message: %q", c.Message)
			}
			pa := f.tr.Report().Policies[0].PendingActions
			if len(pa) != 1 || pa[0].State != v1.PendingAudit {
				t.Fatalf("pending: %+v", pa)
			}
			f.pass(&plan.Plan{}, &apply.Result{}, nil)
			f.expect("web", v1.ConditionTrue, v1.ReasonAuditOnly)
		})
	}
}

func TestReportJSONShape(t *testing.T) {
	f := newFixture(t, reconcile.ModeEnforce)
	f.load(watch.Snapshot{Objects: []v1.Policy{netPolicy("web", "web", "g1", "")}})
	f.pass(&plan.Plan{}, &apply.Result{}, nil)
	b, err := json.Marshal(f.tr.Report())
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Policies []struct {
			Name       string           `json:"name"`
			Conditions []map[string]any `json:"conditions"`
		} `json:"policies"`
		ManifestErrors []any `json:"manifestErrors"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Policies) != 1 || doc.Policies[0].Name != "web" || doc.ManifestErrors == nil {
		t.Fatalf("shape: %s", b)
	}
	for _, key := range []string{"type", "status", "reason", "message", "observedGeneration", "lastTransitionTime"} {
		if _, ok := doc.Policies[0].Conditions[0][key]; !ok {
			t.Errorf("condition lacks %s: %s", key, b)
		}
	}
}

// An enforce-mode pass's own topology tells what policies select.
func TestSelectionFromThePlan(t *testing.T) {
	f := newFixture(t, reconcile.ModeEnforce)
	f.load(watch.Snapshot{Objects: []v1.Policy{netPolicy("web", "web", "g1", "")}})
	rec := &reconcile.Reconciler{Store: f.store, Mode: reconcile.ModeEnforce}
	pl, _, err := rec.PlanObserved()
	if err != nil {
		t.Fatal(err)
	}
	if pl.Desired == nil {
		t.Fatal("plan without its topology")
	}
	f.pass(pl, &apply.Result{}, nil)
	if got := f.tr.Report().Policies[0].Services; len(got) != 1 || got[0] != "web" {
		t.Fatalf("services: %v", got)
	}
	f.expect("web", v1.ConditionUnknown, v1.ReasonProgressing)
}

// A controller whose passes stopped succeeding (an engine that no longer
// answers) goes unready after a few resync periods.
func TestUnreadyWhenPassesStopSucceeding(t *testing.T) {
	f := newFixture(t, reconcile.ModeEnforce)
	f.tr.SetStaleAfter(90 * time.Second)
	f.load(watch.Snapshot{Objects: []v1.Policy{netPolicy("web", "web", "g1", "")}})
	f.pass(&plan.Plan{}, &apply.Result{}, nil)
	if ok, checks := f.tr.Ready(); !ok {
		t.Fatalf("not ready after a good pass: %+v", checks)
	}
	f.clock.step(2 * time.Minute)
	f.pass(nil, nil, errors.New("list networks: context deadline exceeded"))
	ok, checks := f.tr.Ready()
	if ok || !slices.ContainsFunc(checks, func(c Check) bool { return c.Name == "recent-pass" && !c.OK }) {
		t.Fatalf("ready although no pass succeeded for 2m: %+v", checks)
	}
}

// A service whose record of what to restore is gone makes the policies
// selecting it Restorable=False with the reason; once the record is back,
// True again.
func TestRestorableCondition(t *testing.T) {
	f := newFixture(t, reconcile.ModeEnforce)
	f.load(watch.Snapshot{Objects: []v1.Policy{netPolicy("web", "web", "g1", "")}})
	missing := compile.Problem{Service: "web", Reason: compile.ReasonRecordMissing, Message: "service web carries swarmsec.io/original but its record is missing"}
	f.pass(&plan.Plan{Problems: []compile.Problem{missing}}, &apply.Result{}, nil)
	c := f.tr.Report().Policies[0].Conditions
	if len(c) != 2 || c[1].Type != v1.ConditionRestorable || c[1].Status != v1.ConditionFalse || c[1].Reason != compile.ReasonRecordMissing {
		t.Fatalf("conditions %+v", c)
	}
	f.pass(&plan.Plan{}, &apply.Result{}, nil)
	if c := f.tr.Report().Policies[0].Conditions; len(c) != 2 || c[1].Status != v1.ConditionTrue {
		t.Fatalf("conditions after the record is back %+v", c)
	}
}

// The controller says how many service updates its cap left for later.
func TestRemainingUpdates(t *testing.T) {
	f := newFixture(t, reconcile.ModeEnforce)
	f.load(watch.Snapshot{Objects: []v1.Policy{netPolicy("web", "web", "g1", "")}})
	capped := update("web", "web", "attach swarmsec-web")
	f.pass(&plan.Plan{Actions: []plan.Action{capped}}, &apply.Result{Results: []apply.ActionResult{applied(capped, apply.OutcomePending, nil)}}, nil)
	if got := f.tr.Report().LastPass.RemainingUpdates; got != 1 {
		t.Errorf("remaining updates %d, want 1", got)
	}
}

// status shows the published ports a policy restricts, and that no agent
// enforces them yet.
func TestStatusShowsPortRules(t *testing.T) {
	f := newFixture(t, reconcile.ModeEnforce)
	np := netPolicy("web", "web", "g1", "")
	np.Network.Spec.Publish = []v1.PublishedPort{
		{Port: 443, From: []v1.PortSource{{IPBlock: &v1.SourceBlock{CIDR: "203.0.113.0/24", Except: []string{"203.0.113.9/32"}}}}},
		{Port: 80},
	}
	f.load(watch.Snapshot{Objects: []v1.Policy{np}})
	rec := &reconcile.Reconciler{Store: f.store, Mode: reconcile.ModeEnforce}
	pl, _, err := rec.PlanObserved()
	if err != nil {
		t.Fatal(err)
	}
	f.pass(pl, &apply.Result{}, nil)
	got := f.tr.Report().Policies[0].PublishedPorts
	want := []v1.PortRule{{Port: "443/tcp", Mode: v1.PublishModeHost, From: []string{"203.0.113.0/24 except 203.0.113.9/32"}, Log: v1.PortLogNone}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("published ports %+v, want %+v", got, want)
	}
}
