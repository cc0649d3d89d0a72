package reconcile

import (
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/apply"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// isolatedThenFreed isolates a (b its peer, both on u), converged, then
// removes the policy with rolling updates held: the next pass restores a.
func isolatedThenFreed(t *testing.T) (*fake.Swarm, *Reconciler, string) {
	t.Helper()
	f := appServices(t, map[string][]string{"a": {"u"}, "b": {"u"}})
	r := migReconciler(t, f, ingressFrom("p0", in("a"), "b"))
	if _, _, err := converge(t, r); err != nil {
		t.Fatal(err)
	}
	a := inspect(t, f, "a")
	if !hasRecord(f, a.ID) {
		t.Fatal("a isolated without a record")
	}
	if err := r.SetPolicies(nil); err != nil {
		t.Fatal(err)
	}
	f.HoldUpdates(true)
	return f, r, a.ID
}

func hasRecord(f *fake.Swarm, serviceID string) bool {
	return slices.ContainsFunc(f.Configs(), func(c swarm.Config) bool { return c.Spec.Name == compile.RecordName(serviceID) })
}

// recordWaits checks that a pass's removal of a's record is pending, saying
// why, and that the record is still there.
func recordWaits(t *testing.T, f *fake.Swarm, res *Result, id, why string) {
	t.Helper()
	i := slices.IndexFunc(res.Results, func(ar apply.ActionResult) bool { return ar.Action.Kind == plan.ActionRemoveRecord })
	if i < 0 {
		t.Fatalf("no record removal planned: %+v", res.Results)
	}
	if ar := res.Results[i]; ar.Outcome != apply.OutcomePending || !strings.Contains(ar.Detail, why) || !strings.Contains(strings.Join(ar.Action.Why(), " "), why) {
		t.Errorf("record removal %s (%s; why %q), want pending because %s", ar.Outcome, ar.Detail, ar.Action.Why(), why)
	}
	if !hasRecord(f, id) {
		t.Fatal("a's record is gone")
	}
	if res.RequeueAfter <= 0 {
		t.Error("a pass that leaves a record waiting does not look again")
	}
}

// The restore's rolling update fails and Swarm rolls it back (update_config
// failure_action rollback): a is back on swarmsec's network with the label
// naming its record. The record must still be there, so the next pass
// restores a again rather than keep it there for want of a record.
func TestRolledBackRestoreKeepsTheRecord(t *testing.T) {
	f, r, id := isolatedThenFreed(t)
	_, res := reconcile(t, r)
	if f.Calls()[dockerapi.OpConfigRemove] != 0 {
		t.Error("the record was removed with the update that restores a")
	}
	recordWaits(t, f, res, id, "is in this plan")
	if err := f.FailUpdate("a", "rollback"); err != nil {
		t.Fatal(err)
	}
	f.CompleteUpdates()
	a := inspect(t, f, "a")
	if got := networkNames(t, f, a); a.UpdateStatus.State != swarm.UpdateStateRollbackCompleted || !slices.Equal(got, []string{"swarmsec-p0"}) {
		t.Fatalf("a after the rollback: %s on %v", a.UpdateStatus.State, got)
	}
	if !hasRecord(f, id) {
		t.Fatal("the rolled-back restore lost a's record: a stays isolated with nothing to say what to restore")
	}

	f.HoldUpdates(false)
	pl, _, err := converge(t, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.Problems) > 0 {
		t.Errorf("problems: %+v", pl.Problems)
	}
	if got := networkNames(t, f, inspect(t, f, "a")); !slices.Equal(got, []string{"u"}) {
		t.Errorf("a is on %v, want u", got)
	}
	if hasRecord(f, id) {
		t.Error("a's record is left after its restore completed")
	}
	settled(t, f, r)
}

// The restore's rolling update completes: the record goes, in the pass
// that sees a restored and done rolling, not before. A paused update keeps
// it too (it may still be rolled back).
func TestCompletedRestoreRemovesTheRecord(t *testing.T) {
	for _, paused := range []bool{false, true} {
		t.Run(map[bool]string{false: "completed", true: "paused first"}[paused], func(t *testing.T) {
			f, r, id := isolatedThenFreed(t)
			_, res := reconcile(t, r)
			recordWaits(t, f, res, id, "is in this plan")

			// Seen restored, still rolling (or paused): it waits.
			state := "updating"
			if paused {
				if err := f.FailUpdate("a", "pause"); err != nil {
					t.Fatal(err)
				}
				state = "paused"
			}
			f.ResetCalls()
			pl, res := reconcile(t, r)
			recordWaits(t, f, res, id, "its rolling update is "+state)
			if n := f.Calls()[dockerapi.OpConfigRemove]; n != 0 {
				t.Errorf("a pass while a's update is %s removed %d records", state, n)
			}
			if n := len(slices.DeleteFunc(pl.Pending(), func(a plan.Action) bool { return a.Kind != plan.ActionRemoveRecord })); n != 1 {
				t.Errorf("plan while a's update is %s: %d record removals, want 1", state, n)
			}

			if paused {
				// The operator resumes it: Swarm rolls it again.
				if err := f.UpdateService("a", func(s *swarm.ServiceSpec) { s.TaskTemplate.ForceUpdate++ }); err != nil {
					t.Fatal(err)
				}
			}
			f.CompleteUpdates()
			if s := inspect(t, f, "a"); s.UpdateStatus == nil || s.UpdateStatus.State != swarm.UpdateStateCompleted {
				t.Fatalf("a's update: %+v", s.UpdateStatus)
			}
			f.ResetCalls()
			reconcile(t, r)
			if hasRecord(f, id) || f.Calls()[dockerapi.OpConfigRemove] != 1 {
				t.Errorf("the pass after a's restore completed removed %d records, a's left: %v", f.Calls()[dockerapi.OpConfigRemove], hasRecord(f, id))
			}
			if got := networkNames(t, f, inspect(t, f, "a")); !slices.Equal(got, []string{"u"}) {
				t.Errorf("a is on %v, want u", got)
			}
			settled(t, f, r)
		})
	}
}

// A reconciler fed by events whose stream has ended (a controller
// stopped, its reconciler converged by hand) hears of nothing: the end of
// a restore's rolling update is in the service's status, so the pass that
// leaves the record waiting asks the next to read the service again,
// rather than wait for ever on what the store last saw (found by
// TestControllerRevertsManualDrift on the real engine).
func TestWaitingRecordReadsItsServiceAgain(t *testing.T) {
	f, r, id := isolatedThenFreed(t)
	r.Changes = observe.NewChanges()
	r.Changes.Watch("start")
	reconcile(t, r) // lists, then restores a
	_, res := reconcile(t, r)
	recordWaits(t, f, res, id, "its rolling update is updating")
	f.CompleteUpdates()
	f.ResetCalls()
	reconcile(t, r)
	if hasRecord(f, id) {
		t.Errorf("the pass after a's restore completed kept its record (calls %v)", f.Calls())
	}
}
