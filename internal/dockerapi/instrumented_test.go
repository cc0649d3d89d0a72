package dockerapi_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// callRecorder counts calls by operation and result, as a metrics dockerapi.Observer
// would.
type callRecorder struct {
	mu     sync.Mutex
	counts map[[2]string]int
}

func (r *callRecorder) ObserveDockerCall(op string, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counts == nil {
		r.counts = map[[2]string]int{}
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	if d < 0 {
		result = "negative duration"
	}
	r.counts[[2]string{op, result}]++
}

func (r *callRecorder) count(op, result string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[[2]string{op, result}]
}

func TestInstrumentedCountsCallsByOperationAndResult(t *testing.T) {
	ctx := context.Background()
	f := fake.New()
	svc := f.AddService(testSpec("web"))
	rec := &callRecorder{}
	api := dockerapi.NewInstrumented(f, rec)

	if _, err := api.Info(ctx); err != nil {
		t.Fatal(err)
	}
	cur, _, err := api.ServiceInspectWithRaw(ctx, svc.ID, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.ServiceUpdate(ctx, svc.ID, cur.Version, cur.Spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.ServiceUpdate(ctx, svc.ID, cur.Version, cur.Spec, swarm.ServiceUpdateOptions{}); !dockerapi.IsOutOfSequence(err) {
		t.Fatalf("stale update: %v", err)
	}
	if err := api.NetworkRemove(ctx, "nosuch"); !dockerapi.IsNotFound(err) {
		t.Fatalf("remove: %v", err)
	}
	boom := errors.New("boom")
	f.FailNext(dockerapi.OpNetworkList, boom)
	if _, err := api.NetworkList(ctx, network.ListOptions{}); !errors.Is(err, boom) {
		t.Fatalf("errors must pass through untouched: %v", err)
	}

	for _, c := range []struct {
		op, result string
		want       int
	}{
		{dockerapi.OpInfo, "ok", 1},
		{dockerapi.OpServiceInspectWithRaw, "ok", 1},
		{dockerapi.OpServiceUpdate, "ok", 1},
		{dockerapi.OpServiceUpdate, "error", 1},
		{dockerapi.OpNetworkRemove, "error", 1},
		{dockerapi.OpNetworkList, "error", 1},
		{dockerapi.OpNetworkList, "ok", 0},
	} {
		if got := rec.count(c.op, c.result); got != c.want {
			t.Errorf("%s %s: %d, want %d", c.op, c.result, got, c.want)
		}
	}
	// The wrapper makes exactly the calls it is asked for.
	if calls := f.Calls(); calls[dockerapi.OpServiceUpdate] != 2 || calls[dockerapi.OpNetworkList] != 1 || calls[dockerapi.OpInfo] != 1 {
		t.Errorf("Fake saw %v", calls)
	}
}

func TestInstrumentedEvents(t *testing.T) {
	f := fake.New()
	rec := &callRecorder{}
	api := dockerapi.NewInstrumented(f, rec)

	// Ended by its context: a normal end, not an error.
	ctx, cancel := context.WithCancel(context.Background())
	msgs, errs := api.Events(ctx, events.ListOptions{})
	f.AddService(testSpec("web"))
	if m := <-msgs; m.Action != events.ActionCreate {
		t.Fatalf("messages pass through: %+v", m)
	}
	if rec.count(dockerapi.OpEvents, "ok")+rec.count(dockerapi.OpEvents, "error") != 0 {
		t.Error("Events reported before its stream ended")
	}
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller still sees why the stream ended: %v", err)
	}
	if _, open := <-errs; open {
		t.Error("error channel left open")
	}
	if rec.count(dockerapi.OpEvents, "ok") != 1 {
		t.Errorf("cancelled stream: %v", rec.counts)
	}

	// Cut by the engine: an error.
	_, errs = api.Events(context.Background(), events.ListOptions{})
	f.BreakEvents(io.ErrUnexpectedEOF)
	if err := <-errs; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v", err)
	}
	if rec.count(dockerapi.OpEvents, "error") != 1 {
		t.Errorf("broken stream: %v", rec.counts)
	}
}

func testSpec(name string) swarm.ServiceSpec {
	return swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: name, Labels: map[string]string{"app": name}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "app"}},
	}
}
