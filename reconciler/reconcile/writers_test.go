package reconcile

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/plan"
)

// raceOnRecordRemove runs another writer's pass right before the first
// record removal once armed goes through: a write between the pass that
// saw a service restored and the removal of its record. The network
// removals of that pass wait for it, as they did in the flake.
type raceOnRecordRemove struct {
	dockerapi.API
	mu    sync.Mutex
	other func()
	ran   chan struct{} // closed once other ran
}

func (r *raceOnRecordRemove) arm(other func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.other, r.ran = other, make(chan struct{})
}

func (r *raceOnRecordRemove) ConfigRemove(ctx context.Context, id string) error {
	r.mu.Lock()
	other, ran := r.other, r.ran
	r.other = nil
	r.mu.Unlock()
	if other != nil {
		other()
		close(ran)
	}
	return r.API.ConfigRemove(ctx, id)
}

func (r *raceOnRecordRemove) NetworkRemove(ctx context.Context, id string) error {
	r.mu.Lock()
	ran := r.ran
	r.mu.Unlock()
	if ran != nil {
		select {
		case <-ran:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return r.API.NetworkRemove(ctx, id)
}

// The e2e flake of TestAgentAdmitsOnlyListedSources: its cleanup ended
// every isolation with `apply --allow-empty` while the stack's leader,
// still running after `docker stack rm`, reverted the restore from the
// record it had just read; the restore then removed that record (today
// in the pass after the restore, which saw the service restored just
// before the leader's revert: two writers, which apply refuses). The
// service is back on swarmsec's network with its label naming a record
// that is gone. apply must end in a few passes, saying why the service
// keeps that network, rather than try to remove the network every 5 s
// until --wait-timeout (it did, "still used by ag_ingress", for 10
// minutes).
func TestRestoreRacingALeaderEndsWithTheServiceKept(t *testing.T) {
	f := appServices(t, map[string][]string{"a": {"u"}, "b": {"u"}})
	p0 := ingressFrom("p0", in("a"), "b")
	leader := migReconciler(t, f, p0)
	if _, _, err := converge(t, leader); err != nil {
		t.Fatal(err)
	}
	race := &raceOnRecordRemove{API: f}
	restore := migReconciler(t, race)
	// The old tasks run on through the first pass and hold swarmsec-p0,
	// as they did there: its removal fails "in use by task". The second
	// pass sees a restored: it removes a's record, racing the leader, and
	// swarmsec-p0 again.
	f.HoldUpdates(true)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	passes, retries := 0, 0
	pl, _, err := restore.Converge(ctx, func(p *plan.Plan, _ *Result) {
		passes++
		f.HoldUpdates(false)
		f.CompleteUpdates()
		if passes == 1 {
			race.arm(func() {
				if _, _, err := leader.Reconcile(context.Background()); err != nil {
					t.Errorf("the leader's pass: %v", err)
				}
			})
		}
		if passes > 2 && slices.ContainsFunc(p.Pending(), func(a plan.Action) bool {
			return a.Kind == plan.ActionRemoveNetwork && a.Name == "swarmsec-p0"
		}) {
			retries++
		}
	})
	if retries > 0 {
		t.Errorf("%d passes after the second tried to remove swarmsec-p0, which a holds", retries)
	}
	if err != nil {
		t.Fatalf("after %d passes: %v", passes, err)
	}
	if race.ran == nil || race.other != nil {
		t.Fatal("the leader's pass never ran: no record was removed")
	}
	if passes > 4 { // the record goes a pass after the restore: one more than with it
		t.Errorf("the restore took %d passes", passes)
	}
	a := inspect(t, f, "a")
	if got := networkNames(t, f, a); !slices.Equal(got, []string{"swarmsec-p0"}) {
		t.Errorf("a is on %v, want swarmsec-p0, where the leader put it back", got)
	}
	if got := networkNames(t, f, inspect(t, f, "b")); !slices.Equal(got, []string{"u"}) {
		t.Errorf("b is on %v, want u", got)
	}
	if !slices.ContainsFunc(pl.Problems, func(p compile.Problem) bool { return p.Service == "a" && p.Reason == compile.ReasonRecordMissing }) {
		t.Errorf("problems %+v, want a's missing record", pl.Problems)
	}
	settled(t, f, restore)
}
