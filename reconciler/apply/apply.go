// Package apply is the writer: it executes the steps of a plan against the
// narrow Docker API, each write carrying the version it was planned from
// and a deadline, and reports what became of each action. It never plans:
// a write that meets a changed object is left for the next pass to plan
// again, and nothing here waits for Swarm to carry a write out.
package apply

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
)

// DefaultTimeout bounds one Docker call of the writer.
const DefaultTimeout = 30 * time.Second

// DefaultConcurrency is how many writes of a group go out at once.
const DefaultConcurrency = 8

// Writer executes plans.
type Writer struct {
	Docker dockerapi.API
	Store  *state.Store
	// Timeout bounds each Docker call (DefaultTimeout when 0).
	Timeout time.Duration
	// Concurrency bounds the writes in flight (DefaultConcurrency when 0).
	Concurrency int
}

// Apply writes actions in a safe order: networks are created first,
// services updated next (one update each, carrying the version read), and
// networks no longer needed removed last. deferred actions are reported
// pending, and so are the updates of a wave that comes after an update not
// written (see unwritten), and actions that wait (plan.Action.Waits).
// Audit actions are never written.
func (w *Writer) Apply(ctx context.Context, actions, deferred []plan.Action) *Result {
	res := &Result{}
	run := &pass{w: w, created: map[string]string{}, updated: map[string]bool{}, outcomes: make([]stepOutcome, len(actions))}
	for phase := range 3 {
		for _, group := range run.groups(actions, phase) {
			if first := group[0].a; phase == 1 && first.Kind == plan.ActionUpdateService {
				if name := run.unwritten(actions, first.Wave); name != "" {
					run.hold(group, name)
					continue
				}
			}
			run.parallel(ctx, group)
		}
	}
	for i, a := range actions {
		switch {
		case a.Audit:
			continue
		case a.Waits != "":
			res.Results = append(res.Results, ActionResult{Action: a, Outcome: OutcomePending, Detail: a.Waits})
			continue
		}
		res.Results = append(res.Results, run.outcomes[i].result(a))
	}
	for _, a := range deferred {
		res.Results = append(res.Results, ActionResult{Action: a, Outcome: OutcomePending, Detail: "--max-service-updates reached; the next pass goes on"})
	}
	return res
}

// job is one step of one action.
type job struct {
	i    int
	a    plan.Action
	step plan.Step
}

// groups splits the steps of a phase into groups whose writes may go out
// together: networks and records to create or remove, a wave of policy
// updates (see plan.Schedule), a migration's wave. Groups go one after the
// other, in order.
func (p *pass) groups(actions []plan.Action, phase int) [][]job {
	var out [][]job
	key := ""
	for i, a := range actions {
		if a.Audit || a.Waits != "" || p.outcomes[i].failed() {
			continue
		}
		for _, st := range a.StepList() {
			if phaseOf(st.Kind) != phase {
				continue
			}
			k := "writes"
			switch {
			case phase == 1 && a.Kind == plan.ActionMigrateNetwork:
				k = "migrate " + a.Name
			case phase == 1:
				k = fmt.Sprint("wave ", a.Wave)
			}
			if k != key || len(out) == 0 {
				out = append(out, nil)
				key = k
			}
			out[len(out)-1] = append(out[len(out)-1], job{i, a, st})
		}
	}
	return out
}

// parallel writes a group's steps, at most Concurrency at a time, and
// returns when all are done. The steps of one action stay in order.
func (p *pass) parallel(ctx context.Context, jobs []job) {
	limit := p.w.Concurrency
	if limit <= 0 {
		limit = DefaultConcurrency
	}
	var (
		wg  sync.WaitGroup
		sem = make(chan struct{}, limit)
	)
	for _, j := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r := p.step(ctx, j.a, j.step)
			p.mu.Lock()
			p.outcomes[j.i].add(r)
			if r.wrote() {
				p.outcomes[j.i].written = append(p.outcomes[j.i].written, j.step.Name)
			}
			p.mu.Unlock()
		})
	}
	wg.Wait()
}

// unwritten names an update of a wave before wave that was not written
// (failed, changed meanwhile, its record not written). The waves after it
// were scheduled as if it had been: a service joins a network only once
// those it may not meet there have left (plan.Schedule). A service that is
// gone left every network.
func (p *pass) unwritten(actions []plan.Action, wave int) string {
	for i, a := range actions {
		if a.Kind != plan.ActionUpdateService || a.Audit || a.Wave >= wave {
			continue
		}
		if !p.isUpdated(a.ID) && !slices.Contains(p.outcomes[i].outcomes, OutcomeSkipped) {
			return a.Name
		}
	}
	return ""
}

// hold reports a group's updates pending, unwritten: the next pass plans
// them again from what is there.
func (p *pass) hold(group []job, after string) {
	for _, j := range group {
		p.outcomes[j.i].add(stepResult{outcome: OutcomePending,
			detail: fmt.Sprintf("waits for the update of service %s, which goes before it and was not written; the next pass plans again", after)})
	}
}

// phaseOf orders the writes of a pass: what services move onto is created
// first, services are updated next, and what they left is removed last.
func phaseOf(k plan.ActionKind) int {
	switch k {
	case plan.ActionCreateNetwork, plan.ActionCreateRecord:
		return 0
	case plan.ActionUpdateService:
		return 1
	}
	return 2
}

// pass is the working set of one Apply.
type pass struct {
	w        *Writer
	mu       sync.Mutex        // guards what follows, shared by the writes in flight
	created  map[string]string // network name -> ID
	updated  map[string]bool   // service IDs
	outcomes []stepOutcome
}

// stepOutcome folds the steps of one action into its result.
type stepOutcome struct {
	outcomes []Outcome
	errs     []error
	details  []string
	warnings []string
	took     time.Duration
	// written names the steps that wrote: a result that failed or waits
	// says which of its steps are done.
	written []string
}

type stepResult struct {
	outcome  Outcome
	err      error
	detail   string
	warnings []string
	took     time.Duration
}

func (o *stepOutcome) add(r stepResult) {
	o.outcomes = append(o.outcomes, r.outcome)
	if r.err != nil {
		o.errs = append(o.errs, r.err)
	}
	if r.detail != "" {
		o.details = append(o.details, r.detail)
	}
	o.warnings = append(o.warnings, r.warnings...)
	o.took += r.took
}

func (o *stepOutcome) failed() bool { return len(o.errs) > 0 }

func (r stepResult) wrote() bool {
	return r.outcome == OutcomeCreated || r.outcome == OutcomeConfigured || r.outcome == OutcomeDeleted
}

func (o *stepOutcome) result(a plan.Action) ActionResult {
	details := o.details
	if steps := len(a.StepList()); steps > 1 && len(o.written) > 0 && len(o.written) < steps {
		written := slices.Sorted(slices.Values(o.written))
		details = append([]string{fmt.Sprintf("%d of %d steps written (%s)", len(written), steps, strings.Join(written, ", "))}, details...)
	}
	ar := ActionResult{Action: a, Err: errors.Join(o.errs...), Duration: o.took, Detail: strings.Join(details, "; "), Warnings: o.warnings}
	switch {
	case len(o.outcomes) == 0:
		ar.Outcome = OutcomeUnchanged
	case len(o.errs) > 0:
		ar.Outcome = OutcomeFailed
	case slices.Contains(o.outcomes, OutcomePending):
		ar.Outcome = OutcomePending
	case len(o.outcomes) == 1:
		ar.Outcome = o.outcomes[0]
	case slices.ContainsFunc(o.outcomes, func(x Outcome) bool {
		return x == OutcomeCreated || x == OutcomeConfigured || x == OutcomeDeleted
	}):
		ar.Outcome = OutcomeConfigured
	default:
		ar.Outcome = OutcomeUnchanged
	}
	return ar
}

func (p *pass) step(ctx context.Context, a plan.Action, st plan.Step) stepResult {
	start := time.Now()
	var r stepResult
	switch st.Kind {
	case plan.ActionCreateNetwork:
		r = p.createNetwork(ctx, st)
	case plan.ActionUpdateService:
		r = p.updateService(ctx, st)
	case plan.ActionRemoveNetwork:
		r = p.removeNetwork(ctx, a, st)
	case plan.ActionCreateRecord:
		r = p.createRecord(ctx, st)
	case plan.ActionRemoveRecord:
		r = p.removeRecord(ctx, st)
	default:
		r = stepResult{outcome: OutcomeFailed, err: fmt.Errorf("%s: step kind %q cannot be written", st.Name, st.Kind)}
	}
	r.took = time.Since(start)
	return r
}

func (p *pass) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	d := p.w.Timeout
	if d <= 0 {
		d = DefaultTimeout
	}
	return context.WithTimeout(ctx, d)
}

func (p *pass) createNetwork(ctx context.Context, st plan.Step) stepResult {
	if st.Guard != "" {
		if names, err := p.strangers(ctx, st.Guard); err != nil {
			return stepResult{outcome: OutcomeFailed, err: err}
		} else if len(names) > 0 {
			return stepResult{outcome: OutcomeFailed, err: strangersError(p.networkName(st.Guard), names)}
		}
	}
	cctx, cancel := p.timeout(ctx)
	defer cancel()
	opts := *st.Create
	resp, err := p.w.Docker.NetworkCreate(cctx, st.Name, opts)
	switch {
	case dockerapi.IsConflict(err):
		// Created by a pass that died before it saw the answer, or by
		// someone else: the next observation tells which.
		return stepResult{outcome: OutcomePending, detail: fmt.Sprintf("network %s exists already; the next pass looks again", st.Name)}
	case err != nil:
		return stepResult{outcome: OutcomeFailed, err: fmt.Errorf("create network %s: %w", st.Name, err)}
	}
	p.mu.Lock()
	p.created[st.Name] = resp.ID
	p.mu.Unlock()
	n := &state.Network{
		ID: resp.ID, Name: st.Name, Driver: opts.Driver, Scope: opts.Scope, Labels: opts.Labels,
		SelectorLabels: maps.Clone(opts.Labels), Options: opts.Options, Internal: opts.Internal, Attachable: opts.Attachable,
		Created: time.Now(),
	}
	if err := p.w.Store.Update(func(tx state.Tx) error { return state.UpsertNetwork(tx, n) }); err != nil {
		return stepResult{outcome: OutcomeFailed, err: fmt.Errorf("create network %s: %w", st.Name, err)}
	}
	return stepResult{outcome: OutcomeCreated}
}

// errChanged stops the retry of an update whose service changed meanwhile
// in a field swarmsec owns.
var errChanged = errors.New("changed meanwhile")

// updateService writes the change onto the service as read. When Swarm
// moved the version on ("update out of sequence": a rolling update,
// another client), it reads the service again and writes the same target
// as long as the fields swarmsec owns are still as planned; otherwise the
// next pass plans again from what is there now.
func (p *pass) updateService(ctx context.Context, st plan.Step) stepResult {
	ch := st.Service
	var svc *state.Service
	p.w.Store.View(func(tx state.ReadTx) { svc = state.GetService(tx, st.ID) })
	if svc == nil {
		return stepResult{outcome: OutcomeSkipped, detail: "the service is gone"}
	}
	spec, version := svc.CloneSpec(), ch.Version
	var warnings []string
	err := onOutOfSequence(ctx, func() error {
		want, err := plan.ApplyTarget(spec, ch.Target, p.networkID)
		if err != nil {
			return err
		}
		cctx, cancel := p.timeout(ctx)
		defer cancel()
		resp, err := p.w.Docker.ServiceUpdate(cctx, st.ID, swarm.Version{Index: version}, want, swarm.ServiceUpdateOptions{})
		if err == nil {
			warnings = resp.Warnings
			return nil
		}
		if !dockerapi.IsOutOfSequence(err) {
			return err
		}
		fresh, _, ierr := p.w.Docker.ServiceInspectWithRaw(cctx, st.ID, swarm.ServiceInspectOptions{})
		switch {
		case ierr != nil:
			return ierr
		case !plan.OwnedOf(fresh.Spec).Equal(ch.Owned):
			return errChanged
		}
		spec, version = fresh.Spec, fresh.Version.Index
		return err
	})
	switch {
	case err == nil:
		p.mu.Lock()
		p.updated[st.ID] = true
		p.mu.Unlock()
		return stepResult{outcome: OutcomeConfigured, warnings: warnings}
	case errors.Is(err, errChanged):
		return stepResult{outcome: OutcomePending, detail: fmt.Sprintf("service %s changed meanwhile; the next pass plans again", st.Name)}
	case dockerapi.IsOutOfSequence(err):
		// Swarm kept moving the version on (a rolling update's states):
		// not a failure, the next pass goes on.
		return stepResult{outcome: OutcomePending, detail: fmt.Sprintf("service %s kept changing version; the next pass goes on", st.Name)}
	case dockerapi.IsNotFound(err):
		return stepResult{outcome: OutcomeSkipped, detail: "the service is gone"}
	}
	return stepResult{outcome: OutcomeFailed, err: fmt.Errorf("update service %s: %w", st.Name, err)}
}

// networkID resolves a network name to its ID: one this pass created, or
// one in the store.
func (p *pass) networkID(name string) string {
	p.mu.Lock()
	id := p.created[name]
	p.mu.Unlock()
	if id != "" {
		return id
	}
	p.w.Store.View(func(tx state.ReadTx) {
		if n := state.GetNetworkByName(tx, name); n != nil {
			id = n.ID
		}
	})
	return id
}

// createRecord writes the config that records what a service had before
// its isolation, before the update that isolates it: a record that cannot
// be written stops the update.
func (p *pass) createRecord(ctx context.Context, st plan.Step) stepResult {
	cctx, cancel := p.timeout(ctx)
	defer cancel()
	_, err := p.w.Docker.ConfigCreate(cctx, swarm.ConfigSpec{
		Annotations: swarm.Annotations{Name: st.Name, Labels: compile.RecordLabels()},
		Data:        st.Service.CreateRecord,
	})
	switch {
	case err == nil:
		return stepResult{outcome: OutcomeCreated}
	case dockerapi.IsConflict(err):
		// Written by a pass that died before it saw the answer: the next
		// observation validates it.
		return stepResult{outcome: OutcomeUnchanged}
	}
	return stepResult{outcome: OutcomeFailed, err: fmt.Errorf("create record %s: %w", st.Name, err)}
}

// removeRecord removes a record: the plan removes one only once its
// service is seen restored and done rolling (plan.Action.Waits).
func (p *pass) removeRecord(ctx context.Context, st plan.Step) stepResult {
	cctx, cancel := p.timeout(ctx)
	defer cancel()
	err := p.w.Docker.ConfigRemove(cctx, st.ID)
	switch {
	case err == nil:
		return stepResult{outcome: OutcomeDeleted}
	case dockerapi.IsNotFound(err):
		return stepResult{outcome: OutcomeUnchanged}
	}
	return stepResult{outcome: OutcomeFailed, err: fmt.Errorf("remove record %s: %w", st.Name, err)}
}

// networkName names a network by ID, for errors.
func (p *pass) networkName(id string) string {
	name := id
	p.w.Store.View(func(tx state.ReadTx) {
		if n := state.GetNetwork(tx, id); n != nil {
			name = n.Name
		}
	})
	return name
}

// removeNetwork removes a network once nothing holds it. Tasks being
// replaced let go soon: a later pass tries again. Containers attached
// outside any service never do by themselves: those block, named, and the
// network stays.
func (p *pass) removeNetwork(ctx context.Context, a plan.Action, st plan.Step) stepResult {
	if a.Kind == plan.ActionRemoveNetwork {
		users, err := p.stillUsedBy(st.ID)
		if err != nil {
			return stepResult{outcome: OutcomeFailed, err: fmt.Errorf("remove network %s: %w", st.Name, err)}
		}
		if len(users) > 0 {
			// A service not updated in this pass still uses it.
			return stepResult{outcome: OutcomePending, detail: fmt.Sprintf("still used by %s", strings.Join(users, ", "))}
		}
	}
	cctx, cancel := p.timeout(ctx)
	defer cancel()
	err := p.w.Docker.NetworkRemove(cctx, st.ID)
	switch {
	case err == nil || dockerapi.IsNetworkGone(err):
		if err := p.w.Store.Update(func(tx state.Tx) error { return state.DeleteNetwork(tx, st.ID) }); err != nil {
			return stepResult{outcome: OutcomeFailed, err: fmt.Errorf("remove network %s: %w", st.Name, err)}
		}
		if err != nil {
			return stepResult{outcome: OutcomeUnchanged}
		}
		return stepResult{outcome: OutcomeDeleted}
	case !dockerapi.IsInUse(err):
		return stepResult{outcome: OutcomeFailed, err: fmt.Errorf("remove network %s: %w", st.Name, err)}
	}
	if a.Kind == plan.ActionMigrateNetwork {
		names, lerr := p.strangers(ctx, st.ID)
		switch {
		case lerr != nil:
			return stepResult{outcome: OutcomeFailed, err: lerr}
		case len(names) > 0:
			return stepResult{outcome: OutcomeFailed, err: strangersError(st.Name, names)}
		}
		if task := p.strangerTask(ctx, err); task != "" {
			return stepResult{outcome: OutcomeFailed, err: fmt.Errorf("%w: network %s is held by task %s, which belongs to no service: a container attached outside any service (docker run --network) on another node; disconnect it (docker network disconnect) and swarmsec goes on",
				plan.ErrBlocked, st.Name, task)}
		}
	}
	return stepResult{outcome: OutcomePending, detail: fmt.Sprintf("network %s is still in use (%v); a later pass removes it", st.Name, err)}
}

func (p *pass) isUpdated(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.updated[id]
}

// stillUsedBy names the services attached to a network that were not
// updated in this pass.
func (p *pass) stillUsedBy(networkID string) (out []string, err error) {
	p.w.Store.View(func(tx state.ReadTx) {
		var users []*state.Service
		if users, err = state.FindServices(tx, state.ByNetwork(networkID)); err != nil {
			err = fmt.Errorf("services on network %s: %w", networkID, err)
			return
		}
		for _, s := range users {
			if !p.isUpdated(s.ID) {
				out = append(out, s.Name)
			}
		}
	})
	return out, err
}

// strangers names the containers on this node attached to a network
// outside any service.
func (p *pass) strangers(ctx context.Context, networkID string) ([]string, error) {
	cctx, cancel := p.timeout(ctx)
	defer cancel()
	cs, err := p.w.Docker.ContainerList(cctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("network", networkID))})
	if err != nil {
		return nil, fmt.Errorf("network %s: list containers: %w", networkID, err)
	}
	var out []string
	for _, c := range cs {
		if _, task := c.Labels["com.docker.swarm.task.id"]; task {
			continue
		}
		name := c.ID[:min(12, len(c.ID))]
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out, nil
}

func strangersError(network string, names []string) error {
	return fmt.Errorf("%w: containers %s are attached to network %s outside any service (docker run --network); swarmsec does not disconnect them: disconnect them (docker network disconnect %s <container>) and swarmsec goes on",
		plan.ErrBlocked, strings.Join(names, ", "), network, network)
}

var inUseByTask = regexp.MustCompile(`in use by task ([0-9a-z]+)`)

// strangerTask returns the task an in-use error names when Swarm knows no
// such task of a service: the attachment of a container started outside
// any service.
func (p *pass) strangerTask(ctx context.Context, err error) string {
	match := inUseByTask.FindStringSubmatch(err.Error())
	if match == nil {
		return ""
	}
	cctx, cancel := p.timeout(ctx)
	defer cancel()
	tasks, lerr := p.w.Docker.TaskList(cctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("id", match[1]))})
	if lerr != nil || len(tasks) > 0 {
		return ""
	}
	return match[1]
}

// conflictBackoff is client-go's retry.DefaultRetry: a few quick tries,
// since Swarm moves a version on in bursts (a rolling update's states).
var conflictBackoff = wait.Backoff{Steps: 5, Duration: 10 * time.Millisecond, Factor: 1.0, Jitter: 0.1}

// onOutOfSequence runs fn again while it fails with "update out of
// sequence", as client-go's retry.OnError does (whose package would bring
// in apimachinery's whole API machinery for this one loop).
func onOutOfSequence(ctx context.Context, fn func() error) error {
	var last error
	err := wait.ExponentialBackoffWithContext(ctx, conflictBackoff, func(context.Context) (bool, error) {
		switch last = fn(); {
		case last == nil:
			return true, nil
		case dockerapi.IsOutOfSequence(last):
			return false, nil
		default:
			return false, last
		}
	})
	if wait.Interrupted(err) && last != nil {
		return last
	}
	return err
}
