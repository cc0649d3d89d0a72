package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/internal/dockerapi/fake"
	"github.com/swarmsec/swarmsec/state"
)

const migNet = "shop_default"

// migStack deploys n services of stack shop on one unencrypted, attachable
// overlay network with labels and a driver option, each with its short
// name as alias.
func migStack(t *testing.T, n int) (*fake.Swarm, []string) {
	t.Helper()
	f := fake.New()
	resp, err := f.NetworkCreate(context.Background(), migNet, network.CreateOptions{
		Driver: "overlay", Scope: "swarm", Attachable: true,
		Labels:  map[string]string{v1.LabelStackNamespace: "shop", "team": "payments"},
		Options: map[string]string{"com.docker.network.driver.mtu": "1400"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range n {
		short := fmt.Sprintf("s%d", i)
		spec := swarm.ServiceSpec{}
		spec.Name = "shop_" + short
		spec.Labels = map[string]string{v1.LabelStackNamespace: "shop", "app": short}
		spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "shop/" + short}
		spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: resp.ID, Aliases: []string{short}}}
		f.AddService(spec)
		names = append(names, spec.Name)
	}
	f.ResetCalls()
	return f, names
}

func encpol(name string, sel v1.LabelSelector, enforcement v1.Enforcement) *state.Policy {
	return &state.Policy{Name: name, Kind: v1.KindEncryptionPolicy, Generation: name, Encryption: &v1.EncryptionPolicy{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindEncryptionPolicy},
		Metadata: v1.ObjectMeta{Name: name},
		Spec:     v1.EncryptionPolicySpec{NetworkSelector: sel, Enforcement: enforcement},
	}}
}

func shopEncryption() *state.Policy {
	return encpol("encrypt-shop", v1.LabelSelector{MatchLabels: map[string]string{v1.LabelStackNamespace: "shop"}}, "")
}

func migReconciler(t *testing.T, f *fake.Swarm, policies ...*state.Policy) *Reconciler {
	t.Helper()
	r := &Reconciler{Docker: f, Store: state.New(), Mode: ModeEnforce, Log: slog.New(slog.DiscardHandler), RemoveWait: time.Second}
	if err := r.SetPolicies(policies); err != nil {
		t.Fatal(err)
	}
	return r
}

func fastMigrator(f *fake.Swarm) *Migrator {
	return &Migrator{Docker: f, Store: state.New(), Log: slog.New(slog.DiscardHandler), Poll: time.Millisecond,
		RemoveWait: 200 * time.Millisecond, ConvergeTimeout: 5 * time.Second}
}

// sharing checks that every pair of the named services shares a network,
// in their specs and in the tasks Swarm wants running. One list call each
// gives a consistent snapshot.
func sharing(f *fake.Swarm, names []string) error {
	ctx := context.Background()
	svcs, err := f.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		return err
	}
	tasks, err := f.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("desired-state", "running"))})
	if err != nil {
		return err
	}
	specNets, taskNets := map[string][]string{}, map[string][][]string{}
	byID := map[string]string{}
	for _, s := range svcs {
		if slices.Contains(names, s.Spec.Name) {
			specNets[s.Spec.Name] = targets(s.Spec.TaskTemplate.Networks)
			byID[s.ID] = s.Spec.Name
		}
	}
	for _, task := range tasks {
		if name, ok := byID[task.ServiceID]; ok {
			taskNets[name] = append(taskNets[name], targets(task.Spec.Networks))
		}
	}
	share := func(a, b []string) bool {
		return slices.ContainsFunc(a, func(x string) bool { return slices.Contains(b, x) })
	}
	for i, a := range names {
		if len(specNets[a]) == 0 {
			return fmt.Errorf("%s is on no network", a)
		}
		for _, b := range names[i+1:] {
			if !share(specNets[a], specNets[b]) {
				return fmt.Errorf("specs of %s %v and %s %v share no network", a, specNets[a], b, specNets[b])
			}
			for _, ta := range taskNets[a] {
				for _, tb := range taskNets[b] {
					if !share(ta, tb) {
						return fmt.Errorf("tasks of %s %v and %s %v share no network", a, ta, b, tb)
					}
				}
			}
		}
	}
	return nil
}

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
		if n.Labels[LabelMigrating] != "" {
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
	if cur.Labels[v1.LabelStackNamespace] != "shop" || cur.Labels["team"] != "payments" || cur.Labels[LabelMigratedFrom] != oldID {
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

	plan, err := r.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Actions) != 1 || plan.Actions[0].Kind != ActionMigrateNetwork || plan.Actions[0].Audit {
		t.Fatalf("plan: %+v", plan.Actions)
	}
	if why := strings.Join(plan.Actions[0].Reasons, "\n"); !strings.Contains(why, "24 service updates") || !strings.Contains(why, tempName(migNet)) {
		t.Errorf("reasons: %s", why)
	}

	_, res, err := r.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 1 || res.Results[0].Outcome != OutcomeConfigured {
		t.Errorf("results: %+v", res.Results)
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
	plan, _, err = r.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := f.WriteCalls(); n != 0 || len(plan.Pending()) != 0 {
		t.Errorf("second pass: %d writes, plan %+v", n, plan.Pending())
	}
}

func TestMigrateReportsProgress(t *testing.T) {
	f, _ := migStack(t, 2)
	mg := fastMigrator(f)
	var seen []string
	mg.Progress = func(p MigrationProgress) {
		seen = append(seen, fmt.Sprintf("%d/%d %s %d/%d", p.Step, p.Steps, p.Service, p.Done, p.Total))
	}
	if err := mg.Store.Update(func(tx state.Tx) error { return state.ReplacePolicies(tx, []*state.Policy{shopEncryption()}) }); err != nil {
		t.Fatal(err)
	}
	rep, err := mg.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"1/8  0/0",
		"2/8 shop_s0 1/2", "2/8 shop_s1 2/2",
		"3/8 shop_s0 1/2", "3/8 shop_s1 2/2",
		"4/8  0/0", "5/8  0/0",
		"6/8 shop_s0 1/2", "6/8 shop_s1 2/2",
		"7/8 shop_s0 1/2", "7/8 shop_s1 2/2",
		"8/8  0/0",
	}
	if !slices.Equal(seen, want) {
		t.Errorf("progress:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
	if len(rep.Networks) != 1 || rep.Networks[0].Writes != 12 || rep.Updates != 8 {
		t.Errorf("report: %+v", rep)
	}
}

// TestMigrateResumesAfterKillAtEveryWrite kills the migration right after
// each of its writes, while the rolling update it started is still going,
// and checks a fresh reconciler (a new process: empty store) finishes it.
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
			mg := fastMigrator(f)
			n := 0
			mg.Progress = func(MigrationProgress) {
				if n++; n == k {
					kill()
				}
			}
			if err := mg.Store.Update(func(tx state.Tx) error { return state.ReplacePolicies(tx, []*state.Policy{shopEncryption()}) }); err != nil {
				t.Fatal(err)
			}
			rep, err := mg.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if k < writes && (len(rep.Networks) != 1 || !errors.Is(rep.Networks[0].Err, context.Canceled)) {
				t.Fatalf("killed run: %+v", rep.Networks)
			}
			w.sample(f, names)

			r := migReconciler(t, f, shopEncryption())
			if _, _, err := r.Reconcile(context.Background()); err != nil {
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
			plan, _, err := r.Reconcile(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Actions) != 1 || !plan.Actions[0].Audit || plan.Actions[0].Kind != ActionMigrateNetwork {
				t.Errorf("plan: %+v", plan.Actions)
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
	plan, _, err := r.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ingress *Action
	for i, a := range plan.Actions {
		switch a.Name {
		case "ingress":
			ingress = &plan.Actions[i]
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
		if !errors.Is(err, ErrMigrationBlocked) || !strings.Contains(err.Error(), "debug-shell") {
			t.Fatalf("err = %v, want blocked naming debug-shell", err)
		}
		if n := f.WriteCalls(); n != 0 {
			t.Errorf("%d writes while blocked", n)
		}
		f.RemoveContainer(c.ID)
		if _, _, err := r.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		checkMigrated(t, f, oldID, names)
	})
	t.Run("while it runs", func(t *testing.T) {
		f, names := migStack(t, 2)
		oldID := networkID(t, f, migNet)
		w := watchSharing(f, names)
		r := migReconciler(t, f, shopEncryption())
		var c string
		r.Log = slog.New(slog.DiscardHandler)
		mg := r.migrator()
		mg.Poll, mg.RemoveWait = time.Millisecond, 50*time.Millisecond
		mg.Progress = func(p MigrationProgress) {
			if p.Step == stepDetachOld && c == "" {
				c = f.AddContainer("late-shell", nil, migNet).ID
			}
		}
		rep, err := mg.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := rep.Networks[0].Err; !errors.Is(err, ErrMigrationBlocked) || !strings.Contains(err.Error(), "late-shell") {
			t.Fatalf("err = %v", err)
		}
		if networkID(t, f, migNet) != oldID {
			t.Error("the old network went although a container is on it")
		}
		if err := sharing(f, names); err != nil {
			t.Error(err)
		}
		f.RemoveContainer(c)
		if _, _, err := r.Reconcile(context.Background()); err != nil {
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
		plan, _, err := r.Reconcile(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Actions) != 0 || f.WriteCalls() != 0 || !slices.ContainsFunc(plan.Notes, func(n string) bool { return strings.Contains(n, "legacy opts out") }) {
			t.Errorf("actions %+v, notes %q, %d writes", plan.Actions, plan.Notes, f.WriteCalls())
		}
	})
	t.Run("service", func(t *testing.T) {
		f, names := migStack(t, 2)
		if err := f.UpdateService(names[1], func(s *swarm.ServiceSpec) { s.Labels[v1.LabelIgnore] = "true" }); err != nil {
			t.Fatal(err)
		}
		f.ResetCalls()
		r := migReconciler(t, f, shopEncryption())
		plan, _, err := r.Reconcile(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Actions) != 0 || f.WriteCalls() != 0 ||
			!slices.ContainsFunc(plan.Notes, func(n string) bool { return strings.Contains(n, "service shop_s1 opts out") }) {
			t.Errorf("actions %+v, notes %q, %d writes", plan.Actions, plan.Notes, f.WriteCalls())
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
	r.Limits = Limits{MaxServiceUpdates: 5}

	plan, err := r.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if why := strings.Join(plan.Actions[0].Reasons, "\n"); !strings.Contains(why, "it takes 5 passes") {
		t.Errorf("reasons: %s", why)
	}
	for pass := 1; ; pass++ {
		f.ResetCalls()
		_, res, err := r.Reconcile(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n := f.Calls()[dockerapi.OpServiceUpdate]; n > 5 {
			t.Fatalf("pass %d: %d service updates", pass, n)
		}
		if err := sharing(f, names); err != nil {
			t.Fatalf("after pass %d: %v", pass, err)
		}
		if !res.Pending() {
			if pass != 5 {
				t.Errorf("done after %d passes, want 5", pass)
			}
			break
		}
		if pass > 10 {
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
	isolate := &state.Policy{Name: "lock-s0", Kind: v1.KindNetworkPolicy, Generation: "1", Network: &v1.NetworkPolicy{
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
	if err := r.SetPolicies([]*state.Policy{isolate, shopEncryption()}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	s0, _, _ := f.ServiceInspectWithRaw(context.Background(), names[0], swarm.ServiceInspectOptions{})
	if slices.ContainsFunc(s0.Spec.TaskTemplate.Networks, func(a swarm.NetworkAttachmentConfig) bool { return a.Target == networkID(t, f, migNet) }) {
		t.Fatal("the isolated service was put on the migrated network")
	}
	if err := r.SetPolicies([]*state.Policy{shopEncryption()}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkMigrated(t, f, oldID, names)
	f.ResetCalls()
	if _, _, err := r.Reconcile(context.Background()); err != nil || f.WriteCalls() != 0 {
		t.Errorf("after: %v, %d writes", err, f.WriteCalls())
	}
}

// killAt runs a migration and kills it right after its k-th write.
func killAt(t *testing.T, f *fake.Swarm, k int) {
	t.Helper()
	ctx, kill := context.WithCancel(context.Background())
	defer kill()
	mg := fastMigrator(f)
	n := 0
	mg.Progress = func(MigrationProgress) {
		if n++; n == k {
			kill()
		}
	}
	if err := mg.Store.Update(func(tx state.Tx) error { return state.ReplacePolicies(tx, []*state.Policy{shopEncryption()}) }); err != nil {
		t.Fatal(err)
	}
	if _, err := mg.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestMigrateRollsBackWhenPolicyGoes(t *testing.T) {
	f, names := migStack(t, 3)
	oldID := networkID(t, f, migNet)
	w := watchSharing(f, names)
	killAt(t, f, 1+3+2) // temp created, all attached, two detached from old
	r := migReconciler(t, f)
	plan, err := r.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Actions) != 1 || !strings.Contains(plan.Actions[0].Reasons[0], "roll back") {
		t.Fatalf("plan: %+v", plan.Actions)
	}
	if _, _, err := r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	nets, _ := f.NetworkList(context.Background(), network.ListOptions{})
	for _, n := range nets {
		if n.Labels[LabelMigrating] != "" {
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
	isolate := &state.Policy{Name: "lock-s0", Kind: v1.KindNetworkPolicy, Generation: "1", Network: &v1.NetworkPolicy{
		Metadata: v1.ObjectMeta{Name: "lock-s0"},
		Spec:     v1.NetworkPolicySpec{ServiceSelector: v1.LabelSelector{MatchLabels: map[string]string{"app": "s0"}}},
	}}
	r := migReconciler(t, f, isolate)
	plan, err := r.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range plan.Actions {
		if a.Kind == ActionUpdateService || a.Kind == ActionRemoveNetwork {
			t.Errorf("planned %s %s during a migration", a.Kind, a.Name)
		}
	}
	if !slices.ContainsFunc(plan.Notes, func(n string) bool { return strings.Contains(n, "wait for the migration of network "+migNet) }) {
		t.Errorf("notes: %q", plan.Notes)
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
	if !errors.Is(err, ErrMigrationBlocked) || !strings.Contains(err.Error(), "created again by someone else") {
		t.Fatalf("err = %v", err)
	}
	if err := sharing(f, names); err != nil {
		t.Error(err)
	}
}

// waitCalls polls until the Fake has seen n service updates.
func waitCalls(t *testing.T, f *fake.Swarm, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.Calls()[dockerapi.OpServiceUpdate] < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d service updates, waiting for %d", f.Calls()[dockerapi.OpServiceUpdate], n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestMigrateWaitsForEachRollingUpdate holds every rolling update: the
// next service update must wait until the last one finished.
func TestMigrateWaitsForEachRollingUpdate(t *testing.T) {
	f, _ := migStack(t, 2)
	f.HoldUpdates(true)
	mg := fastMigrator(f)
	if err := mg.Store.Update(func(tx state.Tx) error { return state.ReplacePolicies(tx, []*state.Policy{shopEncryption()}) }); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := mg.Run(context.Background()); done <- err }()
	for i := 1; i <= 2*updatesPerService; i++ {
		waitCalls(t, f, i)
		time.Sleep(20 * time.Millisecond)
		if n := f.Calls()[dockerapi.OpServiceUpdate]; n != i {
			t.Fatalf("update %d written while update %d was still rolling", n, i)
		}
		f.CompleteUpdates()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestMigrateResumeWaitsForRollingUpdate kills a migration while its last
// attach still rolls: the next run must not detach anything before the
// tasks are on the temporary network.
func TestMigrateResumeWaitsForRollingUpdate(t *testing.T) {
	f, names := migStack(t, 2)
	ctx, kill := context.WithCancel(context.Background())
	mg := fastMigrator(f)
	n := 0
	mg.Progress = func(MigrationProgress) {
		switch n++; n {
		case 2:
			f.HoldUpdates(true) // the next update, s1's attach, keeps rolling
		case 3:
			kill()
		}
	}
	if err := mg.Store.Update(func(tx state.Tx) error { return state.ReplacePolicies(tx, []*state.Policy{shopEncryption()}) }); err != nil {
		t.Fatal(err)
	}
	if _, err := mg.Run(ctx); err != nil {
		t.Fatal(err)
	}
	f.ResetCalls()
	r := migReconciler(t, f, shopEncryption())
	done := make(chan error, 1)
	go func() { _, _, err := r.Reconcile(context.Background()); done <- err }()
	time.Sleep(50 * time.Millisecond)
	if n := f.Calls()[dockerapi.OpServiceUpdate]; n != 0 {
		t.Fatalf("%d service updates while s1 still rolled onto the temporary network", n)
	}
	if err := sharing(f, names); err != nil {
		t.Fatal(err)
	}
	f.HoldUpdates(false)
	f.CompleteUpdates()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestMigrateTempNameTaken(t *testing.T) {
	f, _ := migStack(t, 1)
	if _, err := f.NetworkCreate(context.Background(), tempName(migNet), network.CreateOptions{Driver: "overlay"}); err != nil {
		t.Fatal(err)
	}
	f.ResetCalls()
	r := migReconciler(t, f, shopEncryption())
	_, _, err := r.Reconcile(context.Background())
	if !errors.Is(err, ErrMigrationBlocked) || !strings.Contains(err.Error(), "swarmsec did not create") {
		t.Fatalf("err = %v", err)
	}
	if n := f.Calls()[dockerapi.OpServiceUpdate]; n != 0 {
		t.Errorf("%d service updates", n)
	}
}

func TestTempName(t *testing.T) {
	if got := tempName("shop_default"); got != "shop_default-swarmsec-tmp" {
		t.Errorf("tempName = %q", got)
	}
	long := strings.Repeat("n", 60)
	if a, b := tempName(long), tempName(long+"x"); len(a) > maxNameLen || a == b {
		t.Errorf("long names: %q, %q", a, b)
	}
}
