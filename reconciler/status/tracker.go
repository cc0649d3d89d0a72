package status

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/reconciler/agentrules"
	"github.com/swarmsec/swarmsec/reconciler/apply"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/controller"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/reconciler/watch"
	"github.com/swarmsec/swarmsec/state"
)

// Tracker computes the status from manifest snapshots and reconcile passes.
// It is safe for concurrent use: the watcher, the controller and HTTP
// handlers call it from their own goroutines.
type Tracker struct {
	mode  reconcile.Mode
	store *state.Store
	now   func() time.Time

	mu    sync.Mutex
	agent *agentrules.Outcome // the last delivery to the node agents
	nodes func() (map[string]agentv1.Report, error)
	// swarmNodes, when set, lists the nodes that can run tasks and where
	// each service's tasks run; enforced keeps each node's Enforced
	// condition between reports, by node ID.
	swarmNodes func() (map[string]string, map[string][]string)
	enforced   map[string]*v1.Condition
	loaded     bool
	held       string
	errs       []manifest.Error
	stale      map[string]bool
	policies   map[string]*entry
	// desiredChanged is when the set of policies or a generation last
	// changed, recorded after the store held the change.
	desiredChanged time.Time
	lastPass       *controller.Pass
	planned        bool // some pass read Swarm and planned
	lastSuccess    time.Time
	followerWrites func() int64
	// role, when set, says whether this replica leads (see SetRole).
	role func() (leader bool, identity, holder string)
	// staleAfter, when set, makes the controller unready once the last
	// successful pass is older (see SetStaleAfter).
	staleAfter time.Duration
	// lastConverged is the start of the last pass that left nothing to do:
	// the reference for drift.
	lastConverged time.Time
}

// entry is what the tracker knows of one policy.
type entry struct {
	policy v1.PolicyStatus
	audit  bool
	since  time.Time // when this generation was first seen
	ready  v1.Condition
	// restorable says whether swarmsec can give the policy's services back
	// what they had when their isolation ends (nil: nothing to say).
	restorable *v1.Condition
	// encryption says whether the nodes its services' tasks run on can
	// carry their encrypted traffic (nil: nothing to say).
	encryption *v1.Condition
	// enforced says whether every node its services' tasks run on holds
	// the node agents' rules in force (nil: nothing to say).
	enforced *v1.Condition
	verdict  *verdict // the last pass that saw this generation; nil if none
}

// verdict is what a pass concluded about a policy.
type verdict struct {
	status  v1.ConditionStatus
	reason  string
	message string
	pending []v1.PendingAction
	// problems are what is wrong with the records of its services.
	problems []string
	reasons  []string
	// unencrypted are the networks of the policy whose tasks span a node
	// that cannot carry encrypted traffic.
	unencrypted []string
}

// NewTracker returns a tracker for a controller in mode. The store, when
// not nil, is the reconciler's: it tells which services each policy selects.
func NewTracker(mode reconcile.Mode, store *state.Store) *Tracker {
	return &Tracker{mode: mode, store: store, now: time.Now, policies: map[string]*entry{}, stale: map[string]bool{}}
}

// SetRole tells the tracker how to learn this replica's role: whether it
// leads, its identity and the lease holder's.
func (t *Tracker) SetRole(role func() (leader bool, identity, holder string)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.role = role
}

// SetFollowerWrites tells the tracker how many writes this replica made
// while it did not lead (which must stay 0).
func (t *Tracker) SetFollowerWrites(n func() int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.followerWrites = n
}

// SetStaleAfter makes /readyz fail once no pass has succeeded for d (a
// few resync periods): a controller whose engine stopped answering is not
// guarding anything.
func (t *Tracker) SetStaleAfter(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.staleAfter = d
}

// ObserveSnapshot takes a manifest snapshot. Call it after the snapshot's
// policies are in the reconciler's store, so a pass that started before
// this call is never taken to have seen them.
func (t *Tracker) ObserveSnapshot(snap watch.Snapshot) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.loaded = true
	t.held = snap.Held
	t.errs = slices.Clone(snap.Errors)
	t.stale = map[string]bool{}
	for _, f := range snap.Stale {
		t.stale[f] = true
	}
	changed := false
	seen := map[string]bool{}
	for _, o := range snap.Objects {
		seen[o.Name] = true
		e, ok := t.policies[o.Name]
		if !ok {
			e = &entry{}
			t.policies[o.Name] = e
		}
		if !ok || e.policy.Generation != o.Generation || e.policy.Kind != o.Kind {
			changed = true
			e.since = now
			e.verdict = nil
		}
		e.audit = o.Enforcement() == v1.EnforcementAudit
		e.policy.Name, e.policy.Kind, e.policy.File, e.policy.Line = o.Name, o.Kind, o.File, o.Line
		e.policy.Generation, e.policy.Enforcement = o.Generation, string(o.Enforcement())
	}
	for name := range t.policies {
		if !seen[name] {
			delete(t.policies, name)
			changed = true
		}
	}
	if changed {
		t.desiredChanged = now
	}
	t.refresh(now)
}

// ObservePass takes a finished reconcile pass. It returns the drift
// corrections the pass made: the writes of a pass whose desired state had
// not changed since the last pass that left the cluster converged.
func (t *Tracker) ObservePass(p controller.Pass) []apply.ActionResult {
	t.mu.Lock()
	// The pass compiled enforced policies only: when that is all of them,
	// its topology says what each selects, and compiling again is waste.
	var compiled *compile.Desired
	if p.Plan != nil && t.mode != reconcile.ModeAudit && !t.anyAuditLocked() {
		compiled = p.Plan.Desired
	}
	t.mu.Unlock()
	selected := t.selections(compiled)

	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var drift []apply.ActionResult
	if !t.lastConverged.IsZero() && t.desiredChanged.Before(t.lastConverged) && p.Result != nil {
		for _, ar := range p.Result.Results {
			switch ar.Outcome {
			case apply.OutcomeCreated, apply.OutcomeConfigured, apply.OutcomeDeleted:
				drift = append(drift, ar)
			}
		}
	}
	t.lastPass = &p
	t.planned = t.planned || p.Plan != nil
	if p.Err == nil && p.Plan != nil {
		t.lastSuccess = p.Start.Add(p.Duration)
		if t.mode != reconcile.ModeAudit && !p.Requeue && (p.Result == nil || !p.Result.Pending()) {
			t.lastConverged = p.Start
		}
	}
	if p.Agent != nil {
		t.agent = p.Agent
	}
	for _, e := range t.policies {
		if sel, ok := selected[e.policy.Name]; ok {
			e.policy.Services, e.policy.Networks, e.policy.PublishedPorts = sel.services, sel.networks, sel.ports
			for i := range e.policy.PublishedPorts {
				e.policy.PublishedPorts[i].Enforced = t.agent != nil && t.agent.Agent && t.agent.Config != ""
			}
		}
		switch {
		case p.Plan == nil:
			// Swarm could not be read: nothing is known about any policy.
			e.verdict = &verdict{status: v1.ConditionUnknown, reason: v1.ReasonReconcileFailed,
				message: "the last pass could not read Swarm: " + errString(p.Err)}
		case p.Start.Before(e.since):
			// The pass may have planned from an older generation: the
			// pass the change triggered will tell.
		default:
			e.verdict = t.judge(e, p)
		}
	}
	t.refresh(now)
	return drift
}

// judge concludes what a pass that saw the policy's generation says of it.
func (t *Tracker) judge(e *entry, p controller.Pass) *verdict {
	j := &judgement{mode: t.mode, storeKnown: t.store != nil, e: e, p: p}
	j.tally()
	v := &verdict{pending: slices.Concat(j.failed, j.pending, j.would)}
	if j.planHeld(v) || j.encryptionHeld(v) {
		return v
	}
	j.recordProblems(v)
	j.conclude(v)
	return v
}

// judgement is one pass judged for one policy: its actions sorted by what
// became of them, then the verdict they lead to.
type judgement struct {
	mode reconcile.Mode
	// storeKnown: the tracker reads a store, so an empty selection is
	// known to be empty.
	storeKnown bool
	e          *entry
	p          controller.Pass

	pending, failed, would []v1.PendingAction
	applied                int
	errs                   []string
}

// tally sorts the policy's actions in the plan by their results.
func (j *judgement) tally() {
	results := map[string]apply.ActionResult{}
	if j.p.Result != nil {
		for _, ar := range j.p.Result.Results {
			results[actionKey(ar.Action)] = ar
		}
	}
	for _, a := range j.p.Plan.Actions {
		if !slices.Contains(a.Policies, j.e.policy.Name) {
			continue
		}
		pa := v1.PendingAction{Kind: string(a.Kind), Name: a.Name, Reasons: a.Why()}
		if a.Audit {
			pa.State = v1.PendingAudit
			j.would = append(j.would, pa)
			continue
		}
		if j.mode == reconcile.ModeAudit {
			// Audit mode plans against no enforced policy too; only the
			// actions marked Audit say what enforcing would change.
			continue
		}
		ar, ok := results[actionKey(a)]
		// A migration in a pass that asks for another is not done yet.
		continues := a.Kind == plan.ActionMigrateNetwork && j.p.Requeue
		switch {
		case ok && ar.Outcome == apply.OutcomeFailed:
			pa.State, pa.Error = v1.PendingFailed, errString(ar.Err)
			j.failed = append(j.failed, pa)
			j.errs = append(j.errs, errString(ar.Err))
		case ok && ar.Outcome != apply.OutcomePending && !continues:
			j.applied++
		default:
			pa.State = v1.PendingWaiting
			j.pending = append(j.pending, pa)
		}
	}
}

// planHeld concludes for a policy the safety limits hold as a whole.
func (j *judgement) planHeld(v *verdict) bool {
	i := slices.IndexFunc(j.p.Plan.Held, func(h plan.HeldPolicy) bool { return h.Name == j.e.policy.Name })
	if i < 0 {
		return false
	}
	v.status, v.reason, v.message = v1.ConditionFalse, v1.ReasonHeld, j.p.Plan.Held[i].Message
	return true
}

// encryptionHeld notes the policy's networks whose tasks span a node that
// cannot encrypt, and concludes when changes of the policy are held for it.
func (j *judgement) encryptionHeld(v *verdict) bool {
	var held []string
	for _, h := range j.p.Plan.EncryptionHolds {
		if !slices.Contains(h.Policies, j.e.policy.Name) {
			continue
		}
		if h.Held {
			held = append(held, h.Message)
		} else {
			v.unencrypted = append(v.unencrypted, h.Message)
		}
	}
	if len(held) == 0 {
		return false
	}
	v.status, v.reason = v1.ConditionFalse, plan.ReasonEncryptionUnavailable
	v.message = fmt.Sprintf("%s held: %s", count(len(held), "change"), strings.Join(first(held, 3), "; "))
	return true
}

// recordProblems notes what is wrong with the records of the policy's
// services.
func (j *judgement) recordProblems(v *verdict) {
	for _, pr := range j.p.Plan.Problems {
		if slices.Contains(j.e.policy.Services, pr.Service) {
			v.problems = append(v.problems, pr.Message)
			v.reasons = append(v.reasons, pr.Reason)
		}
	}
}

// selectsNothing says whether the policy is known to select nothing.
// Without a store the selection is unknown, so never claim it empty.
func (j *judgement) selectsNothing() bool {
	pol := j.e.policy
	return j.storeKnown && (pol.Kind == v1.KindNetworkPolicy && len(pol.Services) == 0 ||
		pol.Kind == v1.KindEncryptionPolicy && len(pol.Networks) == 0)
}

// conclude sets the Ready condition's status, reason and message.
func (j *judgement) conclude(v *verdict) {
	nothing := j.selectsNothing()
	switch {
	case j.mode == reconcile.ModeAudit || j.e.audit:
		j.concludeAudit(v, nothing)
	case len(j.failed) > 0:
		v.status, v.reason = v1.ConditionFalse, v1.ReasonApplyFailed
		v.message = fmt.Sprintf("%s of %s failed: %s", count(len(j.failed), "change"), count(len(j.failed)+len(j.pending)+j.applied, "change"), strings.Join(first(j.errs, 3), "; "))
	case len(j.pending) > 0 && errors.Is(j.p.Err, plan.ErrHeld):
		v.status, v.reason = v1.ConditionUnknown, v1.ReasonHeld
		v.message = fmt.Sprintf("the safety limits hold the pass (%s): %s wait: %s",
			strings.Join(j.p.Plan.Holds, "; "), count(len(j.pending), "change"), summarize(j.pending))
	case len(j.pending) > 0:
		v.status, v.reason = v1.ConditionUnknown, v1.ReasonProgressing
		v.message = fmt.Sprintf("%s pending: %s", count(len(j.pending), "change"), summarize(j.pending))
	case nothing && j.e.policy.Kind == v1.KindEncryptionPolicy:
		v.status, v.reason = v1.ConditionTrue, v1.ReasonNoServicesSelected
		v.message = "networkSelector matches no overlay network: the policy has nothing to enforce"
	case nothing:
		v.status, v.reason = v1.ConditionTrue, v1.ReasonNoServicesSelected
		v.message = "serviceSelector matches no service: the policy has nothing to enforce"
	default:
		v.status, v.reason = v1.ConditionTrue, v1.ReasonConverged
		v.message = j.inForce()
	}
}

// concludeAudit concludes for a policy that is only audited: what
// enforcing it would change.
func (j *judgement) concludeAudit(v *verdict, nothing bool) {
	v.reason = v1.ReasonAuditOnly
	if len(j.would) > 0 {
		v.status = v1.ConditionFalse
		v.message = fmt.Sprintf("audit only: enforcing would make %s: %s; nothing is written", count(len(j.would), "change"), summarize(j.would))
		return
	}
	v.status = v1.ConditionTrue
	v.message = "audit only: the cluster already matches the policy; nothing is written"
	if nothing {
		v.message += "; it selects nothing"
	}
}

// inForce is the message of a converged policy: what it holds, and what
// the last pass applied.
func (j *judgement) inForce() string {
	msg := "in force"
	if n := len(j.e.policy.Services); n > 0 {
		msg += " on " + count(n, "service")
	}
	if n := len(j.e.policy.Networks); n > 0 {
		msg += " on " + count(n, "network")
	}
	if j.applied > 0 {
		msg += fmt.Sprintf("; the last pass applied %s", count(j.applied, "change"))
	}
	return msg
}

// refresh recomputes every Ready condition from what is known now.
func (t *Tracker) refresh(now time.Time) {
	for _, e := range t.policies {
		var st v1.ConditionStatus
		var reason, msg string
		e.policy.PendingActions = nil
		switch {
		case t.stale[e.policy.File]:
			st, reason = v1.ConditionFalse, v1.ReasonInvalidSpec
			msg = fmt.Sprintf("%s has errors (%s); the last good version of the policy stays in force", e.policy.File, t.fileError(e.policy.File))
			if e.verdict != nil {
				e.policy.PendingActions = e.verdict.pending
			}
		case t.held != "":
			st, reason, msg = v1.ConditionUnknown, v1.ReasonHeld, t.held
			if e.verdict != nil {
				e.policy.PendingActions = e.verdict.pending
			}
		case e.verdict == nil && t.lastPass == nil:
			st, reason, msg = v1.ConditionUnknown, v1.ReasonProgressing, "waiting for the first reconcile pass"
		case e.verdict == nil:
			st, reason, msg = v1.ConditionUnknown, v1.ReasonProgressing, "generation "+e.policy.Generation+" waits for a reconcile pass"
		default:
			st, reason, msg = e.verdict.status, e.verdict.reason, e.verdict.message
			e.policy.PendingActions = e.verdict.pending
		}
		setReady(&e.ready, st, reason, msg, e.policy.Generation, now)
		switch {
		case e.verdict != nil && len(e.verdict.problems) > 0:
			if e.restorable == nil {
				e.restorable = &v1.Condition{Type: v1.ConditionRestorable}
			}
			setCondition(e.restorable, v1.ConditionRestorable, v1.ConditionFalse, e.verdict.reasons[0], strings.Join(e.verdict.problems, "; "), e.policy.Generation, now)
		case e.restorable != nil:
			setCondition(e.restorable, v1.ConditionRestorable, v1.ConditionTrue, v1.ReasonRecorded, "every isolated service's record is in place", e.policy.Generation, now)
		}
		switch {
		case e.verdict != nil && len(e.verdict.unencrypted) > 0:
			if e.encryption == nil {
				e.encryption = &v1.Condition{}
			}
			setCondition(e.encryption, v1.ConditionEncryptionAvailable, v1.ConditionFalse, plan.ReasonEncryptionUnavailable, strings.Join(e.verdict.unencrypted, "; "), e.policy.Generation, now)
		case e.encryption != nil:
			setCondition(e.encryption, v1.ConditionEncryptionAvailable, v1.ConditionTrue, v1.ReasonEncryptionAvailable, "every node its services' tasks run on can carry their encrypted traffic", e.policy.Generation, now)
		}
	}
}

// setReady updates a condition the Kubernetes way: lastTransitionTime
// moves only when the status does.
func setReady(c *v1.Condition, st v1.ConditionStatus, reason, msg, gen string, now time.Time) {
	setCondition(c, v1.ConditionReady, st, reason, msg, gen, now)
}

func setCondition(c *v1.Condition, typ string, st v1.ConditionStatus, reason, msg, gen string, now time.Time) {
	if c.Type == "" || c.Status != st {
		c.LastTransitionTime = now.UTC().Truncate(time.Second)
	}
	c.Type, c.Status, c.Reason, c.Message, c.ObservedGeneration = typ, st, reason, msg, gen
}

func (t *Tracker) fileError(file string) string {
	for _, e := range t.errs {
		if e.File == file {
			return e.Error()
		}
	}
	return "it does not load"
}

type selection struct {
	services, networks []string
	ports              []v1.PortRule
}

// selections reads which services each NetworkPolicy and which networks
// each EncryptionPolicy select now, compiling like the reconciler does.
// A non-nil compiled is used instead of compiling.
func (t *Tracker) selections(compiled *compile.Desired) map[string]selection {
	out := map[string]selection{}
	if t.store == nil {
		return out
	}
	t.store.View(func(tx state.ReadTx) {
		policies, err := state.FindPolicies(tx, state.All())
		if err != nil {
			return
		}
		for _, p := range policies {
			out[p.Name] = selection{services: []string{}, ports: portRules(p)}
		}
		d := compiled
		if d == nil {
			if d, err = compile.Compile(tx, nil); err != nil {
				d = nil
			}
		}
		if d != nil {
			for _, ds := range d.Services {
				if !ds.Isolated {
					continue
				}
				for _, name := range ds.Policies {
					sel := out[name]
					sel.services = append(sel.services, ds.Name)
					out[name] = sel
				}
			}
		}
		nets, err := state.FindNetworks(tx, state.All())
		if err != nil {
			return
		}
		for _, p := range policies {
			if p.Encryption == nil {
				continue
			}
			sel := out[p.Name]
			for _, n := range nets {
				if n.Driver == "overlay" && !n.Ignored() && p.Encryption.Spec.NetworkSelector.Matches(n.SelectorLabels) {
					sel.networks = append(sel.networks, n.Name)
				}
			}
			out[p.Name] = sel
		}
	})
	for name, sel := range out {
		slices.Sort(sel.services)
		slices.Sort(sel.networks)
		out[name] = sel
	}
	return out
}

// portRules lists the published ports a NetworkPolicy restricts.
func portRules(p *v1.Policy) []v1.PortRule {
	if p.Network == nil {
		return nil
	}
	var out []v1.PortRule
	for _, pp := range p.Network.Spec.Publish {
		if !pp.Restricted() {
			continue
		}
		r := v1.PortRule{Port: fmt.Sprintf("%d/%s", pp.Port, pp.EffectiveProtocol()), Mode: pp.EffectiveMode(), Log: pp.EffectiveLog()}
		for _, src := range pp.From {
			if src.IPBlock != nil {
				r.From = append(r.From, src.IPBlock.String())
			}
		}
		out = append(out, r)
	}
	return out
}

func (t *Tracker) anyAuditLocked() bool {
	for _, e := range t.policies {
		if e.audit {
			return true
		}
	}
	return false
}

// Ready reports whether the controller is ready: the manifests are loaded,
// Docker answered the last pass, and a first pass is done.
func (t *Tracker) Ready() (bool, []Check) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.readyLocked()
}

func (t *Tracker) readyLocked() (bool, []Check) {
	manifests := Check{Name: "manifests", OK: t.loaded, Message: "loaded"}
	switch {
	case !t.loaded:
		manifests.Message = "not loaded yet"
	case len(t.policies) == 0 && t.held != "":
		manifests.OK, manifests.Message = false, t.held
	}
	docker := Check{Name: "docker", Message: "no pass yet"}
	pass := Check{Name: "first-pass", Message: "not done yet"}
	if p := t.lastPass; p != nil {
		docker.OK = p.Plan != nil
		docker.Message = "answered the last pass"
		if !docker.OK {
			docker.Message = errString(p.Err)
		}
	}
	if t.planned {
		pass.OK, pass.Message = true, "done"
	}
	checks := []Check{manifests, docker, pass}
	if t.staleAfter > 0 && !t.lastSuccess.IsZero() {
		recent := Check{Name: "recent-pass", OK: true, Message: "a pass succeeded within " + t.staleAfter.String()}
		if age := t.now().Sub(t.lastSuccess); age > t.staleAfter {
			recent.OK = false
			recent.Message = fmt.Sprintf("no pass has succeeded for %s (more than %s): is Docker answering?", age.Round(time.Second), t.staleAfter)
		}
		checks = append(checks, recent)
	}
	ready := true
	for _, c := range checks {
		ready = ready && c.OK
	}
	return ready, checks
}

// SetNodes makes Report show the node agents' checks, as nodes has them
// (it must not block: the cached reports).
func (t *Tracker) SetNodes(nodes func() (map[string]agentv1.Report, error)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nodes = nodes
}

// SetSwarmNodes makes Report judge every node that can run tasks (hostname
// by node ID, as nodes has them; it must not block), not only those whose
// agent reported, and each NetworkPolicy by the nodes its services' tasks
// run on (node IDs by service ID).
func (t *Tracker) SetSwarmNodes(nodes func() (map[string]string, map[string][]string)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.swarmNodes = nodes
}

// Report returns the status now. It shares nothing with the tracker.
func (t *Tracker) Report() *Report {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := &Report{
		Leader:         true,
		Mode:           string(t.mode),
		Held:           t.held,
		Policies:       make([]v1.PolicyStatus, 0, len(t.policies)),
		ManifestErrors: slices.Clone(t.errs),
		StaleFiles:     []string{},
	}
	if r.Mode == "" {
		r.Mode = string(reconcile.ModeEnforce)
	}
	if t.role != nil {
		r.Leader, r.Identity, r.LeaderIdentity = t.role()
	}
	if t.followerWrites != nil {
		r.FollowerWrites = t.followerWrites()
	}
	if r.ManifestErrors == nil {
		r.ManifestErrors = []manifest.Error{}
	}
	r.Ready, r.Checks = t.readyLocked()
	for f := range t.stale {
		r.StaleFiles = append(r.StaleFiles, f)
	}
	slices.Sort(r.StaleFiles)
	if !t.lastSuccess.IsZero() {
		ts := t.lastSuccess.UTC()
		r.LastSuccessfulPass = &ts
	}
	if p := t.lastPass; p != nil {
		r.LastPass = summarizePass(p)
		if p.Plan != nil {
			r.Encryption = slices.Clone(p.Plan.EncryptionHolds)
		}
	}
	r.Agent = t.agent
	var reports map[string]agentv1.Report
	if t.nodes != nil {
		var err error
		reports, err = t.nodes()
		for _, k := range slices.Sorted(maps.Keys(reports)) {
			r.Nodes = append(r.Nodes, reports[k])
		}
		slices.SortFunc(r.Nodes, func(a, b agentv1.Report) int { return cmp.Compare(a.Node, b.Node) })
		if err != nil {
			r.NodesError = err.Error()
		}
	}
	var swarmNodes map[string]string
	var placement map[string][]string
	if t.swarmNodes != nil {
		swarmNodes, placement = t.swarmNodes()
	}
	r.Enforcement = t.enforcementLocked(swarmNodes, reports)
	t.policyEnforcementLocked(r.Enforcement, placement)
	for _, e := range t.policies {
		ps := e.policy
		ps.Conditions = []v1.Condition{e.ready}
		if e.restorable != nil {
			ps.Conditions = append(ps.Conditions, *e.restorable)
		}
		if e.encryption != nil {
			ps.Conditions = append(ps.Conditions, *e.encryption)
		}
		if e.enforced != nil {
			ps.Conditions = append(ps.Conditions, *e.enforced)
		}
		ps.Services = nonNil(slices.Clone(ps.Services))
		ps.Networks = slices.Clone(ps.Networks)
		ps.PendingActions = nonNil(slices.Clone(ps.PendingActions))
		r.Policies = append(r.Policies, ps)
	}
	slices.SortFunc(r.Policies, func(a, b v1.PolicyStatus) int { return cmp.Compare(a.Name, b.Name) })
	return r
}

func summarizePass(p *controller.Pass) *PassSummary {
	s := &PassSummary{Start: p.Start.UTC(), DurationSeconds: p.Duration.Seconds(), Trigger: p.Trigger, Error: errString(p.Err)}
	if p.Plan != nil {
		s.Holds, s.Notes = p.Plan.Holds, p.Plan.Notes
		for _, a := range p.Plan.Actions {
			if a.Audit {
				s.Audit++
			} else {
				s.Planned++
			}
		}
	}
	if p.Result != nil {
		for _, ar := range p.Result.Results {
			switch ar.Outcome {
			case apply.OutcomeCreated, apply.OutcomeConfigured, apply.OutcomeDeleted:
				s.Applied++
			case apply.OutcomePending:
				if ar.Action.Kind == plan.ActionUpdateService {
					s.RemainingUpdates++
				}
			}
		}
	}
	if p.Plan != nil {
		for _, h := range p.Plan.Held {
			s.Held = append(s.Held, h.Name)
		}
	}
	return s
}

// Counts returns how many policies have each Ready status.
func (r *Report) Counts() map[v1.ConditionStatus]int {
	out := map[v1.ConditionStatus]int{v1.ConditionTrue: 0, v1.ConditionFalse: 0, v1.ConditionUnknown: 0}
	for i := range r.Policies {
		if c := r.Policies[i].Ready(); c != nil {
			out[c.Status]++
		}
	}
	return out
}

func actionKey(a plan.Action) string { return string(a.Kind) + "\x00" + a.Name }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// summarize lists up to three actions for a message.
func summarize(as []v1.PendingAction) string {
	parts := make([]string, 0, 3)
	for _, a := range first(as, 3) {
		s := a.Kind + " " + a.Name
		if len(a.Reasons) > 0 {
			s += " (" + a.Reasons[0] + ")"
		}
		parts = append(parts, s)
	}
	out := strings.Join(parts, "; ")
	if len(as) > 3 {
		out += fmt.Sprintf("; and %d more", len(as)-3)
	}
	return out
}

func first[T any](xs []T, n int) []T { return xs[:min(n, len(xs))] }

func count(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}
