package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/apply"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
)

// A wave is the service updates of one pass: their rolling updates run
// while the next pass is not due. A driver that follows waves (apply, the
// controller) asks JudgeWave when the wave is over and starts the next pass
// then, instead of after a fixed delay; each wave that ends healthy lets
// the next one write twice as many updates (plan.WaveSize), up to the
// change's end. A pass driven without judging its waves (Converge, the
// tests' loops) stays at the cap.

// ErrWaveFailed marks a wave with a rolling update that paused or rolled
// back (its update_config failure action): the growth stops there, and
// apply stops.
var ErrWaveFailed = errors.New("rolling update failed")

// DefaultWaveTimeout is how long a wave is waited for before the passes go
// on at the cap, as if it had failed: a rolling update that neither ends
// nor fails (tasks that never start, with failure action continue) must
// not hold the controller for ever.
const DefaultWaveTimeout = 10 * time.Minute

// wave is what the last pass wrote and whether the next pass follows it.
type wave struct {
	// services are the services updated whose tasks the update replaces
	// (replicated with replicas, or global): those the wave waits for.
	services []string
	// more: the pass left service updates for later, so the wave's end
	// lets the next one grow.
	more bool
	// follow: the pass asked to look again; the next pass should start
	// when the wave ends.
	follow  bool
	started time.Time
}

// WaveState is what JudgeWave found.
type WaveState struct {
	// Done is set once every rolling update of the wave finished (or the
	// wave was given up after WaveTimeout, Waiting says so).
	Done bool
	// Waiting says what the wave still waits for.
	Waiting string
	// Next is the most service updates the next pass may write (0: no
	// cap).
	Next int
}

// budget is the most policy service updates this pass may write.
func (r *Reconciler) budget() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return plan.WaveSize(r.Limits.MaxServiceUpdates, r.healthy)
}

// restartWaves makes the next wave the cap again, whatever becomes of the
// one in flight.
func (r *Reconciler) restartWaves() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.healthy = 0
	if r.wave != nil {
		w := *r.wave
		w.more = false
		r.wave = &w
	}
}

// closeWave records the wave a pass wrote: the services it updated that
// have tasks to replace, and whether updates wait for a later pass. A pass
// that left no update for later ends the change: the next change starts
// at the cap.
func (r *Reconciler) closeWave(res *Result, deferred int) {
	if r.holding {
		return // the wave in flight stays the one to judge
	}
	var ids []string
	for _, ar := range res.Results {
		if ar.Action.Kind == plan.ActionUpdateService && ar.Outcome == apply.OutcomeConfigured {
			ids = append(ids, ar.Action.ID)
		}
	}
	var w *wave
	if len(ids) > 0 {
		w = &wave{more: deferred > 0, follow: res.RequeueAfter > 0, started: time.Now()}
		r.Store.View(func(tx state.ReadTx) {
			for _, id := range ids {
				if s := state.GetService(tx, id); s == nil || hasTasks(s.Spec.Mode) {
					w.services = append(w.services, id)
				}
			}
		})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if deferred == 0 {
		r.healthy = 0
	}
	r.wave = w
}

// hasTasks reports whether an update of a service in this mode replaces
// tasks: a service with no replicas (or a job) has none to wait for.
func hasTasks(m swarm.ServiceMode) bool {
	switch {
	case m.Global != nil:
		return true
	case m.Replicated != nil:
		return m.Replicated.Replicas == nil || *m.Replicated.Replicas > 0
	default:
		return false
	}
}

// ReconcileDuringWave runs a pass while the last wave still rolls: it
// observes, plans and writes all but service updates, which wait for the
// wave's end (reported pending), and the wave in flight stays the one to
// judge. The controller runs one each resync period during a long wave, so
// its status and readiness stay current.
func (r *Reconciler) ReconcileDuringWave(ctx context.Context) (*plan.Plan, *Result, error) {
	r.holding = true
	defer func() { r.holding = false }()
	return r.Reconcile(ctx)
}

// WaveInFlight reports whether the last pass wrote a wave and asked to
// look again: the next pass should start when JudgeWave says it is done.
// A pass that left nothing to do has no wave to follow, so a drift's pass
// after it reads nothing more.
func (r *Reconciler) WaveInFlight() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wave != nil && r.wave.follow
}

// JudgeWave says whether the last pass's wave is over: one list of its
// services (their update status) and one list of their tasks, whatever
// the wave's size; nothing at all when none of them has tasks. A wave is
// over when no update is under way and each service's tasks run at its
// current networks, as many as it wants. A wave that ends while updates
// wait for later lets the next pass write twice as many; a paused or
// rolled back update (ErrWaveFailed), or a wave older than WaveTimeout,
// makes it the cap again. A failed read returns the error and keeps the
// wave.
func (r *Reconciler) JudgeWave(ctx context.Context) (WaveState, error) {
	r.mu.Lock()
	w := r.wave
	r.mu.Unlock()
	if w == nil {
		return WaveState{Done: true, Next: r.budget()}, nil
	}
	// The wave's services are listed whole: with events, that list is the
	// re-read of what the wave wrote, so the next pass need not read them
	// one by one again (a wave of 300 cost 100 ms of reads at 1,000).
	if r.Changes != nil {
		r.Changes.Claim(w.services)
	}
	why, live, err := judgeServices(ctx, r.Docker, w.services)
	if r.Changes != nil {
		r.remember(live, w.services)
	}
	switch {
	case errors.Is(err, ErrWaveFailed):
		r.endWave(false)
		return WaveState{Next: r.budget()}, err
	case err != nil:
		return WaveState{Waiting: "reading the wave: " + err.Error()}, err
	case why == "":
		r.endWave(w.more)
		return WaveState{Done: true, Next: r.budget()}, nil
	case time.Since(w.started) > r.waveTimeout():
		r.endWave(false)
		return WaveState{Done: true, Next: r.budget(), Waiting: fmt.Sprintf("%s after %s: the next passes go on at the cap", why, r.waveTimeout())}, nil
	}
	return WaveState{Waiting: why}, nil
}

// AwaitWave polls JudgeWave every poll until the wave is over, failed, or
// ctx ends.
func (r *Reconciler) AwaitWave(ctx context.Context, poll time.Duration) (WaveState, error) {
	var st WaveState
	err := wait.PollUntilContextCancel(ctx, poll, true, func(ctx context.Context) (bool, error) {
		var err error
		st, err = r.JudgeWave(ctx)
		if err != nil && !errors.Is(err, ErrWaveFailed) && ctx.Err() == nil {
			return false, nil // a read that failed: look again
		}
		return st.Done, err
	})
	if err != nil && wait.Interrupted(err) {
		return st, fmt.Errorf("waiting for rolling updates: %s: %w", st.Waiting, ctx.Err())
	}
	return st, err
}

func (r *Reconciler) endWave(grow bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wave = nil
	if grow {
		r.healthy++
	} else {
		r.healthy = 0
	}
}

// remember stores what a wave's judge read of its services (live, by ID)
// in place of the next pass's re-reads, and gives back to Changes what it
// could not read: a service gone, or every one when the read failed.
func (r *Reconciler) remember(live map[string]swarm.Service, ids []string) {
	var read []swarm.Service
	for _, id := range ids {
		s, ok := live[id]
		if !ok {
			r.Changes.Service(id) // the next pass finds out
			continue
		}
		read = append(read, s)
	}
	if serr := observe.Store(r.Store, read); serr != nil {
		for _, s := range read {
			r.Changes.Service(s.ID)
		}
	}
}

func (r *Reconciler) waveTimeout() time.Duration {
	if r.WaveTimeout > 0 {
		return r.WaveTimeout
	}
	return DefaultWaveTimeout
}

// judgeServices returns what the services' rolling updates still wait for
// ("" when none), or an error wrapping ErrWaveFailed for one that paused
// or rolled back. A service gone since has nothing to wait for.
func judgeServices(ctx context.Context, api dockerapi.API, ids []string) (string, map[string]swarm.Service, error) {
	if len(ids) == 0 {
		return "", nil, nil
	}
	byID := filters.NewArgs()
	for _, id := range ids {
		byID.Add("id", id)
	}
	svcs, err := timed(ctx, func(ctx context.Context) ([]swarm.Service, error) {
		return api.ServiceList(ctx, swarm.ServiceListOptions{Filters: byID})
	})
	if err != nil {
		return "", nil, fmt.Errorf("list the wave's services: %w", err)
	}
	live := map[string]swarm.Service{}
	for _, s := range svcs {
		if slices.Contains(ids, s.ID) { // the id filter matches prefixes
			live[s.ID] = s
		}
	}
	why, err := judgeLive(ctx, api, ids, live)
	return why, live, err
}

// judgeLive is judgeServices once the wave's services are read: live are
// those Swarm still has.
func judgeLive(ctx context.Context, api dockerapi.API, ids []string, live map[string]swarm.Service) (string, error) {
	var updating string
	for _, id := range ids {
		s, ok := live[id]
		if !ok || s.UpdateStatus == nil {
			continue
		}
		switch u := s.UpdateStatus; u.State {
		case swarm.UpdateStateUpdating:
			updating = fmt.Sprintf("service %s is updating", s.Spec.Name)
		case swarm.UpdateStatePaused, swarm.UpdateStateRollbackStarted, swarm.UpdateStateRollbackPaused, swarm.UpdateStateRollbackCompleted:
			return "", fmt.Errorf("service %s: rolling update %s: %s: %w", s.Spec.Name, u.State, u.Message, ErrWaveFailed)
		}
	}
	if updating != "" || len(live) == 0 {
		return updating, nil
	}
	running := filters.NewArgs(filters.Arg("desired-state", "running"))
	for id := range live {
		running.Add("service", id)
	}
	tasks, err := timed(ctx, func(ctx context.Context) ([]swarm.Task, error) {
		return api.TaskList(ctx, swarm.TaskListOptions{Filters: running})
	})
	switch {
	case dockerapi.IsNotFound(err):
		return "a service of the wave was removed", nil // the next list leaves it out
	case err != nil:
		return "", fmt.Errorf("list the wave's tasks: %w", err)
	}
	current := map[string]int{}
	for _, t := range tasks {
		s, ok := live[t.ServiceID]
		if !ok {
			continue
		}
		if t.Status.State != swarm.TaskStateRunning || !sameNetworks(t.Spec.Networks, s.Spec.TaskTemplate.Networks) {
			return fmt.Sprintf("service %s: task %s is %s", s.Spec.Name, t.ID, t.Status.State), nil
		}
		current[t.ServiceID]++
	}
	for _, id := range ids {
		s, ok := live[id]
		if !ok || s.Spec.Mode.Replicated == nil || s.Spec.Mode.Replicated.Replicas == nil {
			continue
		}
		if want := int(*s.Spec.Mode.Replicated.Replicas); current[id] < want {
			return fmt.Sprintf("service %s: %d of %d tasks run its new spec", s.Spec.Name, current[id], want), nil
		}
	}
	return "", nil
}

// sameNetworks reports whether a task runs at the service's networks: the
// same targets, in any order (Swarm copies a task's spec from the
// service's; right after an update, before its updater starts, the update
// status is empty and only the old tasks' networks tell). A service whose
// spec names no task networks (the deprecated Spec.Networks) is not
// compared.
func sameNetworks(task, spec []swarm.NetworkAttachmentConfig) bool {
	if len(spec) == 0 {
		return true
	}
	targets := func(as []swarm.NetworkAttachmentConfig) []string {
		out := make([]string, 0, len(as))
		for _, a := range as {
			out = append(out, a.Target)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(targets(task), targets(spec))
}

// timed runs one read within observe.CallTimeout.
func timed[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, observe.CallTimeout)
	defer cancel()
	return f(ctx)
}
