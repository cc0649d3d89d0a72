package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/apply"
	"github.com/swarmsec/swarmsec/reconciler/migrate"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

const migNet = policytest.StackNetwork

// migStack deploys n services of stack shop on one unencrypted, attachable
// overlay network with labels and a driver option, each with its short
// name as alias.
func migStack(t *testing.T, n int) (*fake.Swarm, []string) {
	t.Helper()
	return policytest.UnencryptedStack(t, n)
}

var encpol = policytest.EncPol

func shopEncryption() *v1.Policy {
	return encpol("encrypt-shop", v1.LabelSelector{MatchLabels: map[string]string{v1.LabelStackNamespace: "shop"}}, "")
}

// migReconciler is a fresh process's reconciler (an empty store) whose
// passes follow each other fast.
func migReconciler(t tb, api dockerapi.API, policies ...*v1.Policy) *Reconciler {
	t.Helper()
	r := &Reconciler{Docker: api, Store: state.New(), Mode: ModeEnforce, Log: slog.New(slog.DiscardHandler),
		PendingDelay: 5 * time.Millisecond, ProgressDelay: time.Millisecond}
	if err := r.SetPolicies(policies); err != nil {
		t.Fatal(err)
	}
	return r
}

// converge runs passes until nothing waits, as apply does.
func converge(t *testing.T, r *Reconciler) (*plan.Plan, *Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return r.Converge(ctx, nil)
}

// killer stands between a reconciler and the fake and kills the process
// (cancels its context) right after the k-th write.
type killer struct {
	dockerapi.API
	mu   sync.Mutex
	k, n int
	kill func()
}

func (w *killer) wrote() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n++; w.n == w.k {
		w.kill()
	}
}

func (w *killer) ServiceUpdate(ctx context.Context, id string, v swarm.Version, spec swarm.ServiceSpec, o swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	resp, err := w.API.ServiceUpdate(ctx, id, v, spec, o)
	if err == nil {
		w.wrote()
	}
	return resp, err
}

func (w *killer) NetworkCreate(ctx context.Context, name string, o network.CreateOptions) (network.CreateResponse, error) {
	resp, err := w.API.NetworkCreate(ctx, name, o)
	if err == nil {
		w.wrote()
	}
	return resp, err
}

func (w *killer) NetworkRemove(ctx context.Context, id string) error {
	err := w.API.NetworkRemove(ctx, id)
	if err == nil {
		w.wrote()
	}
	return err
}

// killAt runs a migration and kills it right after its k-th write.
func killAt(t *testing.T, f *fake.Swarm, k int) {
	t.Helper()
	ctx, kill := context.WithCancel(context.Background())
	defer kill()
	r := migReconciler(t, &killer{API: f, k: k, kill: kill}, shopEncryption())
	if _, _, err := r.Converge(ctx, nil); err == nil {
		t.Fatalf("the migration finished before its write %d", k)
	}
}

// sharing checks that every pair of the named services shares a network,
// in their specs and in the tasks Swarm wants running.
var sharing = policytest.Sharing

// watchSharing checks sharing before every service update; Violations
// returns what it saw.
type sharingWatch struct {
	mu         sync.Mutex
	violations []string
	samples    int
}

func watchSharing(f *fake.Swarm, names []string) *sharingWatch {
	w := &sharingWatch{}
	f.BeforeServiceUpdate = func(string) { w.sample(f, names) }
	return w
}

func (w *sharingWatch) sample(f *fake.Swarm, names []string) {
	err := sharing(f, names)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples++
	if err != nil {
		w.violations = append(w.violations, err.Error())
	}
}

func (w *sharingWatch) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.violations) > 0 {
		t.Errorf("%d of %d samples broke sharing, first: %s", len(w.violations), w.samples, w.violations[0])
	}
}

// checkMigrated checks the end state: one encrypted network of the old
// name with its labels, flags and options, every service on it with its
// alias, nothing temporary left.
func checkMigrated(t *testing.T, f *fake.Swarm, oldID string, names []string) {
	t.Helper()
	ctx := context.Background()
	nets, err := f.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var cur *network.Summary
	for i, n := range nets {
		if n.Labels[v1.LabelMigrating] != "" {
			t.Errorf("temporary network %s left", n.Name)
		}
		if n.Name == migNet {
			cur = &nets[i]
		}
	}
	if cur == nil {
		t.Fatalf("network %s gone", migNet)
	}
	if _, ok := cur.Options["encrypted"]; !ok || cur.ID == oldID {
		t.Errorf("%s: id %s (old %s) options %v: not replaced by an encrypted network", migNet, cur.ID, oldID, cur.Options)
	}
	if cur.Labels[v1.LabelStackNamespace] != "shop" || cur.Labels["team"] != "payments" || cur.Labels[v1.LabelMigratedFrom] != oldID {
		t.Errorf("labels not kept: %v", cur.Labels)
	}
	if !cur.Attachable || cur.Internal || cur.Options["com.docker.network.driver.mtu"] != "1400" {
		t.Errorf("flags or options not kept: attachable %t internal %t options %v", cur.Attachable, cur.Internal, cur.Options)
	}
	for _, name := range names {
		s, _, err := f.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		as := s.Spec.TaskTemplate.Networks
		short := strings.TrimPrefix(name, "shop_")
		if len(as) != 1 || as[0].Target != cur.ID || !slices.Equal(as[0].Aliases, []string{short}) {
			t.Errorf("service %s networks %+v, want only %s with alias %s", name, as, cur.ID, short)
		}
	}
}

func networkID(t *testing.T, f *fake.Swarm, name string) string {
	t.Helper()
	n, err := f.NetworkInspect(context.Background(), name, network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.ID
}

func TestMigrateStackNetworkInPlace(t *testing.T) {
	f, names := migStack(t, 6)
	oldID := networkID(t, f, migNet)
	w := watchSharing(f, names)
	r := migReconciler(t, f, shopEncryption())

	pl, err := r.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.Actions) != 1 || pl.Actions[0].Kind != plan.ActionMigrateNetwork || pl.Actions[0].Audit {
		t.Fatalf("plan: %+v", pl.Actions)
	}
	if why := strings.Join(pl.Actions[0].Reasons, "\n"); !strings.Contains(why, "24 service updates") || !strings.Contains(why, migrate.TempName(migNet)) {
		t.Errorf("reasons: %s", why)
	}

	_, res, err := converge(t, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, ar := range res.Results {
		if ar.Action.Kind != plan.ActionMigrateNetwork || ar.Err != nil {
			t.Errorf("result: %+v", ar)
		}
	}
	if got := f.Calls()[dockerapi.OpServiceUpdate]; got != 24 {
		t.Errorf("%d service updates, want 24", got)
	}
	checkMigrated(t, f, oldID, names)
	w.check(t)
	if w.samples != 24 {
		t.Errorf("%d samples, want one before each of the 24 updates", w.samples)
	}

	// A second pass finds nothing to do and writes nothing.
	f.ResetCalls()
	pl, _, err = r.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := f.WriteCalls(); n != 0 || len(pl.Pending()) != 0 {
		t.Errorf("second pass: %d writes, plan %+v", n, pl.Pending())
	}
}

func TestMigrateReportsProgress(t *testing.T) {
	f, _ := migStack(t, 2)
	r := migReconciler(t, f, shopEncryption())
	var seen []string
	r.OnResult = func(ar apply.ActionResult) {
		if ar.Outcome == apply.OutcomeUnchanged {
			return
		}
		for _, st := range ar.Action.Steps {
			seen = append(seen, st.What)
		}
	}
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	tmp := migrate.TempName(migNet)
	want := []string{
		"step 1/8 create temporary encrypted network " + tmp,
		"step 2/8 attach " + tmp + " to shop_s0 (0 of 2 services done)", "step 2/8 attach " + tmp + " to shop_s1 (1 of 2 services done)",
		"step 3/8 detach shop_default from shop_s0 (0 of 2 services done)", "step 3/8 detach shop_default from shop_s1 (1 of 2 services done)",
		"step 4/8 remove network shop_default (" + networkIDs(seen) + ")", "step 5/8 create encrypted network shop_default",
		"step 6/8 attach shop_default to shop_s0 (0 of 2 services done)", "step 6/8 attach shop_default to shop_s1 (1 of 2 services done)",
		"step 7/8 detach " + tmp + " from shop_s0 (0 of 2 services done)", "step 7/8 detach " + tmp + " from shop_s1 (1 of 2 services done)",
		"step 8/8 remove network " + tmp + " (" + networkIDs(seen[10:]) + ")",
	}
	if !slices.Equal(seen, want) {
		t.Errorf("progress:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

// networkIDs returns the ID in the first "remove network NAME (ID)" line.
func networkIDs(lines []string) string {
	for _, l := range lines {
		if i := strings.Index(l, "remove network "); i >= 0 {
			if j := strings.LastIndex(l, "("); j > i {
				return strings.TrimSuffix(l[j+1:], ")")
			}
		}
	}
	return "?"
}

func TestMigrateResumesAfterKillAtEveryWrite(t *testing.T) {
	const services = 3
	writes := 1 + services + services + 1 + 1 + services + services + 1
	for k := 1; k <= writes; k++ {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			f, names := migStack(t, services)
			oldID := networkID(t, f, migNet)
			w := watchSharing(f, names)
			// Rolling updates finish a moment after they start.
			f.HoldUpdates(true)
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
						w.sample(f, names)
						f.CompleteUpdates()
						w.sample(f, names)
					}
				}
			}()

			ctx, kill := context.WithCancel(context.Background())
			defer kill()
			killed := migReconciler(t, &killer{API: f, k: k, kill: kill}, shopEncryption())
			_, _, err := killed.Converge(ctx, nil)
			if k < writes && !errors.Is(err, context.Canceled) {
				t.Fatalf("killed run: %v", err)
			}
			w.sample(f, names)

			r := migReconciler(t, f, shopEncryption())
			if _, _, err := converge(t, r); err != nil {
				t.Fatalf("resumed: %v", err)
			}
			checkMigrated(t, f, oldID, names)
			w.check(t)
		})
	}
}

func TestMigrateAuditWritesNothing(t *testing.T) {
	for _, tc := range []struct {
		name        string
		mode        Mode
		enforcement v1.Enforcement
	}{
		{"audit policy", ModeEnforce, v1.EnforcementAudit},
		{"audit mode", ModeAudit, v1.EnforcementEnforce},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := migStack(t, 2)
			r := migReconciler(t, f, encpol("enc", v1.LabelSelector{MatchLabels: map[string]string{"team": "payments"}}, tc.enforcement))
			r.Mode = tc.mode
			pl, _, err := r.Reconcile(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(pl.Actions) != 1 || !pl.Actions[0].Audit || pl.Actions[0].Kind != plan.ActionMigrateNetwork {
				t.Errorf("plan: %+v", pl.Actions)
			}
			if n := f.WriteCalls(); n != 0 {
				t.Errorf("%d writes", n)
			}
		})
	}
}

func TestMigrateNeverTouchesIngress(t *testing.T) {
	f, names := migStack(t, 2)
	oldID := networkID(t, f, migNet)
	ingressID := networkID(t, f, "ingress")
	// An empty selector selects every network.
	r := migReconciler(t, f, encpol("everything", v1.LabelSelector{}, ""))
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	pl, err := r.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ingress *plan.Action
	for i, a := range pl.Actions {
		switch a.Name {
		case "ingress":
			ingress = &pl.Actions[i]
		case migNet:
		default:
			t.Errorf("unexpected action %+v", a)
		}
	}
	if ingress == nil || !ingress.Audit || !strings.Contains(strings.Join(ingress.Reasons, "\n"), "docker network create --driver overlay --ingress --opt encrypted") {
		t.Errorf("ingress action: %+v", ingress)
	}
	if networkID(t, f, "ingress") != ingressID {
		t.Error("ingress was replaced")
	}
	checkMigrated(t, f, oldID, names)
}

func TestMigrateBlockedByContainerOutsideServices(t *testing.T) {
	t.Run("before it starts", func(t *testing.T) {
		f, names := migStack(t, 2)
		oldID := networkID(t, f, migNet)
		c := f.AddContainer("debug-shell", nil, migNet)
		r := migReconciler(t, f, shopEncryption())
		_, _, err := r.Reconcile(context.Background())
		if !errors.Is(err, plan.ErrBlocked) || !strings.Contains(err.Error(), "debug-shell") {
			t.Fatalf("err = %v, want blocked naming debug-shell", err)
		}
		if n := f.WriteCalls(); n != 0 {
			t.Errorf("%d writes while blocked", n)
		}
		f.RemoveContainer(c.ID)
		if _, _, err := converge(t, r); err != nil {
			t.Fatal(err)
		}
		checkMigrated(t, f, oldID, names)
	})
	t.Run("while it runs", func(t *testing.T) {
		f, names := migStack(t, 2)
		oldID := networkID(t, f, migNet)
		w := watchSharing(f, names)
		var c string
		// Right after the services joined the temporary network.
		r := migReconciler(t, &killer{API: f, k: 3, kill: func() { c = f.AddContainer("late-shell", nil, migNet).ID }}, shopEncryption())
		_, _, err := converge(t, r)
		if !errors.Is(err, plan.ErrBlocked) || !strings.Contains(err.Error(), "late-shell") {
			t.Fatalf("err = %v", err)
		}
		if networkID(t, f, migNet) != oldID {
			t.Error("the old network went although a container is on it")
		}
		if err := sharing(f, names); err != nil {
			t.Error(err)
		}
		f.RemoveContainer(c)
		if _, _, err := converge(t, r); err != nil {
			t.Fatal(err)
		}
		checkMigrated(t, f, oldID, names)
		w.check(t)
	})
}

func TestMigrateOptOut(t *testing.T) {
	t.Run("network", func(t *testing.T) {
		f := fake.New()
		if _, err := f.NetworkCreate(context.Background(), "legacy", network.CreateOptions{
			Driver: "overlay", Labels: map[string]string{v1.LabelIgnore: "true"},
		}); err != nil {
			t.Fatal(err)
		}
		f.ResetCalls()
		r := migReconciler(t, f, encpol("everything", v1.LabelSelector{MatchLabels: map[string]string{v1.LabelNetwork: "legacy"}}, ""))
		pl, _, err := r.Reconcile(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(pl.Actions) != 0 || f.WriteCalls() != 0 || !slices.ContainsFunc(pl.Notes, func(n string) bool { return strings.Contains(n, "legacy opts out") }) {
			t.Errorf("actions %+v, notes %q, %d writes", pl.Actions, pl.Notes, f.WriteCalls())
		}
	})
	t.Run("service", func(t *testing.T) {
		f, names := migStack(t, 2)
		if err := f.UpdateService(names[1], func(s *swarm.ServiceSpec) { s.Labels[v1.LabelIgnore] = "true" }); err != nil {
			t.Fatal(err)
		}
		f.ResetCalls()
		r := migReconciler(t, f, shopEncryption())
		pl, _, err := r.Reconcile(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(pl.Actions) != 0 || f.WriteCalls() != 0 ||
			!slices.ContainsFunc(pl.Notes, func(n string) bool { return strings.Contains(n, "service shop_s1 opts out") }) {
			t.Errorf("actions %+v, notes %q, %d writes", pl.Actions, pl.Notes, f.WriteCalls())
		}
	})
}

// TestMigrateBlastRadius runs passes capped at five service updates: each
// stops where the services share a network, and the next goes on.
func TestMigrateBlastRadius(t *testing.T) {
	f, names := migStack(t, 6)
	oldID := networkID(t, f, migNet)
	w := watchSharing(f, names)
	r := migReconciler(t, f, shopEncryption())
	r.Limits = plan.Limits{MaxServiceUpdates: 5}

	pl, err := r.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if why := strings.Join(pl.Actions[0].Reasons, "\n"); !strings.Contains(why, "--max-service-updates=5: it takes more passes") {
		t.Errorf("reasons: %s", why)
	}
	updates := 0
	for pass := 1; ; pass++ {
		f.ResetCalls()
		_, res, err := r.Reconcile(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n := f.Calls()[dockerapi.OpServiceUpdate]
		if n > 5 {
			t.Fatalf("pass %d: %d service updates", pass, n)
		}
		updates += n
		if err := sharing(f, names); err != nil {
			t.Fatalf("after pass %d: %v", pass, err)
		}
		if res.RequeueAfter == 0 {
			// Four waves of six, each two passes of five and one, the
			// four network steps, and a last pass that finds nothing.
			if pass != 13 || updates != 24 {
				t.Errorf("done after %d passes and %d updates, want 13 and 24", pass, updates)
			}
			break
		}
		if pass > 20 {
			t.Fatal("no end")
		}
	}
	checkMigrated(t, f, oldID, names)
	w.check(t)
	f.ResetCalls()
	if _, _, err := r.Reconcile(context.Background()); err != nil || f.WriteCalls() != 0 {
		t.Errorf("after: %v, %d writes", err, f.WriteCalls())
	}
}

// TestMigrateThenRestoreIsolated isolates a service, migrates the network
// it came from, ends the isolation: it comes back to the migrated network.
func TestMigrateThenRestoreIsolated(t *testing.T) {
	f, names := migStack(t, 3)
	oldID := networkID(t, f, migNet)
	isolate := &v1.Policy{Name: "lock-s0", Kind: v1.KindNetworkPolicy, Generation: "1", Network: &v1.NetworkPolicy{
		Metadata: v1.ObjectMeta{Name: "lock-s0"},
		Spec: v1.NetworkPolicySpec{
			ServiceSelector: v1.LabelSelector{MatchLabels: map[string]string{"app": "s0"}},
			Ingress:         []v1.IngressRule{{From: []v1.Peer{{ServiceSelector: &v1.LabelSelector{MatchLabels: map[string]string{"app": "s1"}}}}}},
		},
	}}
	r := migReconciler(t, f, isolate)
	r.Limits.Force = true
	if _, _, err := r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.SetPolicies([]*v1.Policy{isolate, shopEncryption()}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	s0, _, _ := f.ServiceInspectWithRaw(context.Background(), names[0], swarm.ServiceInspectOptions{})
	if slices.ContainsFunc(s0.Spec.TaskTemplate.Networks, func(a swarm.NetworkAttachmentConfig) bool { return a.Target == networkID(t, f, migNet) }) {
		t.Fatal("the isolated service was put on the migrated network")
	}
	if err := r.SetPolicies([]*v1.Policy{shopEncryption()}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	checkMigrated(t, f, oldID, names)
	f.ResetCalls()
	if _, _, err := r.Reconcile(context.Background()); err != nil || f.WriteCalls() != 0 {
		t.Errorf("after: %v, %d writes", err, f.WriteCalls())
	}
}

func TestMigrateRollsBackWhenPolicyGoes(t *testing.T) {
	f, names := migStack(t, 3)
	oldID := networkID(t, f, migNet)
	w := watchSharing(f, names)
	killAt(t, f, 1+3+2) // temp created, all attached, two detached from old
	r := migReconciler(t, f)
	pl, err := r.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.Actions) != 1 || !strings.Contains(pl.Actions[0].Reasons[0], "roll back") {
		t.Fatalf("plan: %+v", pl.Actions)
	}
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	nets, _ := f.NetworkList(context.Background(), network.ListOptions{})
	for _, n := range nets {
		if n.Labels[v1.LabelMigrating] != "" {
			t.Errorf("temporary network %s left", n.Name)
		}
	}
	for _, name := range names {
		s, _, _ := f.ServiceInspectWithRaw(context.Background(), name, swarm.ServiceInspectOptions{})
		as := s.Spec.TaskTemplate.Networks
		if len(as) != 1 || as[0].Target != oldID || len(as[0].Aliases) != 1 {
			t.Errorf("%s: %+v, want back on %s only with its alias", name, as, oldID)
		}
	}
	w.check(t)
}

// TestPolicyPassLeavesMigrationAlone interrupts a migration and plans a
// NetworkPolicy over its services: the policy diff must neither detach
// them from the temporary network nor remove it.
func TestPolicyPassLeavesMigrationAlone(t *testing.T) {
	f, _ := migStack(t, 3)
	killAt(t, f, 1+3+3) // everyone on temp only
	isolate := &v1.Policy{Name: "lock-s0", Kind: v1.KindNetworkPolicy, Generation: "1", Network: &v1.NetworkPolicy{
		Metadata: v1.ObjectMeta{Name: "lock-s0"},
		Spec:     v1.NetworkPolicySpec{ServiceSelector: v1.LabelSelector{MatchLabels: map[string]string{"app": "s0"}}},
	}}
	r := migReconciler(t, f, isolate)
	pl, err := r.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range pl.Actions {
		if a.Kind == plan.ActionUpdateService || a.Kind == plan.ActionRemoveNetwork {
			t.Errorf("planned %s %s during a migration", a.Kind, a.Name)
		}
	}
	if !slices.ContainsFunc(pl.Notes, func(n string) bool { return strings.Contains(n, "wait for the migration of network "+migNet) }) {
		t.Errorf("notes: %q", pl.Notes)
	}
}

func TestMigrateBlockedByForeignRecreation(t *testing.T) {
	f, names := migStack(t, 2)
	killAt(t, f, 1+2+2+1) // old removed, services on temp
	if _, err := f.NetworkCreate(context.Background(), migNet, network.CreateOptions{Driver: "overlay"}); err != nil {
		t.Fatal(err)
	}
	r := migReconciler(t, f, shopEncryption())
	_, _, err := r.Reconcile(context.Background())
	if !errors.Is(err, plan.ErrBlocked) || !strings.Contains(err.Error(), "created again by someone else") {
		t.Fatalf("err = %v", err)
	}
	if err := sharing(f, names); err != nil {
		t.Error(err)
	}
}

// TestMigrateWaitsForEachRollingUpdate holds every rolling update: no
// service update of a wave is written while one of the wave before still
// rolls, and a pass that waits writes nothing.
func TestMigrateWaitsForEachRollingUpdate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, _ := migStack(t, 2)
		f.HoldUpdates(true)
		// Count the updates that went through: Swarm moves versions on during
		// rolling updates, and an update retried after "out of sequence" is
		// one write.
		var wrote atomic.Int64
		r := migReconciler(t, &afterEachUpdate{API: f, check: func() { wrote.Add(1) }}, shopEncryption())
		done := make(chan error, 1)
		go func() { _, _, err := converge(t, r); done <- err }()
		for wave := 1; wave <= migrate.UpdatesPerService; wave++ {
			deadline := time.Now().Add(5 * time.Second)
			for wrote.Load() < int64(2*wave) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
			if n := wrote.Load(); n != int64(2*wave) {
				t.Fatalf("update %d written while wave %d was still rolling", n, wave)
			}
			f.CompleteUpdates()
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestMigrateResumeWaitsForRollingUpdate kills a migration while its
// attach wave still rolls: the next process must not detach anything
// before the tasks are on the temporary network.
func TestMigrateResumeWaitsForRollingUpdate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, names := migStack(t, 2)
		ctx, kill := context.WithCancel(context.Background())
		f.HoldUpdates(true) // the attaches keep rolling
		killed := migReconciler(t, &killer{API: f, k: 3, kill: kill}, shopEncryption())
		if _, _, err := killed.Converge(ctx, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("killed run: %v", err)
		}
		f.ResetCalls()
		r := migReconciler(t, f, shopEncryption())
		done := make(chan error, 1)
		go func() { _, _, err := converge(t, r); done <- err }()
		time.Sleep(50 * time.Millisecond)
		if n := f.Calls()[dockerapi.OpServiceUpdate]; n != 0 {
			t.Fatalf("%d service updates while the services still rolled onto the temporary network", n)
		}
		if err := sharing(f, names); err != nil {
			t.Fatal(err)
		}
		f.HoldUpdates(false)
		f.CompleteUpdates()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestMigrateTempNameTaken(t *testing.T) {
	f, _ := migStack(t, 1)
	if _, err := f.NetworkCreate(context.Background(), migrate.TempName(migNet), network.CreateOptions{Driver: "overlay"}); err != nil {
		t.Fatal(err)
	}
	f.ResetCalls()
	r := migReconciler(t, f, shopEncryption())
	_, _, err := r.Reconcile(context.Background())
	if !errors.Is(err, plan.ErrBlocked) || !strings.Contains(err.Error(), "swarmsec did not create") {
		t.Fatalf("err = %v", err)
	}
	if n := f.Calls()[dockerapi.OpServiceUpdate]; n != 0 {
		t.Errorf("%d service updates", n)
	}
}

func TestTempName(t *testing.T) {
	if got := migrate.TempName("shop_default"); got != "shop_default-swarmsec-tmp" {
		t.Errorf("tempName = %q", got)
	}
	long := strings.Repeat("n", 60)
	if a, b := migrate.TempName(long), migrate.TempName(long+"x"); len(a) > 63 || a == b {
		t.Errorf("long names: %q, %q", a, b)
	}
}

// staleList is an engine whose network list still shows a network for one
// list after it was removed, as Swarm's does while it tears it down.
type staleList struct {
	dockerapi.API
	mu      sync.Mutex
	removed []network.Summary
}

func (s *staleList) NetworkRemove(ctx context.Context, id string) error {
	nets, _ := s.API.NetworkList(ctx, network.ListOptions{})
	err := s.API.NetworkRemove(ctx, id)
	if err == nil {
		s.mu.Lock()
		for _, n := range nets {
			if n.ID == id {
				s.removed = append(s.removed, n)
			}
		}
		s.mu.Unlock()
	}
	return err
}

func (s *staleList) NetworkList(ctx context.Context, o network.ListOptions) ([]network.Summary, error) {
	nets, err := s.API.NetworkList(ctx, o)
	s.mu.Lock()
	defer s.mu.Unlock()
	nets, s.removed = append(nets, s.removed...), nil
	return nets, err
}

// A migration whose removed network is still listed by the next pass (the
// remove then finds it gone and writes nothing) is not finished: apply goes
// on to create the encrypted replacement instead of stopping half way.
func TestMigrationGoesOnWhenARemovedNetworkIsStillListed(t *testing.T) {
	f, names := migStack(t, 0)
	oldID := networkID(t, f, migNet)
	r := migReconciler(t, &staleList{API: f}, shopEncryption())
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	checkMigrated(t, f, oldID, names)
}
