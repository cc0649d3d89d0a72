package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/swarm"
	"pgregory.net/rapid"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// lonely is a policy per service, each isolating it with no peer: every
// service gets an update of its own, none waits for another.
func lonely(names ...string) []*v1.Policy {
	var ps []*v1.Policy
	for _, n := range names {
		ps = append(ps, ingressFrom("lone-"+n, in(n)))
	}
	return ps
}

func wavesSwarm(t tb, n int) (*fake.Swarm, []string) {
	t.Helper()
	nets := map[string][]string{}
	var names []string
	for i := range n {
		name := fmt.Sprintf("s%02d", i)
		nets[name] = []string{"u"}
		names = append(names, name)
	}
	return appServices(t, nets), names
}

// updatesOf runs one pass and returns how many service updates it made.
func updatesOf(t *testing.T, f *fake.Swarm, r *Reconciler) (int, *Result) {
	t.Helper()
	f.ResetCalls()
	_, res, err := r.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return f.Calls()[dockerapi.OpServiceUpdate], res
}

// Slow start: each wave judged healthy doubles the next, from the cap, and
// the change's end brings the next change back to the cap.
func TestWavesDoubleWhileHealthy(t *testing.T) {
	f, names := wavesSwarm(t, 20)
	r := migReconciler(t, f, lonely(names...)...)
	r.Limits = plan.Limits{MaxServiceUpdates: 2, Force: true}
	var got []int
	for pass := 1; pass < 10; pass++ {
		n, res := updatesOf(t, f, r)
		got = append(got, n)
		if !r.WaveInFlight() {
			if res.RequeueAfter != 0 {
				t.Fatalf("pass %d asks to look again with no wave to follow: %+v", pass, res.Waiting)
			}
			break
		}
		f.ResetCalls()
		st, err := r.JudgeWave(context.Background())
		if err != nil || !st.Done {
			t.Fatalf("pass %d: wave %+v, %v", pass, st, err)
		}
		// One list of the wave's services and one of their tasks.
		if c := f.Calls(); c[dockerapi.OpServiceList] != 1 || c[dockerapi.OpTaskList] != 1 || len(c) != 2 {
			t.Errorf("judging wave %d called %v", pass, c)
		}
	}
	// 2, 4, 8, then the last 6, and the pass that reads it back.
	if want := []int{2, 4, 8, 6, 0}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("updates by pass %v, want %v", got, want)
	}
	if b := r.budget(); b != 2 {
		t.Errorf("after the change the next wave may write %d, want the cap 2", b)
	}
}

// A pass driven without judging its waves (Converge, the tests' loops)
// stays at the cap, and one that only reverts a drift leaves no wave to
// follow.
func TestUnjudgedWavesStayAtTheCap(t *testing.T) {
	f, names := wavesSwarm(t, 7)
	r := migReconciler(t, f, lonely(names...)...)
	r.Limits = plan.Limits{MaxServiceUpdates: 2, Force: true}
	for pass := 1; ; pass++ {
		n, res := updatesOf(t, f, r)
		if n > 2 {
			t.Fatalf("pass %d: %d updates", pass, n)
		}
		if res.RequeueAfter == 0 {
			break
		}
	}
	u := networkID(t, f, "u")
	if err := f.UpdateService(serviceIDOf(t, f, "s00"), func(s *swarm.ServiceSpec) {
		s.TaskTemplate.Networks = append(s.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: u})
	}); err != nil {
		t.Fatal(err)
	}
	if n, _ := updatesOf(t, f, r); n != 1 || r.WaveInFlight() {
		t.Errorf("the drift's pass made %d updates, wave in flight %v", n, r.WaveInFlight())
	}
}

func serviceIDOf(t *testing.T, f *fake.Swarm, service string) string {
	t.Helper()
	s, _, err := f.ServiceInspectWithRaw(context.Background(), service, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.ID
}

// A wave is over when its rolling updates are: while Swarm rolls the
// tasks the next pass waits, and it grows once they run the new spec.
func TestWaveWaitsForTheRollingUpdates(t *testing.T) {
	f, names := wavesSwarm(t, 10)
	r := migReconciler(t, f, lonely(names...)...)
	r.Limits = plan.Limits{MaxServiceUpdates: 2, Force: true}
	f.HoldUpdates(true)
	if n, _ := updatesOf(t, f, r); n != 2 || !r.WaveInFlight() {
		t.Fatalf("first pass: %d updates, wave in flight %v", n, r.WaveInFlight())
	}
	st, err := r.JudgeWave(context.Background())
	if err != nil || st.Done || !strings.Contains(st.Waiting, "is updating") {
		t.Fatalf("while tasks roll: %+v, %v", st, err)
	}
	// A pass while it rolls (the controller's, once a resync period)
	// writes no service update and keeps the wave to judge.
	f.ResetCalls()
	_, res, err := r.ReconcileDuringWave(context.Background())
	if err != nil || f.Calls()[dockerapi.OpServiceUpdate] != 0 || !res.Pending() || !r.WaveInFlight() {
		t.Fatalf("pass during the wave: %v, %d updates, pending %v, wave in flight %v", err, f.Calls()[dockerapi.OpServiceUpdate], res.Pending(), r.WaveInFlight())
	}
	f.CompleteUpdates()
	if st, err = r.JudgeWave(context.Background()); err != nil || !st.Done || st.Next != 4 {
		t.Fatalf("once they run: %+v, %v", st, err)
	}
	if n, _ := updatesOf(t, f, r); n != 4 {
		t.Errorf("the next wave: %d updates, want 4", n)
	}
	// New manifests while a wave rolls: the next change starts at the cap.
	if err := r.SetPolicies(lonely(names[:5]...)); err != nil {
		t.Fatal(err)
	}
	f.CompleteUpdates()
	if st, err = r.JudgeWave(context.Background()); err != nil || !st.Done || st.Next != 2 {
		t.Errorf("the wave in flight when the manifests changed: %+v, %v (want the cap next)", st, err)
	}
}

// pausing reports every rolling update as paused, as Swarm does when an
// update's failure action is pause and its new tasks fail.
type pausing struct {
	dockerapi.API
	mu     sync.Mutex
	paused bool
}

func (p *pausing) ServiceList(ctx context.Context, o swarm.ServiceListOptions) ([]swarm.Service, error) {
	svcs, err := p.API.ServiceList(ctx, o)
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range svcs {
		if p.paused && svcs[i].UpdateStatus != nil {
			svcs[i].UpdateStatus.State, svcs[i].UpdateStatus.Message = swarm.UpdateStatePaused, "update paused due to failure"
		}
	}
	return svcs, err
}

// A paused (or rolled back) update fails the wave and stops the growth:
// the next wave is the cap again.
func TestFailedWaveStopsTheGrowth(t *testing.T) {
	f, names := wavesSwarm(t, 20)
	api := &pausing{API: f}
	r := migReconciler(t, api, lonely(names...)...)
	r.Limits = plan.Limits{MaxServiceUpdates: 2, Force: true}
	f.HoldUpdates(true)
	ctx := context.Background()
	for want := 2; want <= 4; want *= 2 {
		if n, _ := updatesOf(t, f, r); n != want {
			t.Fatalf("wave of %d updates, want %d", n, want)
		}
		f.CompleteUpdates()
		if st, err := r.JudgeWave(ctx); err != nil || !st.Done {
			t.Fatalf("healthy wave: %+v, %v", st, err)
		}
	}
	if n, _ := updatesOf(t, f, r); n != 8 {
		t.Fatalf("third wave: %d updates, want 8", n)
	}
	api.mu.Lock()
	api.paused = true
	api.mu.Unlock()
	st, err := r.JudgeWave(ctx)
	if !errors.Is(err, ErrWaveFailed) || st.Done || !strings.Contains(err.Error(), "paused") {
		t.Fatalf("paused wave: %+v, %v", st, err)
	}
	if st.Next != 2 || r.WaveInFlight() {
		t.Errorf("after a failed wave the next may write %d (want the cap 2), wave in flight %v", st.Next, r.WaveInFlight())
	}
	if n, _ := updatesOf(t, f, r); n > 2 {
		t.Errorf("the pass after a failed wave made %d updates", n)
	}
}

// Services without tasks end their wave at once: nothing is read.
func TestWaveWithoutTasksEndsAtOnce(t *testing.T) {
	f, names := wavesSwarm(t, 4)
	for _, n := range names {
		if err := f.UpdateService(serviceIDOf(t, f, n), func(s *swarm.ServiceSpec) {
			s.Mode.Replicated = &swarm.ReplicatedService{Replicas: new(uint64)}
		}); err != nil {
			t.Fatal(err)
		}
	}
	r := migReconciler(t, f, lonely(names...)...)
	r.Limits = plan.Limits{MaxServiceUpdates: 1, Force: true}
	if n, _ := updatesOf(t, f, r); n != 1 || !r.WaveInFlight() {
		t.Fatalf("%d updates, wave in flight %v", n, r.WaveInFlight())
	}
	f.ResetCalls()
	if st, err := r.JudgeWave(context.Background()); err != nil || !st.Done || st.Next != 2 || len(f.Calls()) != 0 {
		t.Errorf("%+v, %v, calls %v", st, err, f.Calls())
	}
}

// Waves change only how many updates a pass writes, never their order:
// random policy changes over random services, driven as apply drives them
// (each wave judged, the next twice as large), are never looser than the
// policies after any single write, and end within the capped passes'
// bound with every update pass no larger than its wave.
func TestGrowingWavesNeverLooser(t *testing.T) {
	apps := []string{"a", "b", "c", "d", "e"}
	rapid.Check(t, func(rt *rapid.T) {
		nets := map[string][]string{}
		for _, a := range apps[:rapid.IntRange(3, len(apps)).Draw(rt, "services")] {
			nets[a] = rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"u", "v"}), 1, 2, rapid.ID[string]).Draw(rt, a+" networks")
		}
		var names []string
		for _, a := range apps {
			if nets[a] != nil {
				names = append(names, a)
			}
		}
		before, after := randomPolicies(rt, names, "before"), randomPolicies(rt, names, "after")
		limit := rapid.IntRange(1, 2).Draw(rt, "limit")
		f := appServices(rt, nets)
		ctx := context.Background()
		r := migReconciler(rt, f, before...)
		r.Limits.Force = true
		if _, _, err := r.Converge(ctx, nil); err != nil {
			rt.Fatalf("before: %v", err)
		}
		start := sharingOf(rt, f)
		if err := r.SetPolicies(after); err != nil {
			rt.Fatal(err)
		}
		allowed := allowedByName(rt, r, f)
		var violations []string
		checked := &afterEachUpdate{API: f, check: func() { violations = append(violations, looser(sharingOf(rt, f), start, allowed)...) }}
		counter := &updateCounter{API: checked, updated: map[string]int{}}
		r2 := migReconciler(rt, counter, after...)
		r2.Limits = plan.Limits{MaxServiceUpdates: limit, Force: true}
		bound := passBound(len(names), limit)
		for pass := 1; ; pass++ {
			total := func() int {
				counter.mu.Lock()
				defer counter.mu.Unlock()
				n := 0
				for _, c := range counter.updated {
					n += c
				}
				return n
			}
			was := total()
			budget := r2.budget()
			p, res, err := r2.Reconcile(ctx)
			if err != nil && !errors.Is(err, plan.ErrEncryptionUnavailable) {
				rt.Fatalf("pass %d: %v", pass, err)
			}
			if n := total() - was; n > budget {
				rt.Fatalf("pass %d wrote %d updates in a wave of %d", pass, n, budget)
			}
			if len(violations) > 0 {
				rt.Fatalf("looser than the policies after a write: %s", strings.Join(violations, "; "))
			}
			if len(p.Pending()) == 0 || res.RequeueAfter == 0 {
				break
			}
			if pass >= bound {
				rt.Fatalf("%d services, cap %d: not done after %d passes", len(names), limit, pass)
			}
			if r2.WaveInFlight() {
				if st, err := r2.JudgeWave(ctx); err != nil || !st.Done {
					rt.Fatalf("pass %d: wave %+v, %v", pass, st, err)
				}
			}
		}
		if v := looser(sharingOf(rt, f), start, allowed); len(v) > 0 {
			rt.Fatalf("converged looser than the policies: %v", v)
		}
	})
}

// apply checks the plan for held policies before its first pass: that
// pass uses the same plan when nothing it was made from moved, and plans
// again when Swarm changed meanwhile.
func TestFirstPassReusesPlansPlan(t *testing.T) {
	ctx := context.Background()
	for _, changed := range []bool{false, true} {
		f, names := wavesSwarm(t, 3)
		r := migReconciler(t, f, lonely(names...)...)
		checked, err := r.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if changed {
			u := networkID(t, f, "u")
			if err := f.UpdateService(serviceIDOf(t, f, "s00"), func(s *swarm.ServiceSpec) {
				s.TaskTemplate.Networks = append(s.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: u, Aliases: []string{"x"}})
				s.Labels["touched"] = "1"
			}); err != nil {
				t.Fatal(err)
			}
		}
		p, _, err := r.Reconcile(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if reused := p == checked; reused == changed {
			t.Errorf("Swarm changed %v: the first pass reused the plan %v", changed, reused)
		}
		if p2, _, _ := r.Reconcile(ctx); p2 == checked {
			t.Error("a second pass reused the plan")
		}
	}
}

// With events feeding Changes, the list that judges a wave is the re-read
// of what the wave wrote: the next pass reads none of its services again
// (one list for the wave, not an inspect each twice).
func TestJudgedWaveIsNotReadAgain(t *testing.T) {
	f, names := wavesSwarm(t, 6)
	r := migReconciler(t, f, lonely(names...)...)
	r.Limits = plan.Limits{MaxServiceUpdates: 2, Force: true}
	r.Changes = observe.NewChanges()
	r.Changes.Watch("start")
	if n, _ := updatesOf(t, f, r); n != 2 || !r.WaveInFlight() {
		t.Fatalf("first pass: %d updates, wave in flight %v", n, r.WaveInFlight())
	}
	if st, err := r.JudgeWave(context.Background()); err != nil || !st.Done {
		t.Fatalf("judge: %+v, %v", st, err)
	}
	n, res := updatesOf(t, f, r)
	if n != 4 || res.Observed.Full || res.Observed.Services != 0 {
		t.Errorf("the next wave: %d updates, read %+v (want 4 updates and no service read)", n, res.Observed)
	}
	// The store holds what the wave wrote: the next plan saw their new
	// networks (it did not plan them again).
	if _, res = updatesOf(t, f, r); res.Observed.Services != 4 {
		t.Errorf("the pass after: read %+v, want the 4 services the last wave wrote", res.Observed)
	}
}
