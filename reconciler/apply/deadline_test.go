package apply

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/plan"
)

// TestDeadlines hangs one kind of engine call, as an engine that accepts
// connections and never answers does: the step ends at the writer's
// deadline with an error that says so, what depends on it is not written,
// and the rest of the pass goes on. Inside a synctest bubble the deadline
// passes in fake time: the test takes no time and the elapsed time is
// exact.
func TestDeadlines(t *testing.T) {
	const timeout = 5 * time.Second
	for _, tc := range []struct {
		name string
		hang string
		// actions are the pass; failed the action that must fail, and
		// want the outcomes of the others.
		actions func(r *rig) []plan.Action
		failed  string
		want    map[string]Outcome
		// notCalled are operations that must not reach the engine:
		// the writes that depended on the hung one.
		notCalled []string
		after     func(r *rig)
	}{
		{
			name: "service update", hang: dockerapi.OpServiceUpdate,
			actions: func(r *rig) []plan.Action {
				return []plan.Action{r.update("a", 0, "back"), r.removeNetwork("front")}
			},
			failed: "a", want: map[string]Outcome{"front": OutcomePending},
			notCalled: []string{dockerapi.OpNetworkRemove},
		},
		{
			name: "network create", hang: dockerapi.OpNetworkCreate,
			actions: func(r *rig) []plan.Action {
				return []plan.Action{createNetwork("p"), r.update("a", 0, "p"), r.update("c", 0, "back", "front")}
			},
			// a cannot move onto a network that was not created; c,
			// which does not need it, is written.
			failed: "p", want: map[string]Outcome{"a": OutcomeFailed, "c": OutcomeConfigured},
			after: func(r *rig) {
				if got := r.networksOf("a"); got != "front" {
					r.t.Errorf("a on %q, want front", got)
				}
				if err := results(r.last)["a"].Err; err == nil || !strings.Contains(err.Error(), "networks p do not exist (their creation failed)") {
					r.t.Errorf("a: %v", err)
				}
				if n := r.f.Calls()[dockerapi.OpServiceUpdate]; n != 1 {
					r.t.Errorf("%d update calls, want c's only", n)
				}
			},
		},
		{
			name: "record create", hang: dockerapi.OpConfigCreate,
			actions: func(r *rig) []plan.Action {
				a := r.update("a", 0, "back")
				a.Service.CreateRecord = []byte(`{}`)
				return []plan.Action{a}
			},
			// The update that isolates a service never goes without its
			// record of what to restore.
			failed: "a", notCalled: []string{dockerapi.OpServiceUpdate},
		},
		{
			name: "network remove", hang: dockerapi.OpNetworkRemove,
			actions: func(r *rig) []plan.Action {
				return []plan.Action{r.update("a", 0, "back"), r.update("b", 0, "back"), r.removeNetwork("front")}
			},
			failed: "front", want: map[string]Outcome{"a": OutcomeConfigured, "b": OutcomeConfigured},
		},
		{
			name: "record remove", hang: dockerapi.OpConfigRemove,
			actions: func(r *rig) []plan.Action {
				return []plan.Action{r.update("a", 0, "back"), {Kind: plan.ActionRemoveRecord, Name: "rec-b", ID: r.config("rec-b")}}
			},
			failed: "rec-b", want: map[string]Outcome{"a": OutcomeConfigured},
			after: func(r *rig) {
				if got := r.networksOf("a"); got != "back" {
					r.t.Errorf("a on %q, want back: the update went before the record's removal", got)
				}
			},
		},
		{
			name: "the check for containers outside services", hang: dockerapi.OpContainerList,
			actions: func(r *rig) []plan.Action {
				return []plan.Action{{Kind: plan.ActionMigrateNetwork, Name: "front", Steps: []plan.Step{{
					Kind: plan.ActionCreateNetwork, Name: "front-tmp", Guard: r.networkID("front"),
					Create: ptr(plan.CreateOptions(&compile.DesiredNetwork{Name: "front-tmp", Purpose: "migration"})),
				}}}}
			},
			failed: "front", notCalled: []string{dockerapi.OpNetworkCreate},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t)
				actions := tc.actions(r)
				r.f.ResetCalls()
				r.eng.hang = map[string]bool{tc.hang: true}
				w := r.writer()
				w.Timeout = timeout
				start := time.Now()
				r.last = w.Apply(context.Background(), actions, nil)
				if took := time.Since(start); took != timeout {
					t.Errorf("the pass took %s, want the deadline of one call, %s", took, timeout)
				}
				got := results(r.last)
				ar := got[tc.failed]
				if ar.Outcome != OutcomeFailed || !errors.Is(ar.Err, context.DeadlineExceeded) {
					t.Errorf("%s: %s %v, want failed at its deadline", tc.failed, ar.Outcome, ar.Err)
				}
				for name, want := range tc.want {
					if got[name].Outcome != want {
						t.Errorf("%s: %s %v (%s), want %s", name, got[name].Outcome, got[name].Err, got[name].Detail, want)
					}
				}
				for _, op := range tc.notCalled {
					if n := r.f.Calls()[op]; n != 0 {
						t.Errorf("%d %s calls after the hung %s", n, op, tc.hang)
					}
				}
				if tc.after != nil {
					tc.after(r)
				}
			})
		})
	}

	// Writes of one wave go out together: three hung updates end at one
	// deadline, not three after each other.
	t.Run("a wave of hung updates", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(t)
			actions := []plan.Action{r.update("a", 0, "back"), r.update("b", 0, "back"), r.update("c", 0, "front")}
			r.eng.hang = map[string]bool{dockerapi.OpServiceUpdate: true}
			start := time.Now()
			res := r.writer().Apply(context.Background(), actions, nil)
			if took := time.Since(start); took != 5*time.Second {
				t.Errorf("took %s, want one deadline", took)
			}
			for _, ar := range res.Results {
				if ar.Outcome != OutcomeFailed || !errors.Is(ar.Err, context.DeadlineExceeded) {
					t.Errorf("%s: %s %v", ar.Action.Name, ar.Outcome, ar.Err)
				}
			}
		})
	})

	// The pass's own context bounds it too: a leader that loses its lease
	// cancels the pass in flight.
	t.Run("the pass is cancelled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(t)
			actions := []plan.Action{r.update("a", 0, "back"), r.update("b", 1, "back")}
			r.eng.hang = map[string]bool{dockerapi.OpServiceUpdate: true}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			start := time.Now()
			res := r.writer().Apply(ctx, actions, nil)
			if took := time.Since(start); took != time.Second {
				t.Errorf("took %s, want the pass's deadline", took)
			}
			for _, ar := range res.Results {
				if ar.Outcome == OutcomeConfigured {
					t.Errorf("%s written after the pass ended", ar.Action.Name)
				}
			}
		})
	})
}

// config creates a record config and returns its ID.
func (r *rig) config(name string) string {
	r.t.Helper()
	resp, err := r.f.ConfigCreate(context.Background(), swarm.ConfigSpec{
		Annotations: swarm.Annotations{Name: name, Labels: compile.RecordLabels()}, Data: []byte("{}")})
	if err != nil {
		r.t.Fatal(err)
	}
	return resp.ID
}

func ptr[T any](v T) *T { return &v }
