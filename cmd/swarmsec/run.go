package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmsec/swarmsec/internal/server"
	"github.com/swarmsec/swarmsec/reconciler/lease"
	"github.com/swarmsec/swarmsec/reconciler/manager"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
)

func init() { register(newRunCmd) }

type runOptions struct {
	mf         manifestFlags
	lf         limitFlags
	resync     time.Duration
	allowEmpty bool
	mode       string
	listen     string
	// Leader election among replicas (several managers).
	leaderElect bool
	leaseName   string
	identity    string
}

func newRunCmd(g *globalOptions) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the controller: keep the Swarm matching the manifests",
		Long: `run is the controller. It converges on start, whenever the manifest directory
changes, on Docker service, network and record events (manual drift is
reverted within seconds) and on a periodic resync. Between resyncs a pass
re-reads only the objects events named; a resync, and the pass after a lost
events stream, lists everything. A broken manifest keeps its last good
policies in force. SIGTERM or SIGINT stops it cleanly.

It serves, on --listen (loopback by default: the process holds the Docker
socket), /healthz, /readyz, /metrics (Prometheus) and /status (the policies'
conditions as JSON, which swarmsec status prints).

With --mode audit it computes and reports everything (status reason AuditOnly,
swarmsec_audit_actions, a log line per would-be change) and writes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return o.run(ctx, g, cmd)
		},
	}
	o.mf.add(cmd)
	o.lf.add(cmd, false)
	cmd.Flags().DurationVar(&o.resync, "resync", 30*time.Second, "period of passes that list everything in Swarm (between them, a pass re-reads only what events named)")
	cmd.Flags().BoolVar(&o.allowEmpty, "allow-empty", false, "act on an empty or unreadable manifest directory (removes every policy) instead of keeping the last good set")
	cmd.Flags().StringVar(&o.mode, "mode", string(reconcile.ModeEnforce), "enforce: write changes; audit: report what would change and write nothing")
	cmd.Flags().StringVar(&o.listen, "listen", server.DefaultAddr, "address of /healthz, /readyz, /metrics and /status (empty: do not serve)")
	host, _ := os.Hostname()
	cmd.Flags().BoolVar(&o.leaderElect, "leader-elect", true, "elect one writer among the replicas through a lease on Swarm's Raft (a Swarm config); the others follow")
	cmd.Flags().StringVar(&o.leaseName, "lease", lease.DefaultName, "name of the lease config")
	cmd.Flags().StringVar(&o.identity, "identity", fmt.Sprintf("%s-%d", host, os.Getpid()), "this replica's name in the lease")
	return cmd
}

func (o *runOptions) run(ctx context.Context, g *globalOptions, cmd *cobra.Command) error {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	mode := reconcile.Mode(o.mode)
	if mode != reconcile.ModeEnforce && mode != reconcile.ModeAudit {
		return fmt.Errorf("--mode %q: must be enforce or audit", o.mode)
	}
	cli, err := newClient()
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	return manager.Run(ctx, manager.Config{
		Docker: cli, Log: log,
		Manifests: o.mf.dir, AllowEmpty: o.allowEmpty,
		Mode: mode, Limits: o.lf.limits, Resync: o.resync, Listen: o.listen,
		AgentService: o.lf.agentService,
		LeaderElect:  o.leaderElect, Lease: o.leaseName, Identity: o.identity,
	})
}
