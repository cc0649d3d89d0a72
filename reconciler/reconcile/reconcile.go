// Package reconcile runs one pass of the pipeline: observe Swarm into the
// store, plan (the NetworkPolicy diff, the encryption migrations, the safety
// limits), write what can be written now, and return. A pass never waits
// for Swarm to carry a write out: it says when to look again
// (Result.RequeueAfter), and since all progress lives in Swarm the next pass
// picks up where this one stopped. The controller loop and the one-shot
// commands both drive passes.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/internal/logctx"
	"github.com/swarmsec/swarmsec/reconciler/agentrules"
	"github.com/swarmsec/swarmsec/reconciler/apply"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/migrate"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
)

// Mode says whether a reconciler writes.
type Mode string

const (
	// ModeEnforce writes the changes enforce-mode policies ask for.
	ModeEnforce Mode = "enforce"
	// ModeAudit computes and reports everything and writes nothing.
	ModeAudit Mode = "audit"
)

// Delays before the next pass, when a pass left work that Swarm must make
// possible first.
const (
	// DefaultProgressDelay: a migration waits for a rolling update, or has
	// just written a step and goes on with the next.
	DefaultProgressDelay = time.Second
	// DefaultPendingDelay: some write must wait (capped by the blast
	// radius, a network still held by tasks being replaced).
	DefaultPendingDelay = 5 * time.Second
)

// Result is what one pass did.
type Result struct {
	apply.Result
	// RequeueAfter, when positive, is when the next pass should look
	// again: the pass left work that can only be done later.
	RequeueAfter time.Duration
	// Waiting says what that work waits for.
	Waiting []string
	// Follower is set when the pass wrote nothing because another replica
	// leads.
	Follower bool
	// WaveSize is the most policy service updates the pass could write
	// (0: no cap): the cap, doubled for each wave of the change that
	// ended healthy (see JudgeWave).
	WaveSize int
	// Agent is what the delivery of the node agent's rules found (nil
	// when the pass did not deliver).
	Agent *agentrules.Outcome
	// Observed is how the pass brought the store up to date.
	Observed *observe.Observation
}

// terminalError marks a failure that retrying cannot fix: held by the
// safety limits, or a migration blocked until the operator acts. It is
// reported, not retried; the next trigger looks again.
type terminalError struct{ err error }

func (e terminalError) Error() string { return e.err.Error() }
func (e terminalError) Unwrap() error { return e.err }

// IsTerminal reports whether a pass failed in a way retrying cannot fix.
func IsTerminal(err error) bool {
	var t terminalError
	return errors.As(err, &t)
}

// Reconciler runs passes over one store.
type Reconciler struct {
	Docker dockerapi.API
	Store  *state.Store
	Log    *slog.Logger
	Mode   Mode
	// Limits bound what one pass may change.
	Limits plan.Limits
	// PendingDelay is RequeueAfter when a write must wait
	// (DefaultPendingDelay when 0).
	PendingDelay time.Duration
	// ProgressDelay is RequeueAfter while a migration goes on
	// (DefaultProgressDelay when 0).
	ProgressDelay time.Duration
	// OnResult sees every action result (metrics, status).
	OnResult func(apply.ActionResult)
	// Leader, when set, says whether this replica may write: a follower
	// observes and plans (its store stays warm, its status true) and
	// writes nothing. Writes stop when leadership goes.
	Leader interface {
		Leading() (context.Context, bool)
	}
	// Agent, when set, delivers the node agent's rules after each pass
	// that may write.
	Agent *agentrules.Delivery
	// Nodes, when set, says which nodes cannot carry encrypted overlay
	// traffic (the agents' node checks): changes that would cut tasks off
	// are held (plan.HoldUnencryptable).
	Nodes func(ctx context.Context) (map[string]plan.NodeEncryption, error)
	// Changes, when set, is what Docker's events named since the last
	// pass: a pass re-reads just that, and lists everything only when it
	// must (see observe.Changes). Unset, every pass lists everything.
	Changes *observe.Changes
	// WaveTimeout is how long JudgeWave waits for a wave before the
	// passes go on at the cap (DefaultWaveTimeout when 0).
	WaveTimeout time.Duration

	nodes map[string]plan.NodeEncryption // read by the pass under way
	idle  *idlePlan                      // the last plan, when it asked for nothing
	fresh *idlePlan                      // Plan's plan, for the next pass (planIfChanged)

	mu sync.Mutex
	// target is the last pass's target while some of its writes wait:
	// the next pass's hint (see keepTarget).
	target compile.Hint
	// wave is what the last pass wrote (see JudgeWave); healthy counts
	// the waves of this change that ended healthy (plan.WaveSize).
	wave    *wave
	healthy int
	// holding is set for a pass while a wave rolls (ReconcileDuringWave).
	holding bool
}

// SetPolicies replaces the desired policies. A new change starts with a
// wave of the cap.
func (r *Reconciler) SetPolicies(ps []*v1.Policy) error {
	r.restartWaves()
	return r.Store.Update(func(tx state.Tx) error { return state.ReplacePolicies(tx, ps) })
}

// Plan observes Swarm (through Changes when set, so the next pass reads
// only what changed since) and computes the actions that make it match
// the policies. Actions only audit-mode policies (or audit mode) ask for
// are marked Audit.
func (r *Reconciler) Plan(ctx context.Context) (*plan.Plan, error) {
	r.readNodes(ctx)
	if _, err := r.observeSwarm(ctx); err != nil {
		return nil, err
	}
	gen := r.Store.Generation()
	p, rep, err := r.PlanObserved()
	if err == nil && !r.hasTarget() {
		r.fresh = &idlePlan{gen: gen, mode: r.Mode, limits: r.Limits, nodes: maps.Clone(r.nodes), plan: p, report: rep}
	}
	return p, err
}

// PlanObserved plans from the state already in the store, without asking
// Swarm again. The report says what the migrations wait for or are
// blocked by.
func (r *Reconciler) PlanObserved() (*plan.Plan, migrate.Report, error) {
	var (
		p   *plan.Plan
		rep migrate.Report
		err error
	)
	r.mu.Lock()
	target := r.target
	r.mu.Unlock()
	r.Store.View(func(tx state.ReadTx) {
		if p, err = plan.PoliciesToward(tx, r.Mode == ModeAudit, r.Limits, target); err != nil {
			return
		}
		if rep, err = migrate.Plan(tx, p, r.Mode == ModeAudit, r.Limits.MaxServiceUpdates); err != nil {
			return
		}
		if err = plan.HoldUnencryptable(tx, p, r.nodes); err != nil {
			return
		}
		p.Holds = plan.Holds(tx, p)
	})
	return p, rep, err
}

// Reconcile runs one pass: observe, plan, write what can be written now.
// It returns the plan and what became of each action. Errors are
// transient (retry with backoff) unless IsTerminal.
func (r *Reconciler) Reconcile(ctx context.Context) (*plan.Plan, *Result, error) {
	r.readNodes(ctx)
	observed, err := r.observeSwarm(ctx)
	if err != nil {
		return nil, nil, err
	}
	p, mig, err := r.planIfChanged()
	if err != nil {
		return nil, nil, err
	}
	res := &Result{Observed: observed}
	for _, a := range p.Actions {
		if a.Audit {
			r.logger(ctx).Info("audit: would change", "action", a.Kind, "object", a.Name,
				"policy", strings.Join(a.Policies, ","), "reason", strings.Join(a.Why(), "; "))
		}
	}
	if r.Mode == ModeAudit {
		r.keepTarget(nil)
		r.closeWave(res, 0)
		return p, res, nil
	}
	if r.Leader != nil {
		lctx, leading := r.Leader.Leading()
		if !leading {
			// The leader's writes follow its own target.
			r.keepTarget(nil)
			r.closeWave(res, 0)
			res.Follower = true
			return p, res, nil
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(lctx, cancel)
		defer stop()
	}
	if len(p.Holds) > 0 && !r.Limits.Force {
		r.closeWave(res, 0)
		return p, res, terminalError{fmt.Errorf("%w: %s; nothing was written (use --force to go ahead)", plan.ErrHeld, strings.Join(p.Holds, "; "))}
	}

	// Migration waves and policy updates share one blast radius; the
	// migrations already planned theirs within it. The policy updates go
	// in an order that never lets two services share a network the
	// policies do not allow, before or after.
	var writes, updates []plan.Action
	for _, a := range p.Pending() {
		if a.Kind == plan.ActionUpdateService {
			updates = append(updates, a)
		} else {
			writes = append(writes, a)
		}
	}
	// The wave is the order's first updates (plan.ScheduleUpTo): the
	// migrations' updates count against it.
	res.WaveSize = r.budget()
	left := max(res.WaveSize-mig.Updates, 0)
	var now, later []plan.Action
	switch {
	case r.holding:
		later = updates // a wave rolls: its end starts the next
	case res.WaveSize > 0 && left == 0:
		later = updates // the migrations took the whole wave
	default:
		r.Store.View(func(tx state.ReadTx) { now, later, err = plan.ScheduleUpTo(tx, p.Desired, updates, left) })
		if err != nil {
			return p, res, err
		}
	}
	// The agents' rules go first: the networks a pass joins are then
	// narrowed to the policies' ports and directions by the time tasks
	// roll onto them, rather than open on every port until a later
	// delivery.
	agentErr := r.deliver(ctx, p, res)
	w := &apply.Writer{Docker: r.writer(), Store: r.Store}
	res.Result = *w.Apply(ctx, append(writes, now...), later)
	r.watchRollouts(p)
	reached := r.handOver(p, res)
	progress := r.judgeMigrations(ctx, res, mig)
	if held := p.EncryptionHeld(); len(held) > 0 && res.Writes() == 0 && !progress && res.Pending() {
		// What is left waits for what is held: looking again soon
		// changes nothing until a node or a task moves (a resync will).
		r.closeWave(res, len(later))
		return p, res, terminalError{fmt.Errorf("%w: %s", plan.ErrEncryptionUnavailable, strings.Join(held, "; "))}
	}
	switch {
	case progress, reached:
		res.RequeueAfter = r.progressDelay()
	case res.Pending() || agentErr:
		res.RequeueAfter = r.pendingDelay()
	}
	r.closeWave(res, len(later))
	return p, res, r.passError(res)
}

// handOver keeps the pass's target for the next pass while writes wait,
// and drops it once they are done. A pass that wrote toward a kept target
// and finished it reports so: the next pass should look at once, from
// today's networks, because they may shape the topology otherwise (a
// service that stays where it is holds a network the target reused).
func (r *Reconciler) handOver(p *plan.Plan, res *Result) (reached bool) {
	reached = r.hasTarget() && !res.Pending() && res.Err() == nil && res.Writes() > 0
	if res.Pending() || res.Err() != nil {
		r.keepTarget(p.Desired.Hint())
	} else {
		r.keepTarget(nil)
	}
	return reached
}

// judgeMigrations gives each migration's result what its step machine
// said (blocked, waiting), records every result, and reports whether a
// migration goes on (look again soon).
func (r *Reconciler) judgeMigrations(ctx context.Context, res *Result, mig migrate.Report) (progress bool) {
	for i := range res.Results {
		ar := &res.Results[i]
		if ar.Action.Kind == plan.ActionMigrateNetwork {
			name := ar.Action.Name
			switch {
			case mig.Blocked[name] != nil:
				ar.Outcome, ar.Err = apply.OutcomeFailed, mig.Blocked[name]
			case mig.Waiting[name] != "":
				ar.Outcome, ar.Detail = apply.OutcomePending, mig.Waiting[name]
				res.Waiting = append(res.Waiting, fmt.Sprintf("network %s: %s", name, ar.Detail))
				progress = true
			case ar.Outcome != apply.OutcomeFailed:
				// A planned migration is not finished, even when its
				// write found the work done (a removed network Swarm
				// still listed): look again soon.
				progress = true
			}
		}
		r.record(ctx, *ar)
	}
	return progress
}

// keepTarget sets the next pass's hint: a pass that leaves writes pending
// keeps its target, so the passes after it go on toward the same target
// (compile.Hint) until the policies or services change. That bounds a
// change: every pass writes at least one service update (a member that
// blocks another's move has a change of its own and leaves first; one
// that opts out waits for the operator, reported), and no service is
// written more than twice (that first half, then the rest), so with n
// services the passes reach one with nothing to do within 2n+2 under any
// cap, and within 4 uncapped: the pass after the last updates removes the
// records of the services they restored (a record goes only once its
// service is seen restored and done rolling, never with its update). A new process (or leader) starts from
// today's networks: one more target per restart.
func (r *Reconciler) hasTarget() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.target != nil
}

func (r *Reconciler) keepTarget(t compile.Hint) {
	r.mu.Lock()
	r.target = t
	r.mu.Unlock()
}

// readNodes takes what the node checks say for this pass. A failed read
// keeps what the last one said: without news, nothing more is held.
func (r *Reconciler) readNodes(ctx context.Context) {
	if r.Nodes == nil {
		return
	}
	nodes, err := r.Nodes(ctx)
	if err != nil {
		r.logger(ctx).Warn("node checks not read; encryption holds use the last ones", "err", err)
	}
	if nodes != nil || err == nil {
		r.nodes = nodes
	}
}

// needTasks: where tasks run matters when a node cannot encrypt.
func (r *Reconciler) needTasks() bool {
	for _, n := range r.nodes {
		if !n.OK {
			return true
		}
	}
	return false
}

// deliver hands the plan's published-port rules to the node agents. A
// failure is logged here and retried: the agents keep the rules they have.
func (r *Reconciler) deliver(ctx context.Context, p *plan.Plan, res *Result) (failed bool) {
	if r.Agent == nil {
		return false
	}
	doc, err := agentrules.FromPlan(p)
	if err == nil {
		var out agentrules.Outcome
		out, err = r.Agent.Deliver(ctx, doc)
		res.Agent = &out
		if out.Wrote {
			r.logger(ctx).Info("node agent rules delivered", "config", out.Config, "ports", len(doc.Ports), "services", len(doc.Services))
		}
	}
	if err != nil {
		r.logger(ctx).Error("node agent rules not delivered; the agents keep the rules they have", "err", err)
		res.Waiting = append(res.Waiting, "node agent rules: "+err.Error())
		return true
	}
	return false
}

// Converge runs passes until one leaves nothing to wait for, one fails, or
// ctx ends, waiting RequeueAfter between them, each pass's lines naming it
// (see logctx). It returns the last plan,
// the results of every pass in order, and the error that stopped it. each,
// when set, sees every pass.
func (r *Reconciler) Converge(ctx context.Context, each func(*plan.Plan, *Result)) (*plan.Plan, *Result, error) {
	all := &Result{}
	for {
		// Each pass names itself in the lines it logs, as under the loop.
		pctx, _ := logctx.ForPass(ctx, r.logger(ctx))
		p, res, err := r.Reconcile(pctx)
		if res != nil {
			all.Results = append(all.Results, res.Results...)
			all.RequeueAfter, all.Waiting = res.RequeueAfter, res.Waiting
			if each != nil {
				each(p, res)
			}
		}
		if err != nil || res.RequeueAfter <= 0 {
			return p, all, err
		}
		select {
		case <-ctx.Done():
			return p, all, fmt.Errorf("not converged: %s: %w", strings.Join(append(res.Waiting, pendingOf(res)...), "; "), ctx.Err())
		case <-time.After(res.RequeueAfter):
		}
	}
}

// pendingOf describes the actions a pass left pending.
func pendingOf(res *Result) []string {
	var out []string
	for _, ar := range res.Results {
		if ar.Outcome == apply.OutcomePending {
			out = append(out, fmt.Sprintf("%s %s: %s", ar.Action.Kind, ar.Action.Name, ar.Detail))
		}
	}
	return out
}

// passError is the error of a pass: its failed writes (each already
// logged with its object), then the migrations blocked until the operator
// acts, which retrying cannot fix.
func (r *Reconciler) passError(res *Result) error {
	var failed []error
	var blocked []error
	for _, ar := range res.Results {
		switch {
		case ar.Err == nil:
		case errors.Is(ar.Err, plan.ErrBlocked):
			blocked = append(blocked, ar.Err)
		default:
			failed = append(failed, ar.Err)
		}
	}
	if len(failed) > 0 {
		return &WriteError{Failed: len(failed), Total: len(res.Results), Err: errors.Join(append(failed, blocked...)...)}
	}
	if len(blocked) > 0 {
		return terminalError{errors.Join(blocked...)}
	}
	return nil
}

// WriteError is a pass whose writes partly failed. Each failure was logged
// with its object as it happened; the error joins them for callers.
type WriteError struct {
	Failed, Total int
	Err           error
}

func (e *WriteError) Error() string { return e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// record reports one action's outcome: once, here, with its object.
func (r *Reconciler) record(ctx context.Context, ar apply.ActionResult) {
	log := r.logger(ctx)
	if r.OnResult != nil {
		r.OnResult(ar)
	}
	attrs := []any{
		"action", ar.Action.Kind, "object", ar.Action.Name, "policy", strings.Join(ar.Action.Policies, ","),
		"reason", strings.Join(ar.Action.Why(), "; "), "result", ar.Outcome, "duration", ar.Duration.Round(time.Millisecond),
	}
	if ar.Detail != "" {
		attrs = append(attrs, "detail", ar.Detail)
	}
	for _, w := range ar.Warnings {
		log.Warn("docker warning", "object", ar.Action.Name, "warning", w)
	}
	switch {
	case ar.Err != nil:
		log.Error("change failed", append(attrs, "error", ar.Err)...)
	case ar.Outcome == apply.OutcomePending:
		log.Info("change pending", attrs...)
	case ar.Outcome == apply.OutcomeUnchanged:
		log.Debug("change unchanged", attrs...)
	default:
		log.Info("change applied", attrs...)
	}
	if ar.Action.Kind == plan.ActionMigrateNetwork && ar.Outcome != apply.OutcomeUnchanged {
		for _, st := range ar.Action.Steps {
			log.Info(fmt.Sprintf("migrate network %s: %s", ar.Action.Name, st.What))
		}
	}
}

// watchRollouts asks the next pass to read again each service whose
// record waits for its rolling update (plan.Action.Waits): the update's
// end is in the service's status, which the engine's events do not always
// name (and a reconciler whose events stream ended hears of nothing), so a
// pass that trusted the store would wait for ever.
func (r *Reconciler) watchRollouts(p *plan.Plan) {
	if r.Changes == nil {
		return // every pass lists
	}
	for _, a := range p.Actions {
		if a.Kind == plan.ActionRemoveRecord && a.Waits != "" {
			if id := compile.RecordService(a.Name); id != "" {
				r.Changes.Service(id)
			}
		}
	}
}

func (r *Reconciler) pendingDelay() time.Duration {
	if r.PendingDelay > 0 {
		return r.PendingDelay
	}
	return DefaultPendingDelay
}

func (r *Reconciler) progressDelay() time.Duration {
	if r.ProgressDelay > 0 {
		return r.ProgressDelay
	}
	return DefaultProgressDelay
}

// logger is the pass's logger, the one its ctx carries (naming the pass,
// see logctx), else Log.
func (r *Reconciler) logger(ctx context.Context) *slog.Logger {
	return logctx.From(ctx, r.Log)
}
