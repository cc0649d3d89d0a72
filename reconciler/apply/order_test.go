package apply

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

// checkOrder checks the safety order of a pass's writes in the engine's
// log: what services move onto (networks, records) is written before any
// service update starts, the updates of one wave all end before any of the
// next starts, and what services left (networks, records) is removed only
// after every update ended. Every write takes a while, so writes that may
// go together overlap and writes that must not, if they did, would show.
func checkOrder(t *testing.T, log []event, waves map[string]int) {
	t.Helper()
	rank := func(e event) int {
		switch e.op {
		case dockerapi.OpNetworkCreate, dockerapi.OpConfigCreate, dockerapi.OpContainerList:
			return 0
		case dockerapi.OpServiceUpdate:
			return 1 + waves[e.name]
		}
		return 1000
	}
	total, ended := map[int]int{}, map[int]int{}
	for _, e := range log {
		if !e.end {
			total[rank(e)]++
		}
	}
	for i, e := range log {
		r := rank(e)
		if e.end {
			ended[r]++
			continue
		}
		for earlier, n := range total {
			if earlier < r && ended[earlier] != n {
				t.Errorf("write %d, %s, started while %d of the %d writes that must go before it were not done:\n%s",
					i, e, n-ended[earlier], n, lines(log))
				return
			}
		}
	}
}

func lines(log []event) string {
	var b strings.Builder
	for i, e := range log {
		fmt.Fprintf(&b, "  %2d %s %s\n", i, e.at.Format("05.000"), e)
	}
	return b.String()
}

// TestWriteOrder writes a pass of every kind of step, each write taking a
// second of fake time, and checks the safety order in what the engine saw.
func TestWriteOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		// a leaves front (wave 0) before c, which must not meet a, joins
		// it (wave 1); b's record is written before its update and d's
		// old record removed after the updates; front-old goes last.
		a := r.update("a", 0, "back", "p")
		d := plan.Action{Kind: plan.ActionRemoveRecord, Name: "rec-d", ID: r.config("rec-d")}
		b := r.update("b", 0, "back", "front", "p")
		b.Service.CreateRecord = []byte(`{}`)
		c := r.update("c", 1, "back", "front")
		c.Service.CreateRecord = []byte(`{}`) // a later wave's record goes with the first writes
		actions := []plan.Action{createNetwork("p"), a, b, c, d}
		r.eng.delay = map[string]time.Duration{
			dockerapi.OpNetworkCreate: time.Second, dockerapi.OpConfigCreate: time.Second,
			dockerapi.OpServiceUpdate: time.Second, dockerapi.OpConfigRemove: time.Second,
			// a slower update: the next wave must wait for it.
			dockerapi.OpServiceUpdate + " a": 3 * time.Second,
		}
		res := r.writer().Apply(context.Background(), actions, nil)
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		log := r.eng.writes()
		checkOrder(t, log, map[string]int{"a": 0, "b": 0, "c": 1})
		if n := len(log); n != 2*7 {
			t.Errorf("%d events, want 14 (7 writes):\n%s", n, lines(log))
		}
		for _, ar := range res.Results {
			if want := map[string]Outcome{"p": OutcomeCreated, "rec-d": OutcomeDeleted}[ar.Action.Name]; ar.Outcome != cmp.Or(want, OutcomeConfigured) {
				t.Errorf("%s: %s (%s)", ar.Action.Name, ar.Outcome, ar.Detail)
			}
		}
		// One second for the creates, three for wave 0, one for wave 1,
		// one for the record's removal: nothing went one after the other
		// that could go together.
		if took := time.Since(log[0].at); took != 6*time.Second {
			t.Errorf("the pass took %s, want 6s:\n%s", took, lines(log))
		}
	})
}

// TestWriteOrderOfAPlannedPass applies what the planner makes of the
// shop's policies (records, managed networks, updates in waves, old
// networks removed) and checks the same order.
func TestWriteOrderOfAPlannedPass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, _ := policytest.Shop(t)
		st := state.New()
		eng := &engine{API: f, names: map[string]string{}, delay: map[string]time.Duration{
			dockerapi.OpNetworkCreate: time.Second, dockerapi.OpConfigCreate: time.Second,
			dockerapi.OpServiceUpdate: time.Second, dockerapi.OpNetworkRemove: time.Second, dockerapi.OpConfigRemove: time.Second,
		}}
		r := &rig{t: t, f: f, st: st, eng: eng}
		if err := st.Update(func(tx state.Tx) error { return state.ReplacePolicies(tx, policytest.ShopPolicies()) }); err != nil {
			t.Fatal(err)
		}
		for pass := 1; pass <= 3; pass++ {
			r.observe()
			writes, now, later := planPass(t, st)
			if len(writes)+len(now) == 0 {
				break
			}
			eng.log = nil
			waves := map[string]int{}
			for _, a := range now {
				waves[a.Name] = a.Wave
			}
			res := (&Writer{Docker: eng, Store: st}).Apply(context.Background(), append(writes, now...), later)
			if err := res.Err(); err != nil {
				t.Fatal(err)
			}
			checkOrder(t, eng.writes(), waves)
			if pass == 1 && res.Writes() == 0 {
				t.Fatal("the first pass wrote nothing")
			}
		}
		r.observe()
		if writes, now, _ := planPass(t, st); len(writes)+len(now) != 0 {
			t.Errorf("not converged: %+v %+v", writes, now)
		}
	})
}

// planPass plans a pass as the reconciler does: the policy diff, its
// updates scheduled in waves.
func planPass(t *testing.T, st *state.Store) (writes, now, later []plan.Action) {
	t.Helper()
	var err error
	st.View(func(tx state.ReadTx) {
		var p *plan.Plan
		if p, err = plan.Policies(tx, false, plan.Limits{Force: true}); err != nil {
			return
		}
		var updates []plan.Action
		for _, a := range p.Pending() {
			if a.Kind == plan.ActionUpdateService {
				updates = append(updates, a)
			} else {
				writes = append(writes, a)
			}
		}
		now, later, err = plan.Schedule(tx, p.Desired, updates)
	})
	if err != nil {
		t.Fatal(err)
	}
	return writes, now, later
}

// TestPartialFailures fails one write of a pass: what depends on it is not
// written, the rest is, and the result says which is which.
func TestPartialFailures(t *testing.T) {
	boom := errors.New("Error response from daemon: rpc error: code = Unavailable desc = boom")
	for _, tc := range []struct {
		name    string
		actions func(r *rig) []plan.Action
		fail    func(f *fake.Swarm)
		want    map[string]Outcome
		// nets are where services end.
		nets map[string]string
		// detail is what a result says besides its outcome.
		detail map[string]string
	}{
		{
			name: "a record that cannot be written stops its update",
			actions: func(r *rig) []plan.Action {
				a := r.update("a", 0, "back")
				a.Service.CreateRecord = []byte(`{}`)
				return []plan.Action{a, r.update("c", 0, "back", "front")}
			},
			fail: func(f *fake.Swarm) { f.FailNext(dockerapi.OpConfigCreate, boom) },
			want: map[string]Outcome{"a": OutcomeFailed, "c": OutcomeConfigured},
			nets: map[string]string{"a": "front", "c": "back front"},
		},
		{
			name: "a network that cannot be created",
			actions: func(r *rig) []plan.Action {
				return []plan.Action{createNetwork("p"), r.update("a", 0, "p"), r.update("b", 0, "back"), r.removeNetwork("front")}
			},
			fail: func(f *fake.Swarm) { f.FailNext(dockerapi.OpNetworkCreate, boom) },
			// a stays on front: front is not removed from under it.
			want: map[string]Outcome{"p": OutcomeFailed, "a": OutcomeFailed, "b": OutcomeConfigured, "front": OutcomePending},
			nets: map[string]string{"a": "front", "b": "back"},
		},
		{
			name: "an update that fails holds the waves after it",
			actions: func(r *rig) []plan.Action {
				// c may join front only once a left it.
				return []plan.Action{r.update("a", 0, "back"), r.update("c", 1, "back", "front")}
			},
			fail:   func(f *fake.Swarm) { f.FailNext(dockerapi.OpServiceUpdate, boom) },
			want:   map[string]Outcome{"a": OutcomeFailed, "c": OutcomePending},
			nets:   map[string]string{"a": "front", "c": "back"},
			detail: map[string]string{"c": "waits for the update of service a, which goes before it and was not written; the next pass plans again"},
		},
		{
			name: "a record not written holds the waves after its update",
			actions: func(r *rig) []plan.Action {
				a := r.update("a", 0, "back")
				a.Service.CreateRecord = []byte(`{}`)
				return []plan.Action{a, r.update("c", 1, "back", "front")}
			},
			fail: func(f *fake.Swarm) { f.FailNext(dockerapi.OpConfigCreate, boom) },
			want: map[string]Outcome{"a": OutcomeFailed, "c": OutcomePending},
			nets: map[string]string{"a": "front", "c": "back"},
		},
		{
			name: "an update left for the next pass holds the waves after it",
			actions: func(r *rig) []plan.Action {
				return []plan.Action{r.update("a", 0, "back"), r.update("c", 1, "back", "front")}
			},
			fail: func(f *fake.Swarm) {
				// Someone moves a between the plan and the write.
				var once sync.Once
				f.BeforeServiceUpdate = func(id string) {
					once.Do(func() {
						_ = f.UpdateService(id, func(s *swarm.ServiceSpec) { s.Labels["swarmsec.io/original"] = "x" })
					})
				}
			},
			want: map[string]Outcome{"a": OutcomePending, "c": OutcomePending},
			nets: map[string]string{"a": "front", "c": "back"},
		},
		{
			name: "a migration's wave with one failed update",
			actions: func(r *rig) []plan.Action {
				var steps []plan.Step
				for _, name := range []string{"a", "b", "c"} {
					u := r.update(name, 0, "back", "front")
					steps = append(steps, plan.Step{Kind: plan.ActionUpdateService, Name: name, ID: u.ID, Service: u.Service})
				}
				return []plan.Action{{Kind: plan.ActionMigrateNetwork, Name: "m", Steps: steps}}
			},
			fail:   func(f *fake.Swarm) { f.FailNext(dockerapi.OpServiceUpdate, boom) },
			want:   map[string]Outcome{"m": OutcomeFailed},
			detail: map[string]string{"m": "2 of 3 steps written (b, c)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			actions := tc.actions(r)
			tc.fail(r.f)
			w := r.writer()
			w.Concurrency = 1 // which of a wave fails first is then known
			res := w.Apply(context.Background(), actions, nil)
			got := results(res)
			for name, want := range tc.want {
				ar := got[name]
				if ar.Outcome != want {
					t.Errorf("%s: %s %v (%s), want %s", name, ar.Outcome, ar.Err, ar.Detail, want)
				}
				if want == OutcomeFailed && (ar.Err == nil || !strings.Contains(ar.Err.Error(), name) && ar.Action.Kind != plan.ActionMigrateNetwork) {
					t.Errorf("%s: error %v does not name it", name, ar.Err)
				}
			}
			for name, want := range tc.detail {
				if got := got[name].Detail; got != want {
					t.Errorf("%s: detail %q, want %q", name, got, want)
				}
			}
			for name, want := range tc.nets {
				if got := r.networksOf(name); got != want {
					t.Errorf("%s on %q, want %q", name, got, want)
				}
			}
		})
	}
}
