package apply

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/plan"
)

// TestVersionConflicts: Swarm answers "update out of sequence" when the
// version a write carries is no longer the service's. The writer then
// reads the service again and writes the same change onto what it reads,
// with its version, only while the fields swarmsec owns are as planned;
// otherwise it leaves the service for the next pass. A stale spec is never
// written over a newer one.
func TestVersionConflicts(t *testing.T) {
	for _, tc := range []struct {
		name string
		// meanwhile changes service a at the start of the n-th update
		// call (from 1), as another client or Swarm itself would.
		meanwhile func(r *rig, id string, n int)
		outcome   Outcome
		detail    string
		// calls is how many update calls reach the engine.
		calls int
		// nets and image are what a ends with.
		nets, image string
	}{
		{
			name: "someone changed a field swarmsec does not own",
			meanwhile: func(r *rig, id string, n int) {
				if n == 1 {
					r.must(r.f.UpdateService(id, func(s *swarm.ServiceSpec) { s.TaskTemplate.ContainerSpec.Image = "app/a:2" }))
				}
			},
			outcome: OutcomeConfigured, calls: 2, nets: "back", image: "app/a:2",
		},
		{
			name: "Swarm moved the version on (a rolling update's states)",
			meanwhile: func(r *rig, id string, n int) {
				if n <= 3 {
					r.must(r.f.TouchService(id))
				}
			},
			outcome: OutcomeConfigured, calls: 4, nets: "back", image: "app/a:latest",
		},
		{
			name: "someone moved its networks",
			meanwhile: func(r *rig, id string, n int) {
				if n == 1 {
					back := r.networkID("back") // mutate must not call the fake
					r.must(r.f.UpdateService(id, func(s *swarm.ServiceSpec) {
						s.TaskTemplate.Networks = append(s.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: back})
					}))
				}
			},
			outcome: OutcomePending, detail: "service a changed meanwhile; the next pass plans again", calls: 1, nets: "back front", image: "app/a:latest",
		},
		{
			name: "someone changed its label naming the record",
			meanwhile: func(r *rig, id string, n int) {
				if n == 1 {
					r.must(r.f.UpdateService(id, func(s *swarm.ServiceSpec) { s.Labels["swarmsec.io/original"] = "forged" }))
				}
			},
			outcome: OutcomePending, detail: "changed meanwhile", calls: 1, nets: "front", image: "app/a:latest",
		},
		{
			name:      "the version never stops moving",
			meanwhile: func(r *rig, id string, _ int) { r.must(r.f.TouchService(id)) },
			outcome:   OutcomePending, detail: "service a kept changing version; the next pass goes on",
			calls: conflictBackoff.Steps, nets: "front", image: "app/a:latest",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			a := r.update("a", 0, "back")
			var n atomic.Int64
			r.f.BeforeServiceUpdate = func(id string) { tc.meanwhile(r, id, int(n.Add(1))) }
			res := r.writer().Apply(context.Background(), []plan.Action{a}, nil)
			ar := results(res)["a"]
			if ar.Outcome != tc.outcome || ar.Err != nil || !strings.Contains(ar.Detail, tc.detail) {
				t.Errorf("result %s %v (%s), want %s (%s)", ar.Outcome, ar.Err, ar.Detail, tc.outcome, tc.detail)
			}
			if got := r.f.Calls()[dockerapi.OpServiceUpdate]; got != tc.calls {
				t.Errorf("%d update calls, want %d", got, tc.calls)
			}
			s := inspect(r, "a")
			if got := r.networksOf("a"); got != tc.nets {
				t.Errorf("a on %q, want %q", got, tc.nets)
			}
			if got := s.Spec.TaskTemplate.ContainerSpec.Image; got != tc.image {
				t.Errorf("a runs %s, want %s: a stale spec was written", got, tc.image)
			}
			// Every write but the last one carried a stale version and
			// was refused; none went through with one.
			for i, ev := range r.eng.writes() {
				if ev.end && ev.err != nil && !dockerapi.IsOutOfSequence(ev.err) {
					t.Errorf("write %d: %v", i, ev.err)
				}
			}
		})
	}

	t.Run("the read after the conflict fails", func(t *testing.T) {
		r := newRig(t)
		a := r.update("a", 0, "back")
		r.must(r.f.TouchService(a.ID))
		r.f.FailNext(dockerapi.OpServiceInspectWithRaw, errors.New("connection reset"))
		ar := results(r.writer().Apply(context.Background(), []plan.Action{a}, nil))["a"]
		if ar.Outcome != OutcomeFailed || ar.Err == nil || !strings.Contains(ar.Err.Error(), "update service a: connection reset") {
			t.Errorf("result %s %v", ar.Outcome, ar.Err)
		}
		if got := r.networksOf("a"); got != "front" {
			t.Errorf("a on %q, want front", got)
		}
	})
}

func (r *rig) must(err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatal(err)
	}
}

func inspect(r *rig, name string) swarm.Service {
	r.t.Helper()
	s, _, err := r.f.ServiceInspectWithRaw(context.Background(), name, swarm.ServiceInspectOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}
