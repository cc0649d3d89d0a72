package apply

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// rig is a fake Swarm, the store a pass observed it into, and the engine
// the writer talks to.
type rig struct {
	t   *testing.T
	f   *fake.Swarm
	st  *state.Store
	eng *engine
	// last is the result of the last Apply, for checks after it.
	last *Result
}

// newRig starts a Swarm with networks front and back (unencrypted
// overlays) and services a, b, c: a on front, b on front and back, c on
// back.
func newRig(t *testing.T) *rig {
	t.Helper()
	f := fake.New()
	r := &rig{t: t, f: f, st: state.New()}
	r.eng = &engine{API: f, names: map[string]string{}}
	for _, n := range []string{"front", "back"} {
		if _, err := f.NetworkCreate(context.Background(), n, network.CreateOptions{Driver: "overlay", Scope: "swarm"}); err != nil {
			t.Fatal(err)
		}
	}
	for name, nets := range map[string][]string{"a": {"front"}, "b": {"front", "back"}, "c": {"back"}} {
		spec := swarm.ServiceSpec{}
		spec.Name = name
		spec.Labels = map[string]string{"app": name}
		spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "app/" + name}
		for _, n := range nets {
			spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: n, Aliases: []string{name}})
		}
		svc := f.AddService(spec)
		r.eng.names[svc.ID] = name
	}
	r.observe()
	f.ResetCalls()
	return r
}

// observe reads Swarm into the store, as a pass begins.
func (r *rig) observe() {
	r.t.Helper()
	if err := observe.Observe(context.Background(), r.f, r.st); err != nil {
		r.t.Fatal(err)
	}
	var err error
	r.st.View(func(tx state.ReadTx) {
		var nets []*state.Network
		if nets, err = state.FindNetworks(tx, state.All()); err != nil {
			return
		}
		r.eng.mu.Lock()
		defer r.eng.mu.Unlock()
		for _, n := range nets {
			r.eng.names[n.ID] = n.Name
		}
	})
	if err != nil {
		r.t.Fatal(err)
	}
}

// writer is a writer through the rig's engine.
func (r *rig) writer() *Writer {
	return &Writer{Docker: r.eng, Store: r.st, Timeout: 5 * time.Second}
}

func (r *rig) service(name string) *state.Service {
	r.t.Helper()
	var s *state.Service
	r.st.View(func(tx state.ReadTx) { s = state.GetServiceByName(tx, name) })
	if s == nil {
		r.t.Fatalf("no service %s in the store", name)
	}
	return s
}

func (r *rig) networkID(name string) string {
	r.t.Helper()
	n, err := r.f.NetworkInspect(context.Background(), name, network.InspectOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	return n.ID
}

// createNetwork plans a managed network.
func createNetwork(name string) plan.Action {
	return plan.Action{Kind: plan.ActionCreateNetwork, Name: name,
		Network: &compile.DesiredNetwork{Name: name, Purpose: v1.PurposePolicy, Owner: "p"}}
}

// removeNetwork plans a network's removal.
func (r *rig) removeNetwork(name string) plan.Action {
	return plan.Action{Kind: plan.ActionRemoveNetwork, Name: name, ID: r.networkID(name)}
}

// update plans moving a service onto exactly nets (by name: a network
// created in the same pass has no ID yet), in a wave, from the version
// the store shows.
func (r *rig) update(name string, wave int, nets ...string) plan.Action {
	s := r.service(name)
	t := plan.Target{Ports: s.Ports, Original: s.Labels[v1.LabelOriginal]}
	for _, n := range nets {
		t.Networks = append(t.Networks, plan.Attachment{Network: n, Aliases: []string{name}})
	}
	return plan.Action{Kind: plan.ActionUpdateService, Name: name, ID: s.ID, Wave: wave,
		Service: &plan.ServiceChange{Version: s.Version, Target: t, Owned: plan.OwnedOf(s.Spec)}}
}

// networksOf names the networks a service is on in Swarm.
func (r *rig) networksOf(name string) string {
	r.t.Helper()
	s, _, err := r.f.ServiceInspectWithRaw(context.Background(), name, swarm.ServiceInspectOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, a := range s.Spec.TaskTemplate.Networks {
		out = append(out, r.eng.name(a.Target))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// results indexes a result by action name.
func results(res *Result) map[string]ActionResult {
	out := map[string]ActionResult{}
	for _, ar := range res.Results {
		out[ar.Action.Name] = ar
	}
	return out
}

// engine stands between the writer and the fake: it logs every write as
// it starts and ends, on the clock (fake time inside a synctest bubble),
// and can slow an operation down or hang it until its caller gives up.
type engine struct {
	dockerapi.API
	mu    sync.Mutex
	names map[string]string // IDs to names, for the log
	// delay holds ops that take that long; hang ops that never answer
	// (they return when the caller's context ends).
	delay map[string]time.Duration
	hang  map[string]bool
	log   []event
}

// event is one write starting or ending.
type event struct {
	at   time.Time
	end  bool
	op   string
	name string
	err  error
}

func (e event) String() string {
	what := "start"
	if e.end {
		what = "end"
	}
	return fmt.Sprintf("%s %s %s", what, e.op, e.name)
}

func (e *engine) name(ref string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if n, ok := e.names[ref]; ok {
		return n
	}
	return ref
}

// call logs a write around fn, after its delay, or hangs it.
func (e *engine) call(ctx context.Context, op, ref string, fn func() error) error {
	name := e.name(ref)
	e.mu.Lock()
	e.log = append(e.log, event{at: time.Now(), op: op, name: name})
	delay, hang := e.delay[op+" "+name], e.hang[op]
	if d, ok := e.delay[op]; ok && delay == 0 {
		delay = d
	}
	e.mu.Unlock()
	var err error
	switch {
	case hang:
		<-ctx.Done()
		err = ctx.Err()
	default:
		if delay > 0 {
			time.Sleep(delay)
		}
		err = fn()
	}
	e.mu.Lock()
	e.log = append(e.log, event{at: time.Now(), end: true, op: op, name: name, err: err})
	e.mu.Unlock()
	return err
}

// writes returns the log.
func (e *engine) writes() []event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.log)
}

func (e *engine) ServiceUpdate(ctx context.Context, id string, v swarm.Version, spec swarm.ServiceSpec, o swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	var resp swarm.ServiceUpdateResponse
	err := e.call(ctx, dockerapi.OpServiceUpdate, id, func() (err error) {
		resp, err = e.API.ServiceUpdate(ctx, id, v, spec, o)
		return err
	})
	return resp, err
}

func (e *engine) NetworkCreate(ctx context.Context, name string, o network.CreateOptions) (network.CreateResponse, error) {
	var resp network.CreateResponse
	err := e.call(ctx, dockerapi.OpNetworkCreate, name, func() (err error) {
		resp, err = e.API.NetworkCreate(ctx, name, o)
		return err
	})
	if err == nil {
		e.mu.Lock()
		e.names[resp.ID] = name
		e.mu.Unlock()
	}
	return resp, err
}

func (e *engine) NetworkRemove(ctx context.Context, id string) error {
	return e.call(ctx, dockerapi.OpNetworkRemove, id, func() error { return e.API.NetworkRemove(ctx, id) })
}

func (e *engine) ConfigCreate(ctx context.Context, spec swarm.ConfigSpec) (swarm.ConfigCreateResponse, error) {
	var resp swarm.ConfigCreateResponse
	err := e.call(ctx, dockerapi.OpConfigCreate, spec.Name, func() (err error) {
		resp, err = e.API.ConfigCreate(ctx, spec)
		return err
	})
	return resp, err
}

func (e *engine) ConfigRemove(ctx context.Context, id string) error {
	return e.call(ctx, dockerapi.OpConfigRemove, id, func() error { return e.API.ConfigRemove(ctx, id) })
}

func (e *engine) ContainerList(ctx context.Context, o container.ListOptions) ([]container.Summary, error) {
	var out []container.Summary
	err := e.call(ctx, dockerapi.OpContainerList, "", func() (err error) {
		out, err = e.API.ContainerList(ctx, o)
		return err
	})
	return out, err
}
