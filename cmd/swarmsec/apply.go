package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/wait"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/apply"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
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
rolling updates to finish before the next, and exits 0 once the cluster
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

// runApply drives passes until one leaves nothing to do, or maxWaves
// passes that wrote (0: no bound).
func runApply(ctx context.Context, w io.Writer, r *reconcile.Reconciler, waitLast bool, maxWaves int) error {
	var (
		writes, waves int
		updated       []string // services updated by the last pass
	)
	for pass := 1; ; pass++ {
		_, res, err := r.Reconcile(ctx)
		var werr *reconcile.WriteError
		switch {
		case errors.As(err, &werr):
			// Each failure was logged with its object already.
			return fmt.Errorf("%d of %d changes failed (each is logged above)", werr.Failed, werr.Total)
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("not converged after %d changes: %w", writes, ctx.Err())
		case err != nil:
			return err
		}
		updated = updated[:0]
		for _, ar := range res.Results {
			if ar.Action.Kind == plan.ActionMigrateNetwork && ar.Outcome == apply.OutcomeConfigured {
				for _, st := range ar.Action.Steps {
					if st.Kind == plan.ActionUpdateService {
						updated = append(updated, st.ID)
					}
				}
			}
			if ar.Action.Kind == plan.ActionUpdateService && ar.Outcome == apply.OutcomeConfigured {
				updated = append(updated, ar.Action.ID)
			}
		}
		if n := res.Writes(); n > 0 {
			writes += n
			waves++
			fmt.Fprintf(w, "Pass %d: %d changes written (%d services updated).\n", pass, n, len(updated))
		}
		if res.RequeueAfter <= 0 {
			break
		}
		if maxWaves > 0 && waves >= maxWaves {
			return fmt.Errorf("stopped after %d passes that wrote (--max-waves) with work left: %s", waves, strings.Join(append(res.Waiting, pending(res)...), "; "))
		}
		// A wave's rolling updates finish before the next wave starts,
		// as Swarm's own update_config does between batches of tasks.
		if len(updated) > 0 {
			if err := waitConverged(ctx, r.Docker, updated); err != nil {
				return fmt.Errorf("after %d changes: %w", writes, err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not converged after %d changes: %s: %w", writes, strings.Join(res.Waiting, "; "), ctx.Err())
		case <-time.After(res.RequeueAfter):
		}
	}
	fmt.Fprintf(w, "Applied %d changes; the cluster matches the manifests.\n", writes)
	if waitLast && len(updated) > 0 {
		if err := waitConverged(ctx, r.Docker, updated); err != nil {
			return err
		}
		fmt.Fprintf(w, "%d services finished their rolling updates.\n", len(updated))
	}
	return nil
}

// pending describes the actions a pass left for later.
func pending(res *reconcile.Result) []string {
	var out []string
	for _, ar := range res.Results {
		if ar.Outcome == apply.OutcomePending {
			out = append(out, fmt.Sprintf("%s %s", ar.Action.Kind, ar.Action.Name))
		}
	}
	return out
}

// waitConverged polls until every service's rolling update has finished and
// its tasks run at the current spec.
func waitConverged(ctx context.Context, api dockerapi.API, ids []string) error {
	pending := ""
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		for _, id := range ids {
			ok, why, err := converged(ctx, api, id)
			if err != nil || !ok {
				pending = why
				return false, err
			}
		}
		return true, nil
	})
	if err != nil && wait.Interrupted(err) {
		return fmt.Errorf("waiting for rolling updates: %s: %w", pending, ctx.Err())
	}
	return err
}

func converged(ctx context.Context, api dockerapi.API, id string) (bool, string, error) {
	svc, _, err := api.ServiceInspectWithRaw(ctx, id, swarm.ServiceInspectOptions{})
	if err != nil {
		return false, "", fmt.Errorf("service %s: %w", id, err)
	}
	name := svc.Spec.Name
	if u := svc.UpdateStatus; u != nil {
		switch u.State {
		case swarm.UpdateStateUpdating, swarm.UpdateStateRollbackStarted:
			return false, fmt.Sprintf("service %s is %s", name, u.State), nil
		case swarm.UpdateStatePaused, swarm.UpdateStateRollbackPaused:
			return false, "", fmt.Errorf("service %s: update %s: %s", name, u.State, u.Message)
		}
	}
	tasks, err := api.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", id), filters.Arg("desired-state", "running"))})
	if err != nil {
		return false, "", fmt.Errorf("service %s: tasks: %w", name, err)
	}
	want := -1
	if svc.Spec.Mode.Replicated != nil && svc.Spec.Mode.Replicated.Replicas != nil {
		want = int(*svc.Spec.Mode.Replicated.Replicas)
	}
	running := 0
	for _, t := range tasks {
		if t.Status.State != swarm.TaskStateRunning {
			return false, fmt.Sprintf("service %s: task %s is %s", name, t.ID, t.Status.State), nil
		}
		running++
	}
	if want >= 0 && running < want {
		return false, fmt.Sprintf("service %s: %d of %d tasks running", name, running, want), nil
	}
	return true, "", nil
}
