package main

import (
	"context"
	"errors"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/internal/watch"
	"github.com/swarmsec/swarmsec/reconciler"
	"github.com/swarmsec/swarmsec/state"
)

func init() { register(newRunCmd) }

type runOptions struct {
	mf         manifestFlags
	resync     time.Duration
	allowEmpty bool
	mode       string
}

func newRunCmd(g *globalOptions) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the controller: keep the Swarm matching the manifests",
		Long: `run is the controller. It converges on start, whenever the manifest directory
changes, on Docker service and network events (manual drift is reverted within
seconds) and on a periodic resync. A broken manifest keeps its last good
policies in force. SIGTERM or SIGINT stops it cleanly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return o.run(ctx, g, cmd)
		},
	}
	o.mf.add(cmd)
	cmd.Flags().DurationVar(&o.resync, "resync", 30*time.Second, "period of full passes without any trigger")
	cmd.Flags().BoolVar(&o.allowEmpty, "allow-empty", false, "act on an empty or unreadable manifest directory (removes every policy) instead of keeping the last good set")
	cmd.Flags().StringVar(&o.mode, "mode", string(reconciler.ModeEnforce), "enforce: write changes; audit: report what would change and write nothing")
	return cmd
}

func (o *runOptions) run(ctx context.Context, g *globalOptions, cmd *cobra.Command) error {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	mode := reconciler.Mode(o.mode)
	if mode != reconciler.ModeEnforce && mode != reconciler.ModeAudit {
		return fmt.Errorf("--mode %q: must be enforce or audit", o.mode)
	}
	cli, err := dockerapi.New()
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	// The engine may be restarting: keep asking rather than give up, but a
	// worker node is a mistake worth stopping for.
	for {
		err := reconciler.CheckManager(ctx, cli)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if isNotManager(err) {
			return err
		}
		log.Warn("docker engine not answering; retrying", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}

	rec := &reconciler.Reconciler{Docker: cli, Store: state.New(), Log: log, Mode: mode}
	ctrl := &reconciler.Controller{Reconciler: rec, Resync: o.resync, Log: log}
	w := watch.New(o.mf.dir, watch.Options{AllowEmpty: o.allowEmpty, Logger: log})

	watchErr := make(chan error, 1)
	go func() { watchErr <- w.Run(ctx) }()

	// The controller starts once the first complete set of manifests is in,
	// so it never acts on an empty desired state by mistake.
	var first watch.Snapshot
	select {
	case <-ctx.Done():
		return nil
	case err := <-watchErr:
		return fmt.Errorf("watch %s: %w", o.mf.dir, err)
	case first = <-w.Updates():
	}
	if err := rec.SetPolicies(toPolicies(first.Objects)); err != nil {
		return err
	}
	log.Info("swarmsec running", "manifests", o.mf.dir, "policies", len(first.Objects), "mode", mode, "resync", o.resync)

	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case snap := <-w.Updates():
				if err := ctrl.SetPolicies(toPolicies(snap.Objects)); err != nil {
					log.Error("store policies", "error", err)
				}
			}
		}
	}()
	err = ctrl.Run(ctx)
	log.Info("swarmsec stopped")
	return err
}

func isNotManager(err error) bool {
	return err != nil && errors.Is(err, reconciler.ErrNotManager)
}
