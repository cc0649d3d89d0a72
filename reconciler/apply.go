package reconciler

import (
	"context"
	"errors"
	"fmt"
	v1 "github.com/swarmsec/swarmsec/api/v1"
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/state"
)

// Outcome is what became of one action, in the Flux manner.
type Outcome string

// Outcomes of an action.
const (
	OutcomeCreated    Outcome = "created"
	OutcomeConfigured Outcome = "configured"
	OutcomeDeleted    Outcome = "deleted"
	OutcomeUnchanged  Outcome = "unchanged"
	OutcomeSkipped    Outcome = "skipped"
	OutcomePending    Outcome = "pending"
	OutcomeFailed     Outcome = "failed"
)

// ActionResult is the outcome of one action.
type ActionResult struct {
	Action   Action
	Outcome  Outcome
	Err      error
	Duration time.Duration
}

// Result is the outcome of applying a plan.
type Result struct {
	Results []ActionResult
}

// Err joins the errors of the failed actions.
func (r *Result) Err() error {
	var errs []error
	for _, ar := range r.Results {
		if ar.Err != nil {
			errs = append(errs, ar.Err)
		}
	}
	return errors.Join(errs...)
}

// Pending reports whether some action must be retried later (a network
// still in use by tasks that are shutting down).
func (r *Result) Pending() bool {
	for _, ar := range r.Results {
		if ar.Outcome == OutcomePending {
			return true
		}
	}
	return false
}

// Applier writes plans to Swarm.
type Applier struct {
	Docker dockerapi.API
	Store  *state.Store
	Log    *slog.Logger
	// Retries bounds the attempts of a service update that meets a newer
	// version ("update out of sequence").
	Retries int
	// RemoveWait is how long a network removal keeps retrying while the
	// network is still in use by tasks being replaced; 0 tries once.
	RemoveWait time.Duration
	// MaxServiceUpdates caps the service updates of one pass (the blast
	// radius); the rest are reported pending. 0 means no cap.
	MaxServiceUpdates int
	// OnResult, when set, sees every action result (metrics, status).
	OnResult func(ActionResult)
}

// Apply writes the plan's pending actions in a safe order: networks are
// created first, services updated next (one update each, carrying the
// version read), and networks no longer needed removed last.
func (ap *Applier) Apply(ctx context.Context, plan *Plan) *Result {
	res := &Result{}
	actions, deferred := limitUpdates(plan.Pending(), ap.MaxServiceUpdates)
	created := map[string]string{} // network name -> ID
	for _, a := range actions {
		if a.Kind == ActionCreateNetwork {
			res.add(ap, ap.createNetwork(ctx, a, created))
		}
	}
	updated := map[string]bool{} // service IDs
	for _, a := range actions {
		if a.Kind == ActionUpdateService {
			ar := ap.updateService(ctx, a, plan.Desired, created)
			if ar.Err == nil {
				updated[a.ID] = true
			}
			res.add(ap, ar)
		}
	}
	for _, a := range deferred {
		res.add(ap, ActionResult{Action: a, Outcome: OutcomePending})
	}
	for _, a := range actions {
		if a.Kind != ActionRemoveNetwork {
			continue
		}
		if users := ap.stillUsedBy(a.ID, updated); len(users) > 0 {
			// A service that was not updated in this pass still uses it:
			// removing would fail; the next pass tries again.
			res.add(ap, ActionResult{Action: a, Outcome: OutcomePending})
			continue
		}
		res.add(ap, ap.removeNetwork(ctx, a))
	}
	return res
}

// stillUsedBy names the services attached to a network that were not
// updated in this pass.
func (ap *Applier) stillUsedBy(networkID string, updated map[string]bool) []string {
	var out []string
	ap.Store.View(func(tx state.ReadTx) {
		users, _ := state.FindServices(tx, state.ByNetwork(networkID))
		for _, s := range users {
			if !updated[s.ID] {
				out = append(out, s.Name)
			}
		}
	})
	return out
}

func (r *Result) add(ap *Applier, ar ActionResult) {
	r.Results = append(r.Results, ar)
	if ap.OnResult != nil {
		ap.OnResult(ar)
	}
	log := ap.logger()
	attrs := []any{
		"action", ar.Action.Kind, "object", ar.Action.Name, "policy", strings.Join(ar.Action.Policies, ","),
		"reason", strings.Join(ar.Action.Reasons, "; "), "result", ar.Outcome, "duration", ar.Duration.Round(time.Millisecond),
	}
	switch {
	case ar.Err != nil:
		log.Error("change failed", append(attrs, "error", ar.Err)...)
	case ar.Outcome == OutcomePending:
		log.Info("change pending", attrs...)
	default:
		log.Info("change applied", attrs...)
	}
}

func (ap *Applier) logger() *slog.Logger {
	if ap.Log == nil {
		return slog.Default()
	}
	return ap.Log
}

// ManagedNetworkLabels are the labels every network swarmsec creates carries.
func ManagedNetworkLabels(dn *DesiredNetwork) map[string]string {
	labels := map[string]string{v1.LabelManaged: "true", v1.LabelPurpose: dn.Purpose}
	if dn.Owner != "" {
		labels[v1.LabelOwner] = dn.Owner
	}
	return labels
}

func (ap *Applier) createNetwork(ctx context.Context, a Action, created map[string]string) ActionResult {
	start := time.Now()
	dn := a.Network
	opts := network.CreateOptions{
		Driver:   "overlay",
		Scope:    "swarm",
		Internal: dn.Internal,
		// Attachable stays off: no container outside a service may join.
		Attachable: false,
		Options:    map[string]string{"encrypted": "true"},
		Labels:     ManagedNetworkLabels(dn),
	}
	resp, err := ap.Docker.NetworkCreate(ctx, dn.Name, opts)
	if err != nil {
		return ActionResult{Action: a, Outcome: OutcomeFailed, Err: fmt.Errorf("create network %s: %w", dn.Name, err), Duration: time.Since(start)}
	}
	created[dn.Name] = resp.ID
	n := &state.Network{
		ID: resp.ID, Name: dn.Name, Driver: opts.Driver, Scope: opts.Scope, Labels: opts.Labels,
		SelectorLabels: maps.Clone(opts.Labels), Options: opts.Options, Internal: opts.Internal, Created: time.Now(),
	}
	if err := ap.Store.Update(func(tx state.Tx) error { return state.UpsertNetwork(tx, n) }); err != nil {
		return ActionResult{Action: a, Outcome: OutcomeFailed, Err: err, Duration: time.Since(start)}
	}
	return ActionResult{Action: a, Outcome: OutcomeCreated, Duration: time.Since(start)}
}

func (ap *Applier) updateService(ctx context.Context, a Action, desired *Desired, created map[string]string) ActionResult {
	start := time.Now()
	fail := func(err error) ActionResult {
		return ActionResult{Action: a, Outcome: OutcomeFailed, Err: fmt.Errorf("update service %s: %w", a.Name, err), Duration: time.Since(start)}
	}
	var svc *state.Service
	ap.Store.View(func(tx state.ReadTx) { svc = state.GetService(tx, a.ID) })
	if svc == nil {
		return ActionResult{Action: a, Outcome: OutcomeSkipped, Duration: time.Since(start)}
	}
	t := a.Service.target
	retries := max(ap.Retries, 1)
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		spec, err := ap.buildSpec(svc, t, created)
		if err != nil {
			return fail(err)
		}
		resp, err := ap.Docker.ServiceUpdate(ctx, svc.ID, swarm.Version{Index: svc.Version}, spec, swarm.ServiceUpdateOptions{})
		if err == nil {
			for _, w := range resp.Warnings {
				ap.logger().Warn("docker warning", "service", svc.Name, "warning", w)
			}
			return ActionResult{Action: a, Outcome: OutcomeConfigured, Duration: time.Since(start)}
		}
		if !dockerapi.IsOutOfSequence(err) || attempt >= retries {
			return fail(err)
		}
		// Swarm moved the service on (a rolling update, another client):
		// read it again and recompute the change from what is there now.
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(backoff):
		}
		backoff *= 2
		fresh, _, err := ap.Docker.ServiceInspectWithRaw(ctx, svc.ID, swarm.ServiceInspectOptions{})
		if err != nil {
			return fail(err)
		}
		svc = state.NewService(fresh)
		if err := ap.Store.Update(func(tx state.Tx) error { return state.UpsertService(tx, svc) }); err != nil {
			return fail(err)
		}
		var (
			changed bool
			next    Action
		)
		ap.Store.View(func(tx state.ReadTx) {
			nets, lerr := loadNetworks(tx)
			if lerr != nil {
				err = lerr
				return
			}
			ds := desired.Services[svc.ID]
			nt, _ := target(svc, ds, nets, nil)
			next, changed = serviceAction(svc, ds, nt, nets)
		})
		if err != nil {
			return fail(err)
		}
		if !changed {
			return ActionResult{Action: a, Outcome: OutcomeUnchanged, Duration: time.Since(start)}
		}
		t = next.Service.target
	}
}

// buildSpec applies a target to a copy of the service's spec: networks,
// published ports and the original label change; every other field stays as
// it was read.
func (ap *Applier) buildSpec(svc *state.Service, t serviceTarget, created map[string]string) (swarm.ServiceSpec, error) {
	spec := svc.CloneSpec()
	var nets []swarm.NetworkAttachmentConfig
	var missing []string
	ap.Store.View(func(tx state.ReadTx) {
		for _, a := range t.Networks {
			id := a.ID
			if id == "" {
				id = created[a.Network]
			}
			if id == "" {
				if ns, _ := state.FindNetworks(tx, state.ByName(a.Network)); len(ns) > 0 {
					id = ns[0].ID
				}
			}
			if id == "" {
				missing = append(missing, a.Network)
				continue
			}
			nets = append(nets, swarm.NetworkAttachmentConfig{Target: id, Aliases: a.Aliases, DriverOpts: a.DriverOpts})
		}
	})
	if len(missing) > 0 {
		return spec, fmt.Errorf("networks %s do not exist (their creation failed)", strings.Join(missing, ", "))
	}
	spec.TaskTemplate.Networks = nets
	spec.Networks = nil //nolint:staticcheck // moved to TaskTemplate.Networks, where Swarm wants it
	if len(t.Ports) > 0 || (spec.EndpointSpec != nil && len(spec.EndpointSpec.Ports) > 0) {
		if spec.EndpointSpec == nil {
			spec.EndpointSpec = &swarm.EndpointSpec{}
		}
		spec.EndpointSpec.Ports = t.Ports
	}
	labels := maps.Clone(spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	if t.Original == "" {
		delete(labels, v1.LabelOriginal)
	} else {
		labels[v1.LabelOriginal] = t.Original
	}
	spec.Labels = labels
	return spec, nil
}

func (ap *Applier) removeNetwork(ctx context.Context, a Action) ActionResult {
	start := time.Now()
	deadline := time.Now().Add(ap.RemoveWait)
	backoff := 250 * time.Millisecond
	for {
		err := ap.Docker.NetworkRemove(ctx, a.ID)
		switch {
		case err == nil || dockerapi.IsNotFound(err):
			if err := ap.Store.Update(func(tx state.Tx) error { return state.DeleteNetwork(tx, a.ID) }); err != nil {
				return ActionResult{Action: a, Outcome: OutcomeFailed, Err: err, Duration: time.Since(start)}
			}
			return ActionResult{Action: a, Outcome: OutcomeDeleted, Duration: time.Since(start)}
		case dockerapi.IsInUse(err) && time.Now().Before(deadline):
			// Old tasks hold the network until their replacement finishes.
			select {
			case <-ctx.Done():
				return ActionResult{Action: a, Outcome: OutcomePending, Duration: time.Since(start)}
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
		case dockerapi.IsInUse(err):
			return ActionResult{Action: a, Outcome: OutcomePending, Duration: time.Since(start)}
		default:
			return ActionResult{Action: a, Outcome: OutcomeFailed, Err: fmt.Errorf("remove network %s: %w", a.Name, err), Duration: time.Since(start)}
		}
	}
}
