package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"strconv"

	"github.com/docker/docker/api/types/events"
	"github.com/spf13/cobra"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/apply"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
)

func init() { register(newApplyCmd) }

func newApplyCmd(g *globalOptions) *cobra.Command {
	var (
		mf          manifestFlags
		lf          limitFlags
		wait        bool
		waitTimeout time.Duration
		allowEmpty  bool
		maxWaves    int
		trafficWin  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Make the Swarm match the manifests, then exit",
		Long: `apply converges: it creates the encrypted networks the policies need, updates
the services (one update each, carrying the version it read), moves the services
of networks an EncryptionPolicy selects onto encrypted ones, and removes managed
networks nobody needs any more. It works in passes of at most
--max-service-updates service updates (the blast radius), waits for a pass's
rolling updates to finish before the next (the first wave is the cap,
each that finishes healthy doubles the next), and exits 0 once the cluster
matches the manifests; a rolling update that pauses (its update_config failure
action) or a cluster still not in sync after --wait-timeout exits non-zero with
what remains. With --wait it also waits for the last rolling updates.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := refuseEmpty(mf.dir, allowEmpty); err != nil {
				return err
			}
			r, done, err := setup(cmd, g, mf, lf)
			if err != nil {
				return err
			}
			defer done()
			ctx, cancel := context.WithTimeout(cmd.Context(), waitTimeout)
			defer cancel()
			if err := refuseLeader(ctx, cmd.ErrOrStderr(), r.Docker); err != nil {
				return err
			}
			followEvents(ctx, r)
			if err := refuseHeld(ctx, cmd.ErrOrStderr(), r); err != nil {
				return err
			}
			if err := refuseTrafficCuts(ctx, cmd.ErrOrStderr(), r, lf.agentService, trafficWin); err != nil {
				return err
			}
			return runApply(ctx, cmd.OutOrStdout(), r, wait, maxWaves)
		},
	}
	mf.add(cmd)
	lf.add(cmd, true)
	cmd.Flags().IntVar(&maxWaves, "max-waves", 0, "stop after this many passes that write (0: until the cluster matches)")
	cmd.Flags().BoolVar(&allowEmpty, "allow-empty", false, "apply an empty manifest directory: end every isolation swarmsec made")
	cmd.Flags().DurationVar(&trafficWin, "traffic-window", 0, "hold a change that blocks flows the node agents observed in this window, unless a policy cutting each is annotated "+v1.AnnotationApproveTrafficCut+`: "true" (0: do not check)`)
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the services' rolling updates to finish")
	cmd.Flags().DurationVar(&waitTimeout, "wait-timeout", 10*time.Minute, "how long apply may take to converge (and --wait to wait)")
	return cmd
}

// refuseEmpty stops an apply of a directory with no policies, which would
// end every isolation at once: an unmounted volume or a half-done sync
// looks just like that. Run says the same and keeps the last good set.
func refuseEmpty(dir string, allow bool) error {
	if allow {
		return nil
	}
	set, err := manifest.Load(dir)
	if err != nil {
		return fmt.Errorf("manifests %s: %w", dir, err)
	}
	if len(set.Objects) == 0 && len(set.Errors) == 0 {
		return fmt.Errorf("manifests %s: no policies: applying that would end every isolation swarmsec made; nothing was written (use --allow-empty if that is what you want)", dir)
	}
	return nil
}

// refuseHeld stops an apply whose manifests hold a policy the safety limits
// keep out of force, before anything is written: the user asked for all of
// it. --force is the one-shot way past; the annotation the lasting one.
func refuseHeld(ctx context.Context, w io.Writer, r *reconcile.Reconciler) error {
	p, err := r.Plan(ctx)
	if err != nil {
		return err
	}
	if len(p.Held) == 0 && len(p.Holds) == 0 || r.Limits.Force {
		return nil
	}
	for _, h := range p.Held {
		fmt.Fprintln(w, "held: "+h.Message)
	}
	for _, h := range p.Holds {
		fmt.Fprintln(w, "held: "+h)
	}
	return fmt.Errorf("%w: %s; nothing was written (--force goes ahead this once)", plan.ErrHeld, plural(len(p.Held)+len(p.Holds), "hold"))
}

// wavePoll is how often apply asks whether a wave's rolling updates are
// done: one service list and one task list for the whole wave.
const wavePoll = 250 * time.Millisecond

// pendingPoll is the first wait after a pass that left a write waiting on
// Swarm (a network still held by the tasks that just left it): it doubles
// each pass that finds the write still waiting, up to the pass's own
// RequeueAfter, as client-go's exponential backoff does, so a wait Swarm
// ends in half a second costs about that rather than a fixed 5 s.
const pendingPoll = 250 * time.Millisecond

// pendingWait is how long apply waits before the next pass after idle
// passes in a row that wrote nothing (0 after one that wrote), within the
// pass's own RequeueAfter.
func pendingWait(requeue time.Duration, idle int) time.Duration {
	return min(requeue, pendingPoll<<min(idle, 5))
}

// runApply drives passes until one leaves nothing to do, or maxWaves
// passes that wrote (0: no bound). A pass writes one wave; the next starts
// as soon as the wave's rolling updates are done (at once for services
// without tasks), and each wave that ends healthy doubles the next
// (plan.WaveSize). Between passes, the engine's events say what to read
// again, so a wave costs reads of what changed rather than lists of all.
func runApply(ctx context.Context, w io.Writer, r *reconcile.Reconciler, waitLast bool, maxWaves int) error {
	var (
		writes, waves int
		updated       int      // services updated by the last pass that wrote
		idle          int      // passes in a row that wrote nothing
		waiting       []string // what the last pass left waiting
	)
	for {
		_, res, err := r.Reconcile(ctx)
		var werr *reconcile.WriteError
		switch {
		case err != nil && ctx.Err() != nil:
			// Time ran out, maybe in a write: say what waited.
			return notConverged(writes, waiting, ctx.Err())
		case errors.As(err, &werr):
			// Each failure was logged with its object already.
			return fmt.Errorf("%d of %d changes failed (each is logged above)", werr.Failed, werr.Total)
		case err != nil:
			return err
		}
		idle++
		waiting = append(slices.Clone(res.Waiting), pending(res)...)
		if n := res.Writes(); n > 0 {
			idle = 0
			updated = servicesUpdated(res)
			writes += n
			waves++
			size := "no cap"
			if res.WaveSize > 0 {
				size = fmt.Sprintf("at most %d", res.WaveSize)
			}
			fmt.Fprintf(w, "Wave %d: %d changes written (%d services updated, %s).\n", waves, n, updated, size)
		}
		if res.RequeueAfter <= 0 {
			break
		}
		if maxWaves > 0 && waves >= maxWaves {
			return fmt.Errorf("stopped after %d passes that wrote (--max-waves) with work left: %s", waves, strings.Join(waiting, "; "))
		}
		if r.WaveInFlight() {
			// A wave's rolling updates finish before the next wave starts,
			// as Swarm's own update_config does between batches of tasks;
			// the next starts at once.
			if _, err := r.AwaitWave(ctx, wavePoll); err != nil {
				return fmt.Errorf("after %d changes: %w", writes, err)
			}
			continue
		}
		select {
		case <-ctx.Done():
			return notConverged(writes, waiting, ctx.Err())
		case <-time.After(pendingWait(res.RequeueAfter, idle)):
		}
	}
	fmt.Fprintf(w, "Applied %d changes; the cluster matches the manifests.\n", writes)
	if waitLast && updated > 0 {
		if _, err := r.AwaitWave(ctx, wavePoll); err != nil {
			return err
		}
		fmt.Fprintf(w, "%d services finished their rolling updates.\n", updated)
	}
	return nil
}

// notConverged is apply's error when its time ran out, with what the last
// pass left waiting.
func notConverged(writes int, waiting []string, err error) error {
	if len(waiting) == 0 {
		return fmt.Errorf("not converged after %d changes: %w", writes, err)
	}
	return fmt.Errorf("not converged after %d changes: %s: %w", writes, strings.Join(waiting, "; "), err)
}

// servicesUpdated counts the services a pass updated, its migrations'
// steps included.
func servicesUpdated(res *reconcile.Result) int {
	n := 0
	for _, ar := range res.Results {
		if ar.Action.Kind == plan.ActionMigrateNetwork && ar.Outcome == apply.OutcomeConfigured {
			for _, st := range ar.Action.Steps {
				if st.Kind == plan.ActionUpdateService {
					n++
				}
			}
		}
		if ar.Action.Kind == plan.ActionUpdateService && ar.Outcome == apply.OutcomeConfigured {
			n++
		}
	}
	return n
}

// pending describes the actions a pass left for later.
func pending(res *reconcile.Result) []string {
	var out []string
	for _, ar := range res.Results {
		switch {
		case ar.Outcome != apply.OutcomePending:
		case ar.Action.Waits != "":
			// Why it waits, as plan says it: a record whose restore is
			// paused waits for the operator.
			out = append(out, fmt.Sprintf("%s %s: %s", ar.Action.Kind, ar.Action.Name, ar.Action.Waits))
		default:
			out = append(out, fmt.Sprintf("%s %s", ar.Action.Kind, ar.Action.Name))
		}
	}
	return out
}

// followEvents keeps r's store current from the engine's events while
// apply runs (list, then watch, as the controller): a pass after the first
// re-reads what the events and its own writes named, and lists everything
// only when it must (observe.Changes). A lost stream makes every pass
// list again. It returns once the engine answered the subscription.
func followEvents(ctx context.Context, r *reconcile.Reconciler) {
	changes := observe.NewChanges()
	// The last seconds again: what changed between the engine's answer
	// and its subscription is seen twice rather than never.
	since := strconv.FormatInt(time.Now().Add(-5*time.Second).Unix(), 10)
	msgs, errs := r.Docker.Events(ctx, events.ListOptions{Filters: observe.EventFilters(), Since: since})
	changes.Watch("apply started")
	r.Changes = changes
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-msgs:
				changes.Event(m)
			case err := <-errs:
				changes.Unwatch()
				if ctx.Err() == nil && r.Log != nil {
					r.Log.Warn("docker events stream lost; every pass lists", "error", err)
				}
				return
			}
		}
	}()
}
