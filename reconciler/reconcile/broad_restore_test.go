package reconcile

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// The stack-detach guard against ending isolation (issue #25: the restore
// of the e2e test TestBroadSelectorHeldByApplyAndRun was held), in passes
// on the fake with the default limits. The guard counted only what each
// service leaves, so a restore was held as soon as one service of the
// stack sat on a network the pass could not tell as swarmsec's, although
// it puts every service back on its recorded network.

const broadNet = "broad_default"

// broadStack deploys n services of stack broad with no task (replicas 0),
// each on broad_default, with its short name as alias when aliased is set.
func broadStack(t *testing.T, n int, aliased bool) (*fake.Swarm, []string) {
	t.Helper()
	f := fake.New()
	resp, err := f.NetworkCreate(context.Background(), broadNet, network.CreateOptions{
		Driver: "overlay", Scope: "swarm", Labels: map[string]string{v1.LabelStackNamespace: "broad"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range n {
		short := fmt.Sprintf("s%02d", i)
		spec := swarm.ServiceSpec{}
		spec.Name = "broad_" + short
		spec.Labels = map[string]string{v1.LabelStackNamespace: "broad"}
		spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "app"}
		spec.Mode.Replicated = &swarm.ReplicatedService{Replicas: new(uint64)}
		att := swarm.NetworkAttachmentConfig{Target: resp.ID}
		if aliased {
			att.Aliases = []string{short}
		}
		spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{att}
		ids = append(ids, f.AddService(spec).ID)
	}
	return f, ids
}

// broadAll is the e2e test's policy: every service of stack broad, no
// peer, approved.
func broadAll() *v1.Policy {
	p := netpol("broad-all", v1.NetworkPolicySpec{ServiceSelector: sel(v1.LabelStackNamespace, "broad"), Ingress: []v1.IngressRule{}})
	p.Network.Metadata.Annotations = map[string]string{v1.AnnotationApproveBroadSelector: "true"}
	return p
}

// convergeUnheld runs passes with the default limits as apply does, failing
// on any pass the safety limits hold, and returns how many passes wrote.
func convergeUnheld(t *testing.T, r *Reconciler) int {
	t.Helper()
	r.Limits = plan.DefaultLimits
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waves := 0
	_, _, err := r.Converge(ctx, func(p *plan.Plan, res *Result) {
		if len(p.Holds) > 0 {
			t.Errorf("pass %d held: %q", waves+1, p.Holds)
		}
		if res.Writes() > 0 {
			waves++
		}
	})
	if err != nil {
		t.Fatalf("after %d passes that wrote: %v", waves, err)
	}
	return waves
}

// checkOnBroadDefault checks that every service is on broad_default only,
// with the aliases it had, and carries no swarmsec label.
func checkOnBroadDefault(t *testing.T, f *fake.Swarm, ids []string, aliased bool) {
	t.Helper()
	for i, id := range ids {
		s := inspect(t, f, id)
		if got := networkNames(t, f, s); !slices.Equal(got, []string{broadNet}) {
			t.Errorf("%s is on %v, want %s only", s.Spec.Name, got, broadNet)
			continue
		}
		var want []string
		if aliased {
			want = []string{fmt.Sprintf("s%02d", i)}
		}
		if got := s.Spec.TaskTemplate.Networks[0].Aliases; !slices.Equal(got, want) {
			t.Errorf("%s has aliases %v on %s, want %v", s.Spec.Name, got, broadNet, want)
		}
		if _, ok := s.Spec.Labels[v1.LabelOriginal]; ok {
			t.Errorf("%s keeps %s", s.Spec.Name, v1.LabelOriginal)
		}
	}
}

// TestStackWideIsolationEndsWithoutForce: 30 services of a stack isolated
// by an approved stack-wide policy, then the policy removed (apply of an
// empty directory with --allow-empty), both under the default limits: the
// 20-update cap spreads each over passes, none is held, and every service
// ends on its stack network alone.
func TestStackWideIsolationEndsWithoutForce(t *testing.T) {
	f, ids := broadStack(t, 30, false)
	r := migReconciler(t, f, broadAll())
	if waves := convergeUnheld(t, r); waves < 2 {
		t.Errorf("isolating 30 services took %d passes of at most 20 updates", waves)
	}
	for _, id := range ids {
		if got := networkNames(t, f, inspect(t, f, id)); slices.Contains(got, broadNet) {
			t.Fatalf("isolated service on %v", got)
		}
	}

	// A new process, as apply is: its first plan is what refuses or not.
	r = migReconciler(t, f)
	r.Limits = plan.DefaultLimits
	if p, err := r.Plan(context.Background()); err != nil || len(p.Holds) > 0 {
		t.Fatalf("the restore's plan: %v, held %q", err, p.Holds)
	}
	if waves := convergeUnheld(t, r); waves < 2 {
		t.Errorf("restoring 30 services took %d passes of at most 20 updates", waves)
	}
	checkOnBroadDefault(t, f, ids, false)
}

// unallocated lists the named networks as the engine lists a Swarm
// network its allocator has not written yet (right after its creation, on
// a loaded manager): no driver, no options, so not encrypted. swarmsec
// cannot tell such a network from a look-alike.
type unallocated struct {
	dockerapi.API
	names []string
}

func (u unallocated) NetworkList(ctx context.Context, o network.ListOptions) ([]network.Summary, error) {
	all, err := u.API.NetworkList(ctx, o)
	for i := range all {
		if slices.Contains(u.names, all[i].Name) {
			all[i].Driver, all[i].Options, all[i].IPAM = "", nil, network.IPAM{}
		}
	}
	return all, err
}

// TestRestoreOffANetworkNotYetAllocated: the stack-wide isolation ends
// while one service sits on a network the controller's last pass created
// and Swarm has not allocated yet. The pass cannot tell that network as
// swarmsec's, so it counts as the service's own, which the restore leaves
// for the recorded broad_default. The guard skipped the 29 services on
// swarmsec's networks only, counted only what the 30th leaves, and held the
// whole restore; joining broad_default is no loss.
func TestRestoreOffANetworkNotYetAllocated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, ids := broadStack(t, 30, false)
		convergeUnheld(t, migReconciler(t, f, broadAll()))
		last := networkNames(t, f, inspect(t, f, ids[29]))
		if len(last) != 1 {
			t.Fatalf("broad_s29 isolated on %v, want one network", last)
		}

		r := migReconciler(t, unallocated{API: f, names: last})
		r.Limits = plan.DefaultLimits
		p, err := r.Plan(context.Background())
		if err != nil || len(p.Holds) > 0 {
			t.Fatalf("the restore's plan: %v, held %q", err, p.Holds)
		}
		convergeUnheld(t, r)
		checkOnBroadDefault(t, f, ids, false)
	})
}

// TestRestoreRejoiningItsNetworkIsNotHeld: isolated services someone put
// back on their stack network by hand (without their aliases) before the
// policy went: the restore joins it again with the recorded aliases. A
// network left and joined again in one update is kept, not lost.
func TestRestoreRejoiningItsNetworkIsNotHeld(t *testing.T) {
	f, ids := broadStack(t, 3, true)
	convergeUnheld(t, migReconciler(t, f, broadAll()))
	netID := networkID(t, f, broadNet)
	for _, id := range ids {
		if err := f.UpdateService(id, func(spec *swarm.ServiceSpec) {
			spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: netID})
		}); err != nil {
			t.Fatal(err)
		}
	}

	r := migReconciler(t, f)
	r.Limits = plan.DefaultLimits
	p, err := r.Plan(context.Background())
	if err != nil || len(p.Holds) > 0 {
		t.Fatalf("the restore's plan: %v, held %q", err, p.Holds)
	}
	convergeUnheld(t, r)
	checkOnBroadDefault(t, f, ids, true)
}

// TestStackDetachedFromEverythingIsHeld: what the guard is for. Every
// service of stack broad carries swarmsec's label and a record naming only
// ingress (forged: swarmsec never restores onto it), and no policy selects
// them: the plan would take each off broad_default and give it nothing.
// That is held, nothing is written, until --force.
func TestStackDetachedFromEverythingIsHeld(t *testing.T) {
	f, ids := broadStack(t, 3, false)
	ctx := context.Background()
	for _, id := range ids {
		rec := compile.Original{Service: id, Networks: []compile.OriginalAttachment{{Name: "ingress"}}}
		if _, err := f.ConfigCreate(ctx, swarm.ConfigSpec{
			Annotations: swarm.Annotations{Name: compile.RecordName(id), Labels: compile.RecordLabels()},
			Data:        rec.Encode(),
		}); err != nil {
			t.Fatal(err)
		}
		if err := f.UpdateService(id, func(spec *swarm.ServiceSpec) { spec.Labels[v1.LabelOriginal] = compile.RecordName(id) }); err != nil {
			t.Fatal(err)
		}
	}
	before := sharingOf(t, f)

	r := migReconciler(t, f)
	r.Limits = plan.DefaultLimits
	f.ResetCalls()
	p, _, err := r.Reconcile(ctx)
	if !errors.Is(err, plan.ErrHeld) || !IsTerminal(err) {
		t.Fatalf("a pass detaching stack broad from everything: %v, want held", err)
	}
	if len(p.Holds) != 1 || !strings.Contains(p.Holds[0], "stack broad") {
		t.Errorf("holds %q", p.Holds)
	}
	if n := f.WriteCalls(); n != 0 {
		t.Errorf("a held pass made %d writes", n)
	}
	for name, nets := range sharingOf(t, f) {
		if !maps.Equal(nets, before[name]) {
			t.Errorf("%s moved from %v to %v", name, before[name], nets)
		}
	}

	// One service of the stack keeping its network is no longer a stack
	// losing everything.
	if err := f.UpdateService(ids[0], func(spec *swarm.ServiceSpec) { delete(spec.Labels, v1.LabelOriginal) }); err != nil {
		t.Fatal(err)
	}
	if p, err := r.Plan(ctx); err != nil || len(p.Holds) > 0 {
		t.Errorf("with one service keeping %s: %v, held %q", broadNet, err, p.Holds)
	}
}
