package main

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/spf13/cobra"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler"
)

func init() { register(newApplyCmd) }

func newApplyCmd(g *globalOptions) *cobra.Command {
	var (
		mf          manifestFlags
		lf          limitFlags
		wait        bool
		waitTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Make the Swarm match the manifests once, then exit",
		Long: `apply converges once: it creates the encrypted networks the policies need,
updates the services (one update each, carrying the version it read) and removes
managed networks nobody needs any more. With --wait it also waits for the
services' rolling updates to finish.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, done, err := setup(cmd, g, mf, lf)
			if err != nil {
				return err
			}
			defer done()
			// Old tasks hold a network until their replacements run.
			r.RemoveWait = waitTimeout
			_, res, err := r.Reconcile(ctx)
			if err != nil && res != nil && len(res.Results) > 0 {
				// Each failure was logged with its object already.
				failed := 0
				for _, ar := range res.Results {
					if ar.Err != nil {
						failed++
					}
				}
				return fmt.Errorf("%d of %d changes failed (each is logged above)", failed, len(res.Results))
			}
			if err != nil {
				return err
			}
			var updated []string
			for _, ar := range res.Results {
				if ar.Action.Kind == reconciler.ActionUpdateService && ar.Outcome == reconciler.OutcomeConfigured {
					updated = append(updated, ar.Action.ID)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Applied %d changes.\n", len(res.Results))
			if res.Pending() {
				fmt.Fprintln(cmd.OutOrStdout(), "Some networks are still in use by tasks being replaced; `swarmsec run` or another apply removes them.")
			}
			if wait && len(updated) > 0 {
				ctx, cancel := context.WithTimeout(ctx, waitTimeout)
				defer cancel()
				if err := waitConverged(ctx, r.Docker, updated); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d services finished their rolling updates.\n", len(updated))
			}
			return nil
		},
	}
	mf.add(cmd)
	lf.add(cmd)
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the services' rolling updates to finish")
	cmd.Flags().DurationVar(&waitTimeout, "wait-timeout", 5*time.Minute, "how long --wait (and network removal) may wait")
	return cmd
}

// waitConverged polls until every service's rolling update has finished and
// its tasks run at the current spec.
func waitConverged(ctx context.Context, api dockerapi.API, ids []string) error {
	for {
		pending := ""
		for _, id := range ids {
			ok, why, err := converged(ctx, api, id)
			if err != nil {
				return err
			}
			if !ok {
				pending = why
				break
			}
		}
		if pending == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for rolling updates: %s: %w", pending, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
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
