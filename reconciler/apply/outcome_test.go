package apply

import (
	"context"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/network"

	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
)

// TestOutcomes checks what each kind of write reports, Flux's vocabulary
// plus pending and failed, and the write calls it makes.
func TestOutcomes(t *testing.T) {
	type want struct {
		outcome Outcome
		detail  string
	}
	record := func(r *rig, name string) plan.Action {
		a := r.update(name, 0, "back")
		a.Service.CreateRecord = []byte(`{"service":"` + name + `"}`)
		return a
	}
	for _, tc := range []struct {
		name string
		// setup returns the actions to write and those deferred.
		setup  func(r *rig) (actions, deferred []plan.Action)
		want   map[string]want
		writes int
		after  func(r *rig)
	}{
		{
			name:  "network created",
			setup: func(_ *rig) ([]plan.Action, []plan.Action) { return []plan.Action{createNetwork("p")}, nil },
			want:  map[string]want{"p": {outcome: OutcomeCreated}}, writes: 1,
			after: func(r *rig) {
				// The store knows it at once: a later step of the pass
				// resolves it by name.
				var (
					n   []*state.Network
					err error
				)
				r.st.View(func(tx state.ReadTx) { n, err = state.FindNetworks(tx, state.ByName("p")) })
				if err != nil || len(n) != 1 || n[0].ID != r.networkID("p") {
					r.t.Errorf("store after create: %+v (%v)", n, err)
				}
			},
		},
		{
			name:  "network name taken",
			setup: func(_ *rig) ([]plan.Action, []plan.Action) { return []plan.Action{createNetwork("front")}, nil },
			want:  map[string]want{"front": {OutcomePending, "network front exists already"}}, writes: 1,
		},
		{
			name:  "service configured",
			setup: func(r *rig) ([]plan.Action, []plan.Action) { return []plan.Action{r.update("a", 0, "back")}, nil },
			want:  map[string]want{"a": {outcome: OutcomeConfigured}}, writes: 1,
			after: func(r *rig) {
				if got := r.networksOf("a"); got != "back" {
					r.t.Errorf("a on %q, want back", got)
				}
			},
		},
		{
			name: "service gone from the store",
			setup: func(r *rig) ([]plan.Action, []plan.Action) {
				a := r.update("a", 0, "back")
				a.ID, a.Name = "nosuch", "ghost"
				return []plan.Action{a}, nil
			},
			want: map[string]want{"ghost": {OutcomeSkipped, "the service is gone"}},
		},
		{
			name: "service removed from Swarm since the read",
			setup: func(r *rig) ([]plan.Action, []plan.Action) {
				a := r.update("a", 0, "back")
				if err := r.f.RemoveService(a.ID); err != nil {
					r.t.Fatal(err)
				}
				return []plan.Action{a}, nil
			},
			want: map[string]want{"a": {OutcomeSkipped, "the service is gone"}}, writes: 1,
		},
		{
			name: "network deleted once its services left it",
			setup: func(r *rig) ([]plan.Action, []plan.Action) {
				return []plan.Action{r.update("a", 0, "back"), r.update("b", 0, "back"), r.removeNetwork("front")}, nil
			},
			want:   map[string]want{"a": {outcome: OutcomeConfigured}, "b": {outcome: OutcomeConfigured}, "front": {outcome: OutcomeDeleted}},
			writes: 3,
		},
		{
			name: "network gone already",
			setup: func(r *rig) ([]plan.Action, []plan.Action) {
				if _, err := r.f.NetworkCreate(context.Background(), "spare", network.CreateOptions{Driver: "overlay"}); err != nil {
					r.t.Fatal(err)
				}
				r.observe()
				a := r.removeNetwork("spare")
				if err := r.f.NetworkRemove(context.Background(), a.ID); err != nil {
					r.t.Fatal(err)
				}
				r.f.ResetCalls()
				return []plan.Action{a}, nil
			},
			want: map[string]want{"spare": {outcome: OutcomeUnchanged}}, writes: 1,
		},
		{
			name:  "network still used by a service this pass did not move",
			setup: func(r *rig) ([]plan.Action, []plan.Action) { return []plan.Action{r.removeNetwork("back")}, nil },
			want:  map[string]want{"back": {OutcomePending, "still used by "}},
			after: func(r *rig) {
				// Named in the store's order, both of them.
				if d := results(r.last)["back"].Detail; d != "still used by b, c" && d != "still used by c, b" {
					r.t.Errorf("detail %q names not both users", d)
				}
			},
		},
		{
			name: "record created",
			setup: func(r *rig) ([]plan.Action, []plan.Action) {
				a := record(r, "a")
				return []plan.Action{{Kind: plan.ActionCreateRecord, Name: "rec-a", ID: a.ID, Service: a.Service}}, nil
			},
			want: map[string]want{"rec-a": {outcome: OutcomeCreated}}, writes: 1,
		},
		{
			name: "record written before the update",
			setup: func(r *rig) ([]plan.Action, []plan.Action) {
				return []plan.Action{record(r, "a")}, nil
			},
			want: map[string]want{"a": {outcome: OutcomeConfigured}}, writes: 2,
		},
		{
			name: "record of a later wave's update",
			setup: func(r *rig) ([]plan.Action, []plan.Action) {
				// Records are written first, whatever wave their update
				// goes in: c's waits for nothing.
				c := record(r, "c")
				c.Wave = 1
				return []plan.Action{r.update("a", 0, "back"), c}, nil
			},
			want:   map[string]want{"a": {outcome: OutcomeConfigured}, "c": {outcome: OutcomeConfigured}},
			writes: 3,
		},
		{
			name: "record there already",
			setup: func(r *rig) ([]plan.Action, []plan.Action) {
				a := record(r, "a")
				r.config("rec-a")
				r.f.ResetCalls()
				// Written by a pass that died before it saw the answer.
				return []plan.Action{{Kind: plan.ActionCreateRecord, Name: "rec-a", ID: a.ID, Service: a.Service}}, nil
			},
			want: map[string]want{"rec-a": {outcome: OutcomeUnchanged}}, writes: 1,
		},
		{
			name: "record removed after the restore",
			setup: func(r *rig) ([]plan.Action, []plan.Action) {
				a := r.update("a", 0, "back")
				id := r.config("rec-a")
				r.f.ResetCalls()
				return []plan.Action{a, {Kind: plan.ActionRemoveRecord, Name: "rec-a", ID: id}}, nil
			},
			want: map[string]want{"a": {outcome: OutcomeConfigured}, "rec-a": {outcome: OutcomeDeleted}}, writes: 2,
			after: func(r *rig) {
				if cs := r.f.Configs(); len(cs) != 0 {
					r.t.Errorf("record left: %+v", cs)
				}
			},
		},
		{
			name: "record that waits for its service's rolling update",
			setup: func(r *rig) ([]plan.Action, []plan.Action) {
				id := r.config("rec-a")
				r.f.ResetCalls()
				return []plan.Action{{Kind: plan.ActionRemoveRecord, Name: "rec-a", ID: id, Waits: "its rolling update is updating"}}, nil
			},
			want: map[string]want{"rec-a": {outcome: OutcomePending}},
			after: func(r *rig) {
				if cs := r.f.Configs(); len(cs) != 1 {
					r.t.Errorf("records %+v, want rec-a kept", cs)
				}
			},
		},
		{
			name: "audit",
			setup: func(r *rig) ([]plan.Action, []plan.Action) {
				a := r.update("a", 0, "back")
				a.Audit = true
				n := createNetwork("p")
				n.Audit = true
				return []plan.Action{a, n}, nil
			},
			want: map[string]want{},
		},
		{
			name: "deferred",
			setup: func(r *rig) ([]plan.Action, []plan.Action) {
				return nil, []plan.Action{r.update("a", 0, "back")}
			},
			want: map[string]want{"a": {OutcomePending, "--max-service-updates reached"}},
		},
		{
			name: "nothing to write",
			setup: func(_ *rig) ([]plan.Action, []plan.Action) {
				return []plan.Action{{Kind: plan.ActionMigrateNetwork, Name: "m"}}, nil
			},
			want: map[string]want{"m": {outcome: OutcomeUnchanged}},
		},
		{
			name: "a step it cannot write",
			setup: func(_ *rig) ([]plan.Action, []plan.Action) {
				return []plan.Action{{Kind: plan.ActionMigrateNetwork, Name: "m", Steps: []plan.Step{{Kind: "frobnicate", Name: "x"}}}}, nil
			},
			want: map[string]want{"m": {outcome: OutcomeFailed}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			actions, deferred := tc.setup(r)
			res := r.writer().Apply(context.Background(), actions, deferred)
			r.last = res
			got := results(res)
			if len(got) != len(tc.want) {
				t.Errorf("%d results, want %d: %+v", len(res.Results), len(tc.want), res.Results)
			}
			for name, w := range tc.want {
				ar, ok := got[name]
				switch {
				case !ok:
					t.Errorf("no result for %s", name)
				case ar.Outcome != w.outcome || !strings.Contains(ar.Detail, w.detail):
					t.Errorf("%s: %s (%s), want %s (%s)", name, ar.Outcome, ar.Detail, w.outcome, w.detail)
				case (ar.Outcome == OutcomeFailed) != (ar.Err != nil):
					t.Errorf("%s: %s with error %v", name, ar.Outcome, ar.Err)
				}
			}
			if n := r.f.WriteCalls(); n != tc.writes {
				t.Errorf("%d write calls, want %d", n, tc.writes)
			}
			if tc.after != nil {
				tc.after(r)
			}
		})
	}
}
